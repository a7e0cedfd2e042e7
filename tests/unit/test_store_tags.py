"""Image-level tags in the annotation project: validated, autosaved, kept by concurrent writers, read back."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.store import INDEX_FILE, Project


def _project(tmp_path: Path, n: int = 4) -> Project:
    p = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss")
    p.register([{"key": f"t{i}"} for i in range(n)])
    return p


def test_tags_are_canonical_saved_and_survive_reopening(tmp_path: Path) -> None:
    p = _project(tmp_path)
    it = p.set_tags("t0", ["lym", "TE", "TE"], by="dr-a")
    assert it.tags == ["TE", "LYM"] and it.tagged_by == "dr-a" and it.tagged
    p.set_tags("t1", [])  # tagged: none of the classes
    again = Project.load(p.root)
    assert again.tags() == {"t0": ["TE", "LYM"], "t1": []}
    assert np.array_equal(again.tag_vector("t0"), [1, 0, 1, 0]) and again.tag_vector("t2") is None
    counts = again.tag_counts()
    assert (counts.tagged, counts.total) == (2, 4) and counts.per_class == {"TE": 1, "NEC": 0, "LYM": 1, "TAS": 0}
    assert counts.progress_text() == "2 / 4 tagged"
    again.set_tags("t0", None)  # untag
    assert "t0" not in Project.load(p.root).tags()


def test_unknown_or_background_class_is_refused_and_nothing_written(tmp_path: Path) -> None:
    p = _project(tmp_path)
    before = (p.root / INDEX_FILE).read_text()
    with pytest.raises(ValueError, match="not tissue classes"):
        p.set_tags("t0", ["TE", "BG"])
    with pytest.raises(TypeError, match="list of class names"):
        p.set_tags("t0", "TE")
    assert (p.root / INDEX_FILE).read_text() == before


def test_untagged_index_keeps_its_old_form_and_old_files_read(tmp_path: Path) -> None:
    p = _project(tmp_path, 1)
    rec = json.loads((p.root / INDEX_FILE).read_text())["items"][0]
    assert "tags" not in rec  # a project nobody tagged is written as before
    p.set_tags_many({"t0": ["NEC"], "r0_0_64_64_l0": ["TAS"]}, by="x")
    saved = Project.load(p.root)
    assert saved.item("r0_0_64_64_l0").region == [0, 0, 64, 64, 0]  # a new slide tile is registered by its key
    assert saved.tags() == {"t0": ["NEC"], "r0_0_64_64_l0": ["TAS"]}


def test_damaged_tags_get_a_clear_message(tmp_path: Path) -> None:
    p = _project(tmp_path, 1)
    d = json.loads((p.root / INDEX_FILE).read_text())
    d["items"][0]["tags"] = "TE"
    (p.root / INDEX_FILE).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="expected a list of class names"):
        Project.load(p.root)


def test_two_writers_keep_each_others_tags_and_corrections(tmp_path: Path) -> None:
    root = _project(tmp_path).root
    a, b = Project.load(root), Project.load(root)
    a.set_tags("t0", ["TE"])
    b.save_correction("t0", np.ones((4, 4), np.uint8), np.ones((4, 4), bool))  # b read t0 before a's tag
    b.set_tags("t1", ["LYM"])
    a.set_status("t1", "accepted")  # a read t1 before b's tag
    saved = Project.load(root)
    assert saved.tags() == {"t0": ["TE"], "t1": ["LYM"]}
    assert saved.item("t0").status == "corrected" and saved.item("t1").status == "accepted"


def _tagger(root: str, keys: list[str]) -> None:
    p = Project.load(root)
    for k in keys:
        p.set_tags(k, ["TE"])


def test_two_processes_tagging_lose_no_tag(tmp_path: Path) -> None:
    root = _project(tmp_path, 24).root
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_tagger, args=(str(root), [f"t{i}" for i in range(j, 24, 2)])) for j in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Project.load(root).tags()) == 24
