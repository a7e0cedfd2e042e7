"""Which classes a project holds: a model may replace classes nobody chose while no user work is in it (no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import GLAS, LUAD_HISTOSEG
from napari_wsss.models.card import ModelCard
from napari_wsss.store import Project

GLAS_CARD = ModelCard("sshr", "small_cnn", GLAS.to_dict(), name="glas-model")
LUAD_CARD = ModelCard("sshr", "small_cnn", LUAD_HISTOSEG.to_dict(), name="luad-model")


@pytest.fixture
def predicted(tmp_path: Path) -> Project:
    """A project opened with the default classes, then segmented by the default (LUAD) model: machine work only."""
    folder = tmp_path / "glands"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / f"t{i}.png")
    p = Project.open(folder)
    assert p.schema_default
    assert p.adopt_schema(LUAD_HISTOSEG) is False
    for i in range(2):
        p.save_prediction(f"t{i}", np.full((8, 8), 1, np.uint8), LUAD_CARD, image=f"t{i}.png")
    return p


def test_machine_predictions_give_way_to_a_model_of_other_classes(predicted: Project) -> None:
    assert predicted.schema_refusal(GLAS) is None
    assert predicted.adopt_schema(GLAS) is True
    again = Project.load(predicted.root)  # as saved
    assert again.schema.names == GLAS.names and again.schema_set_by == "model"
    assert again.counts()["predicted"] == 0 and [it.key for it in again.items()] == ["t0", "t1"]
    aside = sorted((predicted.root / "history").iterdir())
    assert len(aside) == 1 and aside[0].name.endswith(LUAD_HISTOSEG.name)
    assert sorted(p.name for p in (aside[0] / "predictions").iterdir()) == ["t0.png", "t1.png"]
    assert json.loads((aside[0] / "schema.json").read_text())["name"] == LUAD_HISTOSEG.name
    again.save_prediction("t0", np.zeros((8, 8), np.uint8), GLAS_CARD)  # the gland model now writes
    assert again.adopt_schema(LUAD_HISTOSEG) is True  # and back again: still machine work only


@pytest.mark.parametrize("work", ["corrected", "accepted", "tagged"])
def test_user_work_fixes_the_classes_with_a_message_saying_what(predicted: Project, work: str) -> None:
    if work == "corrected":
        predicted.save_correction("t0", np.full((8, 8), 2, np.uint8), np.ones((8, 8), bool))
    elif work == "accepted":
        predicted.set_status("t0", "accepted")
    else:
        predicted.set_tags("t1", ["TE"])
    with pytest.raises(ValueError, match="holds your work .*1 item\\(s\\) (corrected|tagged)"):
        predicted.adopt_schema(GLAS)
    again = Project.load(predicted.root)
    assert again.schema.names == LUAD_HISTOSEG.names and again.counts()["predicted"] == 2
    assert not (predicted.root / "history").exists()


def test_classes_given_at_creation_are_kept(tmp_path: Path) -> None:
    p = Project.open(tmp_path / "x.png", LUAD_HISTOSEG)
    with pytest.raises(ValueError, match="was made for the classes"):
        p.adopt_schema(GLAS)


def test_a_bad_schema_owner_in_the_index_is_a_clear_error(predicted: Project) -> None:
    path = predicted.root / "project.json"
    d = json.loads(path.read_text())
    d["schema_set_by"] = "robot"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="'schema_set_by' is 'robot'"):
        Project.load(predicted.root)


def test_a_person_chooses_classes_until_their_first_work(predicted: Project) -> None:
    """Tag's 'classes': the person's choice binds models (a model of other classes is refused) but the person may
    change it again until the project holds their work; then it is fixed for them too."""
    assert predicted.adopt_schema(GLAS, by="user") is True and predicted.schema_set_by == "user"
    assert "was made for the classes" in predicted.schema_refusal(LUAD_HISTOSEG)  # a model may not switch it
    assert predicted.adopt_schema(LUAD_HISTOSEG, by="user") is True  # the person may, while nothing is theirs
    assert Project.load(predicted.root).schema_set_by == "user"
    predicted.set_tags(predicted.items()[0].key, ["TE"])
    with pytest.raises(ValueError, match="holds your work"):
        predicted.adopt_schema(GLAS, by="user")
    with pytest.raises(ValueError, match="expected 'model' or 'user'"):
        predicted.adopt_schema(GLAS, by="someone")
