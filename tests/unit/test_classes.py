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
