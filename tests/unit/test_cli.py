"""The CLI's one error boundary: every expected failure is one line on stderr and exit code 2, no traceback
(``--debug`` shows it); malformed received files and bad options are named, not crashed on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.cli import main
from napari_wsss.export.manifest import FORMAT
from napari_wsss.store import Project


def _one_line(capsys: pytest.CaptureFixture[str], rc: int, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_project_index_with_items_as_a_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss").root
    index = json.loads((root / "project.json").read_text())
    (root / "project.json").write_text(json.dumps({**index, "items": {"t0": {"key": "t0"}}}))
    rc = main(["export", "--project", str(root), "--out", str(tmp_path / "set")])
    _one_line(capsys, rc, "project.json", "items")


@pytest.mark.parametrize("field,value", [("tiles", "x"), ("items", 3), ("schema", [1])])
def test_manifest_of_the_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str,
                                     value: object) -> None:
    s = tmp_path / "set"
    s.mkdir()
    m = {"format": FORMAT, "format_version": 1, "schema": LUAD_HISTOSEG.to_dict(), "items": [], "tiles": [],
         "files": {}, field: value}
    (s / "manifest.json").write_text(json.dumps(m))
    rc = main(["import", str(s), "--project", str(tmp_path / "p.wsss")])
    _one_line(capsys, rc, "manifest.json", field)
    assert not (tmp_path / "p.wsss").exists()


def test_a_format_version_that_is_not_a_number_names_the_file(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss").root
    index = json.loads((root / "project.json").read_text())
    (root / "project.json").write_text(json.dumps({**index, "format_version": "abc"}))
    rc = main(["export", "--project", str(root), "--out", str(tmp_path / "set")])
    _one_line(capsys, rc, "project.json", "format_version")


@pytest.mark.parametrize("option,words", [
    (["--set", "lr=abc"], ["lr", "'abc'"]),
    (["--input-size", "0"], ["input_size", "0"]),
    (["--epochs", "0"], ["epochs", "0"]),
    (["--epochs", "-1"], ["epochs", "-1"]),
    (["--set", "batch_size=0"], ["batch_size"]),
])
def test_bad_training_options_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         option: list[str], words: list[str]) -> None:
    rc = main(["train", "--method", "mil", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"),
               *option])
    _one_line(capsys, rc, *words)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), AttributeError("'str' has no attribute 'x'"),
                                   ZeroDivisionError("division by zero"), PermissionError(13, "Permission denied")])
def test_anything_a_command_raises_is_one_line_with_code_2(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str],
                                                          error: Exception) -> None:
    import napari_wsss.commands.generate as gen

    def fail(args):  # noqa: ANN001, ANN202
        raise error

    monkeypatch.setattr(gen, "run", fail)
    _one_line(capsys, main(["generate", "/nowhere"]), "napari-wsss generate: error:")
    with pytest.raises(type(error)):
        main(["--debug", "generate", "/nowhere"])


def test_generate_refuses_a_non_empty_folder_and_replaces_it_whole_with_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """generate merged its tiles into whatever the folder held, with exit code 0."""
    out = tmp_path / "data"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    small = ["--train", "2", "--val", "1", "--test", "1", "--size", "32"]
    _one_line(capsys, main(["generate", str(out), *small]), "is not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["generate", str(out), *small, "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "test", "training", "val"]
    assert str(out) in (out / "README.md").read_text() and ".partial" not in (out / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_path_through_a_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The system's 'File exists' (mkdir of a folder where a file stands) came out as '[Errno 17] File exists'."""
    from napari_wsss.cli import error_message

    (tmp_path / "f").write_text("x")
    try:
        (tmp_path / "f").mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        msg = error_message(e)
    assert msg.startswith(f"File exists: {tmp_path / 'f'}") and "Errno" not in msg and "choose another" in msg
    _one_line(capsys, main(["generate", str(tmp_path / "f"), "--train", "1"]), "is a file")
    assert (tmp_path / "f").read_text() == "x"


def test_training_tiles_without_any_label_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All-zero labels wrote an untrained model without a word."""
    from PIL import Image

    (tmp_path / "d" / "training").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32), (200, 100, 150)).save(tmp_path / "d" / "training" / f"t{i}-[0 0 0 0].png")
    rc = main(["train", "--method", "mil", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m"),
               "--epochs", "1", "--no-eval"])
    _one_line(capsys, rc, "None of the 3 training tiles", "carries a class label")
    assert not (tmp_path / "m").exists()


def _project_with_a_mask(tmp_path: Path) -> Path:
    import numpy as np

    from PIL import Image

    (tmp_path / "tiles").mkdir()
    Image.new("RGB", (8, 8), (200, 100, 150)).save(tmp_path / "tiles" / "t0.png")
    p = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss")
    p.register([{"key": "t0", "image": "t0.png"}])
    m = np.zeros((8, 8), np.uint8)
    p.save_correction("t0", m, np.ones(m.shape, bool))
    return p.root


@pytest.mark.parametrize("field,value", [("key", 3), ("mask", "../../../etc/passwd"), ("mask", 3),
                                         ("shape", "x"), ("touched_fraction", "x"), ("model", [1]),
                                         ("region", "x")])
def test_a_damaged_item_record_names_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str,
                                               value: object) -> None:
    """These were exported with exit 0 (copied into the manifest) or ended in a TypeError."""
    root = _project_with_a_mask(tmp_path)
    index = json.loads((root / "project.json").read_text())
    index["items"][0][field] = value
    (root / "project.json").write_text(json.dumps(index))
    rc = main(["export", "--project", str(root), "--out", str(tmp_path / "set")])
    _one_line(capsys, rc, "project.json", "key" if field == "key" else field)
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("option", [["--set", "lr=-1"], ["--set", "lr=nan"], ["--threads", "-1"],
                                    ["--set", "momentum=-0.5"]])
def test_options_out_of_their_range_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                option: list[str]) -> None:
    rc = main(["train", "--method", "mil", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"),
               *option])
    _one_line(capsys, rc, "Option")


@pytest.mark.parametrize("change,words", [
    (lambda m: m["tiles"][0].__setitem__("item", "nope"), "does not list"),
    (lambda m: m["tiles"][0].__setitem__("item_box", [0, 0, 999, 999]), "outside its item"),
    (lambda m: m["tiles"][0]["files"].__setitem__("mask", 3), "expected a path"),
    (lambda m: m["items"][0].__setitem__("region", "x"), "region"),
    (lambda m: m["items"][0].__setitem__("downsample", "x"), "downsample"),
    (lambda m: m.__setitem__("project", {"root": "/elsewhere"}), "--data"),
])
def test_a_damaged_manifest_record_is_refused_before_anything_is_written(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        change, words: str) -> None:  # noqa: ANN001
    root = _project_with_a_mask(tmp_path)
    assert main(["export", "--project", str(root), "--out", str(tmp_path / "set")]) == 0
    capsys.readouterr()
    m = json.loads((tmp_path / "set" / "manifest.json").read_text())
    change(m)
    (tmp_path / "set" / "manifest.json").write_text(json.dumps(m))
    rc = main(["import", str(tmp_path / "set"), "--project", str(tmp_path / "new.wsss"), "--no-verify"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error:" in ln]  # after progress lines, when reading had begun
    assert rc == 2 and len(errors) == 1 and words in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "new.wsss").exists()


def test_train_on_an_exported_set_takes_the_classes_its_manifest_names(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``napari-wsss train --data EXPORT`` without --schema refused a gland set ("label [1 1] has 2 digits; the class
    schema has 4 foreground classes"), though the Train widget reads the set's classes from its manifest.json."""
    import numpy as np
    from PIL import Image

    from napari_wsss.classes import GLAS
    from napari_wsss.events import run_to_end
    from napari_wsss.export.training_set import export_project
    from napari_wsss.models.card import load_card

    tiles = tmp_path / "glands"
    tiles.mkdir()
    project = Project.open(tiles, GLAS)
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(150, 220, (48, 48, 3), dtype=np.uint8)
        cm = np.full((48, 48), GLAS.index_of("non-gland"), np.uint8)
        cm[8:24 + i, 8:30] = GLAS.index_of("gland")
        Image.fromarray(img).save(tiles / f"g{i}.png")
        project.register([{"key": f"g{i}", "image": f"g{i}.png"}])
        project.save_correction(f"g{i}", cm, np.ones((48, 48), bool))
    out = run_to_end(export_project(project.root, tmp_path / "glands-export"))
    rc = main(["train", "--data", str(out), "--out", str(tmp_path / "m"), "--epochs", "1", "--input-size", "32",
               "--batch-size", "4", "--backbone", "small_cnn", "--device", "cpu", "--no-eval"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"classes glas, as {out / 'manifest.json'} says" in err
    assert load_card(tmp_path / "m").class_schema.foreground_names == ["gland", "non-gland"]
