"""IFKD fine-tuning from the pathologist's corrections (MIL -> IFKD, methods.md), for any model version.

``finetune(project, base_version_dir, out_name, options=..., should_stop=...)`` is a generator yielding
Progress per batch and returning the new model version folder inside the project (``models/<out_name>``).

Roles
    *Student* = the base version's own network (SSHR CAM net, multi-stage SegNet, CAM+SAM classifier or MIL
    net), so the new version keeps the base's method and architecture and loads through the same Segmenter.
    *Teacher* = a frozen copy of the base version; its *fused map* is its Segmenter's per-class scores
    (``Prediction.probs[:, :K]``, tissue shares summing to 1 per tissue pixel), computed once per teacher.

Scale (``ifkd_data``'s docstring)
    Every tile, whatever its size or shape, is rescaled by the base card's working scale (the factor inference
    applies) and the student trains on ``input_size`` crops of it; its targets go through the same geometry.
    The teacher's maps and the held-out scores come from the predict path itself (``inference.tiling
    .predict_image``), so teacher, student and the user's view all see tissue at one scale.

Targets, per training tile
    * corrected/accepted tiles: pixels the user touched are targets with full weight (they override the
      teacher); on *accepted* tiles the whole stored mask is (the user vouched for it); on merely corrected
      tiles the untouched pixels keep the teacher's map;
    * unreviewed tiles (up to ``max_teacher_tiles``): the teacher's map; when the file name carries an
      image-level label, absent classes are zeroed ("negatives against zeros");
    * white glass (the background rule every method uses at inference) takes no part, unless corrected.

Loss (student outputs as per-class maps in [0, 1] at input resolution)
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
    held-out corrected tiles, it becomes the teacher (its maps are recomputed) and the old teacher's weights
    become the student (the paper's swap, so the student does not inherit the teacher's noise). Early stopping
    after ``patience`` epochs without a held-out gain; the version written is the best student by held-out
    mIoU (the last one when no tile is held out).

Cancelling (``should_stop``) raises ``Cancelled`` between batches; nothing is written before the final atomic
save, so the project and the base version are untouched.
"""

from __future__ import annotations

import copy
import datetime as _dt
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..events import Cancelled, Progress, StopFlag, never_stop
from . import common
from .config import RunConfig
from .ifkd_loss import dense_outputs, ifkd_loss, weights_prefix
from .ifkd_data import (
    ScaledTile,
    TargetDataset,
    TileRecord,
    _read_record,
    corrected_items,
    item_image_path,
    scale_record,
)
from .loop import fit

SUPPORTED_METHODS = ("sshr", "multistage", "cam_sam", "mil")


@dataclass
class FinetuneConfig(RunConfig):
    """IFKD fine-tuning settings (sized for a CPU: a few minutes for tens of tiles); flips, seed, threads and
    device are in :mod:`.config`."""

    epochs: int = 8
    batch_size: int = 8
    lr: float = 3e-4  # 1e-3 helped weak bases but lowered a strong one (docs/benchmarks.md)
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-5
    held_out_fraction: float = 0.2
    max_teacher_tiles: int = 48
    switch_every: int = 3
    swap_on_switch: bool = True
    patience: int = 4
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    correction_weight: float = 1.0
    image_loss_weight: float = 0.5


def _teacher_maps(segmenter: Any, tiles: list[ScaledTile], k: int, should_stop: StopFlag, batch: int = 8
                  ) -> Generator[Progress, None, list[np.ndarray]]:
    """(K, h, w) float32 teacher scores per tile at the working scale: the Segmenter's tissue shares, predicted
    on the full-resolution tile (read from its file) by the predict path and rescaled like the tile."""
    from ..data.scale import rescale
    from ..data.tiles import read_rgb
    from ..inference.tiling import WINDOW_PIXELS, predict_image

    scale = segmenter.card.working_scale
    out: list[np.ndarray] = []
    for i in range(0, len(tiles), batch):
        if should_stop():
            raise Cancelled("fine-tune cancelled while computing the teacher's maps")
        chunk = [read_rgb(t.path) for t in tiles[i : i + batch]]
        if all(im.shape == chunk[0].shape for im in chunk) and chunk[0].shape[0] * chunk[0].shape[1] <= WINDOW_PIXELS:
            probs = list(segmenter.predict(np.stack(chunk), batch_size=batch).probs)
        else:  # real folders mix tile sizes (GlaS: 775x522 beside 581x442), big ones go in windows: one at a time
            probs = [predict_image(segmenter, im, should_stop=should_stop).probs[0] for im in chunk]
        out.extend(rescale(p[:k].transpose(1, 2, 0), scale).transpose(2, 0, 1).astype(np.float32) for p in probs)
        yield Progress(min(len(tiles), i + batch), len(tiles), "fine-tune: teacher maps")
    return out


def held_out_score(segmenter: Any, records: list[TileRecord], n_classes: int) -> float | None:
    """mIoU of ``segmenter`` on held-out corrected tiles against their stored masks (None without tiles).

    Scored as the user sees it: each full-resolution tile through the predict path (rescaled by the card's
    working scale inside ``predict``), against its full-resolution mask.
    """
    from ..inference.tiling import predict_image
    from ..ops.metrics import confusion_matrix, scores_from_confusion

    if not records:
        return None
    model = getattr(segmenter, "model", None)
    was_training = bool(model is not None and model.training)
    if model is not None:
        model.eval()
    cm = np.zeros((n_classes, n_classes), np.int64)
    try:
        for r in records:
            pred = predict_image(segmenter, r.image).class_map[0]
            cm += confusion_matrix(pred, r.mask, n_classes)
    finally:
        if was_training:
            model.train()
    score = scores_from_confusion(cm)["mIoU"]
    return None if np.isnan(score) else float(score)


def _correction_entry(record: TileRecord, held_out: bool) -> dict[str, Any]:
    """What the new version's card records about one corrected tile it used."""
    return {"key": record.key, "status": record.status, "touched_pixels": record.touched_pixels,
            "target_pixels": int(record.full.sum()) if record.full is not None else 0, "held_out": held_out}


def held_out_summary(metrics: dict, base_name: str) -> str:
    """One sentence on the held-out score of a fine-tuned version, with a warning when it did not improve.

    The widget and the CLI both show it: the version is written either way (the user asked for it, and a
    score on a few held-out tiles is noisy), but the user should know when the base did better there.
    """
    held = metrics.get("held_out") or {}
    if not held.get("n_tiles") or held.get("before") is None or held.get("after") is None:
        return "no corrected tile was held out (too few corrections), so no held-out score"
    text = (f"held-out mIoU {held['before']:.3f} -> {held['after']:.3f} on {held['n_tiles']} corrected "
            f"tile(s) kept out of training")
    if held["after"] <= held["before"]:
        text += (f". WARNING: not better than the base {base_name} on those tiles; compare both on more "
                 "corrected tiles before switching (with few held-out tiles the score is noisy)")
    return text


def swap_teacher_student(teacher: torch.nn.Module, student: torch.nn.Module, best_state: dict) -> dict:
    """IFKD's switch: ``teacher`` takes ``best_state`` (the best student so far), ``student`` the old teacher's
    parameters. Returns the new teacher's state (a copy)."""
    old = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    new = {k: v.detach().clone() for k, v in best_state.items()}
    teacher.load_state_dict(new)
    student.load_state_dict(old)
    return new


def _segmenter_with(base_seg: Any, model: torch.nn.Module) -> Any:
    """A shallow copy of the base Segmenter whose network is ``model`` (same card, same post-processing)."""
    seg = copy.copy(base_seg)
    seg.model = model
    return seg


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
    from ..inference.predict import glass_min_size
    from ..inference.segmenter import load_segmenter
    from ..models.card import ModelCard, load_card, load_weights, save_model
    from ..store import Project

    cfg = common.config_from_options(FinetuneConfig, dict(options or {}))
    if not isinstance(project, Project):
        project = Project.load(project)
    base_dir = Path(base_version_dir)
    base_card = load_card(base_dir)
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
        raise ValueError(f"The project {project.root} has no corrected or accepted tiles with their image file; "
                         "correct (or accept) some tiles in the Review widget first.")
    device, _ = common.start_run(cfg)  # the loader gets its own generator below, seeded after the teacher's maps
    k = project.schema.n_foreground
    t0 = time.perf_counter()

    def stop_or_wait() -> bool:
        while paused is not None and paused() and not should_stop():
            time.sleep(0.05)
        return should_stop()

    yield Progress(0, None, f"fine-tune: loading {base_dir.name} and {len(items)} corrected tiles")
    base_seg = load_segmenter(base_dir, device)
    # held-out slice of the corrected tiles: drives the switch and early stopping
    rng = np.random.default_rng(cfg.seed)
    order = [items[i] for i in rng.permutation(len(items))]
    n_hold = 0 if len(items) < 2 else min(len(items) - 1, max(1, round(cfg.held_out_fraction * len(items))))
    hold_items, train_items = order[:n_hold], order[n_hold:]
    held = [_read_record(project, it, True) for it in hold_items]
    unrev = [it for it in project.items() if it.status == "unreviewed" and item_image_path(project, it) is not None
             and item_image_path(project, it).is_file()]
    unrev = [unrev[i] for i in sorted(rng.permutation(len(unrev))[: cfg.max_teacher_tiles])]
    # corrected tiles are few: repeat them so that they are not drowned by teacher-only tiles
    repeat = int(min(4, max(1, len(unrev) // max(1, 2 * len(train_items)))))
    # every training tile kept only at the working scale, read one at a time (bounded memory for big tiles;
    # the teacher's maps read the full-resolution files again)
    scale = base_card.working_scale
    tiles: list[ScaledTile] = []
    corrections = [_correction_entry(r, True) for r in held]
    for it, with_mask in [(it, True) for it in train_items] + [(it, False) for it in unrev]:
        rec = _read_record(project, it, with_mask)
        tiles.append(scale_record(rec, scale, repeat if with_mask else 1, glass_min_size(base_card)))
        if with_mask:
            corrections.append(_correction_entry(rec, False))
        if stop_or_wait():
            raise Cancelled("fine-tune cancelled")

    size = int(base_card.input_size)
    student = copy.deepcopy(base_seg.model).to(device)
    teacher_model = copy.deepcopy(base_seg.model).to(device).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    teacher_seg = _segmenter_with(base_seg, teacher_model)
    score_before = held_out_score(base_seg, held, project.schema.n_classes)

    need_teacher = [i for i, t in enumerate(tiles) if t.needs_teacher]

    def teacher_targets() -> Generator[Progress, None, None]:
        maps = yield from _teacher_maps(teacher_seg, [tiles[i] for i in need_teacher], k, stop_or_wait)
        by_index = dict(zip(need_teacher, maps))
        for i, t in enumerate(tiles):
            t.set_teacher(by_index.get(i), k)

    yield from teacher_targets()
    ds = TargetDataset(tiles, size, base_card.mean, base_card.std, flips=cfg.flips, seed=cfg.seed, hed=cfg.hed())
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = common.make_loader(ds, cfg.batch_size, gen)

    new_ids = {id(p) for p in (student.new_parameters() if hasattr(student, "new_parameters") else [])}
    old = [p for p in student.parameters() if id(p) not in new_ids]
    new = [p for p in student.parameters() if id(p) in new_ids]
    groups = [g for g in ({"params": old, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": new, "lr": cfg.lr})
              if g["params"]]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    config = dict(base_card.config)

    def step(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, target, full, valid = (b.to(device) for b in batch)
        return ifkd_loss(dense_outputs(method, model, x, config), target, full, valid, cfg)

    state: dict[str, Any] = {"teacher_score": score_before, "best_score": None, "best_state": None,
                             "bad": 0, "early": False, "switches": 0, "history": [], "pending_teacher": False,
                             "last_score": score_before}

    def on_epoch_end(epoch: int, n: int, losses: list[float]) -> None:
        score = held_out_score(_segmenter_with(base_seg, student), held, project.schema.n_classes)
        state["last_score"] = score
        state["history"].append(None if score is None else round(score, 4))
        best = state["best_score"]
        if score is None or best is None or score > best:
            state["best_score"], state["bad"] = score, 0
            state["best_state"] = {k_: v.detach().clone() for k_, v in student.state_dict().items()}
        else:
            state["bad"] += 1
        ts = state["teacher_score"]
        if (cfg.switch_every and epoch % cfg.switch_every == 0 and epoch < cfg.epochs and ts is not None
                and state["best_score"] is not None and state["best_score"] > ts):
            # the best student becomes the teacher, the old teacher becomes the student (paper's swap)
            if cfg.swap_on_switch:
                swap_teacher_student(teacher_model, student, state["best_state"])
            else:  # the teacher improves, the student keeps its own weights
                teacher_model.load_state_dict(state["best_state"])
            state["teacher_score"] = state["best_score"]
            state["switches"] += 1
            state["pending_teacher"] = True
        if cfg.patience and score is not None and state["bad"] >= cfg.patience:
            state["early"] = True

    def stop_fn() -> bool:
        return state["early"] or state["pending_teacher"] or stop_or_wait()

    epochs_done = 0
    losses: list[float] = []
    while epochs_done < cfg.epochs:
        run = fit(student, opt, loader, step, epochs=cfg.epochs, start_epoch=epochs_done, should_stop=stop_fn,
                  on_epoch_end=on_epoch_end, desc="fine-tune")
        try:
            while True:
                p = next(run)
                epochs_done = p.step // len(loader)
                p.metrics["held_out"] = state["last_score"] if state["last_score"] is not None else float("nan")
                p.metrics["epoch"] = float(epochs_done)
                yield p
        except StopIteration as stop:
            losses += stop.value.epoch_losses
            break
        except Cancelled:
            if should_stop():
                raise
            epochs_done = len(state["history"])
            if state["early"]:
                break
            # a teacher switch: recompute the teacher's maps, then go on with the next epoch
            state["pending_teacher"] = False
            yield from teacher_targets()
            yield Progress(epochs_done * len(loader), cfg.epochs * len(loader),
                           f"fine-tune: switch {state['switches']} (teacher <- best student)",
                           {"held_out": state["last_score"] if state["last_score"] is not None else float("nan"),
                            "epoch": float(epochs_done)})

    if stop_or_wait():
        raise Cancelled("fine-tune cancelled")
    final_state = state["best_state"] if held and state["best_state"] is not None else student.state_dict()
    student.load_state_dict(final_state)
    score_after = held_out_score(_segmenter_with(base_seg, student), held, project.schema.n_classes)
    seconds = time.perf_counter() - t0

    prefix = weights_prefix(method)
    weights = dict(load_weights(base_dir))
    weights.update({prefix + k_: v.detach().cpu() for k_, v in student.state_dict().items()})
    card = ModelCard.from_dict(base_card.to_dict(), source=str(base_dir))
    card.name, card.parent, card.command = out_name, base_card.name or base_dir.name, command
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.training_data = str(project.root)
    card.config = {**base_card.config, "finetune": {
        **cfg.to_dict(), "method": "ifkd", "base": str(base_dir), "corrections": corrections,
        "n_teacher_tiles": len(unrev), "correction_repeat": repeat, "working_scale": scale,
        "crops_per_epoch": len(ds)}}
    card.metrics = {
        "held_out": {"before": score_before, "after": score_after, "metric": "mIoU", "n_tiles": len(held),
                     "keys": [r.key for r in held], "history": state["history"],
                     "improved": None if score_before is None or score_after is None else score_after > score_before},
        "finetune_seconds": round(seconds, 1), "epochs_run": len(state["history"]),
        "early_stopped": bool(state["early"]), "switches": state["switches"],
        "epoch_losses": [round(x, 4) for x in losses],
        "parent_metrics": copy.deepcopy({k_: v for k_, v in base_card.metrics.items()
                                         if k_ in ("val", "test", "train_seconds")}),
    }
    for split in ("val", "test"):  # scores of the parent no longer describe this version
        card.metrics["parent_metrics"].get(split, {}).pop("confusion", None)
    yield Progress(1, 1, "fine-tune: saving", {"held_out": score_after if score_after is not None else float("nan")})
    return save_model(out_dir, weights, card)
