"""resume_from, and every trainer with ``resume=True`` continuing from its epoch checkpoint (not from scratch)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

import pytest
import torch

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.tiles import list_training_tiles
from napari_wsss.events import Cancelled, Progress, run_to_end
from napari_wsss.training import common
from napari_wsss.training.checkpoint import load_checkpoint, resume_from, save_checkpoint

FAST = dict(epochs=2, batch_size=8, input_size=32, num_threads=2, pretrained=False, device="cpu")


class _Mixer:
    def __init__(self) -> None:
        self.state: dict = {}

    def state_dict(self) -> dict:
        return {"patch": 8}

    def load_state_dict(self, state: dict) -> None:
        self.state = state


def test_resume_from_restores_model_optimizer_and_mixer(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt.pt"
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(path, model, opt, 3, 12, {"lr": 0.1}, {"seconds": 5.5, "segmix": _Mixer().state_dict()})

    fresh, mixer = torch.nn.Linear(3, 2), _Mixer()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    assert resume_from(path, fresh, fresh_opt, {"lr": 0.1}, ("lr",), mixer) == (3, 5.5)
    assert torch.equal(fresh.weight, model.weight) and mixer.state == {"patch": 8}
    assert fresh_opt.state_dict()["state"][0]["momentum_buffer"] is not None
    with pytest.raises(ValueError, match="lr"):
        resume_from(path, fresh, fresh_opt, {"lr": 0.2}, ("lr",))


def test_resume_from_without_checkpoint_starts_at_zero(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    assert resume_from(tmp_path / "none.pt", model, torch.optim.SGD(model.parameters(), lr=0.1), {}, ()) == (0, 0.0)


def _cancel_in(gen: Generator[Progress, None, Path], marker: str, stop: dict) -> None:
    """Run ``gen`` until a Progress whose desc contains ``marker``, then cancel at the next batch."""
    with pytest.raises(Cancelled):
        for p in gen:
            if marker in p.desc:
                stop["now"] = True


def _resumes(make: Callable[..., Generator], ckpt: Path, marker: str) -> None:
    """Cancel ``make(...)`` in epoch 2 of the fit named ``marker``, check the epoch-1 checkpoint, resume."""
    stop = {"now": False}
    _cancel_in(make(should_stop=lambda: stop["now"]), f"{marker} epoch 2/2", stop)
    assert load_checkpoint(ckpt)["epoch"] == 1
    events: list[Progress] = []
    run_to_end(make(resume=True), events.append)
    descs = [e.desc for e in events if f"{marker} epoch" in e.desc]
    assert descs and all(d.endswith("epoch 2/2") for d in descs), descs  # epoch 1 was not trained again


def test_mil_resumes_from_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    from napari_wsss.training.mil import train_mil

    out = tmp_path / "mil"
    _resumes(lambda **kw: train_mil(tiny_dataset, out, evaluate=False, **FAST, **kw),
             common.checkpoint_path_for(out), "MIL")
    assert (out / "card.json").is_file() and not common.checkpoint_path_for(out).exists()


def test_cam_sam_classifier_resumes_from_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    from napari_wsss.training.cam_sam import CamSamConfig, train_classifier

    cfg = CamSamConfig(**FAST, segmix=True, segmix_window=1)
    tiles = list_training_tiles(tiny_dataset / "training", LUAD_HISTOSEG)
    out = tmp_path / "cs"
    _resumes(lambda **kw: train_classifier(cfg, tiles, out, torch.device("cpu"), **kw),
             common.checkpoint_path_for(out), "classifier")


def test_multistage_resumes_segmentation_stage(tiny_dataset: Path, tmp_path: Path) -> None:
    from napari_wsss.training.multistage import train_multistage

    out = tmp_path / "ms"
    _resumes(lambda **kw: train_multistage(tiny_dataset, out, evaluate=False, kernel_size=3, **FAST, **kw),
             common.checkpoint_path_for(out), "3/3 segmentation")
    assert (out / "card.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["ms"]
