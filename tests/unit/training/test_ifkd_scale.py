"""Fine-tuning sees tissue at the scale inference predicts at: tiles of any size rescaled by the card's working
scale and cut into crops (never squeezed), targets through the same geometry, held-out scores via predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.datasets import normalise
from napari_wsss.data.scale import n_crops, rescale, scaled_shape
from napari_wsss.data.tiles import is_background, read_rgb
from napari_wsss.events import run_to_end
from napari_wsss.models.card import load_card
from napari_wsss.store import Project
from napari_wsss.training import ifkd
from napari_wsss.training.ifkd_data import TargetDataset, build_targets

from .test_ifkd import make_project
from ..._glas import require_glas

GLAS = Path(__file__).resolve().parents[4] / "shared" / "data" / "glas" / "train"
PICK = ("train_1.png", "train_12.png", "train_36.png")  # 775x522, 574x433, 589x453 (width x height)
# geometry is the same for both students; the base's twin keeps crops at the base's input size (32 here)
FAST = dict(epochs=1, batch_size=4, switch_every=0, patience=0, num_threads=2, device="cpu", student="copy",
            min_epoch_crops=1)


@pytest.fixture(scope="module")
def half_scale_sshr(tmp_path_factory, tiny_dataset):
    """A tiny SSHR trained on 64 px tiles at input 32: working scale 0.5, as the shipped model (224 -> 112)."""
    from napari_wsss.training.sshr import train_sshr

    out = tmp_path_factory.mktemp("models") / "half-sshr"
    return run_to_end(train_sshr(tiny_dataset, out, epochs=1, batch_size=8, input_size=32, kernel_size=3,
                                 pretrained="none", device="cpu", num_threads=2, evaluate=False))


class Captured(TargetDataset):
    """The fine-tune's dataset, kept with a copy of its first (base teacher) targets for the test to inspect."""

    last: Captured | None = None

    def __init__(self, tiles, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(tiles, *args, **kwargs)
        self.first_targets: list | None = None
        Captured.last = self

    def __getitem__(self, i: int):  # noqa: ANN204  (the targets the first batch trains on)
        if self.first_targets is None:
            self.first_targets = [t.target.copy() for t in self.tiles]
        return super().__getitem__(i)


@pytest.fixture
def capture(monkeypatch):
    Captured.last = None
    monkeypatch.setattr(ifkd, "TargetDataset", Captured)
    return Captured


def assert_crop_is_inference_window(ds: TargetDataset, tile: int, card, y: int = 0, x: int = 0) -> None:  # noqa: ANN001
    """The crop's pixels are the window of what inference feeds the network for the whole tile (to_batch)."""
    from napari_wsss.inference.predict import to_batch

    t = ds.tiles[tile]
    img, tgt, full, valid = ds.crop(tile, y, x)
    s = ds.size
    assert img.shape == (s, s, 3) and tgt.shape == (s, s, LUAD_HISTOSEG.n_foreground) and full.shape == (s, s)
    net_in = to_batch(read_rgb(t.path)[None], card, torch.device("cpu"))[0]  # (3, h, w) what predict() sees
    assert tuple(net_in.shape[-2:]) == t.image.shape[:2] == t.valid.shape == t.full.shape == t.target.shape[:2]
    h, w = min(s, t.image.shape[0] - y), min(s, t.image.shape[1] - x)
    ours = normalise(img[None], card.mean, card.std)[0][:, :h, :w]
    diff = (ours - net_in[:, y : y + h, x : x + w]).abs().max().item()
    assert diff <= 0.5 / 255 / min(card.std) + 1e-4  # only the uint8 rounding differs
    assert np.array_equal(tgt[:h, :w], t.target[y : y + h, x : x + w])
    assert np.array_equal(valid[:h, :w], t.valid[y : y + h, x : x + w])
    assert not valid[h:].any() and not valid[:, w:].any() and (img[h:] == 255).all()  # padding: no target


def test_finetune_trains_on_crops_at_the_inference_scale(tmp_path, half_scale_sshr, capture):
    from napari_wsss.inference.segmenter import load_segmenter

    card = load_card(half_scale_sshr)
    assert card.working_scale == 0.5
    # non-square, mixed and one smaller than a crop once rescaled (40x50 -> 20x25 < 32)
    project = make_project(tmp_path, n_tiles=12, n_corrected=2, n_accepted=1,
                           shapes=[(96, 144), (150, 70), (40, 50)])
    out = run_to_end(ifkd.finetune(project, half_scale_sshr, options=FAST))
    ds = capture.last
    assert ds is not None and ds.size == 32
    seg = load_segmenter(half_scale_sshr, "cpu")
    k = LUAD_HISTOSEG.n_foreground
    for i, t in enumerate(ds.tiles):
        full_res = read_rgb(t.path)
        assert t.source_shape == full_res.shape[:2] and t.image.shape[:2] == scaled_shape(t.source_shape, 0.5)
        assert np.array_equal(t.image, rescale(full_res, 0.5))  # isotropic, never squeezed to 32 x 32
        status = project.item(t.key).status
        full = (np.ones(full_res.shape[:2], bool) if status == "accepted" else project.load_touched(t.key)
                if status == "corrected" else np.zeros(full_res.shape[:2], bool))
        assert np.array_equal(t.full, rescale(full, 0.5, nearest=True))
        assert np.array_equal(t.valid, rescale(~is_background(full_res) | full, 0.5, nearest=True))
        if t.mask is not None:  # corrected: mask and touched pixels on the same grid as the image
            assert np.array_equal(t.mask, rescale(project.load_mask(t.key), 0.5, nearest=True))
            onehot = (t.mask[..., None] == np.arange(k)).astype(np.float16)
            assert np.array_equal(ds.first_targets[i][t.full], onehot[t.full])
        else:  # the teacher's map is the predict path's output, rescaled like the tile
            teacher = rescale(seg.predict(full_res[None]).probs[0, :k].transpose(1, 2, 0), 0.5).transpose(2, 0, 1)
            expect = build_targets(teacher, labels=t.labels).transpose(1, 2, 0)
            np.testing.assert_allclose(ds.first_targets[i].astype(np.float32), expect, atol=2e-3)
        assert_crop_is_inference_window(ds, i, card, *[max(0, v - 32) for v in t.image.shape[:2]])
    assert len(ds) == sum(n_crops(t.image.shape, 32) * t.repeat for t in ds.tiles)
    assert any(t.repeat > 1 for t in ds.tiles if t.mask is not None)  # corrected tiles repeated, not copied
    x, tgt, full, valid = ds[0]
    assert x.shape == (3, 32, 32) and tgt.shape == (k, 32, 32) and full.shape == valid.shape == (32, 32)
    ft = load_card(out).config["finetune"]
    assert ft["working_scale"] == 0.5 and ft["crops_per_epoch"] == len(ds)


def test_a_tile_over_2000_px_is_cut_into_crops_with_windowed_teacher_maps(tmp_path, half_scale_sshr, capture,
                                                                          monkeypatch):
    from napari_wsss.inference import tiling

    calls = []
    real = tiling.segment_image

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[1].shape)
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(tiling, "segment_image", counting)
    monkeypatch.setattr(tiling, "WINDOW_PIXELS", 400 * 400)  # the big tile goes through blended windows
    project = make_project(tmp_path, n_tiles=4, n_corrected=3, n_accepted=0, shapes=[(64, 64), (2050, 80)])
    run_to_end(ifkd.finetune(project, half_scale_sshr, options=FAST))
    ds = capture.last
    big = [t for t in ds.tiles if t.source_shape == (2050, 80)]
    assert big and all(t.image.shape == (1025, 40, 3) and t.target.shape == (1025, 40, 4) for t in big)
    assert all(t.target.dtype == np.float16 for t in ds.tiles)  # compact: the tile is kept at the working scale
    assert (2050, 80, 3) in calls  # the teacher's map of the big unreviewed tile: windows, bounded memory
    assert len(ds) == sum(n_crops(t.image.shape, 32) * t.repeat for t in ds.tiles) >= 40


def test_held_out_score_is_the_predict_paths_miou(tmp_path, half_scale_sshr):
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.ops.metrics import confusion_matrix, scores_from_confusion

    project = make_project(tmp_path, n_tiles=4, n_corrected=3, n_accepted=0, shapes=[(96, 144), (150, 70)])
    out = run_to_end(ifkd.finetune(project, half_scale_sshr, options=FAST))
    held = load_card(out).metrics["held_out"]
    (key,) = held["keys"]
    seg = load_segmenter(half_scale_sshr, "cpu")
    img = read_rgb(Path(project.source) / f"{key}.png")
    cm = confusion_matrix(seg.predict(img[None]).class_map[0], project.load_mask(key), LUAD_HISTOSEG.n_classes)
    assert held["before"] == pytest.approx(scores_from_confusion(cm)["mIoU"], abs=1e-9)


@pytest.fixture
def glas_project(tmp_path: Path) -> Project:
    """Three real GlaS images as a project's corrected tiles: gland -> TE, the rest -> TAS, glass -> BG."""
    if not all((GLAS / d / n).is_file() for d in ("images", "masks") for n in PICK):
        require_glas(*(GLAS / d / n for d in ("images", "masks") for n in PICK))
    folder = tmp_path / "glas"
    folder.mkdir()
    for n in PICK:
        shutil.copy(GLAS / "images" / n, folder / n)
    project = Project.open(folder, LUAD_HISTOSEG)
    project.register([{"key": Path(n).stem, "image": n} for n in PICK])
    for j, n in enumerate(PICK):
        img = read_rgb(folder / n)
        gland = np.asarray(Image.open(GLAS / "masks" / n)) > 127
        mask = np.where(gland, 0, 3).astype(np.uint8)
        mask[is_background(img) & ~gland] = LUAD_HISTOSEG.background_index
        if j == 1:  # a corrected tile: the user painted its left half
            touched = np.zeros(mask.shape, bool)
            touched[:, : mask.shape[1] // 2] = True
            project.save_correction(Path(n).stem, mask, touched)
        else:
            project.save_correction(Path(n).stem, mask, np.zeros(mask.shape, bool))
            project.set_status(Path(n).stem, "accepted")
    return project


def test_real_glas_tiles_fine_tune_at_the_shipped_models_scale(glas_project, capture):
    from napari_wsss.resources import default_model_dir

    base = default_model_dir()
    card = load_card(base)
    assert card.input_size == 112 and card.working_scale == 0.5  # trained on 224 px tiles shown at 112
    out = run_to_end(ifkd.finetune(glas_project, base, options=dict(FAST, batch_size=8, student="dense", refit=False)))
    ds = capture.last
    assert ds.size == 112 and len(ds.tiles) == 2  # one of the three is held out
    for i, t in enumerate(ds.tiles):
        h, w = t.source_shape
        assert (h, w) in {(522, 775), (433, 574), (453, 589)}
        # 775x522 -> 388x261 (not 112x112): the same microns per pixel as predict() on the whole image
        assert t.image.shape[:2] == (round(h / 2), round(w / 2)) == scaled_shape((h, w), card.working_scale)
        assert_crop_is_inference_window(ds, i, card, 100, 200)
        assert n_crops(t.image.shape, 112) >= 4
    assert len(ds) == sum(n_crops(t.image.shape, 112) * t.repeat for t in ds.tiles)
    new = load_card(out)
    assert out.parent == glas_project.models_dir and (out / "weights.pt").is_file()
    assert new.parent == card.name and new.config["finetune"]["working_scale"] == 0.5
    held = new.metrics["held_out"]
    assert held["n_tiles"] == 1 and 0 <= held["before"] <= 1 and 0 <= held["after"] <= 1


def test_pixels_take_part_by_the_base_models_glass_rule():
    """A model whose card says no glass (colon lumens are gland) trains on white pixels too."""
    from napari_wsss.training.ifkd_data import TileRecord, scale_record

    img = np.full((80, 60, 3), 150, np.uint8)
    img[:40] = 250  # a white region of 40 x 60 px
    rec = TileRecord("t", "unreviewed", img)
    assert scale_record(rec, 0.5).valid.sum() == 20 * 30  # default rule: white regions >= 64 px are glass
    assert scale_record(rec, 0.5, glass_min_size=0).valid.all()
