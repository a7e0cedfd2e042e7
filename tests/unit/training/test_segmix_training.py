"""SSHR with SegMix + PCM: a tiny run trains, logs patch/ratio, records the settings, resumes the scheduler."""

import pytest

from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.inference.predict import load_sshr
from napari_wsss.models.card import load_card
from napari_wsss.training import common
from napari_wsss.training.checkpoint import load_checkpoint
from napari_wsss.training.sshr import train_sshr

TINY = dict(epochs=1, batch_size=8, input_size=32, kernel_size=3, num_threads=2,
            segmix=True, segmix_patch=16, segmix_window=1, segmix_patience=1, pcm=True)


def test_sshr_segmix_pcm_one_epoch(tiny_dataset, tmp_path):
    events = []
    out = run_to_end(train_sshr(tiny_dataset, tmp_path / "sm", **TINY), events.append)
    fit = [e for e in events if e.desc.startswith("SSHR epoch")]
    assert fit and all({"segmix_patch", "segmix_ratio", "loss_pcm"} <= set(e.metrics) for e in fit)
    card = load_card(out)
    assert card.config["segmix"] and card.config["pcm"] and card.config["segmix_patch"] == 16
    assert card.metrics["segmix"]["history"][0] == {"batch": 0, "patch": 16, "ratio": 0.25}
    assert 0 <= card.metrics["test"]["mIoU"] <= 1
    seg = load_sshr(out, card, "cpu")
    assert seg.pcm is not None  # refined CAMs at inference (card config)
    import numpy as np

    pred = seg.predict(np.full((2, 64, 64, 3), 128, np.uint8))
    assert pred.class_map.shape == (2, 64, 64)


def test_segmix_state_in_checkpoint_and_resume(tiny_dataset, tmp_path):
    out = tmp_path / "sm2"
    opts = {**TINY, "epochs": 2, "pcm": False}
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 4  # 3 batches per epoch

    with pytest.raises(Cancelled):
        run_to_end(train_sshr(tiny_dataset, out, should_stop=stop_in_second_epoch, evaluate=False, **opts))
    state = load_checkpoint(common.checkpoint_path_for(out))
    sm = state["extra"]["segmix"]
    assert sm["batches"] == 3 and sm["patch"]["values"] == [16, 8]
    run_to_end(train_sshr(tiny_dataset, out, resume=True, evaluate=False, **opts))
    assert load_card(out).metrics["segmix"]["history"][-1]["batch"] <= 6


def test_cli_passes_segmix_options(tiny_dataset, tmp_path):
    from napari_wsss.cli import main

    model = tmp_path / "cli-sm"
    rc = main(["train", "--data", str(tiny_dataset), "--out", str(model), "--epochs", "1", "--batch-size", "8",
               "--input-size", "32", "--segmix", "--segmix-patch", "8", "--segmix-ratio", "0.5",
               "--segmix-patience", "2", "--pcm", "--no-eval", "--set", "kernel_size=3"])
    assert rc == 0
    cfg = load_card(model).config
    assert (cfg["segmix"], cfg["segmix_patch"], cfg["segmix_ratio"], cfg["segmix_patience"], cfg["pcm"]) == \
        (True, 8, 0.5, 2, True)


def test_cam_sam_classifier_trains_with_segmix_and_pcm(tiny_dataset, tmp_path):
    import torch

    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.data.tiles import list_training_tiles
    from napari_wsss.training.cam_sam import CamSamConfig, train_classifier

    cfg = CamSamConfig(epochs=1, batch_size=8, input_size=32, segmix=True, segmix_patch=8, segmix_window=1,
                       pcm=True, pretrained=False)
    tiles = list_training_tiles(tiny_dataset / "training", LUAD_HISTOSEG)
    events = []
    model, seconds, losses = run_to_end(train_classifier(cfg, tiles, tmp_path / "cs", torch.device("cpu")),
                                        events.append)
    assert len(losses) == 1 and seconds > 0
    assert all({"segmix_patch", "loss_pcm"} <= set(e.metrics) for e in events)
