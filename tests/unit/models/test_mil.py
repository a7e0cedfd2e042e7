"""MIL teacher: side-output fusion, Dice losses against broadcast image labels, training, inference, CLI."""

import numpy as np
import pytest
import torch

from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.models.card import load_card
from napari_wsss.models.mil import MIL_FUSE_WEIGHTS, MILNet, fuse, side_maps
from napari_wsss.ops.losses import soft_dice_loss
from napari_wsss.training.mil import mil_loss, train_mil

FAST = dict(epochs=1, batch_size=8, input_size=64, num_threads=2, pretrained="none", device="cpu")


def test_side_outputs_and_fusion_shapes():
    net = MILNet("small_cnn", 4).eval()
    with torch.no_grad():
        logits = net(torch.zeros(2, 3, 64, 64))
    assert len(logits) == 3 and all(lg.shape == (2, 4, 8, 8) for lg in logits)
    maps = side_maps(logits, (64, 64))
    assert all(m.shape == (2, 4, 64, 64) and float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps)
    fused = fuse(maps)
    expected = (0.3 * maps[0] + 0.3 * maps[1] + 0.4 * maps[2])
    assert torch.allclose(fused, expected, atol=1e-6)
    assert MIL_FUSE_WEIGHTS == (0.3, 0.3, 0.4)


def test_fusion_weights_are_checked():
    m = torch.rand(1, 2, 4, 4)
    with pytest.raises(ValueError, match="weights"):
        fuse([m, m], (0.5,))
    with pytest.raises(ValueError, match="sum"):
        fuse([m], (0.0,))


def test_soft_dice_values():
    ones = torch.ones(2, 1, 4, 4)
    zeros = torch.zeros(2, 1, 4, 4)
    assert soft_dice_loss(ones, ones).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(zeros, ones).item() > 0.9
    # a negative class (target all zero): predicting zeros costs nothing, predicting ones costs almost 1
    assert soft_dice_loss(zeros, zeros).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(ones, zeros).item() > 0.9
    # masked pixels take no part
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    assert soft_dice_loss(ones, zeros, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_mil_loss_broadcasts_image_labels():
    # logits: class 0 confidently on everywhere, class 1 off everywhere
    on = torch.full((2, 1, 8, 8), 8.0)
    logits = [torch.cat([on, -on], 1)] * 3
    good = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    bad = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    low, parts = mil_loss(logits, good)
    high, _ = mil_loss(logits, bad)
    assert len(parts) == 4  # three sides + fusion
    assert low.item() < 0.2 and high.item() > 3.0


def test_mil_loss_decreases(tiny_dataset):
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.data.datasets import TileLabelDataset
    from napari_wsss.data.tiles import list_training_tiles

    torch.manual_seed(0)
    tiles = list_training_tiles(tiny_dataset / "training", LUAD_HISTOSEG)[:8]
    ds = TileLabelDataset(tiles, 64, (0.5,) * 3, (0.25,) * 3, flips=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.stack([ds[i][1] for i in range(len(ds))])
    net = MILNet("small_cnn", 4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = mil_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_train_mil_writes_a_loadable_version(tiny_dataset, tmp_path):
    from napari_wsss.inference.segmenter import load_segmenter

    out = run_to_end(train_mil(tiny_dataset, tmp_path / "mil", **FAST))
    card = load_card(out)
    assert card.method == "mil" and card.config["fuse_weights"] == [0.3, 0.3, 0.4]
    assert "test" in card.metrics and 0 <= card.metrics["test"]["mIoU"] <= 1
    seg = load_segmenter(out, "cpu")
    pred = seg.predict(np.full((2, 64, 64, 3), 120, np.uint8))
    assert pred.class_map.shape == (2, 64, 64) and pred.probs.shape == (2, 5, 64, 64)


def test_train_mil_cancel_writes_nothing(tiny_dataset, tmp_path):
    with pytest.raises(Cancelled):
        run_to_end(train_mil(tiny_dataset, tmp_path / "mil", should_stop=lambda: True, **FAST))
    assert not (tmp_path / "mil").exists()


def test_cli_train_method_mil(tiny_dataset, tmp_path):
    from napari_wsss.cli import main

    out = tmp_path / "mil-cli"
    rc = main(["train", "--method", "mil", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1",
               "--batch-size", "8", "--input-size", "64", "--no-pretrained", "--device", "cpu", "--no-eval"])
    assert rc == 0 and load_card(out).method == "mil"
