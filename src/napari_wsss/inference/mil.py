"""MIL (side-output FCN) inference: fused sigmoid maps per class -> class map, background from white pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.card import ModelCard, load_weights
from ..models.mil import MIL_FUSE_WEIGHTS, MILNet, fuse, side_maps
from .predict import glass_min_size, load_state_checked, predict_batched, scores_on_device, to_batch
from .segmenter import Prediction


class MILSegmenter:
    """A loaded ``MILNet`` meeting the ``Segmenter`` contract.

    Tissue pixels take the class with the highest fused map; the fused maps (N, K, H, W) in [0, 1] are the
    per-class scores (also what IFKD distils from).
    """

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: Any) -> None:
        self.model = model.to(device).eval()
        self.card = card
        self.device = device
        self.fuse_weights = tuple(card.config.get("fuse_weights", MIL_FUSE_WEIGHTS))

    @torch.inference_mode()
    def fused_maps(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, K, H, W) fused sigmoid maps at tile resolution."""
        images = np.asarray(images)
        x = to_batch(images, self.card, self.device)
        return fuse(side_maps(self.model(x), tuple(images.shape[1:3])), self.fuse_weights)

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        """images (N, H, W, 3) uint8 (or one (H, W, 3) tile) -> Prediction with N tiles."""
        return predict_batched(images, batch_size, self.fused_maps, self.device, glass_min_size(self.card))

    def predict_scores(self, images: np.ndarray, background: np.ndarray | None = None) -> torch.Tensor:
        """(N, K + 1, H, W) float32 class probabilities on the device (``scores_on_device``), one model call."""
        return scores_on_device(images, self.fused_maps, self.device, glass_min_size(self.card), background)


def build_mil(card: ModelCard) -> MILNet:
    return MILNet(card.backbone, card.class_schema.n_foreground, dropout=float(card.config.get("dropout", 0.1)),
                  pretrained=False)


def load_mil(model_dir: Path, card: ModelCard, device: Any) -> MILSegmenter:
    """Rebuild a MIL network from its card and weights (never downloads anything)."""
    model = build_mil(card)
    load_state_checked(model, load_weights(model_dir), card, model_dir)
    return MILSegmenter(model, card, device)
