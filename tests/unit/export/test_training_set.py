"""export_project: layouts, loadable training sets, manifest hashes, round trips through import_set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG as S
from napari_wsss.data.tiles import list_mask_pairs, list_training_tiles, read_mask
from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.export.imports import import_set
from napari_wsss.export.manifest import check_manifest, sha256_file, verify_manifest
from napari_wsss.export.training_set import export_project
from napari_wsss.export.vectors import features_to_class_map, read_geojson
from napari_wsss.store import Project


def export(project, out, **kw):
    return run_to_end(export_project(project.root, out, **kw))


def test_tiles_export_loads_as_training_and_eval_set(tile_project, tmp_path) -> None:
    out = export(tile_project, tmp_path / "set", formats=["png", "labels", "geojson"], filter="reviewed")
    m = json.loads((out / "manifest.json").read_text())
    assert {t["status"] for t in m["tiles"]} == {"accepted", "corrected"} and len(m["tiles"]) == 2
    pairs = list_mask_pairs(out)
    assert len(pairs) == 2
    for p in pairs:  # mask = the project's current mask
        key = next(t["item"] for t in m["tiles"] if t["files"]["mask"] == f"mask/{p.mask.name}")
        assert np.array_equal(read_mask(p.mask, S), tile_project.load_mask(key))
    by_name = list_training_tiles(out / "training", S)
    by_csv = list_training_tiles(out / "img", S, labels_csv=out / "labels.csv")
    assert sorted(t.labels.tolist() for t in by_name) == sorted(t.labels.tolist() for t in by_csv)
    for t in by_csv:
        mask = read_mask(out / "mask" / t.path.name, S)
        assert t.labels.tolist() == [int((mask == i).any()) for i in range(S.n_foreground)]
    # names lose the source's old label group; the training/ name carries the new one
    assert all("[" not in t["name"] for t in m["tiles"])
    corrected = next(t for t in m["tiles"] if t["status"] == "corrected")
    assert corrected["corrected"] and 0 < corrected["touched_fraction"] < 1 and corrected["model"] == "v1"
    assert corrected["source"]["image"].endswith("t1-[1 0 0 1].png")
    assert m["schema"] == S.to_dict() and m["geojson"] == ["geojson/t0-[1 0 0 1].geojson",
                                                            "geojson/t1-[1 0 0 1].geojson"]


def test_manifest_matches_files(tile_project, tmp_path) -> None:
    out = export(tile_project, tmp_path / "set", formats=["tiff", "labels", "geojson"], filter="all")
    m = check_manifest(out)
    assert len(m["tiles"]) == 3
    for t in m["tiles"]:
        for rel in t["files"].values():
            assert m["files"][rel] == sha256_file(out / rel)
    assert set(m["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*")
                               if p.is_file() and p.name != "manifest.json"}
    assert verify_manifest(out) == []
    (out / "mask" / next(iter(p.name for p in (out / "mask").iterdir()))).write_bytes(b"x")
    (out / "extra.txt").write_text("x")
    problems = verify_manifest(out)
    assert any(p.startswith("changed") for p in problems) and any("extra.txt" in p for p in problems)
    with pytest.raises(ValueError, match="do not match"):
        check_manifest(out)


def test_round_trip_into_a_new_project(tile_project, tmp_path) -> None:
    out = export(tile_project, tmp_path / "set", formats=["png"], filter="all")
    new = run_to_end(import_set(out, tmp_path / "copy.wsss", source=tile_project.source))
    for it in tile_project.items():
        got = new.item(it.key)
        assert np.array_equal(new.load_mask(it.key), tile_project.load_mask(it.key))
        assert (got.status, got.model, got.image) == (it.status, it.model, it.image)
        assert got.touched_fraction == pytest.approx(it.touched_fraction)


def test_slide_export_tiled_and_round_trip(slide_project, tmp_path) -> None:
    out = export(slide_project, tmp_path / "set",
                 formats=["png", "labels", "geojson", "ome-zarr", "pyramidal-tiff"], tile_size=16, overlap=4)
    m = check_manifest(out)
    assert all(np.shape(read_mask(out / t["files"]["mask"], S)) == (16, 16) for t in m["tiles"])
    assert len(list_training_tiles(out / "training", S)) == len(m["tiles"])
    # regions are level-0 pixels; a tile at level 1 covers 32 level-0 pixels
    t = m["tiles"][0]
    y0, x0, y1, x1 = t["source"]["region"]
    assert (y1 - y0, x1 - x0) == (32, 32) and t["source"]["level"] == 1
    # GeoJSON in level-0 (x, y) rasterises back onto each region's mask
    feats = read_geojson(out / "geojson" / "slide.geojson")
    for it in slide_project.items():
        y0, x0, y1, x1, _ = it.region
        mine = [f for f in feats if f["properties"]["item"] == it.key]
        cm = features_to_class_map(mine, S, ((y1 - y0) // 2, (x1 - x0) // 2), (y0, x0), 2.0)
        assert (cm != slide_project.load_mask(it.key)).mean() < 0.05
    # the whole-slide label images have the slide's level-0 size (128x96), each level-1 region upsampled, so
    # they overlay the slide (a level-1 base was half the slide's size before)
    import tifffile
    import zarr

    z = np.asarray(zarr.open_group(str(out / "slides" / "slide.ome.zarr"), mode="r")["0"][...])
    tif = tifffile.imread(out / "slides" / "slide.labels.tif")
    assert z.shape == tif.shape == (128, 96) and np.array_equal(z, tif)
    # ... and carry the slide's pixel size (0.5 um/px): OME-NGFF scales in micrometres, TIFF resolution tags
    ms = json.loads((out / "slides" / "slide.ome.zarr" / ".zattrs").read_text())["multiscales"][0]
    assert ms["axes"][0]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.5]
    with tifffile.TiffFile(out / "slides" / "slide.labels.tif") as tf:
        xres = tf.pages[0].tags["XResolution"].value
        assert tf.pages[0].tags["ResolutionUnit"].value == 3 and xres[0] / xres[1] == pytest.approx(2e4)
    assert m["slides"][0]["mpp"] == 0.5
    for it in slide_project.items():
        y0, x0, y1, x1, _ = it.region
        up = np.repeat(np.repeat(S.to_labels(slide_project.load_mask(it.key)), 2, 0), 2, 1)
        assert np.array_equal(z[y0:y1, x0:x1], up)
    # back into a fresh project: the same masks (tiles overlap; glass-only tiles were skipped)
    new = run_to_end(import_set(out, tmp_path / "copy.wsss", source=slide_project.source))
    for it in slide_project.items():
        assert np.array_equal(new.load_mask(it.key), slide_project.load_mask(it.key))
        assert new.item(it.key).region == it.region


def test_slide_export_at_another_level(slide_project, tmp_path) -> None:
    out = export(slide_project, tmp_path / "set", formats=["png"], level=0)
    m = check_manifest(out)
    shapes = sorted(read_mask(out / t["files"]["mask"], S).shape for t in m["tiles"])
    assert shapes == [(32, 32), (64, 64)]
    new = run_to_end(import_set(out, tmp_path / "copy.wsss", source=slide_project.source))
    for it in slide_project.items():
        assert np.array_equal(new.load_mask(it.key), slide_project.load_mask(it.key))


def test_geojson_only_set_imports(slide_project, tmp_path) -> None:
    out = export(slide_project, tmp_path / "set", formats=["geojson"])
    new = run_to_end(import_set(out, tmp_path / "copy.wsss", source=slide_project.source))
    for it in slide_project.items():
        assert (new.load_mask(it.key) != slide_project.load_mask(it.key)).mean() < 0.05


def test_import_refuses_to_replace_reviewed_work(tile_project, tmp_path) -> None:
    out = export(tile_project, tmp_path / "set", formats=["png"], filter="accepted")
    key = next(it.key for it in tile_project.items() if it.status == "accepted")
    changed = tile_project.load_mask(key).copy()
    changed[:] = 0
    tile_project.save_correction(key, changed, np.ones(changed.shape, bool))
    before = (tile_project.root / "project.json").read_text()
    with pytest.raises(ValueError, match="nothing was imported"):
        run_to_end(import_set(out, tile_project.root))
    assert (tile_project.root / "project.json").read_text() == before
    proj = run_to_end(import_set(out, tile_project.root, overwrite=True))
    assert proj.item(key).status == "accepted" and not np.array_equal(proj.load_mask(key), changed)


# -- errors: clear messages, nothing half-written -------------------------------------------------------------
def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_refuses_non_empty_target_unless_told(tile_project, tmp_path) -> None:
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        export(tile_project, out)
    assert (out / "keep.txt").read_text() == "mine" and not _leftovers(tmp_path)
    export(tile_project, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()


@pytest.mark.parametrize("kw, match", [
    ({"formats": ["jpeg"]}, "Unknown export format"),
    ({"formats": ["png", "tiff"]}, "one tile format"),
    ({"filter": "some"}, "Unknown filter"),
    ({"tile_size": 16, "overlap": 16}, "Overlap"),
    ({"tile_size": 3}, "Tile size"),
])
def test_bad_options(tile_project, tmp_path, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        export(tile_project, tmp_path / "set", **kw)
    assert not (tmp_path / "set").exists()


def test_bad_paths(tile_project, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="No annotation project"):
        run_to_end(export_project(tmp_path / "nowhere", tmp_path / "set"))
    with pytest.raises(ValueError, match="inside the project"):
        export(tile_project, tile_project.root / "export")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export(tile_project, tmp_path / "file")
    with pytest.raises(ValueError, match="Nothing to export"):
        run_to_end(export_project(_empty_project(tmp_path), tmp_path / "set"))
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        run_to_end(import_set(tmp_path, tmp_path / "p.wsss"))
    # the data folder works as well as its project folder
    assert export(Project.load(tile_project.root), tmp_path / "ok").is_dir()
    assert run_to_end(export_project(tile_project.source, tmp_path / "ok2")).is_dir()


def test_nothing_to_export_from_a_tagged_project_says_why(tmp_path) -> None:
    """Before: `export --filter all` on a project holding only tags said 'no item with a mask is all ... choose
    filter 'all''; now it says no item has a mask and how tags are used."""
    root = _empty_project(tmp_path)
    (tmp_path / "empty" / "t.png").write_bytes(b"")
    project = Project.load(root)
    project.set_tags("t", ["TE"], image=str(tmp_path / "empty" / "t.png"))
    with pytest.raises(ValueError, match=r"no item has a mask yet \(1 items: 1 unreviewed, 0 corrected, 0 accepted, "
                                         r"1 tagged\)\. Segment and review.*train --project") as e:
        run_to_end(export_project(root, tmp_path / "set", filter="all"))
    assert "filter 'all'" not in str(e.value)
    with pytest.raises(ValueError, match=r"no item with a mask is reviewed .*choose filter 'all'"):
        run_to_end(export_project(root, tmp_path / "set"))
    assert not (tmp_path / "set").exists()


def _empty_project(tmp_path):
    (tmp_path / "empty").mkdir()
    return Project.open(tmp_path / "empty").root


@pytest.mark.parametrize("err", [28, 13])  # ENOSPC, EACCES
def test_write_failure_leaves_nothing(tile_project, tmp_path, monkeypatch, err) -> None:
    import errno
    import os

    from PIL import Image

    calls = {"n": 0}
    real_save = Image.Image.save

    def failing_save(self, fp, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # part-way through the set
            raise OSError(err, os.strerror(err))
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="Cannot write the export to .*set.*Nothing was written") as ei:
        export(tile_project, tmp_path / "set", filter="all")
    assert ei.value.errno == err
    assert ("disk is full" in str(ei.value)) == (err == errno.ENOSPC)
    assert not (tmp_path / "set").exists() and not _leftovers(tmp_path)


def test_readonly_target(tile_project, tmp_path, monkeypatch) -> None:
    import os

    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: make the folder creation fail as it would for a user
        import tempfile

        def denied(*a, **k):
            raise PermissionError(13, "Permission denied", str(parent))

        monkeypatch.setattr(tempfile, "mkdtemp", denied)
    else:
        parent.chmod(0o555)
    try:
        with pytest.raises(OSError, match="read-only"):
            export(tile_project, parent / "set")
    finally:
        parent.chmod(0o755)
    assert list(parent.iterdir()) == []


def test_cancel_leaves_nothing(tile_project, tmp_path) -> None:
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        run_to_end(export_project(tile_project.root, tmp_path / "set", filter="all",
                                  should_stop=lambda: next(calls) >= 2))
    assert not (tmp_path / "set").exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_exported_set_feeds_the_training_datasets(tile_project, tmp_path, fmt) -> None:
    from napari_wsss.data.datasets import TileLabelDataset, TileMaskDataset
    from napari_wsss.data.tiles import read_rgb

    out = export(tile_project, tmp_path / "set", formats=[fmt, "labels"], filter="all")
    for tiles in (list_training_tiles(out / "training", S),
                  list_training_tiles(out / "img", S, labels_csv=out / "labels.csv")):
        ds = TileLabelDataset(tiles, 32, (0.5,) * 3, (0.25,) * 3)
        img, lab = ds[0]
        assert tuple(img.shape) == (3, 32, 32) and tuple(lab.shape) == (S.n_foreground,)
    pairs = list_mask_pairs(out)
    images = np.stack([read_rgb(p.image) for p in pairs])
    masks = np.stack([read_mask(p.mask, S) for p in pairs])
    img, mask = TileMaskDataset(images, masks, (0.5,) * 3, (0.25,) * 3)[0]
    assert tuple(mask.shape) == images.shape[1:3] and int(mask.max()) <= S.background_index


def test_a_reviewed_item_whose_mask_file_is_gone_is_not_dropped_silently(tile_project, tmp_path) -> None:
    """Before: the item left the training set with exit 0 and no note. Now the export is refused, naming it,
    and nothing is written."""
    it = next(i for i in tile_project.items() if i.status in ("corrected", "accepted"))
    tile_project.path("masks", it.key).unlink()
    with pytest.raises(FileNotFoundError, match=f"mask file is missing.*{re.escape(it.key)}"):
        export(tile_project, tmp_path / "set")
    assert not (tmp_path / "set").exists()


def test_a_received_set_cannot_name_paths_outside_itself_nor_choose_the_project(tile_project, tmp_path) -> None:
    """Issue 15 items 5-6: a manifest whose mask path climbs out of the set is refused before anything is read
    or written; without --project/--data the manifest's project.root is not used on its own."""
    out = export(tile_project, tmp_path / "set")
    with pytest.raises(ValueError, match="Say which project"):
        run_to_end(import_set(out))
    manifest = json.loads((out / "manifest.json").read_text())
    secret = tmp_path / "elsewhere.png"
    secret.write_bytes((out / manifest["tiles"][0]["files"]["mask"]).read_bytes())
    manifest["tiles"][0]["files"]["mask"] = "../elsewhere.png"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="outside the set"):
        run_to_end(import_set(out, tmp_path / "copy.wsss", source=tile_project.source, verify=False))
    assert not (tmp_path / "copy.wsss").exists()


def test_a_bad_item_anywhere_in_a_set_imports_nothing(tile_project, tmp_path) -> None:
    """Issue 15 item 7: a bad status on the last item left the others imported; now nothing is written."""
    out = export(tile_project, tmp_path / "set")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["items"][-1]["status"] = "approved"
    (out / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "copy.wsss"
    with pytest.raises(ValueError, match="status 'approved'"):
        run_to_end(import_set(out, target, source=tile_project.source, verify=False))
    assert not target.exists() or not any(Project.load(target).items())
