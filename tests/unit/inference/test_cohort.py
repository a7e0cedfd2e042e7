"""Cohort runner core on an in-process Dask cluster: summaries, skip-if-finished, failure isolation, GeoJSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_wsss.classes import ClassSchema
from napari_wsss.data.slide_list import list_slides
from napari_wsss.events import run_to_end
from napari_wsss.inference.cohort import CohortOptions, run_cohort
from napari_wsss.inference.cohort_cluster import WorkerPlan, plan_workers, worker_specs
from napari_wsss.inference.cohort_outputs import MANIFEST, read_manifest, read_summary

from .conftest import make_slides


@pytest.fixture(scope="module")
def client():
    """Two single-threaded workers in this process (threads: no process start-up, same code path)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            Client(cl) as c:
        yield c


def test_cohort_summaries_manifest_and_skip(client, tiny_model: Path, tmp_path: Path) -> None:
    slides = make_slides(tmp_path / "slides", 3)
    out = tmp_path / "out"
    res = run_to_end(run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client))
    assert [e["status"] for e in res.entries] == ["done"] * 3
    m = read_manifest(out)
    assert m["counts"]["done"] == 3 and m["finished"] is True
    for s in slides:
        summ = read_summary(out / s.stem)
        root = zarr.open_group(str(out / s.stem / "labels.zarr"), mode="r")
        assert root.attrs["complete"] is True
        lab = np.asarray(root["labels/0"][:])
        assert lab.shape == (384, 512) == tuple(summ["shape"])
        counts = np.bincount(lab.ravel(), minlength=5)
        # class areas are the label counts times the pixel area (1 um/px generated slides: 1e-6 mm^2 per pixel)
        assert summ["mpp"] == 1.0
        assert [c["pixels"] for c in summ["classes"]] == counts[1:].tolist()
        assert [c["area_mm2"] for c in summ["classes"]] == pytest.approx((counts[1:] * 1e-6).tolist())
        assert summ["tissue"]["pixels"] == counts[1:].sum() > 0
        assert len(summ["model"]["sha256"]) == 64 and summ["model"]["name"] == "tiny-sshr"
    before = {s.stem: (out / s.stem / "summary.json").stat().st_mtime_ns for s in slides}
    # a rerun redoes nothing: every slide is finished by the same model
    res2 = run_to_end(run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client))
    assert [e["status"] for e in res2.entries] == ["skipped"] * 3
    assert before == {s.stem: (out / s.stem / "summary.json").stat().st_mtime_ns for s in slides}


def test_corrupt_slide_fails_alone(client, tiny_model: Path, tmp_path: Path) -> None:
    make_slides(tmp_path / "slides", 2)
    (tmp_path / "slides" / "broken.svs").write_bytes(b"II*\x00" + bytes(range(256)) * 8)  # a truncated "TIFF"
    out = tmp_path / "out"
    res = run_to_end(run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client))
    status = {e["name"]: e for e in res.entries}
    assert status["broken"]["status"] == "failed" and "broken.svs" in status["broken"]["error"]
    assert "\n" not in status["broken"]["error"]
    assert status["slide0"]["status"] == status["slide1"]["status"] == "done"
    assert not (out / "broken").exists()  # nothing half-written under its name
    assert json.loads((out / MANIFEST).read_text())["counts"]["failed"] == 1


def test_other_model_needs_overwrite(client, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    make_slides(tmp_path / "slides", 1, shape=(256, 256))
    out = tmp_path / "out"
    slides = list_slides([tmp_path / "slides"])
    run_to_end(run_cohort(slides, tiny_model, out, client))
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    card = json.loads((other / "card.json").read_text())
    card["name"] = "other-model"
    (other / "card.json").write_text(json.dumps(card))
    first = (out / "slide0" / "summary.json").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_to_end(run_cohort(slides, other, out, client))
    assert (out / "slide0" / "summary.json").read_bytes() == first  # untouched
    res = run_to_end(run_cohort(slides, other, out, client, CohortOptions(overwrite=True)))
    assert res.entries[0]["status"] == "done"
    assert read_summary(out / "slide0")["model"]["name"] == "other-model"


def test_geojson_in_level0_pixels(client, tiny_model: Path, tmp_path: Path) -> None:
    """Segmenting level 1 still gives level-0 polygons that rasterise back onto the labels (scaled 2x)."""
    from napari_wsss.export.vectors import read_geojson_class_map

    make_slides(tmp_path / "slides", 1, shape=(512, 512))
    out = tmp_path / "out"
    res = run_to_end(run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client,
                                CohortOptions(level=1, geojson=True)))
    assert res.entries[0]["geojson"] == "geojson/slide0.geojson"
    root = zarr.open_group(str(out / "slide0" / "labels.zarr"), mode="r")
    schema = ClassSchema.from_dict(root.attrs["schema"])
    lab1 = np.asarray(root["labels/0"][:])  # level-1 labels, 256 x 256
    assert lab1.shape == (256, 256)
    cm0, _ = read_geojson_class_map(out / "geojson" / "slide0.geojson", schema, (512, 512))
    expected = np.repeat(np.repeat(schema.from_labels(lab1), 2, 0), 2, 1)
    assert (cm0 == expected).mean() > 0.95
    # the GeoJSON of a finished slide is added on a rerun that asks for it (no re-segmentation)
    (out / "geojson" / "slide0.geojson").unlink()
    res = run_to_end(run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client,
                                CohortOptions(level=1, geojson=True)))
    assert res.entries[0]["status"] == "skipped" and (out / "geojson" / "slide0.geojson").is_file()


def test_gpu_workers_pinned_one_per_device() -> None:
    plan = plan_workers(None, None, cpus=16, n_gpus=2)
    assert plan == WorkerPlan(2, 4, (0, 1))  # one worker per GPU, a few host threads each
    specs = worker_specs(plan_workers(4, "cuda", cpus=16, n_gpus=2))
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["0", "1", "0", "1"]
    assert all(s["options"]["nthreads"] == 1 for s in specs.values())
    cpu = plan_workers(3, "cpu", cpus=6, n_gpus=2)
    assert cpu == WorkerPlan(3, 2, (None, None, None))
    assert all("CUDA_VISIBLE_DEVICES" not in s["options"]["env"] for s in worker_specs(cpu).values())
    with pytest.raises(ValueError, match="at least 1"):
        plan_workers(0, None)


def test_stop_keeps_finished_slides(client, tiny_model: Path, tmp_path: Path) -> None:
    """A stop request (the GUI's Cancel) ends the run at the next check; the manifest says what is finished."""
    from napari_wsss.events import Cancelled

    make_slides(tmp_path / "slides", 3, shape=(256, 256))
    out = tmp_path / "out"
    seen = []

    def stop() -> bool:
        return bool(seen) and seen[-1].step >= 1  # after the first finished slide

    gen = run_cohort(list_slides([tmp_path / "slides"]), tiny_model, out, client, should_stop=stop)
    with pytest.raises(Cancelled, match="finished slides are kept"):
        while True:
            seen.append(next(gen))
    m = read_manifest(out)
    finished = [e["name"] for e in m["slides"] if e["status"] == "done"]
    assert finished and m["finished"] is False
    assert all(read_summary(out / n) is not None for n in finished)
