"""data/datasets.py: tile normalisation (the Datasets themselves are exercised by the trainers' tests)."""

import numpy as np
import torch

from napari_wsss.data.datasets import normalise


def test_normalise_on_a_device_matches_the_host():
    """to_batch sends uint8 pixels to the device and converts them there; the values must not change."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    mean, std = (0.7, 0.5, 0.6), (0.2, 0.25, 0.15)
    host = normalise(imgs, mean, std)
    assert host.shape == (2, 3, 5, 7) and host.dtype == torch.float32
    expect = (imgs.transpose(0, 3, 1, 2) / 255.0 - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    np.testing.assert_allclose(host.numpy(), expect, rtol=1e-5, atol=1e-5)
    on_dev = normalise(imgs, mean, std, device="cpu")
    assert on_dev.device.type == "cpu"
    torch.testing.assert_close(on_dev, host, rtol=0, atol=0)


def test_augment_recolours_only_the_image():
    from napari_wsss.data.datasets import _augment

    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (16, 16, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (16, 16), dtype=np.uint8)
    plain = _augment([img, mask], np.random.default_rng(1), True, False)
    jit = _augment([img, mask], np.random.default_rng(1), True, False, hed=(0.2, 0.2))
    np.testing.assert_array_equal(jit[1], plain[1])  # same flips: the geometry draws come first
    assert np.abs(jit[0].astype(int) - plain[0]).mean() > 1  # the colours changed
    # off: no extra draws, so runs without jitter see the stream they saw before it existed
    r1, r2 = np.random.default_rng(2), np.random.default_rng(2)
    _augment([img], r1, True, True)
    _augment([img], r2, True, True, hed=(0.0, 0.0))
    assert r1.random() == r2.random()


def test_tile_dataset_applies_stain_jitter(tmp_path):
    from PIL import Image

    from napari_wsss.data.datasets import TileLabelDataset
    from napari_wsss.data.tiles import LabelledTile

    img = np.random.default_rng(0).integers(60, 200, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    tiles = [LabelledTile(tmp_path / "a.png", np.array([1, 0, 0, 0]))]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    plain = TileLabelDataset(tiles, 8, mean, std, flips=False)[0][0]
    jit, labels = TileLabelDataset(tiles, 8, mean, std, flips=False, hed=(0.2, 0.2))[0]
    assert labels.tolist() == [1, 0, 0, 0]
    assert (jit - plain).abs().mean() > 0.02


def _tiles(tmp_path, shapes):  # noqa: ANN001, ANN202
    from PIL import Image

    from napari_wsss.data.tiles import LabelledTile

    rng = np.random.default_rng(1)
    out = []
    for i, (h, w) in enumerate(shapes):
        path = tmp_path / f"t{i}.png"
        Image.fromarray(rng.integers(0, 200, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(LabelledTile(path, np.array([1, 0, i % 2, 1])))
    return out


def test_tiles_of_the_training_size_give_exactly_what_they_gave_before(tmp_path):
    """The normal case (every tile the training size) is unchanged: resized to the input, same flips."""
    from napari_wsss.data.datasets import TileLabelDataset, _augment, resize_rgb
    from napari_wsss.data.tiles import read_rgb

    tiles = _tiles(tmp_path, [(64, 64)] * 4)
    mean, std = (0.5,) * 3, (0.25,) * 3
    ds = TileLabelDataset(tiles, 32, mean, std, rotate=True, seed=3, tile_size=64)
    assert isinstance(ds.images, np.ndarray) and ds.images.shape == (4, 32, 32, 3)
    old = np.stack([resize_rgb(read_rgb(t.path), 32) for t in tiles])
    assert np.array_equal(ds.images, old)
    rng = np.random.default_rng(3)  # the old __getitem__: flips and turns drawn from the seeded stream
    for i in [0, 1, 2, 3, 2, 0]:
        x, y = ds[i]
        (expect,) = _augment([old[i]], rng, True, True)
        torch.testing.assert_close(x, normalise(expect[None], mean, std)[0], rtol=0, atol=0)
        assert y.tolist() == tiles[i].labels.tolist()
    assert TileLabelDataset(tiles, 32, mean, std).tile_size == 64  # default: the first tile's side


def test_other_tiles_are_rescaled_by_the_working_scale_and_cropped_not_squeezed(tmp_path):
    from napari_wsss.data.datasets import TileLabelDataset
    from napari_wsss.data.scale import rescale
    from napari_wsss.data.tiles import read_rgb

    tiles = _tiles(tmp_path, [(64, 64), (200, 130), (40, 40)])
    ds = TileLabelDataset(tiles, 32, (0.5,) * 3, (0.25,) * 3, flips=False, tile_size=64)
    assert ds.scale == 0.5 and [im.shape for im in ds.images] == [(32, 32, 3), (100, 65, 3), (20, 20, 3)]
    big = rescale(read_rgb(tiles[1].path), 0.5)
    windows = np.lib.stride_tricks.sliding_window_view(big, (32, 32, 3))[..., 0, :, :, :]  # (69, 34, 32, 32, 3)
    seen = set()
    for _ in range(20):
        crop = ds.crop(1)
        assert crop.shape == (32, 32, 3)
        hits = np.argwhere((windows == crop).all(axis=(2, 3, 4)))
        assert len(hits) >= 1  # a window of the tile at the model's scale, not the tile squeezed to 32 x 32
        seen.add(tuple(hits[0]))
    assert len(seen) > 5  # a fresh crop every time it is drawn
    small = ds.crop(2)
    assert np.array_equal(small[:20, :20], rescale(read_rgb(tiles[2].path), 0.5))
    assert (small[20:] == 255).all() and (small[:, 20:] == 255).all()  # padded with white glass
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y.tolist() == tiles[1].labels.tolist()


def test_label_loader_shows_tiles_at_the_scale_the_card_records(tmp_path):
    from napari_wsss.training.common import label_loader
    from napari_wsss.training.config import TrainConfig

    tiles = _tiles(tmp_path, [(64, 64), (128, 96)])
    loader = label_loader(tiles, TrainConfig(input_size=32, flips=False), 2, torch.Generator().manual_seed(0))
    assert loader.dataset.scale == 0.5 and loader.dataset.images[1].shape == (64, 48, 3)
    x, _ = next(iter(loader))
    assert x.shape == (2, 3, 32, 32)
