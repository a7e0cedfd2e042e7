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
