"""IFKD's distillation loop, shared by fine-tuning from corrections (``ifkd.finetune``) and the full method
trained from image-level labels (``ifkd_train.train_ifkd``); see ``ifkd.py``'s docstring for the roles.

``distil`` trains the student on a :class:`TargetDataset` whose targets are the teacher's maps (recomputed when
the teacher changes) combined with any corrections, scores it on held-out tiles with masks after every epoch,
and switches teacher and student on IFKD's schedule when the student is better by more than the held-out
slice's noise (:func:`switch_margin`).

Progress: ``distil`` reports on a :class:`Span` of its caller's bar (the whole bar by default), so a job of
several parts (fine-tuning: a check fit, then a refit on every correction) shows one bar that only moves forward,
each part taking a share in proportion to its estimated work (:func:`distil_work`, in training-batch units).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..events import Cancelled, Progress, StopFlag
from . import common
from .ifkd_data import ScaledTile, TargetDataset, TileRecord
from .ifkd_loss import dense_outputs, dense_student_loss, ifkd_loss
from .ifkd_student import Student, segmenter_with
from .loop import fit

TILE_WORK = 1.0  # a tile predicted (teacher's maps, held-out scores) ~ one training batch: a forward pass over a
# ~0.3 MP tile against forward + backward (~3x a forward) over 8 crops of 112 px; a rough guess, only for the bar
READ_WORK = 0.1  # a tile read from its file and rescaled to the working scale
EPOCH_LOSS = "epoch_loss"  # the metric ``fit`` yields once an epoch is done and scored (on_epoch_end's return)


class Span:
    """A share ``[lo, hi]`` of one progress bar over a whole job; its reports never move the bar backwards.

    Each part of a job reports the fraction of its own work done (``at``), placed inside its span; spans split
    (``split``) in proportion to estimated work. All spans of one bar share its furthest point, so a part that
    redoes work (a teacher switch recomputes maps) or reports out of order holds the bar instead of moving it back.
    The Progress it gives counts the job in ``UNITS`` (thousandths): ``step / total`` is the whole job's fraction.
    """

    UNITS = 1000

    def __init__(self, lo: float = 0.0, hi: float = 1.0, _furthest: list[float] | None = None) -> None:
        self.lo, self.hi = float(lo), float(hi)
        self._furthest = _furthest if _furthest is not None else [self.lo]

    def split(self, *work: float) -> list[Span]:
        """Consecutive sub-spans in proportion to ``work`` (any units; all zero: equal shares)."""
        total = float(sum(work))
        shares = [w / total for w in work] if total > 0 else [1.0 / len(work)] * len(work)
        out, lo = [], self.lo
        for i, share in enumerate(shares):
            hi = self.hi if i == len(shares) - 1 else min(self.hi, lo + share * (self.hi - self.lo))
            out.append(Span(lo, hi, self._furthest))
            lo = hi
        return out

    def at(self, done: float, desc: str, metrics: dict[str, float] | None = None) -> Progress:
        """The job's Progress when ``done`` (0..1) of this span's work is done."""
        self._furthest[0] = max(self._furthest[0], self.lo + (self.hi - self.lo) * min(1.0, max(0.0, float(done))))
        return self.here(desc, metrics)

    def here(self, desc: str, metrics: dict[str, float] | None = None) -> Progress:
        """The job's Progress where the bar already is (work that was not planned, e.g. a teacher switch)."""
        return Progress(int(self._furthest[0] * self.UNITS + 1e-6), self.UNITS, desc, dict(metrics or {}))


def distil_work(n_teacher: int, n_held: int, batches: int, epochs: int) -> tuple[float, float, float, float]:
    """Estimated work of :func:`distil`'s parts in training batches: (scoring the starting model on the held-out
    tiles, the teacher's maps, the epochs with their held-out scores, scoring the final weights)."""
    return (n_held * TILE_WORK, n_teacher * TILE_WORK, epochs * (batches + n_held * TILE_WORK), n_held * TILE_WORK)


@dataclass
class DistilResult:
    """What one distillation run did; the student's final weights are in the Student's model."""

    score_before: float | None
    score_after: float | None
    margin: float
    history: list
    switches: int
    early: bool
    losses: list[float]
    kept: str
    n_held: int
    mixed: float | None = None  # the fine-tuned weights' share when mixed with the base's (``mix_with_base``)

    @staticmethod
    def nan_score(v: float | None) -> float:
        return float("nan") if v is None else v

    def held_out_metrics(self) -> dict[str, Any]:
        b, a = self.score_before, self.score_after
        return {"before": b, "after": a, "metric": "mIoU", "n_tiles": self.n_held, "history": self.history,
                "switch_margin": round(self.margin, 4), "kept": self.kept,
                "improved": None if b is None or a is None else a > b}


def teacher_maps(segmenter: Any, tiles: list[ScaledTile], k: int, should_stop: StopFlag, batch: int = 8,
                  desc: str = "IFKD") -> Generator[Progress, None, list[np.ndarray]]:
    """(K, h, w) float32 teacher scores per tile at the working scale, predicted on the full-resolution tile
    (read from its file) and rescaled like the tile.

    A teacher with a *fused map* (the MIL network: ``fused_maps``, f = sum_i w_i sigmoid(side_i)) gives that map,
    as IFKD distils it (methods.md); other Segmenters give their tissue shares (``Prediction.probs[:K]``).
    Tiles too big for one window go through the predict path's blended windows (their shares).
    """
    from ..data.scale import rescale
    from ..inference.tiling import WINDOW_PIXELS, predict_image
    from .ifkd_data import read_tile

    scale = segmenter.card.working_scale
    out: list[np.ndarray] = []
    for i in range(0, len(tiles), batch):
        if should_stop():
            raise Cancelled("cancelled while computing the teacher's maps")
        chunk = [t.source if t.path is None else read_tile(t.path) for t in tiles[i : i + batch]]
        fused = getattr(segmenter, "fused_maps", None)
        if fused is not None and all(im.shape[0] * im.shape[1] <= WINDOW_PIXELS for im in chunk):
            probs = [fused(im[None])[0].float().cpu().numpy() for im in chunk]
        elif all(im.shape == chunk[0].shape for im in chunk) and chunk[0].shape[0] * chunk[0].shape[1] <= WINDOW_PIXELS:
            probs = list(segmenter.predict(np.stack(chunk), batch_size=batch).probs)
        else:  # real folders mix tile sizes (GlaS: 775x522 beside 581x442), big ones go in windows: one at a time
            probs = [predict_image(segmenter, im, should_stop=should_stop).probs[0] for im in chunk]
        out.extend(rescale(p[:k].transpose(1, 2, 0), scale).transpose(2, 0, 1).astype(np.float32) for p in probs)
        yield Progress(min(len(tiles), i + batch), len(tiles), f"{desc}: teacher maps")
    return out


def held_out_score(segmenter: Any, records: list[TileRecord], n_classes: int,
                   per_tile: list[float] | None = None) -> float | None:
    """mIoU of ``segmenter`` on held-out corrected tiles against their stored masks (None without tiles).

    Scored as the user sees it: each full-resolution tile through the predict path (rescaled by the card's
    working scale inside ``predict``), against its full-resolution mask. ``per_tile``, when given, receives
    each tile's own mIoU (for :func:`switch_margin`).
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
            one = confusion_matrix(pred, r.mask, n_classes)
            cm += one
            if per_tile is not None:
                per_tile.append(float(np.nan_to_num(scores_from_confusion(one)["mIoU"])))
    finally:
        if was_training:
            model.train()
    score = scores_from_confusion(cm)["mIoU"]
    return None if np.isnan(score) else float(score)


def switch_margin(per_tile: list[float], floor: float) -> float:
    """How much better than the teacher a student must score on the held-out tiles to take its place.

    The held-out slice is a few tiles, whose mIoU moves by more than a real gain between epochs (measured on
    real GlaS images: 0.41 to 0.78 on two tiles across the epochs of one run). The margin is the larger of
    ``floor`` and twice the standard error of the teacher's per-tile mIoU; with one tile (no spread to
    measure) it is 0.1.
    """
    if len(per_tile) < 2:
        return max(floor, 0.1)
    return max(floor, 2.0 * float(np.std(per_tile, ddof=1)) / np.sqrt(len(per_tile)))




def swap_teacher_student(teacher: torch.nn.Module, student: torch.nn.Module, best_state: dict) -> dict:
    """IFKD's switch: ``teacher`` takes ``best_state`` (the best student so far), ``student`` the old teacher's
    parameters. Returns the new teacher's state (a copy)."""
    old = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    new = {k: v.detach().clone() for k, v in best_state.items()}
    teacher.load_state_dict(new)
    student.load_state_dict(old)
    return new




def _relabelled(gen: Generator[Progress, None, Any], report: Callable[[Progress], Progress]
                ) -> Generator[Progress, None, Any]:
    """``gen``'s reports passed through ``report``; returns ``gen``'s value."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield report(p)


def distil(ds: TargetDataset, held: list[TileRecord], teacher_seg: Any, stu: Student, cfg: Any, *,
           n_classes: int, config: dict, device: torch.device, stop_or_wait: Callable[[], bool],
           should_stop: StopFlag, desc: str = "IFKD", span: Span | None = None
           ) -> Generator[Progress, None, DistilResult]:
    """Train ``stu.model`` on ``ds`` from ``teacher_seg``'s maps (a frozen network; it may be replaced by a
    better student) for ``cfg.epochs``; leaves the kept weights (``cfg.keep``) in ``stu.model``.

    Args:
        ds: the crops; its tiles' targets are (re)set here from the teacher's maps.
        held: tiles with masks scored after every epoch (switching, early stopping, the version's metrics).
        n_classes: classes of the schema, background included (K + 1).
        config: the teacher card's config (how a CAM student's side maps are fused).
        stop_or_wait: polled between batches (waits while paused); ``should_stop`` tells a cancel from a switch.
        desc: what this run is, in the user's words; reports read "<desc>: epoch 3/8".
        span: the share of the job's progress bar this run fills (default: the whole bar); it only moves forward.
    Yields Progress whose metrics are: ``loss``, the mean loss of the epoch so far (a batch's own loss swings too
    much to read), the loss's parts and ``lr`` of the last batch; with held-out tiles ``held_out_base``, the
    starting model's mIoU on them, and, once an epoch has been scored, ``held_out``, the mIoU after ``epoch``
    epochs.
    """
    tiles = ds.tiles
    k = n_classes - 1
    student = stu.model
    teacher = {"seg": teacher_seg}  # replaced when a student becomes the teacher
    need_teacher = [i for i, t in enumerate(tiles) if t.needs_teacher]
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = common.make_loader(ds, cfg.batch_size, gen)  # made first: its length sizes this run's share of the bar
    n_batches, n_held = len(loader), len(held)
    s_before, s_maps, s_epochs, s_after = (span or Span()).split(
        *distil_work(len(need_teacher), n_held, n_batches, cfg.epochs))

    if held:
        yield s_before.at(0.0, f"{desc}: scoring the starting model on the held-out "
                               f"{'tiles' if n_held > 1 else 'tile'}")
    base_tiles: list[float] = []
    score_before = held_out_score(teacher_seg, held, n_classes, base_tiles)
    margin = switch_margin(base_tiles, cfg.switch_margin)
    base_metrics = {} if score_before is None else {"held_out_base": score_before}

    def teacher_targets(report: Callable[[Progress], Progress]) -> Generator[Progress, None, None]:
        maps = yield from _relabelled(teacher_maps(teacher["seg"], [tiles[i] for i in need_teacher], k, stop_or_wait,
                                                   desc=desc), report)
        by_index = dict(zip(need_teacher, maps))
        for i, t in enumerate(tiles):
            t.set_teacher(by_index.get(i), k)

    yield from teacher_targets(lambda p: s_maps.at(
        p.fraction or 0.0, f"{desc}: training targets, the model's maps of {p.total} tiles ({p.step}/{p.total})",
        base_metrics))

    new_ids = {id(p) for p in (student.new_parameters() if hasattr(student, "new_parameters") else [])}
    old = [p for p in student.parameters() if id(p) not in new_ids]
    new = [p for p in student.parameters() if id(p) in new_ids]
    groups = [g for g in ({"params": old, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": new, "lr": cfg.lr})
              if g["params"]]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    method = teacher_seg.card.method
    alpha, freeze_bn = cfg.anchor_weight, cfg.freeze_bn
    anchored = ([(p, p.detach().clone()) for p in (student.parameters() if stu.whole_from_base else old)]
                if alpha > 0 and stu.from_base else [])
    share = 1.0 if cfg.interpolate is None else float(cfg.interpolate)
    base_state = ({k_: v.detach().clone() for k_, v in student.state_dict().items()}
                  if share < 1 and stu.whole_from_base else None)

    def step(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        if freeze_bn:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        x, target, full, valid = (b.to(device) for b in batch)
        if stu.dense:
            loss, metrics = dense_student_loss(model(x), target, full, valid, cfg)
        else:
            loss, metrics = ifkd_loss(dense_outputs(method, model, x, config), target, full, valid, cfg)
        if anchored:
            drift = sum(((p - p0) ** 2).sum() for p, p0 in anchored)
            loss = loss + 0.5 * alpha * drift
            metrics = {**metrics, "drift": float(drift.detach())}
        return loss, metrics

    state: dict[str, Any] = {"teacher_score": score_before, "best_score": None, "best_state": None,
                             "bad": 0, "early": False, "switches": 0, "history": [], "pending_teacher": False,
                             "epoch_score": None}

    def on_epoch_end(epoch: int, n: int, losses: list[float]) -> dict[str, float]:
        score = held_out_score(segmenter_with(stu.segmenter, student), held, n_classes)
        state["epoch_score"] = score
        state["history"].append(None if score is None else round(score, 4))
        best = state["best_score"]
        if score is None or best is None or score > best:
            state["best_score"], state["bad"] = score, 0
            state["best_state"] = {k_: v.detach().clone() for k_, v in student.state_dict().items()}
        else:
            state["bad"] += 1
        ts = state["teacher_score"]
        if (cfg.switch_every and epoch % cfg.switch_every == 0 and epoch < cfg.epochs and ts is not None
                and state["best_score"] is not None and state["best_score"] > ts + margin):
            # the best student becomes the teacher, the old teacher becomes the student (paper's swap)
            if not stu.twin_of_teacher:  # a dense student of a CAM teacher: the teacher becomes a dense net too
                new_teacher = copy.deepcopy(student).eval()
                new_teacher.load_state_dict(state["best_state"])
                for p in new_teacher.parameters():
                    p.requires_grad_(False)
                teacher["seg"] = segmenter_with(stu.segmenter, new_teacher)
            elif cfg.swap_on_switch:
                swap_teacher_student(teacher["seg"].model, student, state["best_state"])
            else:  # the teacher improves, the student keeps its own weights
                teacher["seg"].model.load_state_dict(state["best_state"])
            state["teacher_score"] = state["best_score"]
            state["switches"] += 1
            state["pending_teacher"] = True
        if cfg.patience and score is not None and state["bad"] >= cfg.patience:
            state["early"] = True
        return {EPOCH_LOSS: losses[-1]}  # fit yields it as one more report: the epoch's score is shown at once

    def stop_fn() -> bool:
        return state["early"] or state["pending_teacher"] or stop_or_wait()

    def scores() -> dict[str, float]:
        """The held-out scores, each named for what it is: the starting model's, and the last epoch's (``epoch``:
        the epochs it was scored after)."""
        out = dict(base_metrics)
        if state["epoch_score"] is not None:
            out.update(held_out=state["epoch_score"], epoch=float(len(state["history"])))
        return out

    def done(step: int) -> float:  # the share of this run's epochs (batches and held-out scores) done
        return (step + len(state["history"]) * n_held * TILE_WORK) / (cfg.epochs * (n_batches + n_held * TILE_WORK))

    epochs_done = 0
    losses: list[float] = []
    running = {"epoch": -1, "sum": 0.0, "n": 0}  # the loss of the epoch so far
    while epochs_done < cfg.epochs:
        run = fit(student, opt, loader, step, epochs=cfg.epochs, start_epoch=epochs_done, should_stop=stop_fn,
                  on_epoch_end=on_epoch_end, desc=desc)
        try:
            while True:
                p = next(run)
                if EPOCH_LOSS in p.metrics:  # after an epoch's held-out score
                    n_done = len(state["history"])
                    yield s_epochs.at(done(p.step), f"{desc}: epoch {n_done}/{cfg.epochs} done",
                                      {"loss": p.metrics[EPOCH_LOSS], **scores()})
                    continue
                epoch = (p.step - 1) // n_batches
                if running["epoch"] != epoch:
                    running.update(epoch=epoch, sum=0.0, n=0)
                running["sum"] += p.metrics["loss"]
                running["n"] += 1
                parts = {k_: v for k_, v in p.metrics.items() if k_ != "loss"}
                # the loss and the scores before the loss's parts: a terminal's progress line is cut at 150 characters
                yield s_epochs.at(done(p.step), f"{desc}: epoch {epoch + 1}/{cfg.epochs}",
                                  {"loss": running["sum"] / running["n"], **scores(), **parts})
        except StopIteration as stop:
            losses += stop.value.epoch_losses
            break
        except Cancelled:
            if should_stop():
                raise
            epochs_done = len(state["history"])
            if state["early"]:
                break
            # a teacher switch: recompute the teacher's maps (work the bar did not plan: it holds), then go on
            state["pending_teacher"] = False
            what = f"{desc}: switch {state['switches']} (teacher <- best student)"
            yield from teacher_targets(lambda p, what=what: s_epochs.here(
                f"{what}, its maps ({p.step}/{p.total} tiles)", scores()))
            yield s_epochs.here(what, scores())

    if stop_or_wait():
        raise Cancelled(f"{desc} cancelled")
    keep_best = cfg.keep == "best" and held and state["best_state"] is not None
    final_state = state["best_state"] if keep_best else student.state_dict()
    student.load_state_dict(final_state)
    if base_state is not None:
        student.load_state_dict(mix_with_base(student.state_dict(), base_state, share))
    if held:
        yield s_after.at(0.0, f"{desc}: scoring the final weights on the held-out "
                              f"{'tiles' if n_held > 1 else 'tile'}", scores())
    score_after = held_out_score(segmenter_with(stu.segmenter, student), held, n_classes)
    return DistilResult(score_before, score_after, margin, state["history"], state["switches"],
                        bool(state["early"]), losses, cfg.keep, len(held),
                        share if base_state is not None else None)


def mix_with_base(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor], share: float
                  ) -> dict[str, torch.Tensor]:
    """``share`` x the fine-tuned weights + (1 - share) x the base's (WiSE-FT, Wortsman et al. 2022).

    A network retrained on a handful of corrected images forgets some of what it knew; halfway between the two
    keeps both (on GlaS, 10 corrected images: one draw in three fell to -0.09, mixed none did; docs/design.md).
    Floating tensors (weights, batch-norm statistics) are mixed; counters keep the fine-tuned value.
    """
    return {k_: (share * v + (1 - share) * base[k_].to(v.device, v.dtype)) if v.is_floating_point() else v
            for k_, v in tuned.items()}