"""CAM+SAM end to end on tiny tiles with a tiny random SAM: classifier, prompts, one decoder round, version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.models.card import load_card, load_weights
from napari_wsss.models.sam import ENV_CACHE, ENV_CHECKPOINT
from napari_wsss.training.cam_sam import train_cam_sam
from tests._sam import write_tiny_sam

from ..models._tiles import write_tiny_dataset


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("cs_data"), n_train=8, n_eval=2, size=64)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "sam-cache"))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)


OPTS = dict(epochs=1, batch_size=4, input_size=64, rounds=1, n_points=8, decoder_epochs=1, decoder_lr=1e-3,
            pretrained=False, num_threads=2, device="cpu")


def test_one_round_end_to_end(small_data: Path, tiny_ckpt: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_wsss.models.sam import load_sam

    base_decoder = load_sam(tiny_ckpt).model.mask_decoder.state_dict()
    # consistency 0: a random SAM's masks would rarely pass 0.9, and this test needs a decoder round to run
    out = run_to_end(train_cam_sam(small_data, tmp_path / "cs", sam_checkpoint=str(tiny_ckpt), consistency=0.0,
                                   **OPTS))
    card = load_card(out)
    assert card.method == "cam_sam"
    assert card.config["sam_checkpoint"] == str(tiny_ckpt.resolve())
    assert card.config["sam_model_type"] == "custom-96x2" and card.config["sam_arch"]["embed_dim"] == 96
    assert card.config["adl_stages"] == [3, 4] and card.config["enhanced"] is True
    rounds = card.metrics["rounds"]
    assert len(rounds) == 1 and rounds[0]["kept"] == rounds[0]["prompted"] > 0 and "decoder_loss" in rounds[0]
    assert 0 <= card.metrics["test"]["mIoU"] <= 1
    assert not (tmp_path / "cs.ckpt.pt").exists()
    state = load_weights(out)
    assert any(k.startswith("classifier.") for k in state)
    dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    assert set(dec) == set(base_decoder) and not all(torch.equal(dec[k], base_decoder[k]) for k in dec)
    assert not any("image_encoder" in k for k in state)  # the user's encoder is not copied
    assert (out / "weights.pt").stat().st_size < tiny_ckpt.stat().st_size

    # The version loads by its card (recorded SAM path) and segments like every method.
    seg = load_segmenter(out, device="cpu")
    tile = np.asarray(__import__("PIL.Image").Image.open(next((small_data / "test" / "img").iterdir())).convert("RGB"))
    pred = seg.predict(tile[None])
    assert pred.class_map.shape == (1, 64, 64) and pred.class_map.max() <= 4
    assert pred.probs.shape == (1, 5, 64, 64) and np.allclose(pred.probs.sum(1), 1, atol=1e-4)
    assert (seg.predict(np.full((1, 64, 64, 3), 250, np.uint8)).class_map == 4).all()  # glass -> background

    # A moved checkpoint: the env variable (or --sam-checkpoint) points at it; a different SAM is refused.
    moved = tmp_path / "elsewhere.pth"
    moved.write_bytes(tiny_ckpt.read_bytes())
    monkeypatch.setenv(ENV_CHECKPOINT, str(moved))
    load_segmenter(out, device="cpu")
    write_tiny_sam(moved, embed_dim=64)
    with pytest.raises(ValueError, match="not the one model"):
        load_segmenter(out, device="cpu")


def test_consistency_filter_rejects_random_masks_and_cancel(small_data: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    gen = train_cam_sam(small_data, tmp_path / "cs2", sam_checkpoint=str(tiny_ckpt), consistency=1.01,
                        evaluate=False, **OPTS)
    out = run_to_end(gen)
    r = load_card(out).metrics["rounds"][0]
    assert r["kept"] == 0 and "decoder_loss" not in r  # nothing passes: no decoder training
    stop = iter([False] * 3 + [True] * 100)
    with pytest.raises(Cancelled):
        run_to_end(train_cam_sam(small_data, tmp_path / "cs3", sam_checkpoint=str(tiny_ckpt),
                                 should_stop=lambda: next(stop), **OPTS))
    assert not (tmp_path / "cs3").exists()


def test_missing_sam_fails_before_training(small_data: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="NAPARI_WSSS_SAM_CHECKPOINT"):
        run_to_end(train_cam_sam(small_data, tmp_path / "cs4", **OPTS))
