from __future__ import annotations

import numpy as np
import pytest

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG, ClassSchema, get_schema


def test_luad_preset_order_and_palette() -> None:
    s = LUAD_HISTOSEG
    assert s.foreground_names == ["TE", "NEC", "LYM", "TAS"]
    assert s.background_index == 4
    assert s.palette()[0].tolist() == [205, 51, 51]
    assert s.palette()[4].tolist() == [255, 255, 255]
    assert BCSS_WSSS.foreground_names == ["TUM", "STR", "LYM", "NEC"]


def test_labels_round_trip_and_background_is_transparent() -> None:
    cm = np.array([[0, 1], [3, 4]], dtype=np.uint8)
    lab = LUAD_HISTOSEG.to_labels(cm)
    assert lab.tolist() == [[1, 2], [4, 0]]
    assert np.array_equal(LUAD_HISTOSEG.from_labels(lab), cm)
    # a stray brush value (e.g. 9) becomes background, never an out-of-schema class
    assert LUAD_HISTOSEG.from_labels(np.array([[9]]))[0, 0] == 4
    colours = LUAD_HISTOSEG.label_colours()
    assert colours[0][3] == 0.0 and colours[1] == pytest.approx((205 / 255, 51 / 255, 51 / 255, 1.0))


def test_validate_class_map_names_source() -> None:
    with pytest.raises(ValueError, match=r"mask\.png.*\[7\]"):
        LUAD_HISTOSEG.validate_class_map(np.array([[0, 7]]), source="mask.png")


def test_schema_dict_round_trip_and_lookup() -> None:
    assert ClassSchema.from_dict(BCSS_WSSS.to_dict()) == BCSS_WSSS
    assert get_schema("luad") is LUAD_HISTOSEG and get_schema("BCSS-WSSS") is BCSS_WSSS
    with pytest.raises(KeyError, match="available"):
        get_schema("camelyon")
    assert LUAD_HISTOSEG.index_of("lym") == 2


# -- any class set: presets, schema files, mask values, scored_as ---------------------------------------------
from pathlib import Path  # noqa: E402

from napari_wsss.classes import GLAS, load_schema  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_glas_preset_and_shipped_file_are_the_same_schema() -> None:
    assert load_schema("glas") is GLAS and load_schema("colon-gland") is GLAS
    assert GLAS.names == ["gland", "non-gland", "glass"] and GLAS.background_index == 2
    from_file = load_schema(REPO / "schemas" / "colon-gland.json")
    assert from_file == GLAS
    assert ClassSchema.from_dict(GLAS.to_dict()) == GLAS
    # predicted glass is scored as non-gland; the tissue classes as themselves
    assert GLAS.scored_lookup().tolist() == [0, 1, 1]


def test_glas_mask_values_map_to_class_map() -> None:
    raw = np.array([[0, 255], [255, 0]], np.uint8)
    assert GLAS.map_mask_values(raw).tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match=r"mask values \[7\].*255=gland"):
        GLAS.map_mask_values(np.array([[7, 0]]), "m.png")
    with pytest.raises(ValueError, match="no mask_value"):
        LUAD_HISTOSEG.map_mask_values(raw)


def test_lossy_mask_values_say_how_to_fix() -> None:
    """A JPEG-compressed gland mask holds every grey level at its edges: the error says to save it losslessly."""
    jpeg_like = np.array([[0, 1, 3, 17, 128, 250, 255]], np.uint8)
    with pytest.raises(ValueError, match=r"5 stray values.*lossy \(JPEG\).*PNG or TIFF"):
        GLAS.map_mask_values(jpeg_like, "masks/train_1.png")
    with pytest.raises(ValueError, match=r"lossy \(JPEG\)"):
        GLAS.map_mask_values(np.array([[0, 254]]), "masks/train_1.jpg")
    with pytest.raises(ValueError, match="mask_value entries"):  # one odd value: not lossy, the old advice
        GLAS.map_mask_values(np.array([[0, 7]]), "m.png")


def test_preset_dicts_unchanged_by_optional_fields() -> None:
    d = LUAD_HISTOSEG.to_dict()
    assert set(d) == {"name", "classes"}
    assert all("mask_value" not in c and "scored_as" not in c for c in d["classes"])


def test_toml_schema_background_first_is_moved_last(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('name = "three"\n'
                 '[[classes]]\nname = "glass"\ncolour = [255, 255, 255]\nbackground = true\n'
                 '[[classes]]\nname = "tumour"\ncolour = [200, 0, 0]\nmask_value = 1\n'
                 '[[classes]]\nname = "stroma"\ncolor = [0, 200, 0]\nmask_value = 2\n'
                 '[[classes]]\nname = "fat"\ncolour = [0, 0, 200]\nmask_value = 3\n')
    s = load_schema(str(f))
    assert s.names == ["tumour", "stroma", "fat", "glass"] and s.background_index == 3
    assert s.map_mask_values(np.array([[1, 2, 3]])).tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("body, message", [
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3]}, {"name": "b", "colour": [1, 2, 3]}]}',
     "exactly one class"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3], "background": true}, '
     '{"name": "b", "colour": [1, 2, 3], "background": true}]}', "exactly one class"),
    ('{"name": "x", "classes": [{"name": "bg", "colour": [1, 2, 3], "background": true, "index": 0}, '
     '{"name": "b", "colour": [1, 2, 3], "index": 1}]}', "last index"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2]}, {"name": "b", "colour": [1, 2, 3], '
     '"background": true}]}', "three integers"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3], "mask_value": 5}, {"name": "b", '
     '"colour": [1, 2, 3], "background": true, "mask_value": 5}]}', "distinct"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3]}, {"name": "b", "colour": [1, 2, 3], '
     '"background": true, "scored_as": "c"}]}', "scored_as 'c'"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3], "colr": 1}, {"name": "b", '
     '"colour": [1, 2, 3], "background": true}]}', "unknown fields"),
    ('{"name": "x", "classes": [{"name": "a", "colour": [1, 2, 3]}, {"name": "A", "colour": [1, 2, 3], '
     '"background": true}]}', "unique"),
    ('{"name": "x", "classes": [', "not a valid JSON"),
    ('["a"]', "non-empty 'name'"),
])
def test_bad_schema_files_say_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(body)
    with pytest.raises(ValueError, match=message) as e:
        load_schema(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_missing_schema_file_and_unknown_preset() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_schema("/nonexistent/schema.json")
    with pytest.raises(KeyError, match=r"glas.*\.json/\.toml"):
        load_schema("camelyon")
