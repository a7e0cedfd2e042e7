"""`napari-wsss finetune --out`: a name that is taken or not a plain name is refused before any training, with a
message that offers what finetune has (another name), not an --overwrite it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.cli import main
from napari_wsss.resources import default_model_dir
from napari_wsss.store import Project


@pytest.mark.parametrize("name,words", [("taken", ["already exists", "never replaced", "another --out"]),
                                        ("../escape", ["not a version name"]), ("..", ["not a version name"])])
def test_out_taken_or_not_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                 words: list[str]) -> None:
    project = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss")
    (project.models_dir / "taken").mkdir(parents=True)
    (project.models_dir / "taken" / "card.json").write_text("{}")
    rc = main(["finetune", "--project", str(project.root), "--base", str(default_model_dir()), "--out", name])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words) and "--overwrite" not in err, err
    assert (project.models_dir / "taken" / "card.json").read_text() == "{}"
    assert sorted(p.name for p in project.models_dir.iterdir()) == ["taken"]
