"""``napari-wsss patches``: real-layout images + masks (or GeoJSON) -> patches with image-level labels only,
validation split by source image and written whole, split.json, never overwriting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import GLAS
from napari_wsss.cli import main
from napari_wsss.data.tiles import list_training_tiles, read_labels_csv, read_mask
from napari_wsss.events import run_to_end
from napari_wsss.export.patches import make_patches, patch_starts, split_sources
from napari_wsss.training.common import resolve_data_dirs
from ..._glas import require_glas

SIZES = {"train_1": (64, 96), "train_2": (64, 96), "train_3": (48, 70), "train_4": (64, 96), "train_5": (50, 64)}


def _glas_folder(root: Path, rng: np.random.Generator) -> Path:
    """GlaS layout, mixed sizes; train_4 is glass on its right half (unannotated, mask 0)."""
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        gland = np.zeros((h, w), bool)
        gland[4 + i: h // 2, 6: w // 3 + 3 * i] = True
        img = np.where(gland[..., None], [120, 50, 150], [225, 140, 185]).astype(float)
        if name == "train_4":
            img[:, w // 2:] = 250
        img += rng.normal(0, 6, img.shape)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray((gland * 255).astype(np.uint8), mode="L").save(root / "masks" / f"{name}.png")
    return root


def _expected_labels(raw: np.ndarray, min_fraction: float) -> list[int]:
    gland = (raw == 255).sum()
    return [int(gland >= max(1, min_fraction * raw.size)), int(raw.size - gland >= max(1, min_fraction * raw.size))]


def test_glas_patches_labels_split_and_val_images(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _glas_folder(tmp_path / "glas", rng)
    out = tmp_path / "set"
    assert main(["patches", str(data), "--out", str(out), "--schema", "glas", "--size", "32", "--stride", "16",
                 "--min-fraction", "0.05", "--max-glass", "0.6", "--val-fraction", "0.4", "--seed", "3"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert split["schema"] == GLAS.to_dict() and split["command"].startswith("napari-wsss ")
    val = sorted(n for n, r in split["images"].items() if r["split"] == "val")
    train = sorted(n for n, r in split["images"].items() if r["split"] == "train")
    assert len(val) == 2 and len(train) == 3 and set(val) | set(train) == set(SIZES)
    # validation images whole, with class-map masks; no patch of theirs in training/
    assert sorted(p.stem for p in (out / "val" / "img").iterdir()) == val
    for name in val:
        img = np.asarray(Image.open(out / "val" / "img" / f"{name}.png"))
        assert np.array_equal(img, np.asarray(Image.open(data / "images" / f"{name}.png")))
        raw = np.asarray(Image.open(data / "masks" / f"{name}.png"))
        assert read_mask(out / "val" / "mask" / f"{name}.png", GLAS).tolist() == np.where(raw == 255, 0, 1).tolist()
    patches = list_training_tiles(out / "training", GLAS)
    assert {re.sub(r"_y\d+_x\d+-\[.*$", "", t.path.name) for t in patches} == set(train)
    assert len(patches) == split["counts"]["patches"] == sum(split["images"][n]["patches"] for n in train)
    # each patch's labels come from its own crop of the mask, and its pixels are the image's
    for t in patches:
        name, y, x = re.match(r"(.+)_y(\d+)_x(\d+)-", t.path.name).groups()
        y, x = int(y), int(x)
        raw = np.asarray(Image.open(data / "masks" / f"{name}.png"))[y:y + 32, x:x + 32]
        assert t.labels.tolist() == _expected_labels(raw, 0.05), t.path.name
        src = np.asarray(Image.open(data / "images" / f"{name}.png"))[y:y + 32, x:x + 32]
        assert np.array_equal(np.asarray(Image.open(t.path)), src)
    csv_labels = read_labels_csv(out / "labels.csv", GLAS)
    assert {k: v.tolist() for k, v in csv_labels.items()} == {t.path.name: t.labels.tolist() for t in patches}
    assert {tuple(t.labels) for t in patches} >= {(1, 1), (0, 1)}
    # the trainers find the split
    dirs = resolve_data_dirs(out)
    assert dirs.training == out / "training" and dirs.val == out / "val" and dirs.test is None
    # glass-heavy patches of train_4 (a training image with seed 3) are dropped, tissue-only images keep all
    assert "train_4" in train and split["images"]["train_4"]["dropped_glass"] > 0
    assert split["images"]["train_1"]["dropped_glass"] == 0
    assert split["counts"]["patches_with_label"]["gland"] == sum(t.labels[0] for t in patches)


def test_split_is_by_image_and_refuses_overwrite(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _glas_folder(tmp_path / "glas", rng)
    vl = tmp_path / "val.txt"
    vl.write_text("# held out\ntrain_2.png\ntrain_5\n")
    out = tmp_path / "set"
    args = ["patches", str(data), "--out", str(out), "--schema", str(Path(__file__).resolve().parents[3] / "schemas"
            / "colon-gland.json"), "--size", "32", "--val-list", str(vl)]
    assert main(args) == 0
    split = json.loads((out / "split.json").read_text())
    assert sorted(n for n, r in split["images"].items() if r["split"] == "val") == ["train_2", "train_5"]
    assert split["options"]["val_list"] == ["train_2", "train_5"]
    before = (out / "split.json").read_bytes()
    assert main(args) == 2  # exists: refused, untouched
    assert (out / "split.json").read_bytes() == before
    assert main([*args, "--overwrite", "--size", "48"]) == 0
    assert json.loads((out / "split.json").read_text())["options"]["size"] == 48
    assert not list(tmp_path.glob(".set.*"))  # nothing half-built left beside it
    # a seeded random split moves whole images; different seeds differ, the same seed repeats
    names = [f"i{k}" for k in range(20)]
    a, b = split_sources(names, 0.25, 0), split_sources(names, 0.25, 1)
    assert sum(v == "val" for v in a.values()) == 5 and a == split_sources(names, 0.25, 0) and a != b


def test_geojson_source_unannotated_is_scored_class(tmp_path: Path) -> None:
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "geojson").mkdir()
    Image.fromarray(np.full((40, 60, 3), 150, np.uint8)).save(tmp_path / "d" / "images" / "a.png")
    Image.fromarray(np.full((40, 60, 3), 150, np.uint8)).save(tmp_path / "d" / "images" / "b.png")
    square = {"type": "Feature", "properties": {"classification": {"name": "gland"}},
              "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]]}}
    for n in ("a", "b"):
        (tmp_path / "d" / "geojson" / f"{n}.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": [square]}))
    out = run_to_end(make_patches(tmp_path / "d", tmp_path / "set", GLAS, size=20, val_list=["b"]))
    tiles = {t.path.name: t.labels.tolist() for t in list_training_tiles(out / "training", GLAS)}
    assert tiles["a_y0_x0-[1 0].png"] == [1, 0] and tiles["a_y20_x40-[0 1].png"] == [0, 1]
    vm = read_mask(out / "val" / "mask" / "b.png", GLAS)
    assert (vm[:20, :20] == 0).all() and (vm[20:] == 1).all() and 2 not in vm  # not glass: non-gland


@pytest.mark.parametrize("kw, match", [
    ({"size": 8}, "at least 16"), ({"stride": 0}, "positive"), ({"min_fraction": 2.0}, "between 0 and 1"),
    ({"val_fraction": 1.0}, "0 <= fraction < 1"), ({"val_list": ["nope"]}, "not in the data"),
    ({"size": 80}, "smaller than a 80-px patch"),
])
def test_bad_options_say_what_to_do(tmp_path: Path, rng: np.random.Generator, kw: dict, match: str) -> None:
    data = _glas_folder(tmp_path / "glas", rng)
    with pytest.raises(ValueError, match=match):
        run_to_end(make_patches(data, tmp_path / "set", GLAS, **{"size": 32, **kw}))
    assert not (tmp_path / "set").exists()


def test_patch_grid_covers_the_edges() -> None:
    assert patch_starts(96, 32, 32) == [0, 32, 64]
    assert patch_starts(70, 32, 16) == [0, 16, 32, 38]
    assert patch_starts(32, 32, 16) == [0]


def test_patches_train_and_evaluate_glas(tmp_path: Path, rng: np.random.Generator) -> None:
    """The lead's path: patches -> train (glas schema) -> the card holds val metrics over gland/non-gland."""
    import torch

    from napari_wsss.models.card import load_card

    torch.set_num_threads(2)
    data = _glas_folder(tmp_path / "glas", rng)
    out = run_to_end(make_patches(data, tmp_path / "set", GLAS, size=32, stride=16, val_list=["train_1"]))
    model = tmp_path / "m"
    assert main(["train", "--method", "sshr", "--data", str(out), "--out", str(model), "--schema", "glas",
                 "--epochs", "1", "--batch-size", "8", "--input-size", "32", "--threads", "2", "--set",
                 "kernel_size=3", "--no-pretrained"]) == 0
    card = load_card(model)
    assert card.class_schema == GLAS and card.config["scale"] == 1.0
    val = card.metrics["val"]
    assert set(val["IoU"]) == {"gland", "non-gland"} and val["n_tiles"] == 1
    assert val["mIoU"] == pytest.approx(np.nanmean(list(val["IoU"].values())))


def test_real_glas_images(tmp_path: Path) -> None:
    import shutil

    glas = Path(__file__).resolve().parents[4] / "shared" / "data" / "glas" / "train"
    if not (glas / "images").is_dir():
        require_glas(glas / "images")
    for name in ("train_1", "train_12", "train_13"):  # 775x522, 574x433, 775x522
        for sub in ("images", "masks"):
            (tmp_path / "d" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(glas / sub / f"{name}.png", tmp_path / "d" / sub / f"{name}.png")
    out = run_to_end(make_patches(tmp_path / "d", tmp_path / "set", GLAS, size=112, stride=112,
                                  val_list=["train_13"]))
    split = json.loads((out / "split.json").read_text())
    assert split["images"]["train_12"]["shape"] == [433, 574] and split["images"]["train_13"]["split"] == "val"
    patches = list_training_tiles(out / "training", GLAS)
    grid = len(patch_starts(522, 112, 112)) * len(patch_starts(775, 112, 112)) + \
        len(patch_starts(433, 112, 112)) * len(patch_starts(574, 112, 112))
    assert len(patches) == grid - split["counts"]["dropped_glass"] - split["counts"]["dropped_unlabelled"]
    for t in patches:
        name, y, x = re.match(r"(.+)_y(\d+)_x(\d+)-", t.path.name).groups()
        raw = np.asarray(Image.open(tmp_path / "d" / "masks" / f"{name}.png"))[int(y):int(y) + 112,
                                                                               int(x):int(x) + 112]
        assert t.labels.tolist() == _expected_labels(raw, 0.01)
    assert {tuple(t.labels) for t in patches} == {(1, 1), (0, 1), (1, 0)}
