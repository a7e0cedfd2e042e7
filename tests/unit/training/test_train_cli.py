"""``napari-wsss train`` options come from the trainers' config dataclasses (commands/train.py)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from napari_wsss import methods  # noqa: F401  (fills the registry)
from napari_wsss.cli import build_parser, main
from napari_wsss.inference.segmenter import MethodSpec
from napari_wsss.models._registry import METHODS
from napari_wsss.training import config
from napari_wsss.training.mil import MILConfig


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    train.parse_known_args(["--data", "d", "--out", "o"])  # the option flags are added on the first parse
    return train


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Options the command hands to the trainer (which does not run)."""
    seen: list[dict] = []

    def record(data_dir, out_dir, *, overwrite, resume, labels_csv, command, evaluate, **options):
        seen.append(options)
        return out_dir
        yield  # a generator, like the trainers

    spec = MethodSpec("rec", "recorder", "", load=lambda *a: None, train=record)
    monkeypatch.setattr(METHODS, "get", lambda name: spec)
    return seen


def test_every_config_field_has_a_flag() -> None:
    flags = {a.dest: a.option_strings for a in _train_parser()._actions}
    renamed = {"num_threads": "--threads", "pretrained": "--no-pretrained"}  # flags older than the derivation
    for cls in config.trainer_configs().values():
        for f in dataclasses.fields(cls):
            flag = renamed.get(f.name, "--" + f.name.replace("_", "-"))
            assert flag in flags.get(f.name, []), f"{cls.__name__}.{f.name} has no flag {flag}"


def test_config_fields_do_not_shadow_the_command_arguments() -> None:
    fields = {f.name for cls in config.trainer_configs().values() for f in dataclasses.fields(cls)}
    assert not fields & {"method", "data", "out", "labels_csv", "set", "resume", "overwrite", "no_eval"}


def test_typed_flags_reach_the_trainer(recorded: list[dict]) -> None:
    assert main(["train", "--data", "d", "--out", "o", "--epochs", "3", "--no-flips", "--loss-weights", "0.2", "0.8",
                 "--seg-lr", "0.5", "--hfrm", "--segmix-labels", "soft", "--threads", "2", "--no-pretrained",
                 "--set", "kernel_size=3"]) == 0
    assert recorded == [{"epochs": 3, "flips": False, "loss_weights": [0.2, 0.8], "seg_lr": 0.5, "hfrm": True,
                         "segmix_labels": "soft", "num_threads": 2, "pretrained": False, "kernel_size": 3}]


def test_a_new_config_field_is_an_option_without_editing_the_cli(recorded: list[dict],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass
    class Knobbed(MILConfig):
        new_knob: float = 1.0
        new_list: tuple[int, ...] = (1,)

    trainers = config.trainer_configs()
    monkeypatch.setattr(config, "trainer_configs", lambda: {**trainers, "knobbed": Knobbed})
    assert main(["train", "--data", "d", "--out", "o", "--new-knob", "2.5", "--new-list", "4", "5"]) == 0
    assert main(["train", "--data", "d", "--out", "o", "--set", "new_knob=3"]) == 0
    assert recorded == [{"new_knob": 2.5, "new_list": [4, 5]}, {"new_knob": 3}]


def test_help_without_train_does_not_import_torch() -> None:
    code = ("import sys; from napari_wsss.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout
    assert out.strip() == "False"


def test_pretrained_flag_asks_for_imagenet_weights(recorded: list[dict]) -> None:
    assert main(["train", "--data", "d", "--out", "o", "--backbone", "resnet18", "--pretrained"]) == 0
    assert recorded == [{"backbone": "resnet18", "pretrained": True}]
