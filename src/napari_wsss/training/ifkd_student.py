"""The IFKD student: which network learns from the teacher's maps (and the user's corrections), how it starts.

``student="dense"`` (the default): a segmentation network, ``models.segnet.SegNet`` (a backbone of the base's
kind + an FCN head), read at inference by its softmax like the multi-stage baseline's final network. The version
it writes is an ``ifkd`` model whose card names its teacher. IFKD's student is a pixel classifier trained on the
teacher's fused maps; a CAM network's heads only see pixels through global pooling, min-max normalisation and
an image-level gate, which per-pixel targets move poorly (measured on real GlaS images: docs/benchmarks.md).

``student_init``:
    * ``"base"``: the backbone starts from the base version's backbone (what it learnt from image-level labels),
      the head fresh; a base that already is a SegNet (multi-stage, ifkd) is copied whole. The default for
      fine-tuning from corrections.
    * ``"backbone"``: the backbone's own initial weights (random for small_cnn; ImageNet's when the card asks for
      ``pretrained`` and the weights are in torch's cache): a student independent of its teacher, as
      distillation has it (the full ``ifkd`` training method).

``student="copy"``: the base version's own network, copied (the teacher's twin; the first behaviour of the
fine-tuner, kept as an option): the new version keeps the base's method and post-processing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

STUDENTS = ("dense", "copy")
STUDENT_INITS = ("base", "backbone")
SEGNET_METHODS = ("multistage", "ifkd")  # versions whose network already is a SegNet


@dataclass
class Student:
    """The network being trained and how to read it.

    Attributes:
        model: the student network (on the device, train mode).
        method: the method the new version is saved under (its loader).
        segmenter: a Segmenter whose ``model`` is swapped for the student's (or a teacher's) weights to score or
            to predict the teacher's maps; it carries the new version's card.
        dense: True for a SegNet read by its softmax (the dense loss), False for the base's own network.
        init: what the weights started from (recorded in the card).
        twin_of_teacher: the teacher has the same architecture, so IFKD's switch can swap their weights.
    """

    model: torch.nn.Module
    method: str
    segmenter: Any
    dense: bool
    init: str
    twin_of_teacher: bool
    from_base: bool = False  # the weights started from the base version's (what an L2-SP anchor pulls towards)
    whole_from_base: bool = False  # every weight, head included, is the base's: the student can be mixed with it


def _imagenet_if_cached(card: Any) -> bool:
    """Whether a pretrained card's ImageNet weights are at hand without the network (in torch's cache)."""
    from ..models.backbones import cached_imagenet_file

    return bool(card.config.get("pretrained")) and card.backbone.startswith("resnet") and \
        cached_imagenet_file(card.backbone) is not None


def dense_card(base_card: Any, method: str = "ifkd") -> Any:
    """The card a dense student is read with: the base's (schema, scale, normalisation), method ``ifkd``."""
    from ..models.card import ModelCard

    card = ModelCard.from_dict(base_card.to_dict(), source="")
    card.method = method
    card.config = {**base_card.config, "seg_head": base_card.config.get("seg_head", "fcn")}
    return card


def build_student(base_seg: Any, base_card: Any, student: str, init: str, device: torch.device) -> Student:
    """The student for fine-tuning ``base_seg`` (or for distilling a teacher trained from image labels)."""
    from ..inference.predict import SegNetSegmenter
    from ..models.segnet import SegNet

    if student not in STUDENTS:
        raise ValueError(f"Unknown IFKD student {student!r}; choose one of {', '.join(STUDENTS)}.")
    if init not in STUDENT_INITS:
        raise ValueError(f"Unknown student_init {init!r}; choose one of {', '.join(STUDENT_INITS)}.")
    method = base_card.method
    if student == "copy":
        model = copy.deepcopy(base_seg.model).to(device)
        return Student(model, method, segmenter_with(base_seg, model), False, "copy of the base version", True,
                       from_base=True, whole_from_base=True)
    card = dense_card(base_card, method if method in SEGNET_METHODS else "ifkd")
    k = card.class_schema.n_foreground
    if method in SEGNET_METHODS and init == "base":
        model = copy.deepcopy(base_seg.model)
        how = "copy of the base version (already a segmentation network)"
        from_base = whole = True
    else:
        whole = False
        model = SegNet(card.backbone, k, head=card.config["seg_head"], pretrained=_imagenet_if_cached(card))
        how, from_base = "backbone's initial weights" + (" (ImageNet)" if _imagenet_if_cached(card) else ""), False
        source = getattr(base_seg.model, "backbone", None)
        if init == "base" and source is not None:
            try:
                model.backbone.load_state_dict(source.state_dict())
                how, from_base = "base version's backbone, new head", True
            except RuntimeError:  # e.g. CAM+SAM's 4-channel ADL backbone: not a plain backbone
                how += f" (the base's {type(source).__name__} backbone does not fit a plain one)"
    model = model.to(device)
    model.train()
    return Student(model, card.method, SegNetSegmenter(model, card, device), True, how,
                   method in SEGNET_METHODS, from_base=from_base, whole_from_base=whole)


def segmenter_with(template: Any, model: torch.nn.Module) -> Any:
    """A shallow copy of ``template`` (a Segmenter) whose network is ``model`` (same card, same post-processing)."""
    seg = copy.copy(template)
    seg.model = model
    return seg
