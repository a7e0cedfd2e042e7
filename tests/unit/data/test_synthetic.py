"""Synthetic H&E generator: exact ground truth, labels, determinism, class morphology, slides (no Qt, fast)."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data import synthetic_slide
from napari_wsss.data.synthetic import SyntheticTile, generate_tile, label_from_mask, write_dataset, write_slide

GREY = np.array([0.299, 0.587, 0.114])
LABEL_RE = re.compile(r"-\[([01]) ([01]) ([01]) ([01])\]\.png$")


@pytest.fixture(scope="module")
def per_class_tiles() -> dict[int, list[SyntheticTile]]:
    """Eight single-class tiles per class at the default difficulty."""
    return {c: [generate_tile(500 + 31 * i + c, classes=[c]) for i in range(8)] for c in range(4)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("syn") / "luad", n_train=12, n_val=3, n_test=3, size=96, seed=3)


def test_tile_contract():
    t = generate_tile(0)
    assert t.image.shape == (224, 224, 3) and t.image.dtype == np.uint8
    assert t.mask.shape == (224, 224) and t.mask.dtype == np.uint8
    assert t.labels.shape == (4,) and t.labels.dtype == np.int64
    assert t.mask.max() <= 4
    LUAD_HISTOSEG.validate_class_map(t.mask)


def test_labels_follow_min_fraction_rule():
    for s in range(12):
        t = generate_tile(s, size=96, min_fraction=0.05)
        frac = np.bincount(t.mask.ravel(), minlength=5)[:4] / t.mask.size
        np.testing.assert_array_equal(t.labels, (frac >= 0.05).astype(np.int64))


@pytest.mark.parametrize("classes", [[0], [2], [1, 3], [0, 2, 3]])
def test_forced_classes_appear_and_only_them(classes):
    t = generate_tile(7, size=128, classes=classes)
    present = set(np.unique(t.mask).tolist()) - {4}
    assert present <= set(classes)
    assert [c for c in range(4) if t.labels[c]] == sorted(classes)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="classes"):
        generate_tile(0, classes=[5])
    with pytest.raises(ValueError, match="difficulty"):
        generate_tile(0, difficulty=1.5)


def test_deterministic_per_seed():
    a, b, c = generate_tile(11, size=96), generate_tile(11, size=96), generate_tile(12, size=96)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(generate_tile(g1, size=64).image, generate_tile(g2, size=64).image)


def test_glass_is_white_and_tissue_is_not():
    glass, tissue = [], []
    for s in range(16):
        t = generate_tile(100 + s, size=128)
        g = t.image.astype(float) @ GREY
        glass.append(g[t.mask == 4])
        tissue.append(g[t.mask != 4])
    glass, tissue = np.concatenate(glass), np.concatenate(tissue)
    assert glass.size > 1000
    # Boundary pixels get a little blur; everything else labelled glass is near-white and vice versa.
    assert np.mean(glass > 200) > 0.97
    assert np.median(glass) > 225
    assert np.mean(tissue > 215) < 0.01


def test_nuclear_density_differs_by_class(per_class_tiles):
    def dark_fraction(c):
        return np.mean([np.mean((t.image[t.mask == c].astype(float) @ GREY) < 110) for t in per_class_tiles[c]])

    lym, tas = dark_fraction(2), dark_fraction(3)
    assert lym > 2 * tas, (lym, tas)


def test_mean_colour_does_not_identify_the_class(per_class_tiles):
    """Classes differ by morphology, not by a flat colour: per-tile mean RGBs of the classes overlap."""
    means = {c: np.array([t.image[t.mask == c].reshape(-1, 3).mean(0) for t in ts])
             for c, ts in per_class_tiles.items()}
    # Leave-one-out nearest class-mean on the tile mean RGB: far from the near-perfect a flat colour would give.
    hits, n = 0, 0
    for c in range(4):
        for i in range(len(means[c])):
            cents = [np.delete(means[k], i, 0).mean(0) if k == c else means[k].mean(0) for k in range(4)]
            hits += int(np.argmin([np.linalg.norm(means[c][i] - m) for m in cents]) == c)
            n += 1
    assert hits / n < 0.75, hits / n
    # A per-pixel linear discriminant on RGB (the best a one-layer colour model can do) stays far from perfect.
    rng = np.random.default_rng(0)
    X, y = [], []
    for c, ts in per_class_tiles.items():
        for t in ts:
            px = t.image[t.mask == c].reshape(-1, 3).astype(float)
            X.append(px[rng.choice(len(px), 200)])
            y.append(np.full(200, c))
    X, y = np.concatenate(X), np.concatenate(y)
    mus = np.stack([X[y == c].mean(0) for c in range(4)])
    cov = sum(np.cov(X[y == c].T) for c in range(4)) / 4
    icov = np.linalg.inv(cov)
    scores = X @ icov @ mus.T - 0.5 * np.einsum("ij,jk,ik->i", mus, icov, mus)
    acc = np.mean(scores.argmax(1) == y)
    assert acc < 0.7, acc
    print(f"tile-mean nearest-centroid acc {hits / n:.2f}, per-pixel RGB LDA acc {acc:.2f} (chance 0.25)")


def test_write_dataset_layout_and_labels(dataset):
    train = sorted((dataset / "training").glob("*.png"))
    assert len(train) == 12
    assert (dataset / "README.md").read_text().count("write_dataset(") == 1
    for split in ("val", "test"):
        imgs = sorted((dataset / split / "img").glob("*.png"))
        masks = sorted((dataset / split / "mask").glob("*.png"))
        assert [p.name for p in imgs] == [p.name for p in masks] and len(imgs) == 3
        for pi, pm in zip(imgs, masks):
            m = Image.open(pm)
            assert m.mode == "P" and m.getpalette()[:15] == LUAD_HISTOSEG.pil_palette()[:15]
            arr = np.asarray(m)
            assert arr.shape == np.asarray(Image.open(pi)).shape[:2] == (96, 96)
            label = [int(v) for v in LABEL_RE.search(pm.name).groups()]
            assert label == label_from_mask(arr).tolist()
    for p in train:
        assert LABEL_RE.search(p.name), p.name
        assert re.match(r"syn3-\d{5}-0-\[", p.name)
    # No temporary files left behind by the atomic writes.
    assert not [p for p in dataset.rglob("*") if p.name.startswith(".")]


def test_write_dataset_labels_match_generated_masks(tmp_path):
    """Training labels in file names equal the class presence of the masks they were rendered with."""
    out = write_dataset(tmp_path / "d", n_train=6, n_val=0, n_test=0, size=64, seed=9)
    root = np.random.SeedSequence(9)
    seqs = root.spawn(3)[0].spawn(6)
    names = sorted((out / "training").glob("*.png"))
    for i, (p, ss) in enumerate(zip(names, seqs)):
        t = generate_tile(np.random.default_rng(ss), size=64)
        assert p.name == f"syn9-{i:05d}-0-[{' '.join(map(str, t.labels))}].png"
        np.testing.assert_array_equal(np.asarray(Image.open(p)), t.image)


def test_write_dataset_is_deterministic(dataset, tmp_path):
    again = write_dataset(tmp_path / "luad", n_train=12, n_val=3, n_test=3, size=96, seed=3)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.png"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    for f in files:
        assert (dataset / f).read_bytes() == (again / f).read_bytes()


def test_write_slide_pyramid_mask_and_bounded_memory(tmp_path, monkeypatch):
    import tifffile

    fed = []
    orig = tifffile.TiffWriter.write

    def spy(self, data=None, *a, **k):
        fed.append(type(data).__name__)
        return orig(self, data, *a, **k)

    monkeypatch.setattr(tifffile.TiffWriter, "write", spy)

    def peak_of(shape, name):
        tracemalloc.start()
        p = write_slide(tmp_path / name, shape=shape, seed=2, tile=256)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p, peak

    _, small_peak = peak_of((600, 500), "small.tif")
    path, peak = peak_of((2000, 1500), "s.tif")
    assert all(f == "generator" for f in fed), fed  # every level streamed tile by tile
    # Memory is set by the render window, not the slide: 10x the pixels costs (almost) nothing more, far
    # less than the 9 MB RGB level 0 would.
    assert peak - small_peak < 0.3 * 2000 * 1500 * 3, (peak, small_peak)

    mpath = tmp_path / "s_mask.tif"
    with tifffile.TiffFile(path) as tf:
        lv = tf.series[0].levels
        assert [x.shape for x in lv] == [(2000, 1500, 3), (1000, 750, 3)]
        assert tf.pages[0].is_tiled and tf.pages[0].tilewidth == 256
        img0, img1 = lv[0].asarray(), lv[1].asarray()
    with tifffile.TiffFile(mpath) as tf:
        mlv = tf.series[0].levels
        assert [x.shape for x in mlv] == [(2000, 1500), (1000, 750)]
        m0, m1 = mlv[0].asarray(), mlv[1].asarray()
    np.testing.assert_array_equal(m1, m0[::2, ::2])
    assert set(np.unique(m0)) <= {0, 1, 2, 3, 4} and len(np.unique(m0)) >= 3
    g = img0.astype(float) @ GREY
    assert np.mean(g[m0 == 4] > 200) > 0.97 and np.mean(g[m0 != 4] > 215) < 0.01
    assert m0[0, 0] == 4 and m0[-1, -1] == 4  # glass margins around the section
    # Level 1 is the 2x2 mean of level 0 (JPEG tolerance).
    down = img0.reshape(1000, 2, 750, 2, 3).astype(float).mean((1, 3))
    assert np.abs(down - img1).mean() < 4

    # Level-0 pixels equal a window rendered on its own: the slide is seamless and its mask exact.
    from napari_wsss.data.synthetic_render import render_region

    spec = synthetic_slide.slide_spec(2, (2000, 1500), 0.5)
    win_img, win_mask = render_region(spec, 240, 240, 40, 40, halo=48)
    np.testing.assert_array_equal(win_mask, m0[240:280, 240:280])
    assert np.abs(win_img.astype(float) - img0[240:280, 240:280]).mean() < 6
