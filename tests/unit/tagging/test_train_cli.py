"""``napari-wsss train --project``: trains from the project's tags into its models/; wrong mixes get one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsss.cli import main
from napari_wsss.models.card import load_card
from napari_wsss.store import Project

from .test_train import _tagged_project

FLAGS = ["--epochs", "1", "--batch-size", "4", "--input-size", "64", "--kernel-size", "3", "--no-pretrained",
         "--device", "cpu", "--backbone", "small_cnn"]


def test_train_project_writes_a_version_into_the_project(tile_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    p = _tagged_project(tile_folder, tmp_path, 6)
    assert main(["train", "--project", str(p.root), "--out", "first", *FLAGS]) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == p.models_dir / "first"
    assert load_card(out).metrics["n_train_tiles"] == 6
    assert [d.name for d in Project.load(p.root).model_versions()] == ["first"]


@pytest.mark.parametrize("extra, message", [
    ([], "needs --data and --out"),
    (["--project", "P", "--data", "D"], "exclude each other"),
    (["--project", "P", "--schema", "bcss"], "project's own classes"),
    (["--project", "P", "--out", "models/x"], "not a path"),
])
def test_wrong_combinations_get_one_line(tile_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                         extra: list[str], message: str) -> None:
    p = _tagged_project(tile_folder, tmp_path, 2)
    extra = [str(p.root) if a == "P" else str(tmp_path) if a == "D" else a for a in extra]
    assert main(["train", *extra, *FLAGS]) == 2
    assert message in capsys.readouterr().err
