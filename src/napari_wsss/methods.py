"""The segmentation methods this installation offers, registered by name in ``METHODS``.

Importing this module fills the registry; each method module is imported explicitly (no star imports).
The heavy parts (torch models) load lazily inside the ``load`` / ``train`` callables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .inference.segmenter import MethodSpec
from .models._registry import METHODS
from .models.card import ModelCard


def _load_sshr(model_dir: Path, card: ModelCard, device: Any):
    from .inference.predict import load_sshr

    return load_sshr(model_dir, card, device)


def _train_sshr(data_dir, out_dir, **options):
    from .training.sshr import train_sshr

    return train_sshr(data_dir, out_dir, **options)


def _load_multistage(model_dir: Path, card: ModelCard, device: Any):
    from .inference.predict import load_segnet

    return load_segnet(model_dir, card, device)


def _train_multistage(data_dir, out_dir, **options):
    from .training.multistage import train_multistage

    return train_multistage(data_dir, out_dir, **options)


def _register(spec: MethodSpec) -> None:
    if spec.name not in METHODS:  # re-importing (e.g. importlib.reload in tests) must not fail
        METHODS.register(spec.name)(spec)


_register(MethodSpec(
    name="sshr",
    title="SSHR (single-stage)",
    description="Single-Stage Hierarchical Rectification: multi-level CAMs rectified by HFRM, trained in one "
                "loop from image-level labels. The default method.",
    load=_load_sshr,
    train=_train_sshr,
    epoch_score=True,
))

_register(MethodSpec(
    name="multistage",
    title="Multi-stage baseline",
    description="CAM network without HFRM -> offline CAM pseudo-masks -> a segmentation network trained on them.",
    load=_load_multistage,
    train=_train_multistage,
))


def _load_cam_sam(model_dir: Path, card: ModelCard, device: Any):
    from .inference.cam_sam import load_cam_sam

    return load_cam_sam(model_dir, card, device)


def _train_cam_sam(data_dir, out_dir, **options):
    from .training.cam_sam import train_cam_sam

    return train_cam_sam(data_dir, out_dir, **options)


_register(MethodSpec(
    name="cam_sam",
    title="CAM + Segment Anything (EPLC-SAM)",
    description="ADL CAM classifier (with a high-frequency input channel) whose CAMs prompt Segment Anything; "
                "masks kept by a CAM-consistency filter; SAM's decoder fine-tuned on them. Needs your SAM "
                "checkpoint (NAPARI_WSSS_SAM_CHECKPOINT or --sam-checkpoint).",
    load=_load_cam_sam,
    train=_train_cam_sam,
))


def _load_mil(model_dir: Path, card: ModelCard, device: Any):
    from .inference.mil import load_mil

    return load_mil(model_dir, card, device)


def _train_mil(data_dir, out_dir, **options):
    from .training.mil import train_mil

    return train_mil(data_dir, out_dir, **options)


_register(MethodSpec(
    name="mil",
    title="MIL teacher (side-output FCN)",
    description="Fully convolutional network with three side outputs and a weighted fusion, trained with Dice "
                "losses against image labels broadcast to pixels; the teacher of IFKD fine-tuning.",
    load=_load_mil,
    train=_train_mil,
))


def _train_ifkd(data_dir, out_dir, **options):
    from .training.ifkd_train import train_ifkd

    return train_ifkd(data_dir, out_dir, **options)


_register(MethodSpec(
    name="ifkd",
    title="MIL -> IFKD (distilled segmentation network)",
    description="Iterative fusion knowledge distillation: a MIL teacher trained from image-level labels, its "
                "fused maps distilled into a segmentation network with IFKD's weighted cross-entropy, teacher "
                "and student switching when the student is better. Fine-tuning from corrections writes this "
                "kind of version too (its card names the teacher).",
    load=_load_multistage,
    train=_train_ifkd,
))
