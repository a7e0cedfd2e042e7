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
