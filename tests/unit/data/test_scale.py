"""data/scale.py: one working scale for training, fine-tuning, evaluation and inference; crops, not squeezes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.scale import (
    crop_pad,
    n_crops,
    random_crop_origin,
    rescale,
    scaled_shape,
    working_scale,
)
from napari_wsss.models.card import ModelCard


def _card(**config) -> ModelCard:  # noqa: ANN003
    return ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(), input_size=112,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), config=config)


def test_working_scale_is_input_over_tile_size_and_refuses_nonsense():
    assert working_scale(112, 224) == 0.5 and working_scale(64, 64) == 1.0
    with pytest.raises(ValueError, match="tile size 0"):
        working_scale(112, 0)


def test_card_working_scale_reads_the_recorded_factor_else_the_rule():
    assert _card(scale=0.25, tile_size=224).working_scale == 0.25  # what the trainer recorded wins
    assert _card(tile_size=448).working_scale == 0.25  # older cards: the rule from the tile size
    assert _card().working_scale == 1.0  # nothing known: tiles at their own size


@pytest.mark.parametrize("shape", [(224, 224), (522, 775), (441, 580), (9, 2500)])
def test_inference_rescales_to_the_shape_and_pixels_training_uses(shape):
    """to_batch (inference) and rescale (training, fine-tuning) share one geometry: same size, same pixels."""
    from napari_wsss.data.datasets import normalise
    from napari_wsss.inference.predict import to_batch

    card = _card(scale=0.5, tile_size=224)
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    x = to_batch(img[None], card, torch.device("cpu"))
    small = rescale(img, card.working_scale)
    assert tuple(x.shape[-2:]) == scaled_shape(shape, 0.5) == small.shape[:2]
    assert small.shape[:2] == (max(8, round(shape[0] / 2)), max(8, round(shape[1] / 2)))
    # rescaling the uint8 image then normalising differs from inference only by rounding to uint8
    diff = (normalise(small[None], card.mean, card.std) - x).abs().max().item()
    assert diff <= 0.5 / 255 / 0.25 + 1e-5


def test_rescale_keeps_dtype_classes_and_the_pixel_grid():
    mask = np.zeros((100, 60), np.uint8)
    mask[:, 30:] = 3
    mask[50:, :] = 4
    small = rescale(mask, 0.5, nearest=True)
    assert small.dtype == np.uint8 and small.shape == (50, 30)
    assert set(np.unique(small).tolist()) == {0, 3, 4}  # nearest: no blended class values
    assert (small[:, :15] != 3).all() and (small[:25, 15:] == 3).all() and (small[25:] == 4).all()
    flags = rescale(mask == 3, 0.5, nearest=True)
    assert flags.dtype == bool and np.array_equal(flags, small == 3)
    soft = rescale(np.full((40, 40, 4), 0.25, np.float32), 0.5)
    assert soft.dtype == np.float32 and soft.shape == (20, 20, 4) and np.allclose(soft, 0.25)
    assert rescale(mask, 1.0) is mask


def test_crops_cover_tiles_of_any_size_and_pad_with_the_fill():
    rng = np.random.default_rng(0)
    assert n_crops((64, 64), 64) == 1 and n_crops((261, 388), 112) == 8 and n_crops((10, 10), 64) == 1
    origins = {random_crop_origin((100, 70), 64, rng) for _ in range(200)}
    assert all(0 <= y <= 36 and 0 <= x <= 6 for y, x in origins) and len(origins) > 20
    assert {random_crop_origin((40, 300), 64, rng)[0] for _ in range(20)} == {0}  # short side: padded, not cut
    img = np.arange(40 * 30 * 3, dtype=np.int64).reshape(40, 30, 3).astype(np.uint8)
    crop = crop_pad(img, 0, 10, 32, 255)
    assert crop.shape == (32, 32, 3)
    assert np.array_equal(crop[:, :20], img[:32, 10:30]) and (crop[:, 20:] == 255).all()
    window = crop_pad(img, 4, 0, 16, 0)
    assert np.shares_memory(window, img) and np.array_equal(window, img[4:20, :16])  # inside: a view, no copy
    assert crop_pad(np.ones((5, 5), bool), 0, 0, 8, False).sum() == 25
