"""Segment a cohort of slides on a Dask distributed cluster: one task per slide, resumable, failure-isolated.

The client (``run_cohort``) plans the run, submits one :func:`segment_cohort_slide` task per unfinished slide
and is the only writer of the run's manifest (``cohort.json``), rewritten atomically as each slide finishes.
Each task runs on a worker process, loads the model once per process (:func:`_segmenter` keeps it for the next
slide) and writes the slide's folder atomically (see ``cohort_outputs``). A task never raises for a bad slide:
it returns a ``failed`` record with a one-line error, so one corrupt file never stops the others; a worker that
dies (native crash, out of memory) fails only its slide too.

Why Dask distributed: the same client code runs on a local cluster of worker processes (the default), on a
lab's scheduler, dask-jobqueue on SLURM or a Kubernetes Dask cluster (``--scheduler tcp://HOST:PORT``); one
process per slide keeps GPU memory and native crashes contained, and the dashboard shows the cohort live.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.slide_list import CohortSlide
from ..events import Cancelled, Progress, StopFlag, never_stop
from .cohort_outputs import (
    GEOJSON_DIR,
    LABELS,
    MANIFEST,
    SUMMARY,
    finished_by,
    model_identity,
    now,
    slide_summary,
    write_manifest,
    write_slide_geojson,
)


@dataclass(frozen=True)
class CohortOptions:
    """How every slide of the cohort is segmented.

    Attributes:
        level: slide pyramid level to segment (0 = full resolution).
        batch_size: windows per model call.
        device: ``cpu``, ``cuda``, ``mps`` or None (each worker picks its best; GPU workers see one device each).
        stain_normalise, stain_reference: Macenko-normalise each window (as ``predict --stain-normalise``).
        geojson: also write ``geojson/<name>.geojson`` (class polygons in slide level-0 pixels) per slide.
        overwrite: redo slides that are already finished and replace results of another model.
        threads: torch CPU threads per worker process (None: ``NAPARI_WSSS_THREADS`` or what the worker has).
    """

    level: int = 0
    batch_size: int = 8
    device: str | None = None
    stain_normalise: bool = False
    stain_reference: str | None = None
    geojson: bool = False
    overwrite: bool = False
    threads: int | None = None

    def segmentation(self) -> dict[str, Any]:
        """The options that change the labels (a finished slide counts only if these match)."""
        from .slide_segmentation import GLASS_RULE

        # ``glass``: results made before glass around the tissue became background are not counted as finished
        return {"level": self.level, "stain_normalise": self.stain_normalise,
                "stain_reference": str(self.stain_reference) if self.stain_reference else None, "glass": GLASS_RULE}


@dataclass
class CohortResult:
    """What :func:`run_cohort` did: the manifest's path and its slide entries."""

    out: Path
    manifest: Path
    entries: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(e["status"] == status for e in self.entries)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["status"] == "failed"]


# One model per worker process, reused for every slide that process segments (loading costs more than a small
# slide). Keyed on the weights' hash and the options that build it; a new key replaces the old model.
_MODEL_LOCK = threading.Lock()
_MODEL: dict[tuple, Any] = {}


def _segmenter(model: dict[str, Any], opts: CohortOptions) -> Any:
    key = (model["path"], model["sha256"], opts.device, opts.stain_normalise, opts.stain_reference, opts.threads)
    with _MODEL_LOCK:
        if key not in _MODEL:
            _MODEL.clear()
            _set_threads(opts.threads)
            from .segmenter import load_segmenter

            seg = load_segmenter(model["path"], opts.device)
            if opts.stain_normalise:
                from .stain_normalise import with_stain_normalisation

                seg = with_stain_normalisation(seg, opts.stain_reference)
            _MODEL[key] = seg
        return _MODEL[key]


def _set_threads(threads: int | None) -> None:
    n = threads or int(os.environ.get("NAPARI_WSSS_THREADS") or 0)
    if n > 0:
        import torch

        torch.set_num_threads(n)


def _one_line(e: BaseException) -> str:
    """A failure as one line for the manifest (our errors already say what to do)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if not isinstance(e, (ValueError, OSError, KeyError)):
        text = f"{type(e).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM; ``ru_maxrss`` would carry a forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


class LocalReads:
    """A slide level (dask array) whose reads are computed right here, in the calling thread.

    Inside a Dask worker, ``compute()`` would otherwise find the worker's client and ship every window's little
    graph to the scheduler (and fail: a slide's open file handle does not pickle). ``dask.config.set`` cannot
    be used instead: it is process-global, and a worker with several threads runs several slides at once.
    """

    def __init__(self, arr: Any) -> None:
        self.arr = arr

    def __getattr__(self, name: str) -> Any:  # shape, dtype, ndim, chunks, ... of the level
        return getattr(self.arr, name)

    def __getitem__(self, key: Any) -> Any:
        return self.compute(self.arr[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        out = self.compute(self.arr)
        return out if dtype is None else np.asarray(out, dtype=dtype)

    @staticmethod
    def compute(part: Any) -> Any:
        return part.compute(scheduler="synchronous") if hasattr(part, "compute") else part


def segment_cohort_slide(slide: str, name: str, out: str, model: dict[str, Any], options: dict[str, Any]
                         ) -> dict[str, Any]:
    """The task run on a worker for one slide: segment it (unless finished) and return its manifest entry.

    Args:
        slide: the slide file; name: its output name; out: the cohort's output folder.
        model: :func:`cohort_outputs.model_identity` of the model; options: ``asdict(CohortOptions)``.
    Returns: ``{"name", "slide", "status": done | skipped | failed, "error", "seconds", "worker", ...}``;
        never raises for a bad slide.
    """
    opts = CohortOptions(**options)
    t0 = time.perf_counter()
    slide_p, target = Path(slide), Path(out) / name
    rec: dict[str, Any] = {"name": name, "slide": slide, "status": "failed", "error": None,
                           "output": name, "pid": os.getpid()}
    try:
        if not opts.overwrite and finished_by(target, slide_p, model, opts.segmentation()):
            rec["status"] = "skipped"
        else:
            _segment_into_folder(slide_p, name, target, model, opts)
            rec["status"] = "done"
        if opts.geojson:
            dst = Path(out) / GEOJSON_DIR / f"{name}.geojson"
            if rec["status"] == "done" or not dst.is_file():
                write_slide_geojson(target, dst)
            rec["geojson"] = f"{GEOJSON_DIR}/{name}.geojson"
    except Exception as e:  # noqa: BLE001  (any failure of one slide is that slide's, reported, never fatal)
        rec["status"], rec["error"] = "failed", _one_line(e)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["peak_rss_mb"] = _peak_rss_mb()
    return rec


def _segment_into_folder(slide: Path, name: str, target: Path, model: dict[str, Any], opts: CohortOptions) -> None:
    """Segment ``slide`` into a hidden folder beside ``target`` and rename it into place when complete."""
    import zarr

    from ..atomic import atomic_dir, atomic_write_json
    from ..data.slide import open_slide
    from ..events import run_to_end
    from .slide_segmentation import segment_slide

    t0 = time.perf_counter()
    seg = _segmenter(model, opts)
    with open_slide(slide) as sl, atomic_dir(target, overwrite=opts.overwrite) as tmp:
        levels = [LocalReads(lv) for lv in sl.levels]
        res = run_to_end(segment_slide(seg, levels, tmp / LABELS, level=opts.level, batch_size=opts.batch_size,
                                       mpp=sl.mpp))
        root = zarr.open_group(str(tmp / LABELS), mode="r")
        extra = {"objective": getattr(sl, "objective", None)}  # where the slide reader provides it
        summary = slide_summary(slide=slide, name=name, shape=sl.shape, mpp=sl.mpp, level=opts.level,
                                downsample=res.downsample, labels0=root["labels/0"],
                                schema=seg.card.class_schema, model=model, options=opts.segmentation(),
                                seconds=time.perf_counter() - t0, windows=(res.windows_predicted,
                                                                           res.windows_skipped), extra=extra)
        atomic_write_json(tmp / SUMMARY, summary)


def plan_cohort(slides: list[CohortSlide], out: Path, model: dict[str, Any], opts: CohortOptions
                ) -> list[dict[str, Any]]:
    """One manifest entry per slide: ``skipped`` when finished by this model, else ``pending``.

    Raises:
        FileExistsError: without ``overwrite``, slides whose output folder holds another result (another model,
            other options or another file of that name); nothing is written then.
    """
    entries, clash = [], []
    for s in slides:
        if s.name in (GEOJSON_DIR, MANIFEST.split(".")[0]):
            raise ValueError(f"{s.path}: a slide named {s.name!r} would collide with the cohort's own "
                             f"{s.name!r} output; rename it or give it another id in a CSV manifest.")
        target = out / s.name
        done = not opts.overwrite and finished_by(target, s.path, model, opts.segmentation())
        if not done and target.exists() and not opts.overwrite:
            clash.append(target)
        entries.append({"name": s.name, "slide": str(s.path.absolute()), "status": "skipped" if done else "pending",
                        "error": None, "output": s.name})
    if clash:
        raise FileExistsError(f"{len(clash)} slide output(s) hold a result of another model, other options or "
                              f"another slide file ({clash[0]}...); pass --overwrite to replace them, or give "
                              "another --out.")
    return entries


def run_cohort(slides: list[CohortSlide], model_dir: str | Path, out: str | Path, client: Any,
               options: CohortOptions = CohortOptions(), should_stop: StopFlag = never_stop,
               ) -> Generator[Progress, None, CohortResult]:
    """Segment ``slides`` on the Dask ``client``'s cluster into ``out`` (see ``cohort_outputs`` for the layout).

    Finished slides (same model, options and file) are skipped without a task, unless ``options.overwrite``;
    slides a killed run left unfinished are redone. Yields one Progress per finished slide (``step`` of
    ``total`` slides; metrics: done, skipped, failed). Returns the result; failed slides are in its entries.

    Raises:
        FileExistsError: see :func:`plan_cohort`.
        Cancelled: ``should_stop()`` turned true (polled every second); unsubmitted work is cancelled, finished
            slides stay, the manifest says which.
    """
    from concurrent.futures import CancelledError

    from distributed import wait

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model_identity(model_dir)
    entries = plan_cohort(slides, out, model, options)
    seg_opts, started = options.segmentation(), now()
    manifest = write_manifest(out, entries, model, seg_opts, started, finished=False)
    by_name = {e["name"]: e for e in entries}
    todo = [e for e in entries if e["status"] == "pending"
            or (options.geojson and not (out / GEOJSON_DIR / f"{e['name']}.geojson").is_file())]
    futures = {client.submit(segment_cohort_slide, e["slide"], e["name"], str(out.resolve()), model,
                             asdict(options), key=f"wsss-slide-{e['name']}-{os.getpid()}-{time.time_ns()}",
                             pure=False, retries=0, priority=-i): e["name"]
               for i, e in enumerate(todo)}
    total = len(entries)

    def progress() -> Progress:
        counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "skipped", "failed")}
        return Progress(sum(counts.values()), total, "segmenting cohort", {k: float(v) for k, v in counts.items()})

    yield progress()
    pending = set(futures)
    try:
        while pending:
            if should_stop():
                raise Cancelled("cohort run cancelled; finished slides are kept and a rerun does the rest")
            try:
                finished, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            except CancelledError as e:  # the cluster cancelled them: the scheduler went away
                raise OSError(f"the Dask cluster dropped the run's tasks ({_one_line(e)}); finished slides are "
                              "kept in the output folder: check the cluster and rerun to do the rest.") from e
            for fut in finished:
                name = futures[fut]
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001  (a worker that died: this slide fails, the rest go on)
                    rec = {"status": "failed", "error": _one_line(e)}
                by_name[name].update(rec)
            if finished:
                write_manifest(out, entries, model, seg_opts, started, finished=not pending)
                yield progress()
    finally:
        for fut in pending:
            fut.cancel()
    if not futures:
        write_manifest(out, entries, model, seg_opts, started, finished=True)
    return CohortResult(out, manifest, entries)
