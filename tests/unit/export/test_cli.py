"""`napari-wsss export` / `napari-wsss import`: the headless twins of the Export widget."""

from __future__ import annotations

import json

import numpy as np

from napari_wsss.classes import LUAD_HISTOSEG as S
from napari_wsss.cli import main
from napari_wsss.data.tiles import read_mask
from napari_wsss.export.vectors import class_map_to_features, write_geojson

from .conftest import blob_mask


def test_export_then_import(tile_project, tmp_path, capsys) -> None:
    out = tmp_path / "set"
    rc = main(["export", "--project", str(tile_project.source), "--out", str(out), "--format", "png", "labels",
               "--filter", "all", "--tile-size", "16", "--overlap", "4"])
    assert rc == 0 and (out / "manifest.json").is_file()
    assert main(["export", "--project", str(tile_project.root), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["import", str(out), "--project", str(tmp_path / "copy.wsss"), "--data", tile_project.source]) == 0
    from napari_wsss.store import Project

    copy = Project.load(tmp_path / "copy.wsss")
    for it in tile_project.items():
        assert np.array_equal(copy.load_mask(it.key), tile_project.load_mask(it.key))


def test_import_geojson_to_mask(tmp_path, rng, capsys) -> None:
    cm = blob_mask(rng, (32, 40))
    write_geojson(tmp_path / "a.geojson", class_map_to_features(cm, S, origin=(100, 200)))
    rc = main(["import", str(tmp_path / "a.geojson"), "--out", str(tmp_path / "m.png"), "--shape", "32", "40",
               "--origin", "100", "200"])
    assert rc == 0
    assert (read_mask(tmp_path / "m.png", S) != cm).mean() < 0.05
    assert main(["import", str(tmp_path / "a.geojson"), "--out", str(tmp_path / "m.png")]) == 2
    assert main(["import", str(tmp_path / "nope.geojson"), "--out", str(tmp_path / "n.png")]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "does not exist" in err
    json.loads((tmp_path / "a.geojson").read_text())


def test_export_full_disk_is_a_clear_error(tile_project, tmp_path, monkeypatch, capsys) -> None:
    import tempfile

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    assert main(["export", "--project", str(tile_project.root), "--out", str(tmp_path / "set")]) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and str(tmp_path / "set") in err and "Traceback" not in err
    assert not (tmp_path / "set").exists()


import pytest  # noqa: E402


@pytest.mark.parametrize("part,field,value,words", [
    ("items", "key", "../evil", ["'../evil'"]),  # before: the item was skipped, exit 0
    ("items", "key", 7, ["key 7"]),
    ("items", "shape", "x", ["shape 'x'", "[H, W]"]),  # before: a TypeError from deep inside
    ("tiles", "item_box", [-5, -5, 10, 10], ["item_box", "[-5, -5, 10, 10]"]),  # before: numpy's broadcast error
])
def test_import_refuses_malformed_records_naming_them(tile_project, tmp_path, capsys, part, field, value,
                                                      words) -> None:
    out = tmp_path / "set"
    assert main(["export", "--project", str(tile_project.root), "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    m[part][0][field] = value
    (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["import", str(out), "--project", str(tmp_path / "copy.wsss"), "--no-verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Nothing was imported" in err and "--debug" not in err, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "copy.wsss").exists()


def test_import_geojson_warns_about_polygons_left_out(tmp_path, capsys) -> None:
    te = {"classification": {"name": "TE"}}
    feats = [{"type": "Feature", "properties": te, "geometry": {"type": "Polygon", "coordinates": [ring]}}
             for ring in ([[0, 0], [8, 0], [8, 8], [0, 0]], [[90, 90], [99, 90], [99, 99], [90, 90]])]
    (tmp_path / "a.geojson").write_text(json.dumps(feats))
    rc = main(["import", str(tmp_path / "a.geojson"), "--out", str(tmp_path / "m.png"), "--shape", "16", "16"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: 1 of 2 polygon(s) fill no pixel" in err
    assert (read_mask(tmp_path / "m.png", S) == S.index_of("TE")).any()
