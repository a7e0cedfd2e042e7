"""Probabilities kept on the model's device in the slide path give the very same labels and confidence.

A torch segmenter (``predict_scores``) blends, argmaxes and scores confidence where its probabilities are; a
segmenter without it goes the host path (numpy), the code every slide went through before. On CPU both must
write identical zarr pyramids, byte for byte, whatever the glass rule of the card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.events import run_to_end
from napari_wsss.inference.slide_segmentation import segment_slide

REPO = Path(__file__).resolve().parents[3]


class HostOnly:
    """The same model seen through ``predict`` only: the slide path falls back to host-side blending."""

    def __init__(self, seg) -> None:  # noqa: ANN001
        self.seg, self.card = seg, seg.card

    def predict(self, images: np.ndarray, batch_size: int = 8):  # noqa: ANN201
        return self.seg.predict(images, batch_size=batch_size)


def _slide() -> list[np.ndarray]:
    """Synthetic H&E tiles on glass, with a white hole (lumen-like) inside the tissue; three levels."""
    from napari_wsss.data.synthetic import generate_tile

    img = np.full((256, 384, 3), 243, np.uint8)
    for n, (y, x) in enumerate([(16, 24), (16, 136), (120, 80)]):
        img[y:y + 112, x:x + 112] = generate_tile(n, size=112).image
    img[150:180, 100:130] = 250  # glass inside tissue
    return [img[:: 2**i, :: 2**i] for i in range(3)]


@pytest.mark.parametrize("glass", [None, 0, 400])
def test_device_path_equals_host_path(tmp_path: Path, glass: int | None) -> None:
    import torch
    import zarr

    from napari_wsss.inference.segmenter import load_segmenter

    torch.manual_seed(0)
    seg = load_segmenter(REPO / "models" / "sshr-default", "cpu")
    if glass is not None:  # the card's glass rule: 0 = no glass detection, > 64 = only large white regions
        seg.card.config["glass_min_size"] = glass
    assert hasattr(seg, "predict_scores") and not hasattr(HostOnly(seg), "predict_scores")
    levels = _slide()
    kw = dict(block=64, overlap=16, batch_size=3, band=2, mpp=0.5)
    dev = run_to_end(segment_slide(seg, levels, tmp_path / "device.zarr", **kw))
    host = run_to_end(segment_slide(HostOnly(seg), levels, tmp_path / "host.zarr", **kw))
    assert (dev.windows_predicted, dev.windows_skipped) == (host.windows_predicted, host.windows_skipped)
    assert dev.windows_predicted > 0 and dev.windows_skipped > 0
    a, b = zarr.open_group(str(tmp_path / "device.zarr")), zarr.open_group(str(tmp_path / "host.zarr"))
    for name in ("labels", "confidence"):
        for lv in range(len(dev.labels)):
            assert np.array_equal(a[f"{name}/{lv}"][:], b[f"{name}/{lv}"][:]), (name, lv)
    labels = a["labels/0"][:]
    assert len(np.unique(labels)) >= 3  # several tissue classes and glass: the comparison means something


def test_stain_normalised_wrapper_keeps_normalising_on_the_device_path(tmp_path: Path) -> None:
    """The wrapper delegates unknown attributes; ``predict_scores`` must not slip past its normalisation."""
    import torch
    from PIL import Image

    from napari_wsss.data.synthetic import generate_tile
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.inference.stain_normalise import with_stain_normalisation

    seg = load_segmenter(REPO / "models" / "sshr-default", "cpu")
    ref = generate_tile(7, size=96, difficulty=1.0).image
    Image.fromarray(ref).save(tmp_path / "ref.png")
    wrapped = with_stain_normalisation(seg, tmp_path / "ref.png")
    tiles = np.stack([generate_tile(n, size=64, difficulty=1.0).image for n in (1, 2)])
    got = wrapped.predict_scores(tiles)
    assert torch.equal(got, seg.predict_scores(wrapped.normalise(tiles)))
    assert not torch.equal(got, seg.predict_scores(tiles))
    expect = wrapped.predict(tiles, batch_size=2).probs
    assert np.array_equal(got.cpu().numpy(), expect)
