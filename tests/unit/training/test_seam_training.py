"""SSHR with SEAM's PCM: trains, saves the projection in weights.pt, the card says so, inference uses it;
the parameter-free PCM stays reachable and old cards load as it."""

import json

import numpy as np
import torch

from napari_wsss.events import run_to_end
from napari_wsss.inference.predict import load_sshr
from napari_wsss.models.card import load_card, load_weights
from napari_wsss.models.seam import SeamPCM
from napari_wsss.training.sshr import SSHRConfig, build_cam_net, cam_step_fn, train_sshr

TINY = {"epochs": 1, "batch_size": 8, "input_size": 32, "kernel_size": 3, "num_threads": 2, "pcm": True,
        "evaluate": False, "pcm_kind": "seam"}


def test_one_step_trains_the_projection():
    torch.manual_seed(0)
    assert SSHRConfig().pcm_kind == "parameter_free"  # the default: SEAM measured worse (docs/benchmarks.md)
    cfg = SSHRConfig(input_size=32, kernel_size=3, pcm=True, pcm_kind="seam", pretrained=False)
    assert cfg.pcm_loss_weight() == 1.0
    net = build_cam_net(cfg, 4, False)
    before = net.pcm.embed.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    loss, metrics = cam_step_fn(cfg, torch.device("cpu"))(net, (x, y))
    assert {"loss_er", "loss_ecr", "loss_rvmin", "loss_pcm"} <= set(metrics) and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not torch.equal(net.pcm.embed.weight, before)


def test_seam_model_saves_loads_and_predicts(tiny_dataset, tmp_path):
    events = []
    out = run_to_end(train_sshr(tiny_dataset, tmp_path / "seam", **TINY), events.append)
    assert all("loss_er" in e.metrics for e in events if e.desc.startswith("SSHR epoch"))
    card = load_card(out)
    assert card.config["pcm"] and card.config["pcm_kind"] == "seam"
    saved = {k: v for k, v in load_weights(out).items() if k.startswith("pcm.")}
    assert saved  # the learned projection travels with the model
    seg = load_sshr(out, card, "cpu")
    assert isinstance(seg.model.pcm, SeamPCM) and seg.pcm == seg.model.pcm.refine_levels
    assert all(torch.equal(seg.model.state_dict()[k].cpu(), v) for k, v in saved.items())
    pred = seg.predict(np.full((2, 64, 64, 3), 128, np.uint8))
    assert pred.class_map.shape == (2, 64, 64)


def test_parameter_free_kind_and_cards_without_the_key(tiny_dataset, tmp_path):
    out = run_to_end(train_sshr(tiny_dataset, tmp_path / "pf", **{**TINY, "pcm_kind": "parameter_free"}))
    card = load_card(out)
    assert card.config["pcm_kind"] == "parameter_free" and card.config["pcm_weight"] is None
    assert not any(k.startswith("pcm.") for k in load_weights(out))
    # a card written before pcm_kind existed: parameter-free PCM, no SEAM module in the network
    path = out / "card.json"
    d = json.loads(path.read_text())
    del d["config"]["pcm_kind"]
    path.write_text(json.dumps(d))
    seg = load_sshr(out, load_card(out), "cpu")
    assert seg.model.pcm is None and seg.pcm is not None
    assert seg.predict(np.full((1, 48, 48, 3), 128, np.uint8)).class_map.shape == (1, 48, 48)
