"""Self-describing, resumable training checkpoints, written atomically.

A checkpoint is one ``torch.save`` file holding ``{"model", "optimizer", "epoch", "step", "config", "extra"}``
where ``config`` is a plain JSON-able dict; it loads with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_save


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    epoch: int, step: int, config: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint after ``epoch`` completed epochs (temp file + rename: never half-written)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "config": dict(config),
        "extra": dict(extra or {}),
    }
    with atomic_save(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, config: dict[str, Any] | None = None,
                    must_match: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint; when ``config`` is given, the keys in ``must_match`` must agree with it.

    Raises:
        FileNotFoundError: no file.
        ValueError: damaged file, or a checkpoint of a different run (names the differing settings).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}; nothing to resume (start without --resume).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); delete it to restart.") from e
    if config is not None:
        old = state.get("config", {})
        diff = {k: (old.get(k), config.get(k)) for k in must_match if old.get(k) != config.get(k)}
        if diff:
            raise ValueError(
                f"{path} belongs to a different training run: settings differ {diff} (checkpoint, now). "
                "Resume with the same settings, or delete the checkpoint to start again."
            )
    return state


def resume_from(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                config: dict[str, Any], must_match: tuple[str, ...], mixer: Any = None) -> tuple[int, float]:
    """Restore ``model``, ``optimizer`` and a SegMix ``mixer`` (if any) from the checkpoint at ``path``.

    One place for every trainer's ``resume=True``, so they restore the same things the same way.
    Returns (completed epochs, training seconds already spent); ``(0, 0.0)`` when there is no checkpoint yet
    (a first run with ``--resume`` simply starts). Raises like :func:`load_checkpoint`.
    """
    if not Path(path).is_file():
        return 0, 0.0
    state = load_checkpoint(path, config, must_match)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if mixer is not None and "segmix" in state["extra"]:
        mixer.load_state_dict(state["extra"]["segmix"])
    return state["epoch"], float(state["extra"].get("seconds", 0.0))
