"""Settings the trainers' config dataclasses share, declared once, and the list of those dataclasses.

Field names and defaults are a public contract: ``--set KEY=VALUE``, the widgets and every saved model card
(``card.config`` is ``cfg.to_dict()``) use them, so a field here must mean the same in every trainer that
inherits it. Fields whose default differs per trainer (``epochs``, ``batch_size``) stay in the trainer.
Dataclass inheritance puts these fields first; nothing reads configs by position (options are keywords).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class RunConfig:
    """Every trainer, fine-tuning included: augmentation (flips, H&E stain jitter), reproducibility, threads,
    device.

    ``hed_scale`` / ``hed_shift``: Tellez et al. 2018 stain jitter (``ops.stain.hed_jitter``), per stain channel
    ``alpha ~ U(1 - hed_scale, 1 + hed_scale)``, ``beta ~ U(-hed_shift, hed_shift)`` in optical density; 0 is
    off, 0.05 HED-light, 0.2 HED-strong. It makes a model less sensitive to another lab's staining.
    """

    flips: bool = True
    seed: int = 0
    num_threads: int | None = None  # None: NAPARI_WSSS_THREADS or min(4, cores), see common.set_threads
    device: str | None = None  # None: cuda > mps > cpu, see device.select_device
    hed_scale: float = 0.0
    hed_shift: float = 0.0

    def hed(self) -> tuple[float, float]:
        """(scale, shift) of the stain jitter for the datasets; refuses negative values before any training."""
        if self.hed_scale < 0 or self.hed_shift < 0 or self.hed_scale >= 1:
            raise ValueError(f"hed_scale={self.hed_scale}, hed_shift={self.hed_shift}: expected 0 <= hed_scale < 1 "
                             "and hed_shift >= 0 (0 = off, 0.05 = HED-light, 0.2 = HED-strong).")
        return float(self.hed_scale), float(self.hed_shift)

    def to_dict(self) -> dict[str, Any]:
        """Field values as JSON would give them back (tuples as lists), so a card compares equal after a reload."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class TrainConfig(RunConfig):
    """Trainers of a new network from image-level labels (SSHR, multi-stage, CAM+SAM, MIL): backbone, input
    size and the SGD schedule of ``common.sgd`` (new layers at ``new_lr_mult``, their biases at ``bias_lr_mult``).

    ``input_size`` is the side tiles are resized to for training; inference rescales tiles by the same
    factor (``input_size / tile size``, ``data.scale.working_scale``), so training at 112 px on 224 px tiles
    is 4x cheaper. Tiles of another size are rescaled by that factor and cropped, never squeezed.
    """

    backbone: str = "small_cnn"
    schema: str = "luad"
    input_size: int = 224
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    new_lr_mult: float = 10.0
    bias_lr_mult: float = 20.0
    rotate: bool = False
    pretrained: str | bool = "auto"  # "auto", True, or False (CLI "none")
    # near-white regions at least this large (px, at tile scale) are predicted glass; 0 = none (inference.predict)
    glass_min_size: int = 64


@dataclass
class CamTrainConfig(TrainConfig):
    """CAM classifiers trained by ``sshr.cam_step_fn`` (SSHR, multi-stage stage 1, CAM+SAM): class gating,
    SegMix (``models.segmix.SegMixScheduler.from_config``) and the PCM (``pcm_kind``: SEAM's learned module, or
    the parameter-free consistency loss of earlier versions).

    SegMix curriculum: the patch scheduler watches ``segmix_signal``, the ratio scheduler
    ``segmix_ratio_signal``, each with its own plateau detector; ``segmix_pacing="epoch"`` makes a feedback
    window ``segmix_window_epochs`` of an epoch, so the curriculum spans epochs whatever the data size;
    ``segmix_prob`` of the batches are mixed. The first implementation (fixed windows of ``segmix_window``
    batches, both schedulers on one signal, every batch mixed) is ``segmix_pacing="batches"``,
    ``segmix_ratio_signal="loss"``, ``segmix_prob=1.0``.
    """

    # class gating at inference: sigmoid of the image logits >= threshold; None: the paper's value for the schema
    # (gating_threshold), set by common.setup_training; SSHR's ``calibrate`` replaces it by the best on val masks
    threshold: float | None = None
    segmix: bool = False
    segmix_patch: int = 0  # first SegMix cell side in input pixels; 0 = input_size // 2
    segmix_ratio: float = 0.25
    segmix_min_patch: int = 8
    segmix_max_ratio: float = 0.5
    segmix_patience: int = 3  # plateau windows before the patch shrinks / the ratio grows
    segmix_pacing: str = "epoch"  # windows as a share of an epoch; "batches": fixed windows of segmix_window
    segmix_window_epochs: float = 0.5  # "epoch" pacing: a window = this share of the epoch's mixed batches
    segmix_window: int = 20  # "batches" pacing: batches per feedback window
    segmix_signal: str = "loss"  # the patch scheduler's signal, or "accuracy" (image-label accuracy, deep head)
    segmix_ratio_signal: str = "accuracy"  # the ratio scheduler's signal ("loss" or "accuracy")
    segmix_prob: float = 0.5  # share of batches mixed; the others train clean
    segmix_labels: str = "hard"  # or "soft" (area-weighted)
    pcm: bool = False  # pixel correlation module (PCM) while training the classifier, see pcm_kind
    # "seam": SEAM's learned PCM (models.seam; its projection saved in weights.pt) with ER/ECR losses between the
    # image and a pcm_scale copy; "parameter_free": feature-affinity consistency loss (models.pcm; cards
    # without the key were trained with it). Default parameter_free: SEAM measured worse on generated tiles
    # (SSHR + PCM test mIoU 0.188 against 0.454 for the parameter-free one; docs/benchmarks.md, SegMix ablation)
    pcm_kind: str = "parameter_free"
    pcm_weight: float | None = None  # None: 1.0 for "seam" (SEAM's code), 0.2 for "parameter_free"
    pcm_mode: str = "relu"  # "parameter_free" affinity: relu(cos) / row sum, or "softmax"
    pcm_scale: float = 0.5  # "seam": side of the second view (SEAM's code: 0.3 at 448 px input)
    # inference (inference.predict.CamSegmenter.predict): per-image CAM normalisation, holes filled per class
    cam_norm_quantile: float = 0.0  # 0 = off; e.g. 0.9: each class map divided by its 90th percentile
    fill_holes: tuple[str, ...] = ()  # class names, e.g. ("gland",) for lumens
    tta_flips: bool = False  # average the class maps over the tile and its two mirror images (3x compute)

    def pcm_loss_weight(self) -> float:
        """``pcm_weight``, or where it is None the kind's default: 1.0 for SEAM's losses (its code adds ER and
        ECR unweighted), 0.2 for the parameter-free consistency loss (this project's earlier default)."""
        if self.pcm_weight is not None:
            return float(self.pcm_weight)
        return 1.0 if self.pcm_kind == "seam" else 0.2

    def gating_threshold(self, schema_name: str) -> float:
        """``threshold``, or where it is None the paper's code's value for the schema (``GATING_THRESHOLDS``:
        0.5 on BCSS-WSSS, 0.2 on LUAD-HistoSeg and any other schema)."""
        if self.threshold is not None:
            return float(self.threshold)
        return GATING_THRESHOLDS.get(schema_name, DEFAULT_GATING_THRESHOLD)


# SSHR's public code gates classes at 0.5 on BCSS-WSSS and 0.2 on LUAD-HistoSeg (keys: ClassSchema.name)
GATING_THRESHOLDS = {"BCSS-WSSS": 0.5, "LUAD-HistoSeg": 0.2}
DEFAULT_GATING_THRESHOLD = 0.2


def trainer_configs() -> dict[str, type[TrainConfig]]:
    """Each trainer's config dataclass by method name: the options the CLI (``napari-wsss train``) offers.

    Imports the trainers (hence torch), so call it when training, not at start-up. A new field of one of these
    classes becomes a ``--set`` key and a named flag by itself; a new trainer adds its class here.
    """
    from .cam_sam import CamSamConfig
    from .ifkd_train import IFKDConfig
    from .mil import MILConfig
    from .multistage import MultistageConfig
    from .sshr import SSHRConfig

    return {"sshr": SSHRConfig, "multistage": MultistageConfig, "cam_sam": CamSamConfig, "mil": MILConfig,
            "ifkd": IFKDConfig}
