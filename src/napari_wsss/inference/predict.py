"""Batched tile prediction for CAM networks (SSHR and the baseline's CAM stage).

Pipeline per batch: rescale tiles by the training scale -> 4 CAMs -> ReLU, upsample, min-max normalise,
fuse with the card's level weights -> zero classes whose image probability (sigmoid of the deep logits) is
below the threshold -> background from near-white pixels -> argmax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..classes import ClassSchema
from ..models.card import ModelCard, load_weights
from ..ops import cam as cam_ops
from .segmenter import Prediction


def to_batch(images: np.ndarray, card: ModelCard, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, h, w) float32 normalised, rescaled by ``card.working_scale``.

    The geometry (``data.scale.scaled_shape`` and ``interpolate``) is the one training and fine-tuning cut their
    crops at, so the network sees tissue at the scale it learnt.
    """
    from ..data.datasets import normalise
    from ..data.scale import interpolate, scaled_shape

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"Expected tiles as (N, H, W, 3) uint8 RGB, got shape {images.shape} dtype {images.dtype}.")
    x = normalise(images, card.mean, card.std, device=torch.device(device))  # converted on the device
    return interpolate(x, scaled_shape(images.shape[1:3], card.working_scale))


GLASS_MIN_SIZE = 64  # px: near-white regions at least this large are glass (the datasets' convention)


def glass_min_size(card: ModelCard) -> int:
    """Smallest near-white region a model's predictions call glass; 0 = no glass detection.

    LUAD-HistoSeg and BCSS-WSSS mark white glass as background, so any near-white region of 64 px or more is
    glass. Colon glands have white lumens inside them, which GlaS annotates as gland: a model trained on such a
    schema records a larger size (or 0) in its card, so lumens are left to the network to classify.
    """
    return int(card.config.get("glass_min_size", GLASS_MIN_SIZE))


def glass_mask(images: np.ndarray, min_size: int = GLASS_MIN_SIZE, white: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) bool near-white glass (none when ``min_size`` is 0), on the host.

    ``white``: ``data.tiles.is_background(images)`` when the caller has it already (the slide path computes it on
    its reader thread), so it is not computed twice.
    """
    from ..data.tiles import is_background

    if min_size <= 0:
        return np.zeros(np.shape(images)[:-1], dtype=bool)
    glass = np.array(is_background(images) if white is None else white, dtype=bool)
    if min_size > GLASS_MIN_SIZE:  # only large white regions are glass; tissue holes in glass stay as they were
        from skimage.measure import label

        for i in range(glass.shape[0]):
            lab = label(glass[i], connectivity=1)
            sizes = np.bincount(lab.ravel())
            glass[i] &= sizes[lab] >= min_size
    return glass


def background_mask(images: np.ndarray, device: torch.device, min_size: int = GLASS_MIN_SIZE) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H, W) bool tensor of near-white glass (none when ``min_size`` is 0)."""
    return torch.from_numpy(glass_mask(images, min_size)).to(device)


def finish_prediction(fg_scores: torch.Tensor, background: torch.Tensor) -> Prediction:
    """(N, K, H, W) non-negative tissue scores + (N, H, W) bool -> Prediction (numpy, background last)."""
    scores = cam_ops.add_background(fg_scores, background)
    class_map = cam_ops.argmax_class_map(fg_scores, background)
    probs = cam_ops.scores_to_probs(scores)
    return Prediction(class_map.to(torch.uint8).cpu().numpy(), probs.float().cpu().numpy())


def predict_batched(images: np.ndarray, batch_size: int, tissue_scores: Callable[[np.ndarray], torch.Tensor],
                    device: torch.device, min_glass: int = GLASS_MIN_SIZE) -> Prediction:
    """The loop every dense segmenter shares: batches -> tissue scores -> background from glass -> argmax.

    Args:
        images: (N, H, W, 3) uint8, or one (H, W, 3) tile.
        tissue_scores: (n, H, W, 3) uint8 chunk -> (n, K, H, W) non-negative per-class scores at tile size.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    maps, probs = [], []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        pred = finish_prediction(tissue_scores(chunk), background_mask(chunk, device, min_glass))
        maps.append(pred.class_map)
        probs.append(pred.probs)
    return Prediction(np.concatenate(maps), np.concatenate(probs))


@torch.inference_mode()
def scores_on_device(images: np.ndarray, tissue_scores: Callable[[np.ndarray], torch.Tensor], device: torch.device,
                     min_glass: int = GLASS_MIN_SIZE, background: np.ndarray | None = None) -> torch.Tensor:
    """The class probabilities ``finish_prediction`` would copy to the host, left on the device.

    For callers that only need class maps and a confidence of them (the slide path blends, argmaxes and copies
    back uint8): a (N, K + 1, H, W) float32 probability tensor is never moved.

    Args:
        images: (N, H, W, 3) uint8, one model call.
        background: (N, H, W) bool glass (``glass_mask``), when the caller computed it off the critical path.
    Returns:
        (N, K + 1, H, W) float32 on ``device``, background last.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    bg = (background_mask(images, device, min_glass) if background is None
          else torch.from_numpy(np.asarray(background, dtype=bool)).to(device))
    return cam_ops.scores_to_probs(cam_ops.add_background(tissue_scores(images), bg)).float()


def autocast_for(device: torch.device):  # noqa: ANN201
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); a no-op context on CPU/MPS.

    ``NAPARI_WSSS_NO_AUTOCAST=1`` turns it off (for comparing against float32).
    """
    import contextlib
    import os

    if torch.device(device).type != "cuda" or os.environ.get("NAPARI_WSSS_NO_AUTOCAST") == "1":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


class CamSegmenter:
    """A loaded multi-level CAM network (SSHR) that meets the ``Segmenter`` contract."""

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: torch.device) -> None:
        device = torch.device(device)
        # channels-last is the faster convolution layout on CPU (oneDNN) and on tensor-core GPUs
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        self.card = card
        self.device = device
        self.schema: ClassSchema = card.class_schema
        self.fuse_weights: Sequence[float] = tuple(card.config.get("fuse_weights", (0.0, 0.6, 0.2, 0.2)))
        th = card.config.get("threshold")  # None: a config saved unresolved; 0.2 was the only default then
        self.threshold = 0.2 if th is None else float(th)
        # trained with PCM: refine every CAM level by feature affinity before fusing, with the network's own
        # learned SEAM module (card pcm_kind "seam") or the parameter-free one (cards without pcm_kind)
        self.pcm: Callable[..., list[torch.Tensor]] | None = None
        if card.config.get("pcm") and card.config.get("pcm_inference", True):
            if card.config.get("pcm_kind", "parameter_free") == "seam":
                if getattr(self.model, "pcm", None) is None:
                    raise ValueError(f"Model {card.name}: its card says SEAM's PCM (pcm_kind 'seam') but the network "
                                     "has none; load it with load_sshr, which builds it from the card.")
                self.pcm = self.model.pcm.refine_levels
            else:
                from ..models.pcm import PixelCorrelation

                pc = PixelCorrelation(card.config.get("pcm_mode", "relu"))
                self.pcm = lambda cams, feats, x: pc(cams, feats)

    @torch.inference_mode()
    def fused_cams(self, images: np.ndarray, labels: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated fused CAMs (N, K, H, W) in [0, 1] and image probabilities (N, K).

        ``labels`` (N, K) multi-hot, when known (pseudo-mask generation), replace the predicted probabilities
        for gating.
        """
        x = to_batch(images, self.card, self.device).contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device):
            if self.pcm is not None:
                cams, feats = self.model.forward_with_features(x)
                probs = torch.sigmoid(cams[-1].float().mean(dim=(2, 3)))  # gate on the raw deep CAM
                cams = self.pcm(cams, feats, x)
            else:
                cams = self.model(x)
                probs = torch.sigmoid(cams[-1].float().mean(dim=(2, 3)))
        cams = [c.float() for c in cams]  # CAM fusion and gating in float32 whatever the compute dtype
        size = tuple(np.asarray(images).shape[-3:-1])
        fused = cam_ops.fuse_cams(cams, self.fuse_weights, size)
        gate = probs if labels is None else torch.as_tensor(labels, dtype=probs.dtype, device=self.device)
        return cam_ops.gate_classes(fused, gate, self.threshold if labels is None else 0.5), probs

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        """images (N, H, W, 3) uint8 (or one (H, W, 3) tile) -> Prediction with N tiles.

        Card options (all off by default): ``tta_flips`` averages the class maps of the tile and its two mirror
        images (3x the compute); ``cam_norm_quantile`` scales each image's class maps by their own quantile
        before the argmax (``ops.cam.normalise_per_image``); ``fill_holes`` names classes whose enclosed holes
        take the class (``ops.cam.fill_class_holes``; gland lumens).
        """
        pred = predict_batched(images, batch_size, self.tissue_scores, self.device, glass_min_size(self.card))
        fill = [self.schema.index_of(n) for n in self.card.config.get("fill_holes") or ()]
        if fill:
            pred = Prediction(cam_ops.fill_class_holes(pred.class_map, fill), pred.probs)
        return pred

    def tissue_scores(self, chunk: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, K, H, W) fused, gated CAM scores on the device (card options applied)."""
        q = float(self.card.config.get("cam_norm_quantile") or 0.0)
        fused = self.fused_cams(chunk)[0]
        if self.card.config.get("tta_flips"):  # test-time augmentation: mean over the tile and its two mirrors
            fused = (fused + self.fused_cams(np.ascontiguousarray(chunk[:, :, ::-1]))[0].flip(-1)
                     + self.fused_cams(np.ascontiguousarray(chunk[:, ::-1]))[0].flip(-2)) / 3
        return cam_ops.normalise_per_image(fused, q) if q > 0 else fused

    def predict_scores(self, images: np.ndarray, background: np.ndarray | None = None) -> torch.Tensor:
        """(N, K + 1, H, W) float32 class probabilities on the device (``scores_on_device``), one model call."""
        return scores_on_device(images, self.tissue_scores, self.device, glass_min_size(self.card), background)

    @torch.inference_mode()
    def image_probs(self, images: np.ndarray) -> np.ndarray:
        """(N, K) float32 image-level class probabilities."""
        cams = self.model(to_batch(images, self.card, self.device))
        return torch.sigmoid(cams[-1].mean(dim=(2, 3))).cpu().numpy()


def load_state_checked(model: torch.nn.Module, state: dict, card: ModelCard, model_dir: str | Path) -> None:
    """``load_state_dict`` that explains a class-count or architecture mismatch in the card's terms."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        msg = str(e)
        hint = ""
        head = next((v for k, v in state.items() if k.endswith("heads.3.weight") or k == "head.4.weight"),
                    None)
        if head is not None and head.shape[0] != card.class_schema.n_foreground:
            hint = (f" The weights predict {head.shape[0]} tissue classes but the card's schema "
                    f"{card.class_schema.name} has {card.class_schema.n_foreground} ({card.class_schema.foreground_names}).")
        raise ValueError(
            f"{model_dir}: weights do not fit the network its card describes (method {card.method}, backbone "
            f"{card.backbone}).{hint} The card and weights.pt come from different models; re-save the model "
            f"or use a matching card. Details: {msg.splitlines()[0]}"
        ) from None


def load_sshr(model_dir: Path, card: ModelCard, device: Any) -> CamSegmenter:
    """Rebuild an SSHR (or baseline CAM) network from its card and weights; never downloads anything."""
    from ..models.seam import uses_seam_pcm
    from ..models.sshr import SSHRNet

    cfg = card.config
    model = SSHRNet(card.backbone, card.class_schema.n_foreground, hfrm=bool(cfg.get("hfrm", True)),
                    kernel_size=int(cfg.get("kernel_size", 15)), dropout=float(cfg.get("dropout", 0.5)),
                    pretrained=False, shallow_stride=int(cfg.get("shallow_stride", 8)),  # 8: cards before the option
                    seam_pcm=uses_seam_pcm(cfg))  # SEAM's PCM weights are in weights.pt
    load_state_checked(model, load_weights(model_dir), card, model_dir)
    return CamSegmenter(model, card, device)


class SegNetSegmenter:
    """A loaded pixel-classifier (the multi-stage baseline's final network); background from white pixels."""

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.card = card
        self.device = device

    @torch.inference_mode()
    def tissue_probs(self, chunk: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, K, H, W) softmax class probabilities at tile size."""
        logits = self.model(to_batch(chunk, self.card, self.device))
        return torch.softmax(cam_ops.upsample(logits, tuple(chunk.shape[1:3])), dim=1)

    def tissue_scores(self, chunk: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, K, H, W) class probabilities on the device (``tta_flips`` applied)."""
        p = self.tissue_probs(chunk)
        if self.card.config.get("tta_flips"):
            p = (p + self.tissue_probs(np.ascontiguousarray(chunk[:, :, ::-1])).flip(-1)
                 + self.tissue_probs(np.ascontiguousarray(chunk[:, ::-1])).flip(-2)) / 3
        return p

    def predict_scores(self, images: np.ndarray, background: np.ndarray | None = None) -> torch.Tensor:
        """(N, K + 1, H, W) float32 class probabilities on the device (``scores_on_device``), one model call."""
        return scores_on_device(images, self.tissue_scores, self.device, glass_min_size(self.card), background)

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        """images (N, H, W, 3) uint8 (or one (H, W, 3) tile) -> Prediction with N tiles.

        Card options, as for CAM networks: ``tta_flips`` (mean over the tile and its two mirrors) and
        ``fill_holes`` (classes whose enclosed holes take the class).
        """
        pred = predict_batched(images, batch_size, self.tissue_scores, self.device, glass_min_size(self.card))
        fill = [self.card.class_schema.index_of(n) for n in self.card.config.get("fill_holes") or ()]
        if fill:
            pred = Prediction(cam_ops.fill_class_holes(pred.class_map, fill), pred.probs)
        return pred


def load_segnet(model_dir: Path, card: ModelCard, device: Any) -> SegNetSegmenter:
    """Rebuild the multi-stage baseline's segmentation network from its card and weights."""
    from ..models.segnet import SegNet

    model = SegNet(card.backbone, card.class_schema.n_foreground, head=card.config.get("seg_head", "fcn"))
    load_state_checked(model, load_weights(model_dir), card, model_dir)
    return SegNetSegmenter(model, card, device)
