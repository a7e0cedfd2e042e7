"""Glass around a slide's tissue is background in slide results; white holes inside the tissue stay the model's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from napari_wsss.classes import GLAS
from napari_wsss.data.tiles import is_background
from napari_wsss.events import run_to_end
from napari_wsss.inference.segmenter import Prediction
from napari_wsss.inference.slide_glass import slide_glass
from napari_wsss.inference.slide_segmentation import segment_slide

GLAND, NON_GLAND = GLAS.to_labels(np.array([0, 1]))  # napari label values of the two tissue classes


class WhiteIsGland:
    """A model with glass detection off (``glass_min_size: 0``, as sshr-glas): near-white is gland (a lumen),
    everything else non-gland; it never predicts background, like sshr-glas on empty glass."""

    def __init__(self) -> None:
        self.card = SimpleNamespace(class_schema=GLAS, name="white-is-gland")

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        white = images.astype(np.float32).mean(-1) > 200
        probs = np.zeros((images.shape[0], GLAS.n_classes, *images.shape[1:3]), np.float32)
        probs[:, 0] = 0.1 + 0.8 * white
        probs[:, 1] = 0.9 - 0.8 * white
        return Prediction(probs.argmax(1).astype(np.uint8), probs)


def glass_slide() -> tuple[np.ndarray, np.ndarray]:
    """A 640 x 768 slide: pink tissue with a glass margin on every side, a white 'lumen' inside the tissue,
    and a glass strip between two tissue pieces that reaches the edge. Returns (rgb, glass truth)."""
    rng = np.random.default_rng(0)
    img = np.full((640, 768, 3), 242, np.uint8) + rng.integers(0, 8, (640, 768, 3), dtype=np.uint8)
    glass = np.ones((640, 768), bool)
    img[96:544, 128:352] = (200, 110, 170)  # left piece
    img[96:544, 416:672] = (190, 100, 160)  # right piece; the strip x 352..416 joins the margin
    glass[96:544, 128:352] = glass[96:544, 416:672] = False
    img[250:330, 500:590] = 238  # a lumen: white, enclosed by tissue
    return img, glass


def _pyramid(img: np.ndarray, n: int = 4) -> list[np.ndarray]:
    return [img[:: 2**i, :: 2**i] for i in range(n)]


def test_glass_margin_is_background_lumen_stays(tmp_path: Path) -> None:
    img, glass = glass_slide()
    res = run_to_end(segment_slide(WhiteIsGland(), _pyramid(img), tmp_path / "o.zarr", block=128, overlap=32))
    got = np.asarray(res.labels[0][:])
    assert (got[glass] == 0).all()  # glass margin and the glass strip between the pieces: background
    assert (got[260:320, 510:580] == GLAND).all()  # the enclosed white lumen stays what the model said
    tissue = ~glass
    tissue[250:330, 500:590] = False
    assert (got[tissue] == NON_GLAND).mean() > 0.99
    conf = np.asarray(res.confidence[0][:])
    assert (conf[glass] == 255).all()


def test_off_switch_keeps_the_models_output(tmp_path: Path) -> None:
    import zarr

    img, glass = glass_slide()
    res = run_to_end(segment_slide(WhiteIsGland(), _pyramid(img), tmp_path / "o.zarr", block=128, overlap=32,
                                   glass_outside=False))
    got = np.asarray(res.labels[0][:])
    # windows that are all glass are skipped (background), but the margin next to tissue is the model's gland
    assert (got[glass] == GLAND).any()
    assert zarr.open_group(str(tmp_path / "o.zarr"), mode="r").attrs["glass"] is None


def test_single_level_slide_and_a_coarser_segmented_level(tmp_path: Path) -> None:
    """One-level slides (CMU-1-Small-Region) judge glass on their only level, strided; level 1 maps onto it."""
    img, glass = glass_slide()
    one = run_to_end(segment_slide(WhiteIsGland(), [img], tmp_path / "one.zarr", block=128, overlap=32))
    assert (np.asarray(one.labels[0][:])[glass] == 0).all()
    lv1 = run_to_end(segment_slide(WhiteIsGland(), _pyramid(img), tmp_path / "l1.zarr", level=1, block=64,
                                   overlap=16))
    got = np.asarray(lv1.labels[0][:])
    assert (got[glass[::2, ::2]] == 0).all() and (got[130:160, 255:290] == GLAND).all()


def test_coarse_mask_edge_connected_only() -> None:
    img, glass = glass_slide()
    g = slide_glass(_pyramid(img), max_pixels=100 * 100)  # strided down to about 100 x 100
    assert g.outside.shape[0] * g.outside.shape[1] <= 2 * 100 * 100
    full = g.pixels((0, 0, 640, 768), (640, 768), is_background(img))
    assert np.array_equal(full, glass)  # the rim is decided at full resolution, exactly
    assert not full[250:330, 500:590].any()


def test_tissue_touching_every_edge_gives_no_glass() -> None:
    img = np.full((256, 256, 3), (200, 110, 170), np.uint8)
    img[100:150, 100:150] = 245  # a white hole, enclosed
    g = slide_glass([img])
    assert not g.outside.any() and not g.pixels((0, 0, 256, 256), (256, 256), is_background(img)).any()


def test_one_level_slide_is_read_in_bounded_bands() -> None:
    from .test_slide_segmentation import ReadCounter

    img, glass = glass_slide()
    level0 = ReadCounter(np.tile(img, (2, 2, 1)))  # 1280 x 1536, one level: strided 2x to fit 1 M pixels
    g = slide_glass([level0])
    assert g.outside.shape == (640, 768)
    assert max(level0.reads) <= 1 << 16 and sum(level0.reads) == 640 * 768  # each strided pixel read once


def test_real_svs_glass_is_background_holes_are_not(tmp_path: Path) -> None:
    """The shipped real-tissue model on the real TCGA SVS (level 1 read, then halved to 1111 x 892 to stay fast):
    it labelled the glass around the tissue gland; now that glass is background, the white holes inside the
    tissue (lumens, vessels, tears: enclosed by tissue) keep the model's tissue classes."""
    from scipy.ndimage import binary_erosion
    from skimage.measure import label

    from napari_wsss.data.slide import open_slide
    from napari_wsss.inference.segmenter import load_segmenter
    from tests._slides import real_slide

    model = Path(__file__).resolve().parents[3] / "models" / "sshr-glas"
    with open_slide(real_slide("tcga-cr-7395-01a-01-ts1.svs")) as s:
        img = np.ascontiguousarray(np.asarray(s.levels[1])[::2, ::2])
    res = run_to_end(segment_slide(load_segmenter(model, "cpu"), [img], tmp_path / "t.zarr", block=256,
                                   overlap=32))
    got = np.asarray(res.labels[0][:])
    white = is_background(img)
    framed = label(np.pad(white, 1, constant_values=True), connectivity=1)
    glass = (framed == framed[0, 0])[1:-1, 1:-1]
    holes = white & ~glass
    assert 0.25 < glass.mean() < 0.6 and holes.sum() > 2000  # the slide: tissue in the middle, glass around
    # glass away from the tissue's edge (the coarse view decides the rim pixel by pixel): background
    assert (got[binary_erosion(glass, iterations=4)] == 0).mean() > 0.999
    assert (got[holes] != 0).mean() > 0.95  # enclosed white stays tissue (the model calls most of it gland)
