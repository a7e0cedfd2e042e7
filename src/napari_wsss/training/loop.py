"""The one training loop all methods share: a generator that yields Progress and stops when asked.

Method code supplies ``step_fn(model, batch) -> (loss, metrics)``; the loop owns the poly learning-rate
schedule, the optimiser step, the ``should_stop`` check before every batch and the epoch-end hook (where
trainers write their resumable checkpoint). On cancel it raises :class:`~napari_wsss.events.Cancelled`
between batches, so the only files that exist are the last complete (atomic) checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..events import Cancelled, Progress, StopFlag, never_stop

StepFn = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """Poly decay: ``base_lr * (1 - step / total_steps) ** power`` (0 at the end)."""
    return base_lr * max(0.0, 1.0 - step / max(1, total_steps)) ** power


@dataclass
class FitResult:
    """What a finished ``fit`` returns."""

    epochs: int
    steps: int
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, step_fn: StepFn, *,
        epochs: int, start_epoch: int = 0, power: float = 0.9, should_stop: StopFlag = never_stop,
        on_epoch_end: Callable[[int, int, list[float]], dict[str, float] | None] | None = None,
        desc: str = "training") -> Generator[Progress, None, FitResult]:
    """Train ``epochs`` epochs (from ``start_epoch``), yielding Progress after every batch.

    ``on_epoch_end(epoch, step, losses)`` may return metrics (a validation score): they are yielded as one more
    Progress with ``metrics["epoch"]`` set, so a live plot gets one point per epoch.

    Param groups keep their base rate in ``group["initial_lr"]`` (set here if missing) so per-group
    multipliers (new layers at 10x) survive the schedule.

    Raises:
        Cancelled: ``should_stop()`` became true (checked before every batch).
        ValueError: the loss became NaN/inf (says to lower the learning rate).
    """
    n_batches = len(loader)  # type: ignore[arg-type]
    if n_batches == 0:
        raise ValueError("fit: the data loader is empty (fewer tiles than one batch with drop_last?); "
                         "add tiles or lower the batch size.")
    total = epochs * n_batches
    step = start_epoch * n_batches
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    losses: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        model.train()
        running, seen = 0.0, 0
        for batch in loader:
            if should_stop():
                raise Cancelled(f"{desc} cancelled at epoch {epoch + 1}, step {step}")
            for g in optimizer.param_groups:
                g["lr"] = poly_lr(g["initial_lr"], step, total, power)
            loss, metrics = step_fn(model, batch)
            if not torch.isfinite(loss):
                raise ValueError(f"{desc}: the loss became {float(loss)} at step {step}; lower the learning rate "
                                 "or check the training tiles.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += float(loss.detach())
            seen += 1
            yield Progress(step, total, f"{desc} epoch {epoch + 1}/{epochs}",
                           {"loss": float(loss.detach()), **metrics, "lr": optimizer.param_groups[0]["lr"]})
        losses.append(running / max(1, seen))
        if on_epoch_end is not None:
            extra = on_epoch_end(epoch + 1, step, losses)
            if extra:
                yield Progress(step, total, f"{desc} epoch {epoch + 1}/{epochs} validated",
                               {**extra, "epoch": float(epoch + 1)})
    return FitResult(epochs, step, time.perf_counter() - t0, losses)
