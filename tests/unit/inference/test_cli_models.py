"""Which model the CLI uses, and how it is named (walk-through of the CLI on real GlaS images).

Before: `predict` without --model segmented real colon images with the synthetic LUAD demo, silently; every
--model took folders only, though `info` lists the shipped models by name; `evaluate` on a missing folder
asked for img/ and mask/, and on masks of other classes for a --schema it does not have; `import` of a PNG
asked for GeoJSON's --out.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import GLAS, LUAD_HISTOSEG
from napari_wsss.cli import main
from napari_wsss.resources import shipped_models_dir

from ..._glas import GLAS as GLAS_DIR
from ..._glas import require_glas

pytestmark = pytest.mark.skipif(not (shipped_models_dir() / "sshr-glas" / "card.json").is_file()
                                or not (shipped_models_dir() / "sshr-default" / "card.json").is_file(),
                                reason="the shipped models are not here")


def _palette(mask: Path, n: int) -> list[int]:
    with Image.open(mask) as im:
        return im.getpalette()[: 3 * n]


def _glas_crops(folder: Path, names: tuple[str, ...] = ("train_1", "train_2")) -> Path:
    """Small crops of real GlaS images (plain file names, as a pathologist's folder has): quick to segment."""
    require_glas(*(GLAS_DIR / "images" / f"{n}.png" for n in names))
    folder.mkdir(parents=True)
    for n in names:
        with Image.open(GLAS_DIR / "images" / f"{n}.png") as im:
            im.convert("RGB").crop((0, 0, 160, 128)).save(folder / f"{n}.png")
    return folder


def test_predict_without_model_on_real_images_uses_the_real_tissue_model_and_says_why(tmp_path, capsys):
    folder = _glas_crops(tmp_path / "colon")
    assert main(["predict", str(folder), "-o", str(tmp_path / "masks")]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "no --model given" in x)
    assert "model sshr-glas" in line and "no class labels" in line and "DEMO" not in line
    # the masks hold the gland classes, not the LUAD demo's
    assert _palette(tmp_path / "masks" / "train_1.png", 3) == GLAS.pil_palette()[:9]


def test_predict_without_model_on_class_named_tiles_uses_the_demo_and_says_it_is_one(tiny_dataset, tmp_path,
                                                                                       capsys):
    folder = tmp_path / "named"
    folder.mkdir()
    for f in sorted((tiny_dataset / "training").iterdir())[:2]:  # LUAD-HistoSeg names: t000-[1 0 0 1].png
        shutil.copy(f, folder / f.name)
    assert main(["predict", str(folder), "-o", str(tmp_path / "masks")]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "no --model given" in x)
    assert "model sshr-default" in line and "4 class labels" in line and "DEMO" in line and "generated" in line
    first = sorted((tmp_path / "masks").iterdir())[0]
    assert _palette(first, 5) == LUAD_HISTOSEG.pil_palette()[:15]


def test_a_named_demo_on_plain_images_is_used_with_a_warning(tiny_dataset, tmp_path, capsys):
    src = sorted((tiny_dataset / "test" / "img").iterdir())[0]
    assert main(["predict", str(src), "--model", "sshr-default", "-o", str(tmp_path / "m.png")]) == 0
    err = capsys.readouterr().err
    assert "sshr-default is a DEMO" in err and "--model sshr-glas" in err and (tmp_path / "m.png").is_file()


def test_every_model_option_takes_shipped_names(tiny_dataset, tmp_path, capsys):
    src = sorted((tiny_dataset / "test" / "img").iterdir())[0]
    assert main(["predict", str(src), "--model", "sshr-glas", "-o", str(tmp_path / "one.png")]) == 0
    assert _palette(tmp_path / "one.png", 3) == GLAS.pil_palette()[:9]
    capsys.readouterr()
    for argv in (["predict", str(src), "--model", "nosuch", "-o", str(tmp_path / "x.png")],
                 ["evaluate", "--model", "nosuch", "--data", str(tiny_dataset / "test")],
                 ["remap", "--model", "nosuch", "--schema", "glas", "--map", "gland=TE", "--map", "non-gland=TAS",
                  "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--model nosuch" in err and "sshr-default, sshr-glas" in err, argv
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()


def test_evaluate_by_name_on_the_glas_layout_writes_miou(tmp_path, capsys):
    data = tmp_path / "glas"
    _glas_crops(data / "images", ("train_1",))
    (data / "masks").mkdir()
    with Image.open(GLAS_DIR / "masks" / "train_1.png") as m:
        m.crop((0, 0, 160, 128)).save(data / "masks" / "train_1.png")
    out = tmp_path / "s.json"
    assert main(["evaluate", "--model", "sshr-glas", "--data", str(data), "--json", str(out)]) == 0
    assert '"mIoU"' in out.read_text()


def _glas_layout(folder: Path) -> Path:
    """images/ + masks/ with 0/255 greyscale masks (GlaS), generated: the checks read the masks, not the model."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 180, np.uint8)).save(folder / "images" / "a.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:16] = 255
    Image.fromarray(mask).save(folder / "masks" / "a.png")
    return folder


def test_evaluate_on_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    model = shipped_models_dir() / "sshr-glas"
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "nosuch")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nosuch does not exist" in err and "must contain" not in err


def test_evaluate_never_writes_into_a_shipped_card(tmp_path, capsys):
    """With names, ``--save-to-card`` on a shipped model was one word from changing the installed files."""
    card = shipped_models_dir() / "sshr-glas" / "card.json"
    before = card.read_bytes()
    assert main(["evaluate", "--model", "sshr-glas", "--data", str(tmp_path), "--save-to-card"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shipped model sshr-glas" in err and "copy its folder" in err
    assert card.read_bytes() == before


def test_evaluate_on_masks_of_other_classes_names_the_model_that_fits(tmp_path, capsys):
    data = _glas_layout(tmp_path / "glas")
    assert main(["evaluate", "--model", str(shipped_models_dir() / "sshr-default"), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[255]" in err and "give --model sshr-glas" in err
    assert "choose the matching class schema" not in err  # evaluate has no --schema to choose one with


def test_import_of_a_file_that_is_not_geojson_says_what_import_takes(tmp_path, capsys):
    png = tmp_path / "notanimage.png"
    png.write_bytes(b"not an image at all")
    assert main(["import", str(png), "--project", str(tmp_path / "p.wsss")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a .png file, not GeoJSON" in err and "napari-wsss export" in err
    assert "needs --out" not in err
    renamed = tmp_path / "polygons.txt"  # GeoJSON under another suffix is still read as GeoJSON
    renamed.write_text('{"type": "FeatureCollection", "features": []}')
    main(["import", str(renamed)])
    assert "needs --out" in capsys.readouterr().err


def test_info_says_how_models_are_named_and_which_predict_takes(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "shipped model's name" in out and "predict without --model uses sshr-glas for real images" in out


def _card(name: str, training_data: str, names: list[str]) -> SimpleNamespace:
    schema = SimpleNamespace(names=names, n_foreground=len(names) - 1)
    return SimpleNamespace(name=name, training_data=training_data, class_schema=schema)


def test_the_rule_is_one_for_widget_and_cli(tmp_path):
    """The core rule on its own (the Segment widget and predict both call it)."""
    from napari_wsss.model_choice import files_origin, preferred_version
    from napari_wsss.resources import sample_data_dir

    versions = [("demo (shipped)", _card("demo", "synthetic LUAD-like tiles", ["TE", "NEC", "LYM", "TAS", "BG"])),
                ("real (shipped)", _card("real", "real H&E: GlaS", ["gland", "non-gland", "glass"]))]
    assert files_origin([tmp_path / "train_1.png"]) == ("plain", None)
    assert files_origin([tmp_path / "a-[1 0 0 1].png", tmp_path / "b-[0 1 0 1].png"]) == ("named", 4)
    assert files_origin([sample_data_dir() / "slide.tif"]) == ("sample", None)
    assert files_origin([]) == ("unknown", None)
    assert preferred_version(versions, "plain", None)[0] == 1
    assert preferred_version(versions, "named", 4)[0] == 0
    assert preferred_version(versions, "sample", None)[0] == 0
    assert preferred_version(versions, "plain", None, ["gland", "non-gland", "glass"])[0] == 1
    assert preferred_version(versions, "plain", None, ["TE", "NEC", "LYM", "TAS", "BG"])[0] == 0
    # an image not read from files (a user's array, another reader): real tissue is likelier than generated tiles
    assert preferred_version(versions, "unknown", None)[0] == 1
    assert preferred_version(versions[:1], "unknown", None) is None  # only the demo: the list's order
