"""CAM+SAM inference: CAM classifier -> per-class point prompts -> SAM masks -> consistency filter -> class map.

A ``cam_sam`` model version holds the classifier and the fine-tuned SAM mask decoder (``weights.pt`` keys
``classifier.*`` and ``decoder.*``); the SAM image encoder stays in the user's checkpoint file, found via
``$NAPARI_WSSS_SAM_CHECKPOINT`` (CLI ``--sam-checkpoint``) or else the path recorded in the card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.card import ModelCard, load_weights
from ..models.sam import ENV_CHECKPOINT, ENV_MODEL_TYPE, EmbeddingCache, SamSession, default_cache_dir, load_sam
from ..ops import prompts
from ..ops import cam as cam_ops
from .predict import background_mask, finish_prediction, glass_min_size, load_state_checked, to_batch
from .segmenter import Prediction


@dataclass
class PromptSettings:
    """How CAMs become SAM prompts (paper values as defaults)."""

    cam_threshold: float = 0.5
    n_points: int = 50
    consistency: float = prompts.CONSISTENCY_MIN
    seed: int = 0


@dataclass
class KeptMask:
    """A SAM mask that passed the consistency filter: the pseudo-mask of one class on one tile."""

    cls: int
    points: np.ndarray  # (N, 2) (y, x)
    mask: np.ndarray  # (H, W) bool
    score: float
    consistency: float


@dataclass
class TilePrompts:
    masks: np.ndarray  # (K, H, W) bool, kept masks only
    kept: list[KeptMask] = field(default_factory=list)
    rejected: int = 0


def prompt_tile(session: SamSession, image: np.ndarray, cams: np.ndarray, present: np.ndarray,
                settings: PromptSettings, rng: np.random.Generator) -> TilePrompts:
    """Prompt SAM once per present class of one tile.

    Args:
        session: SAM with its embedding cache (the tile's embedding is computed at most once).
        image: (H, W, 3) uint8.
        cams: (K, H, W) float in [0, 1] at tile resolution.
        present: (K,) bool, the classes to prompt for (known labels in training, gated predictions otherwise).
    """
    k, h, w = cams.shape
    out = TilePrompts(np.zeros((k, h, w), bool))
    todo = [c for c in range(k) if present[c]]
    if not todo:
        return out
    session.set_image(image)
    for c in todo:
        pts = prompts.cam_to_points(cams[c], settings.cam_threshold, settings.n_points, rng)
        if len(pts) == 0:
            continue
        mask, score = session.predict(pts)
        region = prompts.cam_region(cams[c], settings.cam_threshold)
        ratio = prompts.consistency(region, mask)
        if ratio >= settings.consistency:
            out.masks[c] = mask
            out.kept.append(KeptMask(c, pts, mask, score, ratio))
        else:
            out.rejected += 1
    return out


class CamSamSegmenter:
    """CAM classifier + SAM, meeting the ``Segmenter`` contract (one SAM call per present class per tile)."""

    def __init__(self, classifier: torch.nn.Module, session: SamSession, card: ModelCard, device: Any) -> None:
        self.model = classifier.to(device).eval()
        th = card.config.get("threshold")  # None: a config saved unresolved; 0.2 was the only default then
        self.threshold = 0.2 if th is None else float(th)
        self.session = session
        self.card = card
        self.device = device
        c = card.config
        self.settings = PromptSettings(float(c.get("cam_threshold", 0.5)), int(c.get("n_points", 50)),
                                       float(c.get("consistency", prompts.CONSISTENCY_MIN)), int(card.seed or 0))

    @torch.inference_mode()
    def class_cams(self, image: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 -> (K, H, W) float32 CAMs in [0, 1], absent classes zeroed.

        Each class map is min-max normalised over the tile *before* any ReLU (unlike SSHR's fusion): the prompt
        region is the relatively strongest part of a present class even when a young classifier's CAM is
        negative everywhere. Presence: the known ``labels`` (training) or sigmoid(GAP(CAM)) >= threshold.
        """
        cam = self.model(to_batch(image[None], self.card, self.device))[0]
        probs = torch.sigmoid(cam.mean(dim=(2, 3)))
        maps = cam_ops.minmax_normalise(cam_ops.upsample(cam, tuple(image.shape[:2])))
        gate = probs if labels is None else torch.as_tensor(np.asarray(labels)[None], dtype=probs.dtype,
                                                              device=probs.device)
        gated = cam_ops.gate_classes(maps, gate, self.threshold if labels is None else 0.5)
        return gated[0].float().cpu().numpy()

    def segment_tile(self, image: np.ndarray, labels: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, TilePrompts]:
        """One (H, W, 3) uint8 tile -> (K, H, W) tissue scores, (H, W) bool background, prompts used."""
        cams = self.class_cams(image, labels)
        present = cams.reshape(len(cams), -1).max(1) > 0  # gated classes are all-zero
        # same tile, same prompts: the RNG is seeded from the settings, not from call order
        res = prompt_tile(self.session, image, cams, present, self.settings, np.random.default_rng(self.settings.seed))
        bg = background_mask(image[None], self.device, glass_min_size(self.card))[0].cpu().numpy()
        return prompts.combine_scores(res.masks, cams), bg, res

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        """images (N, H, W, 3) uint8 (or one (H, W, 3) tile) -> Prediction with N tiles."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        maps, probs = [], []
        for img in images:
            scores, bg, _ = self.segment_tile(img)
            pred = finish_prediction(torch.from_numpy(scores)[None], torch.from_numpy(bg)[None])
            maps.append(pred.class_map)
            probs.append(pred.probs)
        return Prediction(np.concatenate(maps), np.concatenate(probs))


def build_classifier(card: ModelCard) -> torch.nn.Module:
    from ..models.cam import CAMClassifier

    c = card.config
    return CAMClassifier(card.backbone, card.class_schema.n_foreground, adl_stages=tuple(c.get("adl_stages", (3, 4))),
                         drop_rate=float(c.get("adl_drop_rate", 0.75)), gamma=float(c.get("adl_gamma", 0.8)),
                         enhanced=bool(c.get("enhanced", True)), hf_cutoff=float(c.get("hf_cutoff", 0.05)),
                         hf_mode=str(c.get("hf_mode", "channel")),  # cards before adapters: the 4th channel
                         pretrained=False)


def split_state(state: dict) -> tuple[dict, dict]:
    """``weights.pt`` of a cam_sam version -> (classifier state, decoder state)."""
    cls = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    return cls, dec


def sam_for_card(card: ModelCard, device: Any, checkpoint: str | os.PathLike | None = None):
    """Load the SAM a cam_sam version was tuned from: ``checkpoint`` > ``$NAPARI_WSSS_SAM_CHECKPOINT`` > the
    card's recorded path; the architecture must equal the recorded one."""
    c = card.config
    path = checkpoint or os.environ.get(ENV_CHECKPOINT) or c.get("sam_checkpoint")
    recorded_type = c.get("sam_model_type", "auto")
    asked = os.environ.get(ENV_MODEL_TYPE)
    if asked and asked != "auto" and asked != recorded_type:
        raise ValueError(f"SAM model type {asked} was asked for, but model {card.name} was tuned on a {recorded_type} "
                         "SAM; its decoder only fits that one. Drop --sam-model-type or choose another model.")
    loaded = load_sam(path, recorded_type if recorded_type in ("vit_b", "vit_l", "vit_h") else "auto", device)
    from dataclasses import asdict

    arch = c.get("sam_arch")
    if arch is not None and {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(loaded.arch).items()} != arch:
        raise ValueError(f"The SAM in {loaded.checkpoint} ({loaded.model_type}) is not the one model {card.name} was "
                         f"tuned from ({recorded_type}, {c.get('sam_checkpoint')}); set {ENV_CHECKPOINT} or "
                         "--sam-checkpoint to that file.")
    return loaded


def load_cam_sam(model_dir: Path, card: ModelCard, device: Any) -> CamSamSegmenter:
    """Rebuild a cam_sam version: classifier from its weights, SAM from the user's file + the tuned decoder."""
    cls_state, dec_state = split_state(load_weights(model_dir))
    if not cls_state or not dec_state:
        raise ValueError(f"{model_dir}: weights.pt lacks the 'classifier.*' or 'decoder.*' parts of a cam_sam "
                         "model version; it was written by another method or is damaged.")
    classifier = build_classifier(card)
    load_state_checked(classifier, cls_state, card, model_dir)
    loaded = sam_for_card(card, device)
    loaded.model.mask_decoder.load_state_dict(dec_state)
    return CamSamSegmenter(classifier, SamSession(loaded, EmbeddingCache(default_cache_dir())), card, device)
