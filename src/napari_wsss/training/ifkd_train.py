"""MIL -> IFKD as a training method from image-level labels only (``napari-wsss train --method ifkd``).

Stage 1 trains the MIL teacher (``training.mil``, saved beside the new version as ``<out>-teacher``, a version
of its own the user can load and compare) unless ``teacher=`` names an existing MIL version. Stage 2 distils
its fused maps (f = sum_i w_i sigmoid(side_i), methods.md) into a segmentation network over the training tiles
with IFKD's weighted cross-entropy (``ifkd_loop.distil``): image labels zero the classes a tile does not have
("negatives against zeros"), the student starts from the backbone's own initial weights (independent of the
teacher, as distillation has it), and the best student replaces the teacher on IFKD's schedule when it beats
it on the validation split by more than that split's noise. Fine-tuning from corrections runs the same loop.

``teacher=`` may also name an SSHR, multi-stage or IFKD version: the classic second stage of weakly supervised
segmentation (CAMs -> pseudo-masks -> a segmentation network), here with IFKD's loss. ``distil_on="images"``
puts patches cut by ``napari-wsss patches`` back into their images (``data.patch_mosaic``) so the teacher and
the student see whole glands while each patch's labels still gate its own pixels; the recipe of the shipped
``sshr-glas`` does this (scripts/train_glas_model.py).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Cancelled, Progress, StopFlag, never_stop
from . import common
from .ifkd_data import ScaledTile, TargetDataset, TileRecord, scale_record
from .mil import MILConfig


@dataclass
class IFKDConfig(MILConfig):
    """Stage 1 (the MIL teacher) takes :class:`MILConfig`'s fields; stage 2 (distillation) the ``distil_*`` ones."""

    teacher: str = ""  # an existing MIL version folder to distil from (skips stage 1)
    distil_epochs: int = 6
    distil_batch_size: int = 8
    distil_lr: float = 1e-3
    student_init: str = "backbone"  # ifkd_student.STUDENT_INITS; "base": the teacher's backbone
    switch_every: int = 2  # epochs between switch checks against the validation split (0 = never)
    switch_margin: float = 0.02
    max_tiles: int = 4000  # training tiles distilled (a random subset past this; memory ~ tiles x pixels)
    max_val_tiles: int = 16  # validation tiles scored after each distillation epoch
    use_val: bool = True  # False: no validation masks drive switching or the kept epoch (the last is kept)
    seg_head: str = "fcn"
    # "tiles": the student learns from each training tile alone; "images": patches named <image>_y<Y>_x<X> (as
    # `napari-wsss patches` cuts them) are put back into their images (data.patch_mosaic): the teacher predicts
    # whole images, each patch's labels gate its own pixels, the student crops with context
    distil_on: str = "tiles"
    distil_crop: int = 0  # student crop side at the working scale (0 = the teacher's input size)
    tta_flips: bool = False  # inference: average over the tile and its two mirror images (3x compute)


def _val_records(dirs: Any, schema: Any, limit: int, rng: np.random.Generator) -> list[TileRecord]:
    """Up to ``limit`` validation tiles with their masks (the split that drives switching); [] without one."""
    from ..data.tiles import list_mask_pairs, read_mask, read_rgb

    if dirs.val is None:
        return []
    pairs = list_mask_pairs(dirs.val)
    pick = sorted(rng.permutation(len(pairs))[:limit])
    out = []
    for i in pick:
        img = read_rgb(pairs[i].image)
        out.append(TileRecord(pairs[i].image.stem, "accepted", img, read_mask(pairs[i].mask, schema),
                              np.ones(img.shape[:2], bool), path=pairs[i].image))
    return out


TEACHER_METHODS = ("mil", "sshr", "multistage", "ifkd")  # versions whose maps a student can distil


def _scaled_tiles(labelled: list, distil_on: str, scale: float, min_glass: int, should_stop: StopFlag
                  ) -> Generator[Progress, None, list[ScaledTile]]:
    """The training tiles at the teacher's working scale: each tile alone, or mosaics of each source image."""
    from ..data.patch_mosaic import build_mosaics
    from ..data.tiles import read_rgb

    tiles: list[ScaledTile] = []
    if distil_on == "images":
        yield Progress(0, None, f"IFKD: putting {len(labelled)} patches back into their images")
        for m in build_mosaics(labelled, read_rgb):
            if should_stop():
                raise Cancelled("IFKD cancelled while reading the training tiles")
            rec = TileRecord(m.key, "unreviewed", m.image, labels=m.labels, path=None, valid=m.covered)
            tiles.append(scale_record(rec, scale, 1, min_glass))
        return tiles
    for i, t in enumerate(labelled):
        if should_stop():
            raise Cancelled("IFKD cancelled while reading the training tiles")
        rec = TileRecord(t.path.stem, "unreviewed", read_rgb(t.path), labels=np.asarray(t.labels), path=t.path)
        tiles.append(scale_record(rec, scale, 1, min_glass))
        if i % 200 == 0:
            yield Progress(i, len(labelled), "IFKD: reading the training tiles")
    return tiles


def train_ifkd(data_dir: str | Path, out_dir: str | Path, *, should_stop: StopFlag = never_stop,
               overwrite: bool = False, resume: bool = False, labels_csv: str | Path | None = None,
               command: str = "", evaluate: bool = True, **options: Any) -> Generator[Progress, None, Path]:
    """Train MIL -> IFKD on a LUAD-HistoSeg style folder (labels in file names) and write ``out_dir``.

    Returns (generator value): ``out_dir``, an ``ifkd`` version whose card names its MIL teacher.
    Raises:
        FileExistsError: ``out_dir`` (or the teacher's folder, when stage 1 runs) exists without ``overwrite``.
        ValueError: ``teacher`` is not a MIL version of the same classes.
    """
    from ..inference.predict import glass_min_size
    from ..inference.segmenter import load_segmenter
    from ..models.card import load_card
    from .ifkd import FinetuneConfig
    from .ifkd_loop import distil
    from .ifkd_student import build_student
    from .mil import train_mil

    cfg = common.config_from_options(IFKDConfig, options)
    out_dir = common.check_out_dir(out_dir, overwrite)
    mil_fields = {f for f in MILConfig.__dataclass_fields__}
    t0 = time.perf_counter()
    if cfg.teacher:
        teacher_dir = Path(cfg.teacher)
        tcard = load_card(teacher_dir)
        if tcard.method not in TEACHER_METHODS:
            raise ValueError(f"teacher={teacher_dir}: a {tcard.method!r} version; IFKD distils a "
                             f"{', '.join(TEACHER_METHODS)} version (or leave teacher unset to train a MIL one).")
        if "glass_min_size" not in options:  # the student calls glass what its teacher does (0: GlaS lumens)
            cfg.glass_min_size = int(tcard.config.get("glass_min_size", cfg.glass_min_size))
    else:
        teacher_dir = out_dir.with_name(out_dir.name + "-teacher")
        common.check_out_dir(teacher_dir, overwrite)
        yield Progress(0, None, "IFKD stage 1: the MIL teacher from image-level labels")
        teacher_dir = yield from train_mil(data_dir, teacher_dir, should_stop=should_stop, overwrite=overwrite,
                                           resume=resume, labels_csv=labels_csv, evaluate=evaluate,
                                           command=command, **{k: v for k, v in cfg.to_dict().items()
                                                               if k in mil_fields})
        tcard = load_card(teacher_dir)
    stage1 = time.perf_counter() - t0

    run = common.setup_training(cfg, data_dir, out_dir, overwrite)
    dirs, schema, device = run.dirs, run.schema, run.device
    if tcard.class_schema.names != schema.names:
        raise ValueError(f"The teacher {teacher_dir} predicts {tcard.class_schema.names}, the data uses "
                         f"{schema.names}; pick a teacher trained on this class schema.")
    teacher_seg = load_segmenter(teacher_dir, device)
    for p in teacher_seg.model.parameters():
        p.requires_grad_(False)
    labelled, tile_size = yield from common.training_tiles(dirs, schema, labels_csv, "IFKD")
    rng = np.random.default_rng(cfg.seed)
    if cfg.distil_on not in ("tiles", "images"):
        raise ValueError(f"distil_on={cfg.distil_on!r}: use 'tiles' or 'images'.")
    if cfg.distil_on == "tiles" and len(labelled) > cfg.max_tiles:
        labelled = [labelled[i] for i in sorted(rng.permutation(len(labelled))[: cfg.max_tiles])]
    scale, min_glass = tcard.working_scale, glass_min_size(tcard)
    tiles = yield from _scaled_tiles(labelled, cfg.distil_on, scale, min_glass, should_stop)
    held = _val_records(dirs, schema, cfg.max_val_tiles, rng) if cfg.use_val else []

    stage2 = FinetuneConfig(epochs=cfg.distil_epochs, batch_size=cfg.distil_batch_size, lr=cfg.distil_lr,
                            backbone_lr_mult=1.0, student="dense", student_init=cfg.student_init,
                            switch_every=cfg.switch_every, switch_margin=cfg.switch_margin, patience=0,
                            keep="best" if held else "last", crop_size=int(cfg.distil_crop or tcard.input_size), min_epoch_crops=1,
                            flips=cfg.flips, seed=cfg.seed, num_threads=cfg.num_threads, device=cfg.device,
                            hed_scale=cfg.hed_scale, hed_shift=cfg.hed_shift, image_loss_weight=0.0,
                            anchor_weight=0.0, interpolate=1.0)  # learning from image labels: no base to keep
    tcard.config["seg_head"] = cfg.seg_head
    stu = build_student(teacher_seg, tcard, "dense", cfg.student_init, device)
    ds = TargetDataset(tiles, stage2.crop_size, tcard.mean, tcard.std, flips=cfg.flips, seed=cfg.seed,
                       hed=stage2.hed())
    t1 = time.perf_counter()
    res = yield from distil(ds, held, teacher_seg, stu, stage2, n_classes=schema.n_classes,
                            config=dict(tcard.config), device=device, stop_or_wait=should_stop,
                            should_stop=should_stop, desc="IFKD")
    seconds = {"teacher": stage1, "distillation": time.perf_counter() - t1}

    card = common.version_card("ifkd", cfg, schema, tile_size, data_dir, out_dir, command,
                               config={"teacher": str(teacher_dir), "teacher_name": tcard.name or teacher_dir.name,
                                       "scale": tcard.working_scale, "input_size": tcard.input_size,
                                       "distil": {**stage2.to_dict(), "student_started_from": stu.init,
                                                  "distil_on": cfg.distil_on, "n_tiles": len(tiles),
                                                  "crops_per_epoch": len(ds)}},
                               metrics=common.train_metrics(seconds, res.losses, len(tiles),
                                                            validation=res.held_out_metrics(),
                                                            switches=res.switches))
    card.input_size = tcard.input_size
    card.config["scale"] = tcard.working_scale  # the student learnt at its teacher's scale, whatever the tile size
    seg = None
    if evaluate:
        from ..inference.predict import SegNetSegmenter

        seg = SegNetSegmenter(stu.model.eval(), card, device)
    return (yield from common.save_version(out_dir, common.state_on_cpu(stu.model), card, dirs, seg,
                                           should_stop, overwrite))
