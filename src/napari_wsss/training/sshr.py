"""SSHR training: one loop, four hierarchically supervised CAM heads, no pseudo-masks.

``train_sshr(data_dir, out_dir, **options)`` is a generator (Progress per batch, then evaluation) returning
the written model version folder; options are the fields of :class:`SSHRConfig`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..events import Progress, StopFlag, never_stop
from ..models.seam import uses_seam_pcm
from ..models.sshr import SSHRNet, cam_logits
from ..ops.losses import SSHR_LEVEL_WEIGHTS, hierarchical_loss
from . import common
from .checkpoint import resume_from, save_checkpoint
from .config import CamTrainConfig
from .loop import fit


@dataclass
class SSHRConfig(CamTrainConfig):
    """SSHR training settings (paper defaults where they make sense on CPU); the shared ones (backbone, input
    size, SGD schedule, SegMix, PCM, seed...) are in :mod:`.config`.

    The paper's code trains 25 epochs (methods.md says 21); ``epochs`` keeps 21, the default every earlier
    model and benchmark was trained with — pass ``--epochs 25`` for the paper's schedule.
    """

    epochs: int = 21
    batch_size: int = 20
    loss_weights: tuple[float, ...] = SSHR_LEVEL_WEIGHTS
    fuse_weights: tuple[float, ...] = (0.0, 0.6, 0.2, 0.2)
    hfrm: bool = True
    kernel_size: int = 15
    dropout: float = 0.5
    pcm_inference: bool = True  # refined CAMs at inference when ``pcm``
    calibrate: bool = True  # pick the gating threshold on val masks when there are any (else ``threshold``)
    shallow_stride: int = 4  # ResNets' first CAM map: 4 = layer1 unpooled (the paper's), 8 = pooled (before)
    freeze_bn: bool = True  # ImageNet ResNets: BatchNorm in eval mode, BN affine and stem frozen (no effect from scratch)


# Settings a resumed run must share with its checkpoint (others, like threads, may change).
_RESUME_KEYS = ("backbone", "schema", "input_size", "hfrm", "kernel_size", "epochs", "batch_size", "lr", "seed",
                "shallow_stride", "freeze_bn")


def build_cam_net(cfg: SSHRConfig, n_classes: int, pretrained: bool | str) -> SSHRNet:
    return SSHRNet(cfg.backbone, n_classes, hfrm=cfg.hfrm, kernel_size=cfg.kernel_size, dropout=cfg.dropout,
                   pretrained=pretrained, shallow_stride=cfg.shallow_stride, freeze_bn=cfg.freeze_bn,
                   seam_pcm=uses_seam_pcm(cfg.to_dict()))


def cam_step_fn(cfg: SSHRConfig, device: torch.device, mixer: Any = None):
    """The SSHR training step: hierarchical multilabel loss on the GAP logits of all four CAM heads.

    With ``cfg.segmix`` each batch is SegMix-ed first by ``mixer`` (a ``models.segmix.SegMixScheduler``, made by
    the trainer with the loader's length; one is made from ``cfg`` if not given, which needs
    ``segmix_pacing="batches"``) and the mixer is fed the batch loss/accuracy. With ``cfg.pcm`` a PCM loss is
    added with weight ``cfg.pcm_loss_weight()``: ``pcm_kind="seam"`` runs a second view rescaled by
    ``cfg.pcm_scale`` (classification loss averaged over both views, as SEAM) and adds ER + ECR + min-pooling
    (``models.seam``; the model must own a ``SeamPCM`` as ``model.pcm``); ``"parameter_free"`` adds the
    consistency loss of ``models.pcm``.
    """
    if getattr(cfg, "segmix", False) and mixer is None:
        from ..models.segmix import SegMixScheduler

        mixer = SegMixScheduler.from_config(cfg)
    pcm = None
    seam = getattr(cfg, "pcm", False) and uses_seam_pcm(cfg.to_dict())
    if getattr(cfg, "pcm", False) and not seam:
        from ..models.pcm import PixelCorrelation, pcm_consistency_loss

        pcm = PixelCorrelation(getattr(cfg, "pcm_mode", "relu"))
    weight = cfg.pcm_loss_weight() if getattr(cfg, "pcm", False) else 0.0

    def step(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        target = hard = y
        if mixer is not None:
            x, target, hard = mixer.mix(x, y)
        if seam:
            return seam_step(model, x, target, hard)
        if pcm is not None:
            cams, feats = model.forward_with_features(x)
        else:
            cams = model(x)
        logits = cam_logits(cams)
        loss, parts = hierarchical_loss(logits, target, cfg.loss_weights)
        metrics = {f"loss_l{i + 1}": v for i, v in enumerate(parts)}
        if pcm is not None:
            lp = pcm_consistency_loss(cams, feats, hard, cfg.loss_weights, pcm)
            loss = loss + weight * lp
            metrics["loss_pcm"] = float(lp.detach())
        return observed(loss, logits, hard, metrics)

    def seam_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, hard: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        from ..models.seam import SeamPCM, seam_losses

        if not isinstance(getattr(model, "pcm", None), SeamPCM):
            raise TypeError(f"pcm_kind='seam' needs a network that owns SEAM's PCM (SSHRNet(seam_pcm=True)); "
                            f"{type(model).__name__} has none. Use pcm_kind='parameter_free' with it.")
        x2 = F.interpolate(x, scale_factor=cfg.pcm_scale, mode="bilinear", align_corners=True)
        cams1, feats1 = model.forward_with_features(x)
        cams2, feats2 = model.forward_with_features(x2)
        logits = cam_logits(cams1)
        loss1, parts = hierarchical_loss(logits, target, cfg.loss_weights)
        loss2, _ = hierarchical_loss(cam_logits(cams2), target, cfg.loss_weights)
        terms = seam_losses(model.pcm, (cams1, feats1, x), (cams2, feats2, x2), hard, cfg.loss_weights)
        lp = terms["er"] + terms["ecr"] + terms["rvmin"]
        loss = (loss1 + loss2) / 2 + weight * lp
        metrics = {f"loss_l{i + 1}": v for i, v in enumerate(parts)}
        metrics.update({"loss_pcm": float(lp.detach()), **{f"loss_{k}": float(v.detach()) for k, v in terms.items()}})
        return observed(loss, logits, hard, metrics)

    def observed(loss: torch.Tensor, logits: list[torch.Tensor], hard: torch.Tensor, metrics: dict[str, float]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        if mixer is not None:
            mixer.observe(float(loss.detach()), logits[-1], hard)
            metrics.update(mixer.metrics())
        return loss, metrics

    return step


def train_cam_net(data_dir: str | Path, out_dir: str | Path, cfg: SSHRConfig, *, method: str,
                  should_stop: StopFlag = never_stop, overwrite: bool = False, resume: bool = False,
                  labels_csv: str | Path | None = None, command: str = "", evaluate: bool = True,
                  desc: str = "SSHR", epoch_score: Callable[[Any], float | None] | None = None,
                  ) -> Generator[Progress, None, Path]:
    """Train a multi-head CAM net (SSHR with ``cfg.hfrm``; the baseline's stage 1 without) and save it.

    ``epoch_score(segmenter)``, when given, scores a copy of the network after every epoch (the tag trainer's
    live validation on corrected tiles); its value is yielded as ``metrics["val_mIoU"]`` with the epoch.
    """
    run = common.setup_training(cfg, data_dir, out_dir, overwrite)
    out_dir, dirs, schema, device = run.out_dir, run.dirs, run.schema, run.device

    tiles, tile_size = yield from common.training_tiles(dirs, schema, labels_csv, desc)
    loader = common.label_loader(tiles, cfg, cfg.batch_size, run.generator)
    mixer = None
    if cfg.segmix:
        from ..models.segmix import SegMixScheduler

        mixer = SegMixScheduler.from_config(cfg, batches_per_epoch=len(loader))

    model = build_cam_net(cfg, schema.n_foreground, cfg.pretrained).to(device)
    opt = common.sgd(model, cfg)

    ckpt_path = common.checkpoint_path_for(out_dir)
    run_config = {**cfg.to_dict(), "method": method, "classes": schema.names}
    start_epoch, spent = 0, 0.0
    if resume:
        start_epoch, spent = resume_from(ckpt_path, model, opt, run_config, _RESUME_KEYS + ("method", "classes"),
                                         mixer)

    t0 = time.perf_counter()
    val_card: list[Any] = []
    val_history: list[float] = []  # the live validation per epoch, kept in the card

    def on_epoch_end(epoch: int, step: int, losses: list[float]) -> dict[str, float] | None:
        extra = {"seconds": spent + time.perf_counter() - t0, "losses": losses}
        if mixer is not None:
            extra["segmix"] = mixer.state_dict()
        save_checkpoint(ckpt_path, model, opt, epoch, step, run_config, extra)
        if epoch_score is None:
            return None
        from ..inference.predict import CamSegmenter

        if not val_card:  # once: the card reads the training tiles' stain
            val_card.append(common.version_card(method, cfg, schema, tile_size, data_dir, out_dir, command))
        # a copy: the segmenter switches its network to eval and channels-last, which training must not see
        score = epoch_score(CamSegmenter(copy.deepcopy(model), val_card[0], device))
        if score is None:
            return None
        val_history.append(round(float(score), 4))
        return {"val_mIoU": float(score)}

    result = yield from fit(model, opt, loader, cam_step_fn(cfg, device, mixer), epochs=cfg.epochs,
                            start_epoch=start_epoch, should_stop=should_stop, on_epoch_end=on_epoch_end, desc=desc)
    metrics = common.train_metrics(spent + time.perf_counter() - t0, result.epoch_losses, len(tiles))
    # whether ``threshold`` was picked on validation masks (True below) or is the given / schema default one
    card = common.version_card(method, cfg, schema, tile_size, data_dir, out_dir, command,
                               config={"threshold_calibrated": False}, metrics=metrics)
    if val_history:
        card.metrics["epoch_val_mIoU"] = val_history
    if mixer is not None:
        card.metrics["segmix"] = {"patch": mixer.patch, "ratio": mixer.ratio, "history": mixer.history}
    seg = None
    if evaluate:
        from ..inference.predict import CamSegmenter

        seg = CamSegmenter(model.eval(), card, device)
        if cfg.calibrate and dirs.val is not None:
            best, table = yield from calibrate_threshold(seg, dirs.val, should_stop)
            seg.threshold = card.config["threshold"] = best
            card.config["threshold_calibrated"] = True
            card.metrics["val_threshold_search"] = table
    return (yield from common.save_version(out_dir, common.state_on_cpu(model), card, dirs, seg, should_stop,
                                           overwrite))


THRESHOLD_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def calibrate_threshold(seg: Any, val_dir: Path, should_stop: StopFlag = never_stop
                        ) -> Generator[Progress, None, tuple[float, dict[str, float]]]:
    """Pick the class-gating threshold with the best val mIoU (our addition: the paper's code fixes 0.2 on
    LUAD-HistoSeg and 0.5 on BCSS-WSSS, but the best value depends on how calibrated a from-scratch network's
    probabilities are). It uses the val folder's pixel masks; the card says so (``threshold_calibrated``)."""
    from .. import evaluation

    table = {}
    for th in THRESHOLD_GRID:
        seg.threshold = th
        scores = yield from evaluation.evaluate_folder(seg, val_dir, should_stop=should_stop)
        table[str(th)] = round(scores["mIoU"], 4)
    best = float(max(table, key=lambda k: table[k]))
    return best, table


def train_sshr(data_dir: str | Path, out_dir: str | Path, *, should_stop: StopFlag = never_stop,
               overwrite: bool = False, resume: bool = False, labels_csv: str | Path | None = None,
               command: str = "", evaluate: bool = True, epoch_score: Callable[[Any], float | None] | None = None,
               **options: Any) -> Generator[Progress, None, Path]:
    """Train SSHR on a LUAD-HistoSeg style folder and write a model version to ``out_dir``.

    Args:
        data_dir: dataset root (``training/`` + optional ``val/``, ``test/``) or a folder of labelled tiles.
        out_dir: new model version folder (weights.pt + card.json); must not exist unless ``overwrite``.
        should_stop: polled before every batch; when true, raises ``Cancelled`` (the last epoch checkpoint
            ``<out_dir>.ckpt.pt`` remains for ``resume=True``).
        epoch_score: scores the network after every epoch (see :func:`train_cam_net`).
        options: :class:`SSHRConfig` fields.
    Returns (generator value): ``out_dir``.
    """
    cfg = common.config_from_options(SSHRConfig, options)
    return (yield from train_cam_net(data_dir, out_dir, cfg, method="sshr", should_stop=should_stop,
                                     overwrite=overwrite, resume=resume, labels_csv=labels_csv, command=command,
                                     evaluate=evaluate, desc="SSHR", epoch_score=epoch_score))
