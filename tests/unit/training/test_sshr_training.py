import json

import numpy as np
import pytest
import torch

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG
from napari_wsss.data.datasets import TileLabelDataset
from napari_wsss.data.tiles import list_training_tiles
from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.models.card import ModelCard, check_schema, load_card
from napari_wsss.models.sshr import SSHRNet, cam_logits
from napari_wsss.ops.losses import hierarchical_loss
from napari_wsss.training import common
from napari_wsss.training.checkpoint import load_checkpoint, save_checkpoint
from napari_wsss.training.loop import poly_lr
from napari_wsss.training.sshr import train_sshr

FAST = dict(epochs=2, batch_size=8, input_size=64, kernel_size=3, num_threads=2)


def test_loss_decreases_on_tiles(tiny_dataset):
    torch.manual_seed(0)
    tiles = list_training_tiles(tiny_dataset / "training", LUAD_HISTOSEG)[:8]
    ds = TileLabelDataset(tiles, 64, (0.5,) * 3, (0.25,) * 3, flips=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.stack([ds[i][1] for i in range(len(ds))])
    net = SSHRNet("small_cnn", 4, kernel_size=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss, _ = hierarchical_loss(cam_logits(net(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_poly_lr():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 100, 100) == 0.0
    assert 0 < poly_lr(0.01, 50, 100) < 0.01


def test_train_writes_card_and_roundtrips(tiny_dataset, tmp_path):
    events = []
    out = run_to_end(train_sshr(tiny_dataset, tmp_path / "m1", command="pytest", **FAST), events.append)
    assert (out / "weights.pt").is_file() and not common.checkpoint_path_for(out).exists()
    card = load_card(out)
    assert card.method == "sshr" and card.backbone == "small_cnn" and card.input_size == 64
    assert card.class_schema.names == LUAD_HISTOSEG.names and card.seed == 0 and card.command == "pytest"
    assert 0 <= card.metrics["test"]["mIoU"] <= 1 and "val" in card.metrics
    assert card.metrics["train_seconds"] > 0 and "val_threshold_search" in card.metrics
    again = ModelCard.from_dict(json.loads((out / "card.json").read_text()))
    assert again.to_dict() == card.to_dict()
    fit_events = [e for e in events if e.total]
    assert fit_events[0].desc.startswith("SSHR epoch") and "loss" in fit_events[0].metrics
    with pytest.raises(FileExistsError, match="overwrite"):
        run_to_end(train_sshr(tiny_dataset, out, **FAST))


def test_cancel_leaves_no_model_and_resume_finishes(tiny_dataset, tmp_path):
    out = tmp_path / "m2"
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 4  # 3 batches per epoch: cancel in epoch 2

    with pytest.raises(Cancelled):
        run_to_end(train_sshr(tiny_dataset, out, should_stop=stop_in_second_epoch, **FAST))
    assert not out.exists()
    ckpt = common.checkpoint_path_for(out)
    assert load_checkpoint(ckpt)["epoch"] == 1
    events = []
    run_to_end(train_sshr(tiny_dataset, out, resume=True, evaluate=False, **FAST), events.append)
    assert (out / "card.json").is_file() and not ckpt.exists()
    fit_descs = [e.desc for e in events if "SSHR epoch" in e.desc]
    assert fit_descs and all(d == "SSHR epoch 2/2" for d in fit_descs)  # resumed: epoch 1 not trained again


def test_resume_with_other_classes_is_refused(tiny_dataset, tmp_path):
    out = tmp_path / "m3"
    net = SSHRNet("small_cnn", 4)
    save_checkpoint(common.checkpoint_path_for(out), net, None, 1, 3,
                    {"method": "sshr", "classes": BCSS_WSSS.names, "backbone": "small_cnn"})
    with pytest.raises(ValueError, match="classes"):
        run_to_end(train_sshr(tiny_dataset, out, resume=True, **FAST))


def test_unknown_option_lists_valid_ones(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run_to_end(train_sshr(tiny_dataset, tmp_path / "x", epochz=3))


def test_check_schema_mismatch_message(tiny_dataset, tmp_path):
    card = ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict())
    with pytest.raises(ValueError, match="BCSS"):
        check_schema(card, BCSS_WSSS)
    assert np.isfinite(card.input_size)


def test_gating_threshold_defaults_by_schema():
    from napari_wsss.training.config import CamTrainConfig

    assert CamTrainConfig().gating_threshold(BCSS_WSSS.name) == 0.5  # SSHR's code on BCSS-WSSS
    assert CamTrainConfig().gating_threshold(LUAD_HISTOSEG.name) == 0.2  # and on LUAD-HistoSeg
    assert CamTrainConfig().gating_threshold("colon-gland") == 0.2
    assert CamTrainConfig(threshold=0.35).gating_threshold(BCSS_WSSS.name) == 0.35  # a given one wins


@pytest.mark.parametrize("schema,calibrate,expect", [("bcss", False, 0.5), ("luad", False, 0.2),
                                                     ("luad", True, None)])
def test_card_records_the_threshold_and_whether_val_masks_calibrated_it(tiny_dataset, tmp_path, schema, calibrate,
                                                                        expect):
    out = run_to_end(train_sshr(tiny_dataset, tmp_path / f"{schema}{calibrate}", schema=schema, calibrate=calibrate,
                                **{**FAST, "epochs": 1, "input_size": 32}))
    card = load_card(out)
    assert card.config["threshold_calibrated"] is calibrate
    if expect is not None:
        assert card.config["threshold"] == expect and "val_threshold_search" not in card.metrics
    else:
        table = card.metrics["val_threshold_search"]
        assert card.config["threshold"] == float(max(table, key=lambda k: table[k]))


def test_resnet_sshr_trains_and_reloads_with_its_stride4_map(tiny_dataset, tmp_path):
    from napari_wsss.inference.predict import load_sshr

    out = run_to_end(train_sshr(tiny_dataset, tmp_path / "r18", backbone="resnet18", pretrained=False,
                                calibrate=False, evaluate=False, **{**FAST, "epochs": 1, "input_size": 32}))
    card = load_card(out)
    assert card.config["shallow_stride"] == 4 and card.config["freeze_bn"]
    seg = load_sshr(out, card, "cpu")
    assert seg.model.backbone.shallow_stride == 4 and not seg.model.backbone.freeze_bn  # nothing loaded: no freeze
    pred = seg.predict(np.full((1, 64, 64, 3), 128, np.uint8))
    assert pred.class_map.shape == (1, 64, 64)
    card.config.pop("shallow_stride")  # a card from before the option: the pooled stride-8 map it was trained with
    assert load_sshr(out, card, "cpu").model.backbone.shallow_stride == 8
