"""MIL teacher training (IFKD stage 1) from image-level labels.

Every side output and the fusion are trained with soft Dice against the image label broadcast to all pixels
(a class present in the tile pushes its maps towards 1 everywhere, an absent class towards 0); the Dice is
summed over the batch per class, so negatives localise positives. ``train_mil(data_dir, out_dir, **options)``
is a generator (Progress per batch, then evaluation) returning the written model version folder; options are
the fields of :class:`MILConfig`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..events import Progress, StopFlag, never_stop
from ..models.mil import MIL_FUSE_WEIGHTS, MILNet, fuse, side_maps
from ..ops.losses import soft_dice_loss
from . import common
from .checkpoint import resume_from, save_checkpoint
from .config import TrainConfig
from .loop import fit


@dataclass
class MILConfig(TrainConfig):
    """MIL teacher settings; the shared ones (backbone, input size, SGD schedule, seed...) are in :mod:`.config`."""

    epochs: int = 10
    batch_size: int = 16
    fuse_weights: tuple[float, ...] = MIL_FUSE_WEIGHTS
    dropout: float = 0.1


_RESUME_KEYS = ("backbone", "schema", "input_size", "epochs", "batch_size", "lr", "seed")


def mil_loss(logits: list[torch.Tensor], labels: torch.Tensor, fuse_weights=MIL_FUSE_WEIGHTS
             ) -> tuple[torch.Tensor, list[float]]:
    """Dice of each side output and of the fusion against ``labels`` (N, K) broadcast to every pixel.

    Computed at the side outputs' own resolution (the broadcast target is constant, so upsampling adds
    nothing). Returns (total, [side 1, side 2, side 3, fusion] as floats).
    """
    maps = side_maps(logits)
    target = labels.to(maps[0].dtype)[:, :, None, None].expand_as(maps[0])
    parts = [soft_dice_loss(m, target) for m in maps]
    parts.append(soft_dice_loss(fuse(maps, fuse_weights), target))
    return sum(parts), [float(p.detach()) for p in parts]


def train_mil(data_dir: str | Path, out_dir: str | Path, *, should_stop: StopFlag = never_stop,
              overwrite: bool = False, resume: bool = False, labels_csv: str | Path | None = None,
              command: str = "", evaluate: bool = True, **options: Any) -> Generator[Progress, None, Path]:
    """Train the MIL teacher on a LUAD-HistoSeg style folder and write a model version to ``out_dir``.

    Args:
        data_dir: dataset root (``training/`` + optional ``val/``, ``test/``) or a folder of labelled tiles.
        out_dir: new model version folder; must not exist unless ``overwrite``.
        should_stop: polled before every batch (raises ``Cancelled``; ``<out_dir>.ckpt.pt`` stays for resume).
        options: :class:`MILConfig` fields.
    Returns (generator value): ``out_dir``.
    """
    cfg = common.config_from_options(MILConfig, options)
    run = common.setup_training(cfg, data_dir, out_dir, overwrite)
    out_dir, dirs, schema, device = run.out_dir, run.dirs, run.schema, run.device

    tiles, tile_size = yield from common.training_tiles(dirs, schema, labels_csv, "MIL")
    loader = common.label_loader(tiles, cfg, cfg.batch_size, run.generator)
    model = MILNet(cfg.backbone, schema.n_foreground, dropout=cfg.dropout, pretrained=cfg.pretrained).to(device)
    opt = common.sgd(model, cfg)

    ckpt_path = common.checkpoint_path_for(out_dir)
    run_config = {**cfg.to_dict(), "method": "mil", "classes": schema.names}
    start_epoch, spent = 0, 0.0
    if resume:
        start_epoch, spent = resume_from(ckpt_path, model, opt, run_config, _RESUME_KEYS + ("method", "classes"))
    t0 = time.perf_counter()

    def step(m: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        loss, parts = mil_loss(m(x), y, cfg.fuse_weights)
        return loss, {"dice_fused": parts[-1]}

    def on_epoch_end(epoch: int, n: int, losses: list[float]) -> None:
        save_checkpoint(ckpt_path, model, opt, epoch, n, run_config,
                        {"seconds": spent + time.perf_counter() - t0, "losses": losses})

    result = yield from fit(model, opt, loader, step, epochs=cfg.epochs, start_epoch=start_epoch,
                            should_stop=should_stop, on_epoch_end=on_epoch_end, desc="MIL")
    metrics = common.train_metrics(spent + time.perf_counter() - t0, result.epoch_losses, len(tiles))
    card = common.version_card("mil", cfg, schema, tile_size, data_dir, out_dir, command, metrics=metrics)
    seg = None
    if evaluate:
        from ..inference.mil import MILSegmenter

        seg = MILSegmenter(model.eval(), card, device)
    return (yield from common.save_version(out_dir, common.state_on_cpu(model), card, dirs, seg, should_stop,
                                           overwrite))
