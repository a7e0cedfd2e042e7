"""Windowed inference: stitched output equals a single pass, blank glass skips the model, cancel stops."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.inference.segmenter import Prediction
from napari_wsss.inference.tiling import iter_windows, segment_image, window_starts


class PixelSegmenter:
    """Per-pixel model (no context): windowed and whole-image predictions must agree exactly."""

    def __init__(self) -> None:
        self.card = SimpleNamespace(class_schema=LUAD_HISTOSEG)
        self.calls = 0

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        self.calls += 1
        x = images.astype(np.float32) / 255.0  # (N, H, W, 3)
        fg = np.stack([x[..., 0], x[..., 1], x[..., 2], 1 - x.mean(-1)], 1)
        bg = (x.mean(-1) > 0.8).astype(np.float32)[:, None]
        probs = np.concatenate([fg * (1 - bg), bg], 1)
        return Prediction(probs.argmax(1).astype(np.uint8), probs)


def test_windows_cover_plane_with_overlap() -> None:
    assert window_starts(100, 128, 16) == [0]
    starts = window_starts(1000, 256, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))
    cover = np.zeros((300, 500), int)
    for y0, x0, y1, x1 in iter_windows((300, 500), 128, 16):
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1


def test_stitched_equals_single_pass(rng: np.random.Generator) -> None:
    img = rng.integers(0, 200, (300, 420, 3), dtype=np.uint8)
    seg = PixelSegmenter()
    whole = seg.predict(img[None])
    tiled = run_to_end(segment_image(seg, img, window=128, overlap=32, batch_size=3))
    assert tiled.class_map.shape == (1, 300, 420)
    np.testing.assert_allclose(tiled.probs, whole.probs, atol=1e-5)
    assert np.array_equal(tiled.class_map, whole.class_map)


def test_blank_windows_skip_the_model() -> None:
    img = np.full((256, 512, 3), 245, np.uint8)
    img[:, :200] = 90  # tissue only on the left
    seg = PixelSegmenter()
    pred = run_to_end(segment_image(seg, img, window=128, overlap=0, batch_size=1))
    n_windows = len(list(iter_windows((256, 512), 128, 0)))
    assert seg.calls < n_windows  # the all-glass windows on the right were not predicted
    assert (pred.class_map[0][:, 260:] == LUAD_HISTOSEG.background_index).all()


def test_cancel_between_batches(rng: np.random.Generator) -> None:
    img = rng.integers(0, 200, (256, 256, 3), dtype=np.uint8)
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        run_to_end(segment_image(PixelSegmenter(), img, window=64, overlap=0, batch_size=2,
                                 should_stop=lambda: next(calls, True)))


def test_predict_image_is_one_call_for_a_tile_and_windows_beyond_the_limit(monkeypatch) -> None:
    from napari_wsss.inference import tiling

    img = np.random.default_rng(1).integers(0, 256, (300, 700, 3), dtype=np.uint8)
    seg = PixelSegmenter()
    whole = tiling.predict_image(seg, img)
    assert seg.calls == 1 and whole.class_map.shape == (1, 300, 700) and whole.probs.shape == (1, 5, 300, 700)
    monkeypatch.setattr(tiling, "WINDOW_PIXELS", 512 * 256)  # a "big" image: blended windows, bounded memory
    seg.calls = 0
    windowed = tiling.predict_image(seg, img, batch_size=1)
    assert seg.calls == len(list(iter_windows((300, 700), 512, 64))) == 2
    np.testing.assert_array_equal(windowed.class_map, whole.class_map)  # a per-pixel model: same answer
