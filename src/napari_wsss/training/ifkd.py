"""IFKD fine-tuning from the pathologist's corrections (MIL -> IFKD, methods.md), for any model version.

``finetune(project, base_version_dir, out_name, options=..., should_stop=...)`` is a generator yielding
Progress per batch and returning the new model version folder inside the project (``models/<out_name>``). Its
Progress covers the whole job (``step / total`` goes once from 0 to 1 over loading, the check fit, the refit and
saving, each in proportion to its estimated work: ``ifkd_loop.Span``); ``desc`` says which run is at which
epoch, ``metrics`` hold the epoch-mean loss and the held-out scores (``ifkd_loop.distil``).

Roles
    *Teacher* = a frozen copy of the base version; its map per tile is its *fused map* where it has one (MIL:
    ``fused_maps``), else its Segmenter's per-class tissue shares (``Prediction.probs[:, :K]``).
    *Student* (``ifkd_student``): by default a segmentation network on the base's backbone with a new FCN
    head (``student="dense"``), saved as an ``ifkd`` version whose card names its teacher; with
    ``student="copy"`` the base version's own network (SSHR CAM net, multi-stage SegNet, CAM+SAM classifier or
    MIL net), so the new version keeps the base's method and loads through the same Segmenter. The dense student
    is the default because a CAM network learns little from pixel targets (docs/design.md); measured on real GlaS
    images (docs/benchmarks.md), 10 corrected images lift untouched images' mIoU by +0.20 from the LUAD demo
    remapped to glands and by +0.04 (folder) / +0.02 (alone) from the GlaS-trained ``sshr-glas``.
    The loop itself (targets, switching, early stopping) is ``ifkd_loop.distil``, shared with the full
    ``ifkd`` training method (``ifkd_train``).

Scale (``ifkd_data``'s docstring)
    Every tile, whatever its size or shape, is rescaled by the base card's working scale (the factor inference
    applies) and the student trains on crops of it (``crop_size``: the base's input size for the copy student, at
    least 112 px for the dense one); its targets go through the same geometry.
    The teacher's maps and the held-out scores come from the predict path itself (``inference.tiling
    .predict_image``), so teacher, student and the user's view all see tissue at one scale.

Targets, per training tile
    * corrected/accepted tiles: pixels the user touched are targets with full weight (they override the
      teacher); on *accepted* tiles the whole stored mask is (the user vouched for it); on merely corrected
      tiles the untouched pixels keep the teacher's map;
    * unreviewed tiles (up to ``max_teacher_tiles``): the teacher's map; when the file name carries an
      image-level label, absent classes are zeroed ("negatives against zeros");
    * white glass (the background rule every method uses at inference) takes no part, unless corrected.

Loss of the dense student (``ifkd_loss.dense_student_loss``): IFKD's weighted cross-entropy to the teacher's
    map (normalised to shares per pixel) on teacher pixels, a plain cross-entropy on corrected pixels, plus a
    soft Dice, plus, when asked (``anchor_weight``, ``--anchor``), L2-SP: a pull towards the weights the student
    took from the base (on GlaS it kept 10 corrections from collapsing a draw, but capped what 20 could teach;
    docs/design.md). Defaults differ by student (``FinetuneConfig.resolved``): the dense student trains at lr 1e-3
    on 112-px crops, at least 2000 crops an epoch, keeps the last epoch (a held-out slice of a few tiles is
    noisier than the gains it would pick between) and does not stop early.

Mixing with the base (``interpolate``, ``ifkd_loop.mix_with_base``)
    When the student started as a whole copy of the base (a base that already is a segmentation network, or the
    copy student) and learns from the corrections alone, the version written is 0.6 x its fine-tuned weights +
    0.4 x the base's (WiSE-FT): a network retrained on a handful of images forgets part of what it knew, and the
    mix keeps both. Where unreviewed tiles take part, their targets (the base's maps) already hold the student
    near the base, and mixing too only held corrections back (docs/design.md). The held-out check scores the
    weights as written. A dense student with a new head has nothing to mix with and is written as trained.

Loss of the copy student (student outputs as per-class maps in [0, 1] at input resolution)
    soft Dice of every side output and of the fusion against the combined target, plus IFKD's weighted
    cross-entropy between the student's fusion and the teacher's (per-image softmax of the negative
    per-pixel loss as weights) on teacher pixels, plus a plain per-pixel BCE on corrected pixels (weight 1
    each), plus, for CAM networks, the original multilabel loss on their GAP logits (below).

What a pixel loss means for each network
    * SSHR (CAM net): each level's raw CAM is read as per-class logits, ``sigmoid(upsample(CAM_l))`` is a
      side output, and the fusion uses the card's level weights (0, 0.6, 0.2, 0.2). Inference ReLUs,
      min-max normalises and fuses the CAMs, then argmaxes: training the CAM's *sign* to follow the target
      (positive on the class's pixels, negative elsewhere) is exactly what that argmax reads, whatever the
      normalisation. The image-level gate (sigmoid of the deep GAP logits >= threshold) is kept calibrated by
      keeping SSHR's hierarchical multilabel loss, with the classes present in the target as labels
      (``image_loss_weight``), so an unchanged CamSegmenter still works.
    * CAM+SAM: the ADL classifier's single CAM the same way (its SAM decoder is kept unchanged).
    * multi-stage SegNet: its softmax output is the single side output and the fusion.
    * MIL: its three sigmoid side outputs and their weighted fusion, as in the paper.

Teacher/student switch
    After every ``switch_every`` epochs, when the best student so far scores higher than the teacher on the
    held-out corrected tiles by more than their noise (``ifkd_loop.switch_margin``), it becomes the teacher (its
    maps are recomputed) and, when both have one architecture, the old teacher's weights become the student (the
    paper's swap, so the student does not inherit the teacher's noise). Early stopping after ``patience`` epochs
    without a held-out gain; the version written is the best student by held-out mIoU or the last one
    (``keep``; always the last when no tile is held out).

Cancelling (``should_stop``) raises ``Cancelled`` between batches; nothing is written before the final atomic
save, so the project and the base version are untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Cancelled, Progress, StopFlag, never_stop
from . import common
from .config import RunConfig
from .ifkd_loss import weights_prefix
from .ifkd_loop import READ_WORK, Span, distil_work
from .ifkd_loop import distil, held_out_score, swap_teacher_student, switch_margin, teacher_maps  # noqa: F401
from .ifkd_data import (
    ScaledTile,
    TargetDataset,
    TileRecord,
    _read_record,
    corrected_items,
    item_source,
    scale_record,
)
from .ifkd_student import build_student, segmenter_with

SUPPORTED_METHODS = ("sshr", "multistage", "cam_sam", "mil", "ifkd")


@dataclass
class FinetuneConfig(RunConfig):
    """IFKD fine-tuning settings (sized for a CPU: a few minutes for tens of tiles); flips, seed, threads and
    device are in :mod:`.config`. ``None``/0 fields take the student's default (:meth:`resolved`)."""

    epochs: int = 8
    batch_size: int = 8
    lr: float | None = None  # dense student 1e-3; copy 3e-4 (1e-3 helped weak bases but lowered a strong one)
    backbone_lr_mult: float | None = None  # dense student 1.0; copy 0.1
    weight_decay: float = 1e-5
    held_out_fraction: float = 0.2
    max_teacher_tiles: int = 48
    switch_every: int = 3
    switch_margin: float = 0.02  # the least margin a student needs over the teacher (see switch_margin())
    swap_on_switch: bool = True
    patience: int | None = None  # epochs without held-out gain before stopping (0 = never); dense 0, copy 4
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    correction_weight: float = 1.0
    image_loss_weight: float = 0.5
    student: str = "dense"  # ifkd_student.STUDENTS: a segmentation network ("dense") or the base's twin ("copy")
    student_init: str = "base"  # ifkd_student.STUDENT_INITS
    crop_size: int = 0  # px at the working scale; 0: the base's input size (copy), at least 112 (dense)
    keep: str = ""  # the version written: "best" student by held-out mIoU or the "last"; "": dense last, copy best
    min_epoch_crops: int = 0  # an epoch draws at least this many crops; 0: 2000 (dense; ~250 steps), none (copy)
    anchor_weight: float = 0.0  # L2-SP (Li et al. 2018): alpha/2 * ||w - w_base||^2 on the weights the
    # student took from the base version, so a few corrected images pull it less far from what it learnt before.
    # Off by default: on GlaS it steadied k = 10 but capped k = 20 (docs/design.md, "An anchor to the base")
    interpolate: float | None = None  # the written weights: this share of the fine-tuned ones + the rest of the
    # base's (WiSE-FT), when the student started as a whole copy of the base; 1 = the fine-tuned weights alone.
    # None: 0.6 when the corrections are all it learns from, 1 when unreviewed tiles (the base's maps) take part
    # and already keep it near the base (docs/design.md, "Mixing with the base")
    freeze_bn: bool = False  # keep the base's batch-norm statistics (a few corrected images are a narrow sample)
    refit: bool | None = None  # after the held-out check, train the version again on every correction (2x the
    # time); None: dense yes (5 corrected real images: -0.14 -> -0.01 on the worst draw), copy no (it keeps "best")

    def resolved(self, input_size: int) -> FinetuneConfig:
        """A copy with every student-dependent default filled in."""
        import dataclasses

        dense = self.student == "dense"
        return dataclasses.replace(
            self,
            lr=self.lr if self.lr is not None else (1e-3 if dense else 3e-4),
            backbone_lr_mult=self.backbone_lr_mult if self.backbone_lr_mult is not None else (1.0 if dense else 0.1),
            crop_size=self.crop_size or (max(int(input_size), DENSE_CROP) if dense else int(input_size)),
            min_epoch_crops=self.min_epoch_crops or (DENSE_EPOCH_CROPS if dense else 0),
            patience=self.patience if self.patience is not None else (0 if dense else 4),
            keep=self.keep or ("last" if dense else "best"),
            refit=self.refit if self.refit is not None else dense)


MIX_ALONE = 0.6  # fine-tuned share when only corrections are learnt from (chosen on GlaS tuning images)
DENSE_CROP = 112  # px: a dense student needs context (a GlaS gland spans ~100 px at 0.62 um/px)
DENSE_EPOCH_CROPS = 2000  # 8 epochs x 2000 crops of 112 px: ~2 CPU minutes on 2 cores with small_cnn


def _correction_entry(record: TileRecord, held_out: bool) -> dict[str, Any]:
    """What the new version's card records about one corrected tile it used."""
    return {"key": record.key, "status": record.status, "touched_pixels": record.touched_pixels,
            "target_pixels": int(record.full.sum()) if record.full is not None else 0, "held_out": held_out}


def held_out_summary(metrics: dict, base_name: str) -> str:
    """One sentence on the held-out check of a fine-tuned version, with a warning when it did not improve.

    The widget and the CLI both show it: the version is written either way (the user asked for it, and a
    score on a few held-out tiles is noisy), but the user should know when the base did better there. Written
    for the pathologist who reviewed the tiles: which tiles, what the number compares (their own masks), which
    model scored which number; it said "corrected tiles" of tiles they had only accepted, and "a first fit".
    """
    held = metrics.get("held_out") or {}
    if not held.get("n_tiles") and held.get("unchanged_only"):
        return ("no held-out score: the reviewed tiles were accepted as predicted, not corrected, and a model "
                "agrees with its own predictions; correct a few tiles by brush to get a check")
    if not held.get("n_tiles") or held.get("before") is None or held.get("after") is None:
        return ("no held-out score: with fewer than 2 reviewed (corrected or accepted) tiles or regions, none could "
                "be kept out of training to check the new version on")
    n, keys = int(held["n_tiles"]), list(held.get("keys") or [])
    named = f" ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})" if keys else ""
    tiles, those = (f"{n} reviewed tile{'s' if n != 1 else ''}{named}", "those tiles" if n != 1 else "that tile")
    refit = str(held.get("version", "")).startswith("a refit")
    who = "a first training run" if refit else "the new version"
    text = (f"checked on {tiles} kept out of training: agreement with your masks (mIoU, 1 = identical) "
            f"{held['before']:.3f} with {base_name} -> {held['after']:.3f} with {who}")
    if refit:
        text += f"; the version was then trained again on every reviewed tile, {those} included"
    if held["after"] <= held["before"]:
        text += (f". WARNING: {who} did not do better than {base_name} on {those}; compare both on more reviewed "
                 f"tiles before switching (a check on {n} tile{'s' if n != 1 else ''} is noisy)")
    return text


def no_corrections_message(project: Any) -> str:
    """Why a project gives fine-tuning nothing to learn from, and what to do.

    Reviewed regions of a whole slide are read from the slide: without it, say so (the message told a pathologist
    who had just accepted slide regions to "correct (or accept) some tiles first").
    """
    regions = [it for it in project.items() if it.status in ("corrected", "accepted") and it.mask is not None
               and not it.image]
    if regions:
        return (f"The project {project.root} holds {len(regions)} reviewed region(s) of the slide {project.source}, "
                "which is not there: fine-tuning reads the regions' pixels from it. Put the slide back where it "
                "was (or open it from its new place and review there).")
    return (f"The project {project.root} has no corrected or accepted tiles with their image file; correct (or "
            "accept) some tiles in the Review widget first.")


def changed_by_hand(project: Any, item: Any) -> bool:
    """Whether the user painted any pixel of this reviewed tile (not merely accepted it as predicted)."""
    touched = project.load_touched(item.key)
    return touched is not None and bool(np.any(touched))


def _next_free_name(models_dir: Path, stem: str) -> str:
    i = 1
    while (models_dir / f"{stem}-ft{i}").exists():
        i += 1
    return f"{stem}-ft{i}"


def default_out_name(project: Any, base_version_dir: str | Path) -> str:
    """``<base>-ft<n>``, the first name not taken in the project's ``models/``."""
    stem = Path(base_version_dir).name
    stem = stem.split("-ft")[0] if "-ft" in stem else stem
    return _next_free_name(project.models_dir, stem)


def _correction_repeat(n_corrections: int, n_unreviewed: int) -> int:
    """How often each corrected tile is drawn: corrected tiles are few, and must not drown among teacher-only ones."""
    return int(min(4, max(1, n_unreviewed // max(1, 2 * n_corrections))))


class _Fit:
    """One distillation of a student from the base version on given corrected and teacher tiles."""

    def __init__(self, project: Any, base_seg: Any, base_card: Any, cfg: FinetuneConfig, device: Any,
                 stop_or_wait: Callable[[], bool], should_stop: StopFlag) -> None:
        self.project, self.base_seg, self.base_card, self.cfg = project, base_seg, base_card, cfg
        self.device, self.stop_or_wait, self.should_stop = device, stop_or_wait, should_stop

    def work(self, train_items: list, unrev: list, n_held: int) -> tuple[float, float]:
        """Estimated work (training batches) of reading the tiles and of the distillation, before any is read.

        A tile is counted as one crop an epoch (real tiles give a few): the dense student's ``min_epoch_crops``
        sets its epochs anyway, and two fits of one job are estimated alike, which is what their shares need."""
        cfg = self.cfg
        crops = len(train_items) * _correction_repeat(len(train_items), len(unrev)) + len(unrev)
        batches = max(1, max(crops, cfg.min_epoch_crops) // max(1, cfg.batch_size))
        n_teacher = len(unrev) + sum(it.status != "accepted" for it in train_items)
        return (READ_WORK * (len(train_items) + len(unrev)),
                sum(distil_work(n_teacher, n_held, batches, cfg.epochs)))

    def run(self, train_items: list, unrev: list, held: list[TileRecord], desc: str, span: Span
            ) -> Generator[Progress, None, tuple[Any, Any, TargetDataset, int, list[dict]]]:
        """Train a fresh student; returns (student, DistilResult, dataset, correction repeat, card entries).

        ``desc`` names the run in the user's words; ``span`` is its share of the job's progress bar."""
        from ..inference.predict import glass_min_size

        cfg, base_card = self.cfg, self.base_card
        repeat = _correction_repeat(len(train_items), len(unrev))
        reading, distilling = span.split(*self.work(train_items, unrev, len(held)))
        # every training tile kept only at the working scale, read one at a time (bounded memory for big tiles;
        # the teacher's maps read the full-resolution files again)
        tiles: list[ScaledTile] = []
        used = []
        todo = [(it, True) for it in train_items] + [(it, False) for it in unrev]
        for i, (it, with_mask) in enumerate(todo):
            if i % 8 == 0:
                yield reading.at(i / len(todo), f"{desc}: reading the images ({i}/{len(todo)})")
            rec = _read_record(self.project, it, with_mask)
            tiles.append(scale_record(rec, base_card.working_scale, repeat if with_mask else 1,
                                      glass_min_size(base_card)))
            if with_mask:
                used.append(_correction_entry(rec, False))
            if self.stop_or_wait():
                raise Cancelled("fine-tune cancelled")
        stu = build_student(self.base_seg, base_card, cfg.student, cfg.student_init, self.device)
        teacher_model = copy.deepcopy(self.base_seg.model).to(self.device).eval()
        for p in teacher_model.parameters():
            p.requires_grad_(False)
        teacher_seg = segmenter_with(self.base_seg, teacher_model)
        ds = TargetDataset(tiles, cfg.crop_size, base_card.mean, base_card.std, flips=cfg.flips, seed=cfg.seed,
                           hed=cfg.hed(), min_len=cfg.min_epoch_crops)
        res = yield from distil(ds, held, teacher_seg, stu, cfg, n_classes=self.project.schema.n_classes,
                                config=dict(base_card.config), device=self.device, stop_or_wait=self.stop_or_wait,
                                should_stop=self.should_stop, desc=desc, span=distilling)
        return stu, res, ds, repeat, used


def _run_names(n_held: int, n_items: int, refit: bool, unit: str) -> tuple[str, str]:
    """What the progress line calls the fit(s), in the pathologist's words: (first fit, refit)."""
    def n(k: int) -> str:
        return f"{k} {unit}{'s' if k != 1 else ''}"

    if refit:
        return (f"checking on {n(n_held)} kept out of training (run 1 of 2)",
                f"final fit on all {n(n_items)} you reviewed (run 2 of 2)")
    if n_held:
        return f"fine-tune, checked on {n(n_held)} kept out of training", ""
    return f"fine-tune on {n(n_items)} you reviewed", ""


# -- the loop --------------------------------------------------------------------------------------------------

def finetune(project: Any, base_version_dir: str | Path, out_name: str | None = None, *,
             options: dict[str, Any] | None = None, should_stop: StopFlag = never_stop,
             paused: Callable[[], bool] | None = None, command: str = "") -> Generator[Progress, None, Path]:
    """Fine-tune a model version on a project's corrections with IFKD; write ``project/models/<out_name>``.

    Args:
        project: a ``store.Project`` (or its folder); it is only read until the final atomic save.
        base_version_dir: the model version to start from (its network is the student, a frozen copy the
            first teacher); it is never modified.
        out_name: new version name (default ``<base>-ft<n>``); must not exist in ``models/``.
        options: :class:`FinetuneConfig` fields.
        should_stop: polled before every batch and between teacher/held-out batches (raises ``Cancelled``).
        paused: while it returns True the loop waits between batches (still polling ``should_stop``).
    Returns (generator value): the new model version folder.
    Raises:
        ValueError: no corrected or accepted tile with an image, a model predicting other classes, or a
            method whose per-pixel outputs are unknown.
        FileExistsError: ``out_name`` is taken.
    """
    from ..inference.segmenter import load_segmenter
    from ..models.card import ModelCard, load_card, load_weights, save_model
    from ..store import Project

    cfg = common.config_from_options(FinetuneConfig, dict(options or {}))
    if not isinstance(project, Project):
        project = Project.load(project)
    base_dir = Path(base_version_dir)
    base_card = load_card(base_dir)
    cfg = cfg.resolved(int(base_card.input_size))
    if cfg.interpolate is not None and not 0 < cfg.interpolate <= 1:
        raise ValueError(f"interpolate={cfg.interpolate:g} is not a share: give the fine-tuned weights' share in "
                         "(0, 1], e.g. 0.6 (1 = the fine-tuned weights alone).")
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"Unknown keep={cfg.keep!r}; use 'best' (the best student on held-out tiles) or 'last'.")
    project.check_model(base_card)
    method = base_card.method
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"Fine-tuning does not support {method!r} models ({base_dir}); supported methods: "
                         f"{', '.join(SUPPORTED_METHODS)}.")
    out_name = out_name or default_out_name(project, base_dir)
    out_dir = project.models_dir / out_name
    common.check_out_dir(out_dir, overwrite=False)
    items = corrected_items(project)
    if not items:
        raise ValueError(no_corrections_message(project))
    device, _ = common.start_run(cfg)  # the loader gets its own generator below, seeded after the teacher's maps
    t0 = time.perf_counter()

    def stop_or_wait() -> bool:
        while paused is not None and paused() and not should_stop():
            time.sleep(0.05)
        return should_stop()

    bar = Span()  # one bar over the whole job (loading, the check fit, the refit, saving) that never moves back
    unit = "region" if any(getattr(it, "region", None) for it in items) else "tile"
    yield bar.at(0.0, f"fine-tune: loading {base_dir.name} and {len(items)} reviewed {unit}s")
    base_seg = load_segmenter(base_dir, device)
    # held-out slice of the corrected tiles: drives the switch and early stopping, and checks the recipe
    rng = np.random.default_rng(cfg.seed)
    order = [items[i] for i in rng.permutation(len(items))]
    # only tiles the user changed: a tile accepted as predicted holds the base's own map, which the base matches
    # by construction (walk-through: "1.000 with sshr-glas -> 0.857", a warning certain whatever was learnt)
    changed = [it for it in order if changed_by_hand(project, it)]
    n_hold = 0 if len(items) < 2 else min(len(changed), len(items) - 1,
                                          max(1, round(cfg.held_out_fraction * len(items))))
    hold_items = changed[:n_hold]
    held_keys = {it.key for it in hold_items}
    train_items = [it for it in order if it.key not in held_keys]
    held = [_read_record(project, it, True) for it in hold_items]
    unrev = [it for it in project.items() if it.status == "unreviewed" and (src := item_source(project, it)) is not None
             and src.is_file()]
    unrev = [unrev[i] for i in sorted(rng.permutation(len(unrev))[: cfg.max_teacher_tiles])]
    if cfg.interpolate is None:
        cfg = dataclasses.replace(cfg, interpolate=1.0 if unrev else MIX_ALONE)
    refit = bool(cfg.refit and held)
    fit = _Fit(project, base_seg, base_card, cfg, device, stop_or_wait, should_stop)
    # each fit's share of the bar in proportion to its estimated work: the refit is a second fit of about the same
    # size (the bar ran to 98 % in the check, then started again from 0)
    first, second = fit.work(train_items, unrev, len(held)), fit.work(train_items + hold_items, unrev, 0)
    _, first_span, second_span, saving = bar.split(1.0, sum(first), sum(second) if refit else 0.0, 1.0)
    first_name, second_name = _run_names(len(held), len(items), refit, unit)
    stu, res, ds, repeat, used = yield from fit.run(train_items, unrev, held, first_name, first_span)
    check = res
    if refit:  # the check said how this recipe does on unseen corrections; the version learns from all of them
        stu, res, ds, repeat, used = yield from fit.run(train_items + hold_items, unrev, [], second_name,
                                                        second_span)
    checked = {r.key for r in held}
    corrections = ([{**e, "held_out_in_check": e["key"] in checked} for e in used] if refit
                   else [_correction_entry(r, True) for r in held] + used)
    student = stu.model
    seconds = time.perf_counter() - t0

    if stu.dense:  # a new network: its own weights, the card it was scored with
        weights = {k_: v.detach().cpu() for k_, v in student.state_dict().items()}
        card = ModelCard.from_dict(stu.segmenter.card.to_dict(), source=str(base_dir))
    else:
        prefix = weights_prefix(method)
        weights = dict(load_weights(base_dir))
        weights.update({prefix + k_: v.detach().cpu() for k_, v in student.state_dict().items()})
        card = ModelCard.from_dict(base_card.to_dict(), source=str(base_dir))
    card.name, card.parent, card.command = out_name, base_card.name or base_dir.name, command
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.training_data = str(project.root)
    card.config = {**card.config, "teacher": base_card.name or base_dir.name, "finetune": {
        **cfg.to_dict(), "method": "ifkd", "base": str(base_dir),
        "base_method": (base_card.config.get("finetune") or {}).get("base_method", method),
        "student_started_from": stu.init,
        "corrections": corrections, "refit": refit,
        "mixed_with_base": (f"{res.mixed:g} x fine-tuned + {1 - res.mixed:g} x {base_card.name or base_dir.name}"
                            if res.mixed is not None else "no: the fine-tuned weights alone"),
        "n_teacher_tiles": len(unrev), "correction_repeat": repeat, "working_scale": base_card.working_scale,
        "crops_per_epoch": len(ds)}}
    card.metrics = {
        "held_out": {**check.held_out_metrics(), "keys": [r.key for r in held],
                     "unchanged_only": len(items) >= 2 and not changed,
                     "version": "a refit on every correction after this check" if refit else "the checked student"},
        "finetune_seconds": round(seconds, 1), "epochs_run": len(res.losses),
        "early_stopped": res.early, "switches": res.switches,
        "epoch_losses": [round(x, 4) for x in res.losses],
        "parent_metrics": copy.deepcopy({k_: v for k_, v in base_card.metrics.items()
                                         if k_ in ("val", "test", "train_seconds")}),
    }
    for split in ("val", "test"):  # scores of the parent no longer describe this version
        card.metrics["parent_metrics"].get(split, {}).pop("confusion", None)
    yield saving.at(0.0, f"fine-tune: saving {out_name}")
    out = save_model(out_dir, weights, card)
    yield saving.at(1.0, f"fine-tune: saved {out_name}")
    return out
