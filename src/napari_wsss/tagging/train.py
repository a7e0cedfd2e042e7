"""Train a model version from an annotation project's tags (the CLI's ``train --project``, the Train widget's
"open project's tags" source).

The tagged tiles become an ordinary labelled training set inside the project, ``training_sets/<version>/``
(``training/`` with the tiles, ``labels.csv``, ``schema.json``): hard links to the tile files of a folder (copies
where links are impossible), PNGs read from the slide for slide tiles. It stays there as the provenance the new
version's card names. Any registered method then trains on it with its own ``train`` generator (the loop,
progress and cancel every trainer has), writing ``models/<version>`` so the Segment widget lists it at once.
Corrections, where the project has some and ``with_corrections`` is set, then join as pixel supervision through
the fine-tuning path (IFKD, ``training.ifkd.finetune``), written as a second version ``<version>-ft1``.

While the tags train, corrected (or accepted) tiles of the project, which the tag trainer never sees as pixels,
score the network after every epoch (``metrics["val_mIoU"]``, for a live plot) when the method's trainer offers
that (``MethodSpec.epoch_score``). ``paused`` holds the run between batches; a cancel leaves no model version and
no resume checkpoint in ``models/`` (the tag run cannot be resumed); the written training set stays, and a new
run under the same name rebuilds it from the tags of the moment.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from ..atomic import atomic_dir
from ..events import Cancelled, Progress, StopFlag, never_stop, pausable
from .tiles import read_tile, tile_of_item

TRAINING_SETS = "training_sets"
MAX_VALIDATION_TILES = 16  # corrected tiles scored after each epoch: bounds the pause between epochs


def default_version_name(project: Any, method: str) -> str:
    """``<method>-tags<n>``: the first name free in both ``models/`` and ``training_sets/``."""
    i = 1
    while (project.models_dir / f"{method}-tags{i}").exists() or \
            (project.root / TRAINING_SETS / f"{method}-tags{i}").exists():
        i += 1
    return f"{method}-tags{i}"


def write_tag_training_set(project: Any, out: str | Path, keys: list[str] | None = None,
                           should_stop: StopFlag = never_stop, overwrite: bool = False
                           ) -> Generator[Progress, None, Path]:
    """Write the tagged tiles (all, or ``keys``) as a training folder ``out`` (atomically, replacing an earlier
    one only with ``overwrite``); returns ``out``.

    Layout: ``out/training/<key>.png`` (or the tile's own suffix), ``out/labels.csv`` (``filename,<classes>``),
    ``out/schema.json``. Tiles tagged with no class are left out (an image label of all zeros teaches a CAM
    network nothing but "glass").

    Raises:
        ValueError: no tagged tile (with what to do).
    """
    from ..data.slide import open_slide

    tags = project.tags()
    if keys is not None:
        tags = {k: tags[k] for k in keys if k in tags}
    tags = {k: v for k, v in tags.items() if v}
    if not tags:
        raise ValueError(f"The project {project.root} has no tile tagged with a tissue class; tag some tiles in the "
                         "Tag widget (keys 1-9, Enter) first.")
    names = project.schema.foreground_names
    slide = None
    source = Path(project.source)
    try:
        with atomic_dir(Path(out), overwrite=overwrite) as tmp:
            (tmp / "training").mkdir()
            rows = []
            for n, key in enumerate(tags):
                if should_stop():
                    raise Cancelled("writing the training set cancelled")
                t = tile_of_item(project.item(key))
                if t.image is not None:
                    src = Path(t.image) if Path(t.image).is_absolute() else \
                        (source if source.is_dir() else source.parent) / t.image
                    if not src.is_file():
                        raise FileNotFoundError(f"Tile {key}: its image {src} is gone; restore it or untag the tile.")
                    name = f"{key}{src.suffix.lower()}"
                    try:
                        os.link(src, tmp / "training" / name)
                    except OSError:  # another file system, or links not allowed
                        shutil.copy2(src, tmp / "training" / name)
                else:
                    from PIL import Image

                    if slide is None:
                        slide = open_slide(source)
                    name = f"{key}.png"
                    Image.fromarray(read_tile(t, source, slide)).save(tmp / "training" / name)
                present = set(tags[key])
                rows.append([name, *(int(c in present) for c in names)])
                if n % 16 == 0:
                    yield Progress(n, len(tags), f"training set: {n} / {len(tags)} tagged tiles")
            with open(tmp / "labels.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["filename", *names])
                w.writerows(rows)
            (tmp / "schema.json").write_text(json.dumps(project.schema.to_dict(), indent=2) + "\n")
    finally:
        if slide is not None:
            slide.close()
    yield Progress(len(tags), len(tags), f"training set: {len(tags)} tagged tiles")
    return Path(out)


def correction_scorer(project: Any, max_tiles: int = MAX_VALIDATION_TILES) -> tuple[Any, int]:
    """``(score(segmenter) -> mIoU | None, n)``: a scorer on up to ``max_tiles`` corrected/accepted tiles of
    ``project`` (tiles with an image file; slide regions are not read), or ``(None, 0)`` when there are none."""
    from ..training.ifkd_data import _read_record, corrected_items
    from ..training.ifkd_loop import held_out_score

    items = corrected_items(project)[:max_tiles]
    if not items:
        return None, 0
    records = [_read_record(project, it, True) for it in items]
    n_classes = project.schema.n_classes
    return (lambda seg: held_out_score(seg, records, n_classes)), len(records)


def train_from_tags(project: Any, method: str = "sshr", name: str | None = None, *,
                    should_stop: StopFlag = never_stop, paused: Callable[[], bool] | None = None,
                    validate: bool = True, with_corrections: bool = False,
                    finetune_options: dict[str, Any] | None = None, command: str = "",
                    keys: list[str] | None = None, **options: Any) -> Generator[Progress, None, Path]:
    """Train ``method`` on the project's tags; returns the new version folder (``<project>/models/<name>``).

    Args:
        project: a ``store.Project`` or its folder.
        method: a registered method (``napari-wsss info``); default SSHR.
        name: the version name (default ``<method>-tags<n>``); must be new.
        paused: while it returns True the run waits between batches (``should_stop`` still ends it).
        validate: score the network on the project's corrected tiles after every epoch (Progress metrics
            ``val_mIoU`` and ``epoch``), where there are such tiles and the method's trainer can.
        with_corrections: when the project holds corrected/accepted tiles, fine-tune the new version on them
            (IFKD, pixel supervision) and return that second version (``<name>-ft1``).
        keys: train on these tagged tiles only (benchmarks: a learning curve); default all tagged tiles.
        options: the method's trainer options (``epochs``, ``backbone``, ``input_size`` ...); ``schema`` is the
            project's.
    Raises:
        ValueError: no tagged tile, an unknown method, or a method that cannot be trained.
        FileExistsError: ``name`` is taken.
    """
    from .. import methods  # noqa: F401  (fills the registry)
    from ..models._registry import METHODS
    from ..store import Project
    from ..store_records import check_key

    if not isinstance(project, Project):
        project = Project.load(project)
    spec = METHODS.get(method)
    if spec.train is None:
        raise ValueError(f"Method {method!r} cannot be trained; choose one of "
                         f"{[n for n in METHODS.names() if METHODS.get(n).train is not None]}.")
    if "schema" in options:
        raise ValueError("train from tags uses the project's own classes; leave the schema option out.")
    name = check_key(name or default_version_name(project, method))
    out = project.models_dir / name
    data = project.root / TRAINING_SETS / name
    from ..training.common import checkpoint_path_for

    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new version name (each training run is a new "
                              "version).")
    # A training set without its version is what a cancelled or failed run leaves: derived from the tags (kept in
    # the project), it is rebuilt from today's tags, so Train again under the same name works. With a resume
    # checkpoint beside the version a run may still be using it: that one is refused.
    orphan = data.exists() and not checkpoint_path_for(out).exists()
    if data.exists() and not orphan:
        raise FileExistsError(f"{data} belongs to a run of {name!r} that may still be training "
                              f"({checkpoint_path_for(out)} exists); choose a new version name, or delete both once "
                              "that run is over.")
    if orphan:
        yield Progress(0, None, f"rebuilding {data.name}: left by an earlier run of {name!r} that made no version")
    stop = pausable(should_stop, paused)
    yield from write_tag_training_set(project, data, keys, stop, overwrite=orphan)
    command = command or f"napari-wsss train --project {project.root} --method {method}"
    if validate and getattr(spec, "epoch_score", False):
        scorer, n_val = correction_scorer(project)
        if scorer is not None:
            options["epoch_score"] = scorer
            yield Progress(0, None, f"validating every epoch on {n_val} corrected tiles")
    try:
        result = yield from spec.train(data, out, should_stop=stop, labels_csv=data / "labels.csv",
                                       schema=str(data / "schema.json"), command=command, evaluate=False, **options)
    except Cancelled:
        # a tag run has no --resume: its epoch checkpoint would only be clutter in models/
        checkpoint_path_for(out).unlink(missing_ok=True)
        raise
    if with_corrections:
        from ..training.ifkd_data import corrected_items

        if corrected_items(project):
            from ..training.ifkd import finetune

            result = yield from finetune(project, result, f"{name}-ft1", options=finetune_options,
                                         should_stop=should_stop, paused=paused,
                                         command=command + " --with-corrections")
        else:
            yield Progress(1, 1, "no corrected tiles in the project: trained from the tags only")
    return Path(result)
