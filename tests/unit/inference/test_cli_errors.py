"""The CLI's error boundary: system errors (permissions, a folder where a file goes) are one line, not a
traceback; --debug shows the traceback."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsss.cli import main


def test_json_onto_a_folder_is_one_line(tmp_path, capsys, tiny_dataset):
    """`evaluate --json` naming a folder raised IsADirectoryError as a traceback before (after evaluating)."""
    from napari_wsss.resources import default_model_dir

    (tmp_path / "out").mkdir()
    rc = main(["evaluate", "--model", str(default_model_dir()), "--data", str(tiny_dataset / "test"), "--json",
               str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a folder; give a file name" in err


def test_system_errors_name_the_target(tmp_path):
    """A rename onto a folder names the folder (the target), not the temporary file it came from."""
    from napari_wsss.atomic import atomic_write_json
    from napari_wsss.cli import error_message

    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        atomic_write_json(tmp_path / "out", {})
    msg = error_message(info.value)
    assert msg.startswith("Is a directory: ") and msg.split(": ")[1].split(" ")[0] == str(tmp_path / "out")
    assert "a file was expected there" in msg


def test_permission_and_memory_errors_are_one_line(monkeypatch, capsys):
    """A read-only output (PermissionError; tests run as root, which ignores permissions, so it is raised here)
    and MemoryError reach the user as one line each, not a traceback."""
    import napari_wsss.commands.generate as gen

    def denied(args):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied", "/data/read-only/set")

    monkeypatch.setattr(gen, "run", denied)  # add_parser binds the module's run when the parser is built
    assert main(["generate", "/data/read-only/set"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("napari-wsss generate: error: Permission denied: /data/read-only/set (check the folder's "
                   "permissions or choose another output)")
    from napari_wsss.cli import error_message

    assert "not enough memory" in error_message(MemoryError())


def test_debug_shows_the_traceback(tmp_path, tiny_dataset):
    from napari_wsss.resources import default_model_dir

    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        main(["--debug", "evaluate", "--model", str(default_model_dir()), "--data", str(tiny_dataset / "test"),
              "--json", str(tmp_path / "out")])


def test_predict_skips_a_bad_image_among_good_ones_and_says_so(tiny_dataset, tmp_path, capsys):
    """One damaged file in a folder: every good tile still gets its mask, the bad one is named, exit code 2
    (before: the run stopped at the bad file with some masks written and the rest not)."""
    import shutil

    folder = shutil.copytree(tiny_dataset / "test" / "img", tmp_path / "tiles")
    good = sorted(p.stem for p in folder.iterdir())
    (folder / f"{good[0]}x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # sorts among the good ones
    out = tmp_path / "masks"
    rc = main(["predict", str(folder), "-o", str(out), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{good[0]}x.png" in err and "skipped" in err and "Traceback" not in err
    assert sorted(p.stem for p in out.iterdir()) == good


def test_json_onto_an_existing_file_needs_overwrite(tmp_path, capsys, tiny_dataset):
    """`evaluate --json` replaced any file of that name without a word."""
    from napari_wsss.resources import default_model_dir

    (tmp_path / "s.json").write_text("mine")
    args = ["evaluate", "--model", str(default_model_dir()), "--data", str(tiny_dataset / "test"), "--json",
            str(tmp_path / "s.json")]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "s.json").read_text() == "mine"


def test_predict_output_suffix_the_input_cannot_make(tmp_path):
    """Before: `predict SLIDE -o out.png` wrote a folder named out.png holding SLIDE.zarr (and a tile folder with
    -o out.png a folder of PNGs named out.png); now the suffix is refused with what to give."""
    from napari_wsss.commands.predict import check_outputs

    with pytest.raises(ValueError, match=r"zarr label pyramid, not a \.png file; give -o .*t\.zarr"):
        check_outputs(tmp_path / "s.svs", tmp_path / "t.png", slide=True, overwrite=False)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="one PNG class map per tile, into a folder"):
        check_outputs(tiles, tmp_path / "out.png", slide=False, overwrite=False)
    check_outputs(tmp_path / "s.svs", tmp_path / "t.zarr", slide=True, overwrite=False)  # the right forms pass
    check_outputs(tmp_path / "s.svs", tmp_path / "results", slide=True, overwrite=False)
    check_outputs(tiles, tmp_path / "masks", slide=False, overwrite=False)
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "out.png").exists()


def test_predict_on_a_mask_alone_says_nothing_was_written(tmp_path, capsys):
    """A GlaS mask given to predict by mistake: it is called a mask, and the message no longer says 'the other
    masks were written' when there were no others."""
    from PIL import Image

    mask = np.zeros((40, 50), np.uint8)
    mask[5:20] = 255
    Image.fromarray(mask).save(tmp_path / "train_1.png")
    rc = main(["predict", str(tmp_path / "train_1.png"), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "looks like a mask" in err and err.endswith("Nothing was written; give H&E images (RGB).")
    assert "other masks" not in err and not (tmp_path / "out.png").exists()
