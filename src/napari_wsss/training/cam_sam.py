"""CAM+SAM (EPLC-SAM) training, in three parts, each a cancellable generator yielding Progress:

1. the CAM classifier (ADL + optional high-frequency prompts) from image-level labels, with the shared ``fit``
   and SSHR's CAM training step (one CAM level, loss weight 1);
2. pseudo-masks: per tile and labelled class, CAM -> points -> SAM -> consistency filter (``prompt_tile``);
3. the SAM mask decoder fine-tuned on the kept pseudo-masks, encoder frozen (its embeddings are computed once
   and cached); steps 2-3 repeat ``rounds`` times (paper: 3), each round prompting the newly tuned decoder.

The result is a model version: ``weights.pt`` = ``classifier.*`` + ``decoder.*`` and a card recording the SAM
model type, architecture and the checkpoint path it was tuned from (the encoder weights are not copied).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..events import Cancelled, Progress, StopFlag, never_stop
from . import common
from .checkpoint import resume_from, save_checkpoint
from .config import CamTrainConfig
from .loop import fit


@dataclass
class CamSamConfig(CamTrainConfig):
    """CAM+SAM settings. Classifier: ADL and the high-frequency enhancement; prompts: CAM threshold, points and the
    consistency filter; decoder: rounds, epochs and learning rate; SAM: the user's checkpoint and model type.
    Backbone, SGD schedule, SegMix, PCM (training only: SAM prompts use raw CAMs)... are in :mod:`.config`."""

    epochs: int = 10
    batch_size: int = 16
    adl_stages: tuple[int, ...] = (3, 4)
    adl_drop_rate: float = 0.75
    adl_gamma: float = 0.8
    enhanced: bool = True
    # "adapter": EPLC-SAM's explicit visual prompting (per-stage adapters fed by the high-frequency embedding);
    # "channel": the high-frequency map as a 4th input channel (the earlier form; cards without the key)
    hf_mode: str = "adapter"
    hf_cutoff: float = 0.05
    cam_threshold: float = 0.5
    n_points: int = 50
    consistency: float = 0.9
    rounds: int = 3
    decoder_epochs: int = 1
    decoder_lr: float = 1e-5
    sam_checkpoint: str | None = None
    sam_model_type: str = "auto"
    sam_cache_dir: str | None = None

    # the classifier has no SEAM projection (SEAM projects intermediate maps; it exposes only the deep one)
    pcm_kind: str = "parameter_free"
    # read by training.sshr.cam_step_fn: one CAM level
    loss_weights: tuple[float, ...] = (1.0,)


_RESUME_KEYS = ("backbone", "schema", "input_size", "adl_stages", "enhanced", "hf_mode", "epochs", "batch_size",
                "lr", "seed")


def build_classifier(cfg: CamSamConfig, n_classes: int) -> torch.nn.Module:
    from ..models.cam import CAMClassifier

    return CAMClassifier(cfg.backbone, n_classes, adl_stages=cfg.adl_stages, drop_rate=cfg.adl_drop_rate,
                         gamma=cfg.adl_gamma, enhanced=cfg.enhanced, hf_mode=cfg.hf_mode, hf_cutoff=cfg.hf_cutoff,
                         pretrained=cfg.pretrained)


def train_classifier(cfg: CamSamConfig, tiles: list, out_dir: Path, device: torch.device, *,
                     should_stop: StopFlag = never_stop, resume: bool = False
                     ) -> Generator[Progress, None, tuple[torch.nn.Module, float, list[float]]]:
    """Part 1: the ADL CAM classifier, with an epoch checkpoint ``<out>.ckpt.pt`` for ``resume``."""
    from .sshr import cam_step_fn

    gen = common.seed_everything(cfg.seed)
    loader = common.label_loader(tiles, cfg, cfg.batch_size, gen)
    model = build_classifier(cfg, len(tiles[0].labels)).to(device)
    opt = common.sgd(model, cfg)
    ckpt = common.checkpoint_path_for(out_dir)
    run_config = {**cfg.to_dict(), "method": "cam_sam"}
    mixer = None
    if cfg.segmix:
        from ..models.segmix import SegMixScheduler

        mixer = SegMixScheduler.from_config(cfg, batches_per_epoch=len(loader))
    start, spent = 0, 0.0
    if resume:
        start, spent = resume_from(ckpt, model, opt, run_config, _RESUME_KEYS + ("method",), mixer)
    t0 = time.perf_counter()

    def on_epoch_end(epoch: int, step: int, losses: list[float]) -> None:
        extra = {"seconds": spent + time.perf_counter() - t0}
        if mixer is not None:
            extra["segmix"] = mixer.state_dict()
        save_checkpoint(ckpt, model, opt, epoch, step, run_config, extra)

    result = yield from fit(model, opt, loader, cam_step_fn(cfg, device, mixer), epochs=cfg.epochs, start_epoch=start,
                            should_stop=should_stop, on_epoch_end=on_epoch_end, desc="CAM+SAM 1/3 classifier")
    return model.eval(), spent + time.perf_counter() - t0, result.epoch_losses


def generate_pseudo_masks(segmenter: Any, images: list[np.ndarray], labels: np.ndarray, *,
                          should_stop: StopFlag = never_stop, desc: str = "CAM+SAM 2/3 pseudo-masks"
                          ) -> Generator[Progress, None, list[tuple[int, Any]]]:
    """Part 2: prompt SAM on every tile for its labelled classes; returns ``[(tile index, KeptMask)]``."""
    kept: list[tuple[int, Any]] = []
    rejected = 0
    for i, (img, lab) in enumerate(zip(images, labels)):
        if should_stop():
            raise Cancelled("CAM+SAM pseudo-mask generation cancelled")
        _, _, res = segmenter.segment_tile(img, lab)
        kept += [(i, km) for km in res.kept]
        rejected += res.rejected
        yield Progress(i + 1, len(images), desc, {"kept": len(kept), "rejected": rejected})
    return kept


def _dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    dice = 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice


def decoder_samples(session: Any, images: list[np.ndarray], kept: list[tuple[int, Any]]) -> list[dict]:
    """Kept pseudo-masks as decoder training samples (cached embeddings, prompts in SAM's input frame)."""
    transform = session.predictor.transform
    samples = []
    for i, km in kept:
        emb = session.embed(images[i])
        coords = transform.apply_coords(km.points[:, ::-1].astype(np.float32), emb.original_size)
        samples.append({"features": torch.from_numpy(emb.features), "coords": torch.from_numpy(coords).float(),
                        "input_size": emb.input_size, "original_size": emb.original_size,
                        "target": torch.from_numpy(km.mask.astype(np.float32))})
    return samples


def finetune_decoder(sam: Any, samples: list[dict], cfg: CamSamConfig, device: torch.device, round_no: int, *,
                     should_stop: StopFlag = never_stop) -> Generator[Progress, None, list[float]]:
    """Part 3: train ``sam.mask_decoder`` on the samples (image encoder and prompt encoder frozen)."""
    for p in sam.parameters():
        p.requires_grad_(False)
    decoder = sam.mask_decoder
    for p in decoder.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.decoder_lr)
    gen = torch.Generator().manual_seed(cfg.seed + round_no)
    loader = torch.utils.data.DataLoader(samples, batch_size=1, shuffle=True, generator=gen,
                                         collate_fn=lambda b: b[0])
    image_pe = sam.prompt_encoder.get_dense_pe().detach()

    def step(model: torch.nn.Module, s: dict) -> tuple[torch.Tensor, dict[str, float]]:
        coords = s["coords"].to(device)[None]
        with torch.no_grad():
            sparse, dense = sam.prompt_encoder(points=(coords, torch.ones(coords.shape[:2], dtype=torch.int,
                                                                          device=device)), boxes=None, masks=None)
        low, _ = model(image_embeddings=s["features"].to(device), image_pe=image_pe, sparse_prompt_embeddings=sparse,
                       dense_prompt_embeddings=dense, multimask_output=False)
        logits = sam.postprocess_masks(low, s["input_size"], s["original_size"])[0, 0]
        return _dice_bce(logits, s["target"].to(device)), {}

    try:
        result = yield from fit(decoder, opt, loader, step, epochs=cfg.decoder_epochs, should_stop=should_stop,
                                desc=f"CAM+SAM 3/3 decoder round {round_no + 1}/{cfg.rounds}")
    finally:
        decoder.eval()
        for p in decoder.parameters():
            p.requires_grad_(False)
    return result.epoch_losses


def train_cam_sam(data_dir: str | Path, out_dir: str | Path, *, should_stop: StopFlag = never_stop,
                  overwrite: bool = False, resume: bool = False, labels_csv: str | Path | None = None,
                  command: str = "", evaluate: bool = True, **options: Any) -> Generator[Progress, None, Path]:
    """Train CAM+SAM on a LUAD-HistoSeg style folder and write a model version to ``out_dir``.

    Options are :class:`CamSamConfig` fields; ``sam_checkpoint`` (or ``$NAPARI_WSSS_SAM_CHECKPOINT``) must name
    the user's SAM file. ``resume`` reuses the classifier's epoch checkpoint; the decoder rounds rerun.
    Returns (generator value): ``out_dir``.
    """
    from ..data.datasets import resize_rgb
    from ..data.tiles import read_rgb
    from ..inference.cam_sam import CamSamSegmenter
    from ..models.sam import EmbeddingCache, SamSession, default_cache_dir, load_sam

    cfg = common.config_from_options(CamSamConfig, options)
    run = common.setup_training(cfg, data_dir, out_dir, overwrite)  # train_classifier reseeds for its data
    out_dir, dirs, schema, device = run.out_dir, run.dirs, run.schema, run.device
    # Fail on a missing/wrong SAM before the classifier trains, not after.
    loaded = load_sam(cfg.sam_checkpoint, cfg.sam_model_type, device)
    session = SamSession(loaded, EmbeddingCache(cfg.sam_cache_dir or default_cache_dir()))

    tiles, tile_size = yield from common.training_tiles(dirs, schema, labels_csv, "CAM+SAM")
    seconds: dict[str, float] = {}
    classifier, seconds["classifier"], cls_losses = yield from train_classifier(
        cfg, tiles, out_dir, device, should_stop=should_stop, resume=resume)

    sam = {"sam_checkpoint": str(loaded.checkpoint.resolve()), "sam_model_type": loaded.model_type,
           "sam_arch": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(loaded.arch).items()}}
    card = common.version_card("cam_sam", cfg, schema, tile_size, data_dir, out_dir, command,
                               config={"fuse_weights": [1.0], **sam})
    del card.config["sam_cache_dir"]  # a cache folder of this machine, not a setting of the model
    seg = CamSamSegmenter(classifier, session, card, device)
    # Tiles at their own size (SAM resizes to its input); labels gate which classes are prompted.
    images = [read_rgb(t.path) for t in tiles]
    images = [resize_rgb(im, tile_size) if im.shape[0] != tile_size or im.shape[1] != tile_size else im
              for im in images]
    labels = np.stack([t.labels for t in tiles]).astype(bool)
    rounds: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for r in range(cfg.rounds):
        kept = yield from generate_pseudo_masks(seg, images, labels, should_stop=should_stop,
                                                desc=f"CAM+SAM 2/3 pseudo-masks round {r + 1}/{cfg.rounds}")
        n_prompted = int(labels.sum())
        info: dict[str, Any] = {"kept": len(kept), "prompted": n_prompted}
        if kept:
            samples = decoder_samples(session, images, kept)
            losses = yield from finetune_decoder(loaded.model, samples, cfg, device, r, should_stop=should_stop)
            info["decoder_loss"] = round(losses[-1], 4)
        rounds.append(info)
    seconds["sam_rounds"] = time.perf_counter() - t0
    card.metrics = common.train_metrics(seconds, cls_losses, len(tiles), rounds=rounds)
    state = {**common.state_on_cpu(classifier, "classifier."),
             **common.state_on_cpu(loaded.model.mask_decoder, "decoder.")}
    return (yield from common.save_version(out_dir, state, card, dirs, seg if evaluate else None, should_stop,
                                           overwrite))
