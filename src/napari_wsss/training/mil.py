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
from ..models.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard, save_model
from ..models.mil import MIL_FUSE_WEIGHTS, MILNet, fuse, side_maps
from ..ops.losses import soft_dice_loss
from . import common
from .checkpoint import load_checkpoint, save_checkpoint
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
    from ..data.datasets import TileLabelDataset
    from ..data.tiles import list_training_tiles

    cfg = common.config_from_options(MILConfig, options)
    run = common.setup_training(cfg, data_dir, out_dir, overwrite)
    out_dir, dirs, schema, device = run.out_dir, run.dirs, run.schema, run.device

    tiles = list_training_tiles(dirs.training, schema, labels_csv)
    tile_size = common.tile_size_of(tiles[0].path)
    yield Progress(0, None, f"MIL: reading {len(tiles)} training tiles")
    ds = TileLabelDataset(tiles, cfg.input_size, IMAGENET_MEAN, IMAGENET_STD, flips=cfg.flips, rotate=cfg.rotate,
                          seed=cfg.seed)
    loader = common.make_loader(ds, cfg.batch_size, run.generator)
    model = MILNet(cfg.backbone, schema.n_foreground, dropout=cfg.dropout, pretrained=cfg.pretrained).to(device)
    opt = common.sgd(model, cfg)

    ckpt_path = common.checkpoint_path_for(out_dir)
    run_config = {**cfg.to_dict(), "method": "mil", "classes": schema.names}
    start_epoch, spent = 0, 0.0
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, run_config, _RESUME_KEYS + ("method", "classes"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, spent = state["epoch"], float(state["extra"].get("seconds", 0.0))
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
    card = ModelCard(
        method="mil", backbone=cfg.backbone, schema=schema.to_dict(), input_size=cfg.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        config={**cfg.to_dict(), "tile_size": tile_size, "scale": cfg.input_size / tile_size},
        training_data=str(Path(data_dir).resolve()),
        metrics={"train_seconds": round(spent + time.perf_counter() - t0, 1),
                 "epoch_losses": [round(x, 4) for x in result.epoch_losses], "n_train_tiles": len(tiles)},
        seed=cfg.seed, command=command, name=out_dir.name,
    )
    if evaluate:
        from ..inference.mil import MILSegmenter

        seg = MILSegmenter(model.eval(), card, device)
        yield from common.evaluate_splits(seg, card, dirs, should_stop)
    save_model(out_dir, common.state_on_cpu(model), card, overwrite=overwrite)
    ckpt_path.unlink(missing_ok=True)
    return out_dir
