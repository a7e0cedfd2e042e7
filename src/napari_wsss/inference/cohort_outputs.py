"""What a cohort run leaves on disk, and how a rerun knows what is finished.

Layout of ``--out DIR``::

    DIR/cohort.json               the run's manifest: every slide with status done / skipped / failed / pending
    DIR/<name>/labels.zarr        the slide's label pyramid (``segment_slide``'s zarr group)
    DIR/<name>/summary.json       class areas (mm^2), tissue area, slide mpp, model name + sha256, time
    DIR/geojson/<name>.geojson    with --geojson: class polygons in slide level-0 pixels, for QuPath

``DIR/<name>`` is built in a hidden folder beside it and renamed into place when both files are written
(``atomic.atomic_dir``), so a slide's folder exists only when it is complete: a run killed at any moment leaves
finished slides whole and nothing half-written under a slide's name. A slide is *finished* when its
``summary.json`` names the same model weights (sha256), the same segmentation options and a slide file of the
same size.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json
from ..classes import ClassSchema

MANIFEST = "cohort.json"
SUMMARY = "summary.json"
LABELS = "labels.zarr"
GEOJSON_DIR = "geojson"
SUMMARY_FORMAT = "napari-wsss slide summary"
MANIFEST_FORMAT = "napari-wsss cohort"
STATUSES = ("pending", "done", "skipped", "failed")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def model_identity(model_dir: str | Path) -> dict[str, Any]:
    """Name, method and a sha256 over ``card.json`` + ``weights.pt``: what "the same model" means for a rerun."""
    from ..models.card import CARD_FILE, WEIGHTS_FILE, load_card

    model_dir = Path(model_dir)
    card = load_card(model_dir)
    h = hashlib.sha256()
    for f in (CARD_FILE, WEIGHTS_FILE):
        with open(model_dir / f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return {"name": card.name or model_dir.name, "method": card.method, "backbone": card.backbone,
            "created": card.created, "path": str(model_dir.resolve()), "sha256": h.hexdigest()}


def read_summary(slide_dir: Path) -> dict[str, Any] | None:
    """The slide's summary, or None when absent or unreadable (then the slide is not finished)."""
    try:
        s = json.loads((slide_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return s if isinstance(s, dict) and s.get("format") == SUMMARY_FORMAT else None


def finished_by(slide_dir: Path, slide: Path, model: dict[str, Any], options: dict[str, Any]) -> bool:
    """Whether ``slide_dir`` holds a complete result of ``slide`` by ``model`` with ``options``."""
    s = read_summary(slide_dir)
    if s is None or not (slide_dir / LABELS).is_dir():
        return False
    try:
        size = slide.stat().st_size
    except OSError:
        size = None
    return (s.get("model", {}).get("sha256") == model["sha256"] and s.get("options") == options
            and s.get("slide_bytes") == size)


def label_counts(labels: Any, n_labels: int) -> np.ndarray:
    """(n_labels,) int64 pixel count of each label value in a 2-D (zarr) label array, read band by band."""
    counts = np.zeros(n_labels, np.int64)
    step = int(labels.chunks[0]) if hasattr(labels, "chunks") else 1024
    for y in range(0, int(labels.shape[0]), max(1, step)):
        band = np.asarray(labels[y: y + step])
        counts += np.bincount(band.ravel(), minlength=n_labels)[:n_labels]
    return counts


def slide_summary(*, slide: Path, name: str, shape: tuple[int, int], mpp: float | None, level: int,
                  downsample: float, labels0: Any, schema: ClassSchema, model: dict[str, Any],
                  options: dict[str, Any], seconds: float, windows: tuple[int, int],
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of one segmented slide (written as ``summary.json``).

    Areas: each label pixel of the segmented level covers ``(mpp * downsample)^2`` um^2; mm^2 fields are None
    when the slide does not state its pixel size (pixel counts are always given).
    """
    from .. import __version__

    counts = label_counts(labels0, schema.n_foreground + 1)
    px_mm2 = (mpp * downsample) ** 2 / 1e6 if mpp else None
    tissue_px = int(counts[1:].sum())

    def mm2(px: int) -> float | None:
        return round(px * px_mm2, 6) if px_mm2 is not None else None

    classes = [{"name": c.name, "label": c.index + 1, "pixels": int(counts[c.index + 1]),
                "area_mm2": mm2(int(counts[c.index + 1])),
                "fraction_of_tissue": round(int(counts[c.index + 1]) / tissue_px, 6) if tissue_px else 0.0}
               for c in schema.foreground]
    try:
        size = slide.stat().st_size
    except OSError:
        size = None
    return {
        "format": SUMMARY_FORMAT, "version": 1, "name": name, "slide": str(slide.resolve()), "slide_bytes": size,
        "shape": [int(shape[0]), int(shape[1])], "mpp": mpp, "level": level, "downsample": downsample,
        "level_mpp": mpp * downsample if mpp else None, "labels": LABELS,
        "tissue": {"pixels": tissue_px, "area_mm2": mm2(tissue_px)},
        "classes": classes, "schema": schema.name,
        "model": model, "options": options,
        "windows_predicted": int(windows[0]), "windows_skipped": int(windows[1]),
        "seconds": round(seconds, 3), "finished": now(), "napari_wsss": __version__, **(extra or {}),
    }


def write_manifest(out: Path, entries: list[dict[str, Any]], model: dict[str, Any], options: dict[str, Any],
                   started: str, finished: bool) -> Path:
    """Write ``out/cohort.json`` atomically (a reader never sees half of it)."""
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    return atomic_write_json(out / MANIFEST, {
        "format": MANIFEST_FORMAT, "version": 1, "model": model, "options": options, "started": started,
        "updated": now(), "finished": finished, "counts": counts, "slides": entries})


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a cohort output folder.

    Raises:
        FileNotFoundError / ValueError: no manifest there, or not one of ours.
    """
    p = Path(out) / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; give the --out folder of a cohort run.")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p} is not valid JSON ({e}); rerun the cohort to rewrite it.") from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("slides"), list):
        raise ValueError(f"{p} is not a napari-wsss cohort manifest; give the --out folder of a cohort run.")
    return m


def write_slide_geojson(slide_dir: Path, dst: Path) -> Path:
    """Class polygons of a finished slide's labels as GeoJSON in slide level-0 pixels (see
    ``export.label_vectors``), with the slide, model and pixel size in the collection's properties."""
    from ..export.label_vectors import write_label_pyramid_geojson

    summary = read_summary(slide_dir)
    if summary is None:
        raise ValueError(f"{slide_dir} holds no finished slide result; segment it first.")
    return write_label_pyramid_geojson(slide_dir / LABELS, dst, float(summary["downsample"]), item=summary["name"],
                                       slide=summary["slide"], name=summary["name"], model=summary["model"]["name"],
                                       model_sha256=summary["model"]["sha256"], mpp=summary["mpp"])
