"""The multi-stage baseline, in the same framework as SSHR so the comparison isolates the method:

1. a CAM network = SSHR's network without HFRM, trained with the same loss and schedule;
2. CAM pseudo-masks for every training tile, written offline as palette PNGs (gated by the known image labels,
   background from near-white pixels);
3. a segmentation network (same backbone + torchvision FCN or DeepLabV3 head) trained on the pseudo-masks.

Each stage's wall time goes into the card (``metrics["stage_seconds"]``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..events import Cancelled, Progress, StopFlag, never_stop
from ..models.card import IMAGENET_MEAN, IMAGENET_STD, load_card
from ..ops.losses import IGNORE_INDEX, segmentation_loss
from . import common
from .checkpoint import resume_from, save_checkpoint
from .loop import fit
from .sshr import SSHRConfig, train_cam_net


@dataclass
class MultistageConfig(SSHRConfig):
    """Stage-1 settings are SSHR's (HFRM off); ``seg_*`` configure stage 3 (``seg_epochs`` None = ``epochs``)."""

    hfrm: bool = False
    seg_head: str = "fcn"
    seg_epochs: int | None = None
    seg_lr: float | None = None
    init_from_cam: bool = True
    keep_pseudo_masks: bool = False


def _stage_paths(out_dir: Path) -> tuple[Path, Path]:
    return out_dir.parent / f"{out_dir.name}.stage1", out_dir.parent / f"{out_dir.name}.pseudo"


def write_pseudo_masks(cam_model_dir: Path, tiles: list, pseudo_dir: Path, device: Any, *,
                       batch_size: int = 16, should_stop: StopFlag = never_stop) -> Generator[Progress, None, Path]:
    """Stage 2: one palette-PNG class map per training tile (same file name), from the CAM network.

    The known image labels gate the classes (a tile can only contain its labelled classes); background is
    near-white glass. Existing masks are kept, so an interrupted run continues where it stopped.
    """
    from ..data.tiles import read_rgb, write_mask
    from ..inference.predict import background_mask, glass_min_size, load_sshr
    from ..ops.cam import argmax_class_map

    card = load_card(cam_model_dir)
    seg = load_sshr(cam_model_dir, card, device)
    schema = card.class_schema
    todo = [t for t in tiles if not (pseudo_dir / t.path.name).is_file()]
    for i in range(0, len(todo), batch_size):
        if should_stop():
            raise Cancelled("pseudo-mask generation cancelled")
        chunk = todo[i : i + batch_size]
        images = np.stack([read_rgb(t.path) for t in chunk])
        fused, _ = seg.fused_cams(images, labels=np.stack([t.labels for t in chunk]))
        cmap = argmax_class_map(fused, background_mask(images, device, glass_min_size(card))).cpu().numpy().astype(np.uint8)
        for t, m in zip(chunk, cmap):
            write_mask(pseudo_dir / t.path.name, m, schema)
        yield Progress(min(len(todo), i + batch_size), len(todo), "multistage: writing pseudo-masks")
    return pseudo_dir


def _load_pseudo(tiles: list, pseudo_dir: Path, size: int, n_fg: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from ..data.datasets import resize_mask, resize_rgb
    from ..data.tiles import read_rgb

    images, masks = [], []
    for t in tiles:
        images.append(resize_rgb(read_rgb(t.path), size))
        with Image.open(pseudo_dir / t.path.name) as im:
            m = np.array(resize_mask(np.array(im), size))  # writable copy
        m[m >= n_fg] = IGNORE_INDEX  # background is decided by the white rule, not learnt
        masks.append(m)
    return np.stack(images), np.stack(masks)


def train_multistage(data_dir: str | Path, out_dir: str | Path, *, should_stop: StopFlag = never_stop,
                     overwrite: bool = False, resume: bool = False, labels_csv: str | Path | None = None,
                     command: str = "", evaluate: bool = True, **options: Any) -> Generator[Progress, None, Path]:
    """Run the three stages and write the final segmentation network as a model version in ``out_dir``.

    Options are :class:`MultistageConfig` fields. Stage outputs (``<out>.stage1/``, ``<out>.pseudo/``) sit
    beside ``out_dir`` while training; with ``resume=True`` finished stages are reused. They are removed
    after success unless ``keep_pseudo_masks``.
    """
    from ..data.datasets import TileMaskDataset
    from ..data.tiles import list_training_tiles
    from ..models.segnet import SegNet

    cfg = common.config_from_options(MultistageConfig, options)
    run = common.setup_training(cfg, data_dir, out_dir, overwrite)  # stage 1 and stage 3 reseed for their data
    out_dir, dirs, schema, device = run.out_dir, run.dirs, run.schema, run.device
    stage1_dir, pseudo_dir = _stage_paths(out_dir)
    seconds: dict[str, float] = {}

    # Stage 1: CAM network without HFRM.
    t0 = time.perf_counter()
    if not (resume and (stage1_dir / "card.json").is_file()):
        yield from train_cam_net(data_dir, stage1_dir, cfg, method="sshr", should_stop=should_stop,
                                 overwrite=True, resume=resume, labels_csv=labels_csv, evaluate=False,
                                 desc="multistage 1/3 CAM")
    seconds["cam"] = load_card(stage1_dir).metrics.get("train_seconds", time.perf_counter() - t0)

    # Stage 2: offline pseudo-masks.
    tiles = list_training_tiles(dirs.training, schema, labels_csv)
    t0 = time.perf_counter()
    yield from write_pseudo_masks(stage1_dir, tiles, pseudo_dir, device, should_stop=should_stop)
    seconds["pseudo_masks"] = time.perf_counter() - t0

    # Stage 3: segmentation network on the pseudo-masks.
    t0 = time.perf_counter()
    gen = common.seed_everything(cfg.seed)
    images, masks = _load_pseudo(tiles, pseudo_dir, cfg.input_size, schema.n_foreground)
    loader = common.make_loader(TileMaskDataset(images, masks, IMAGENET_MEAN, IMAGENET_STD, flips=cfg.flips,
                                                rotate=cfg.rotate, seed=cfg.seed, hed=cfg.hed()),
                                 cfg.batch_size, gen)
    model = SegNet(cfg.backbone, schema.n_foreground, head=cfg.seg_head, pretrained=cfg.pretrained)
    if cfg.init_from_cam:
        from ..models.card import load_weights

        cam_state = load_weights(stage1_dir)
        model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in cam_state.items()
                                        if k.startswith("backbone.")})
    model.to(device)
    opt = common.sgd(model, cfg, cfg.seg_lr or cfg.lr)
    ckpt = common.checkpoint_path_for(out_dir)
    run_config = {**cfg.to_dict(), "method": "multistage", "classes": schema.names}
    start = 0
    if resume:
        start, _ = resume_from(ckpt, model, opt, run_config,
                               ("backbone", "schema", "input_size", "seg_head", "classes"))

    def step(m: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        return segmentation_loss(m(x), y), {}

    def on_epoch_end(epoch: int, n: int, losses: list[float]) -> None:
        save_checkpoint(ckpt, model, opt, epoch, n, run_config)

    epochs = cfg.seg_epochs or cfg.epochs
    result = yield from fit(model, opt, loader, step, epochs=epochs, start_epoch=start, should_stop=should_stop,
                            on_epoch_end=on_epoch_end, desc="multistage 3/3 segmentation")
    seconds["segmentation"] = time.perf_counter() - t0
    tile_size = common.tile_size_of(tiles[0].path)
    metrics = common.train_metrics(seconds, result.epoch_losses, len(tiles))
    card = common.version_card("multistage", cfg, schema, tile_size, data_dir, out_dir, command,
                               config={"seg_epochs": epochs}, metrics=metrics)
    seg = None
    if evaluate:
        from ..inference.predict import SegNetSegmenter

        seg = SegNetSegmenter(model.eval(), card, device)
    yield from common.save_version(out_dir, common.state_on_cpu(model), card, dirs, seg, should_stop, overwrite)
    shutil.rmtree(stage1_dir, ignore_errors=True)
    if not cfg.keep_pseudo_masks:
        shutil.rmtree(pseudo_dir, ignore_errors=True)
    return out_dir


def config_fields() -> list[str]:
    """Option names ``train_multistage`` accepts."""
    return [f.name for f in dataclasses.fields(MultistageConfig)]
