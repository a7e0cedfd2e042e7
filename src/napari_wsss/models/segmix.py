"""SegMix feedback schedulers: coarse-to-fine cell shuffling driven by plateauing training signals.

:class:`FeedbackScheduler` walks through a list of values (patch sizes going down, shuffle ratios going up)
one step each time the monitored signal (mean training loss, or label accuracy, over a window of batches) has
not improved for ``patience`` windows. :class:`SegMixScheduler` holds the two schedulers, each with its own
signal and plateau detector, the random generator of the cell plans and the history of changes; its
``state_dict`` goes into the training checkpoint (``extra["segmix"]``) so a resumed run continues at the same
patch size and ratio.

Pacing: the paper's curriculum runs over the whole training, so by default (``segmix_pacing="epoch"``) a
feedback window is a fraction of an epoch (``segmix_window_epochs`` of the epoch's mixed batches) and the
finest setting comes after several epochs. ``"batches"`` keeps the fixed windows of ``segmix_window`` batches
(the first implementation: on LUAD-sized data, ~800 batches per epoch, it reached the finest setting within
the first epoch). Only a ``segmix_prob`` share of batches is mixed (the paper mixes part of the data); the
clean ones train on the tiles as they are and give the schedulers no feedback.

``mix_batch`` (the pure transform) lives in :mod:`napari_wsss.ops.segmix` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..ops.segmix import mix_batch  # noqa: F401  (re-export: the transform the trainers call)

SIGNALS = {"loss": "min", "accuracy": "max"}
LABEL_MODES = ("hard", "soft")
PACINGS = ("epoch", "batches")


class FeedbackScheduler:
    """Step through ``values`` when a monitored signal plateaus.

    ``observe(v)`` collects per-batch values; every ``window`` of them is averaged and passed to ``step``.
    ``step(signal)`` counts a window as "bad" unless the signal beats the best so far by ``min_delta``
    (relative); after ``patience`` bad windows in a row it moves to the next value, and the best is reset (the
    harder task raises the loss, so the next value is judged against its own baseline). At the last value it
    stays.
    """

    def __init__(self, values: Sequence[float], *, patience: int = 3, window: int = 20, mode: str = "min",
                 min_delta: float = 0.01) -> None:
        if not values:
            raise ValueError("FeedbackScheduler needs at least one value.")
        if patience < 1 or window < 1:
            raise ValueError(f"patience and window must be >= 1, got patience={patience}, window={window}.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (loss) or 'max' (accuracy), got {mode!r}.")
        self.values = list(values)
        self.patience, self.window, self.mode, self.min_delta = patience, window, mode, min_delta
        self.index = 0
        self.best: float | None = None
        self.bad = 0
        self._buffer: list[float] = []

    @property
    def value(self) -> float:
        return self.values[self.index]

    def _improved(self, signal: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return signal < self.best - self.min_delta * abs(self.best)
        return signal > self.best + self.min_delta * abs(self.best)

    def step(self, signal: float) -> bool:
        """Feed one window's signal; returns True when the value changed."""
        if self._improved(signal):
            self.best, self.bad = float(signal), 0
            return False
        self.bad += 1
        if self.bad < self.patience or self.index == len(self.values) - 1:
            return False
        self.index += 1
        self.best, self.bad = None, 0
        return True

    def observe(self, value: float) -> bool:
        """Collect one batch's value; steps (and returns whether the value changed) when a window is full."""
        self._buffer.append(float(value))
        if len(self._buffer) < self.window:
            return False
        signal = sum(self._buffer) / len(self._buffer)
        self._buffer = []
        return self.step(signal)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "best": self.best, "bad": self.bad, "buffer": list(self._buffer),
                "values": list(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["values"]) != self.values:
            raise ValueError(f"SegMix scheduler state is for values {list(state['values'])}, this run uses "
                             f"{self.values}; resume with the same SegMix settings.")
        self.index, self.bad = int(state["index"]), int(state["bad"])
        self.best = None if state["best"] is None else float(state["best"])
        self._buffer = [float(v) for v in state["buffer"]]


def patch_sequence(start: int, minimum: int, factor: float = 0.5) -> list[int]:
    """Patch sizes from ``start`` down by ``factor`` while >= ``minimum`` (``start`` always included)."""
    out = [int(start)]
    while int(out[-1] * factor) >= max(1, minimum) and int(out[-1] * factor) < out[-1]:
        out.append(int(out[-1] * factor))
    return out


def ratio_sequence(start: float, maximum: float, step: float = 0.125) -> list[float]:
    """Shuffle ratios from ``start`` up by ``step`` while <= ``maximum``."""
    out = [float(start)]
    while step > 0 and out[-1] + step <= maximum + 1e-9:
        out.append(round(out[-1] + step, 6))
    return out


class SegMixScheduler:
    """Patch size and shuffle ratio of SegMix, each moved by its own training feedback; mixes batches.

    The constructor's defaults are the first implementation's (both schedulers on one signal, every batch
    mixed); :meth:`from_config` applies the trainer config's (paced windows, separate signals, clean batches).

    Args:
        patch: first cell side in pixels (of the network input).
        ratio: first shuffle ratio.
        min_patch, patch_factor: the patch shrinks by ``patch_factor`` per plateau, not below ``min_patch``.
        max_ratio, ratio_step: the ratio grows by ``ratio_step`` per plateau, not above ``max_ratio``.
        patience, window: plateau = ``patience`` windows of ``window`` mixed batches without improvement.
        signal: what the patch scheduler watches: "loss" (batch loss, lower is better) or "accuracy"
            (image-label accuracy of the deep head on the mixed batch, higher is better).
        ratio_signal: what the ratio scheduler watches (same choices); None: the same as ``signal``, so the two
            step together.
        labels: "hard" (union) or "soft" (area-weighted) targets for the loss.
        prob: share of batches mixed (drawn per batch from the seeded generator); the others pass unchanged.
        seed: seeds the generator of the cell plans and of the mixed/clean draws.
    """

    def __init__(self, patch: int, ratio: float, *, min_patch: int = 8, patch_factor: float = 0.5,
                 max_ratio: float = 0.5, ratio_step: float = 0.125, patience: int = 3, window: int = 20,
                 signal: str = "loss", ratio_signal: str | None = None, labels: str = "hard", prob: float = 1.0,
                 seed: int = 0) -> None:
        ratio_signal = signal if ratio_signal is None else ratio_signal
        for name, value in (("signal", signal), ("ratio_signal", ratio_signal)):
            if value not in SIGNALS:
                raise ValueError(f"SegMix {name} must be one of {sorted(SIGNALS)}, got {value!r}.")
        if labels not in LABEL_MODES:
            raise ValueError(f"SegMix labels must be one of {list(LABEL_MODES)}, got {labels!r}.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"SegMix prob (share of batches mixed) must be in [0, 1], got {prob}.")
        self.patch_scheduler = FeedbackScheduler(patch_sequence(patch, min_patch, patch_factor), patience=patience,
                                                 window=window, mode=SIGNALS[signal])
        self.ratio_scheduler = FeedbackScheduler(ratio_sequence(ratio, max(ratio, max_ratio), ratio_step),
                                                 patience=patience, window=window, mode=SIGNALS[ratio_signal])
        self.signal, self.ratio_signal, self.labels, self.prob = signal, ratio_signal, labels, float(prob)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.batches = 0
        self.mixed = 0  # batches mixed (and observed) so far
        self.last_mixed = True  # whether the batch of the latest ``mix`` was mixed (``observe`` skips clean ones)
        self.history: list[dict[str, float]] = [{"batch": 0, "patch": self.patch, "ratio": self.ratio}]

    @classmethod
    def from_config(cls, cfg: Any, batches_per_epoch: int | None = None) -> SegMixScheduler:
        """Build from a trainer config (fields ``segmix_*`` of ``training.config.CamTrainConfig``; patch 0 =
        input/2).

        ``batches_per_epoch`` (the loader's length) sizes the windows under ``segmix_pacing="epoch"``:
        ``segmix_window_epochs`` x the epoch's expected mixed batches (at least 1).

        Raises:
            ValueError: an unknown pacing, a window fraction <= 0, or epoch pacing without ``batches_per_epoch``.
        """
        patch = int(getattr(cfg, "segmix_patch", 0)) or max(1, int(cfg.input_size) // 2)
        pacing = str(getattr(cfg, "segmix_pacing", "epoch"))
        prob = float(getattr(cfg, "segmix_prob", 0.5))
        if pacing == "batches":
            window = int(getattr(cfg, "segmix_window", 20))
        elif pacing == "epoch":
            fraction = float(getattr(cfg, "segmix_window_epochs", 0.5))
            if fraction <= 0:
                raise ValueError(f"segmix_window_epochs must be > 0 (the feedback window as a fraction of an "
                                 f"epoch), got {fraction}.")
            if not batches_per_epoch:
                raise ValueError("SegMix pacing 'epoch' needs the number of batches per epoch; pass "
                                 "batches_per_epoch=len(loader), or set segmix_pacing='batches'.")
            window = max(1, round(fraction * int(batches_per_epoch) * prob))
        else:
            raise ValueError(f"segmix_pacing must be one of {list(PACINGS)}, got {pacing!r}.")
        ratio_signal = str(getattr(cfg, "segmix_ratio_signal", "") or "") or None
        return cls(patch, float(getattr(cfg, "segmix_ratio", 0.25)),
                   min_patch=int(getattr(cfg, "segmix_min_patch", 8)),
                   max_ratio=float(getattr(cfg, "segmix_max_ratio", 0.5)),
                   patience=int(getattr(cfg, "segmix_patience", 3)), window=window,
                   signal=str(getattr(cfg, "segmix_signal", "loss")), ratio_signal=ratio_signal,
                   labels=str(getattr(cfg, "segmix_labels", "hard")), prob=prob, seed=int(getattr(cfg, "seed", 0)))

    @property
    def patch(self) -> int:
        return int(self.patch_scheduler.value)

    @property
    def ratio(self) -> float:
        return float(self.ratio_scheduler.value)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mix a batch at the current patch/ratio, or, with probability 1 - ``prob``, leave it clean:
        (x_mixed, training target, hard labels)."""
        # no draw at prob 1: the plans of a run that mixes every batch are the first implementation's
        self.last_mixed = self.prob >= 1.0 or bool(torch.rand((), generator=self.generator) < self.prob)
        if not self.last_mixed:
            return x, y, y
        patch = min(self.patch, x.shape[-1], x.shape[-2])
        xm, hard, soft = mix_batch(x, y, patch, self.ratio, self.generator)
        return xm, (soft if self.labels == "soft" else hard), hard

    @staticmethod
    def _value(signal: str, loss: float, logits: torch.Tensor | None, hard: torch.Tensor | None) -> float:
        if signal == "loss":
            return float(loss)
        if logits is None or hard is None:
            raise ValueError("SegMix signal 'accuracy' needs the batch logits and labels.")
        return float(((logits.detach() > 0).float() == (hard > 0.5).float()).float().mean())

    def observe(self, loss: float, logits: torch.Tensor | None = None, hard: torch.Tensor | None = None) -> bool:
        """Feed one batch's feedback (its loss; for an "accuracy" signal also deep logits (N, K) and hard labels).
        A clean batch (see :meth:`mix`) is counted but not fed. Returns True when the patch size or ratio
        changed."""
        self.batches += 1
        if not self.last_mixed:
            return False
        self.mixed += 1
        changed = self.patch_scheduler.observe(self._value(self.signal, loss, logits, hard))
        changed = self.ratio_scheduler.observe(self._value(self.ratio_signal, loss, logits, hard)) or changed
        if changed:
            self.history.append({"batch": self.batches, "patch": self.patch, "ratio": self.ratio})
        return changed

    def metrics(self) -> dict[str, float]:
        """For Progress: the current patch size and ratio."""
        return {"segmix_patch": float(self.patch), "segmix_ratio": self.ratio}

    def state_dict(self) -> dict[str, Any]:
        """Plain values + the generator state (a uint8 tensor): loads with ``torch.load(weights_only=True)``."""
        return {"patch": self.patch_scheduler.state_dict(), "ratio": self.ratio_scheduler.state_dict(),
                "batches": self.batches, "mixed": self.mixed, "history": [dict(h) for h in self.history],
                "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patch_scheduler.load_state_dict(state["patch"])
        self.ratio_scheduler.load_state_dict(state["ratio"])
        self.batches = int(state["batches"])
        self.mixed = int(state.get("mixed", self.batches))  # checkpoints from before clean batches: all mixed
        self.history = [dict(h) for h in state["history"]]
        if "rng" in state:
            self.generator.set_state(state["rng"])
