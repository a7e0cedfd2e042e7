"""The IFKD student: a segmentation network started from the base's backbone (or its own initial weights), its
loss, the switch margin, and the version it writes loading as an ``ifkd`` model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsss.events import run_to_end
from napari_wsss.inference.predict import SegNetSegmenter
from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.models.card import load_card
from napari_wsss.models.segnet import SegNet
from napari_wsss.training.ifkd import FinetuneConfig, finetune, switch_margin
from napari_wsss.training.ifkd_loss import dense_student_loss
from napari_wsss.training.ifkd_student import build_student

from .test_ifkd import FAST, make_project, tiny_sshr  # noqa: F401  (the module-scoped fixture)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dense_student_starts_from_the_base_backbone_or_its_own(tiny_sshr):  # noqa: F811
    base = load_segmenter(tiny_sshr, "cpu")
    card = load_card(tiny_sshr)
    from_base = build_student(base, card, "dense", "base", torch.device("cpu"))
    assert isinstance(from_base.model, SegNet) and from_base.dense and from_base.method == "ifkd"
    assert isinstance(from_base.segmenter, SegNetSegmenter) and not from_base.twin_of_teacher
    assert _same(from_base.model.backbone.state_dict(), base.model.backbone.state_dict())
    own = build_student(base, card, "dense", "backbone", torch.device("cpu"))
    assert not _same(own.model.backbone.state_dict(), base.model.backbone.state_dict())  # independent of it
    assert own.init == "backbone's initial weights"
    twin = build_student(base, card, "copy", "base", torch.device("cpu"))
    assert twin.method == "sshr" and twin.twin_of_teacher and twin.model is not base.model
    assert _same(twin.model.state_dict(), base.model.state_dict())
    with pytest.raises(ValueError, match="Unknown IFKD student"):
        build_student(base, card, "twin", "base", torch.device("cpu"))


def test_dense_loss_corrections_override_and_glass_takes_no_part():
    cfg = FinetuneConfig(dice_weight=0.0)
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0] = 1.0  # the teacher says class 0 everywhere ...
    full = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    loss, parts = dense_student_loss(logits, target, full, valid, cfg)
    assert parts["wce"] == pytest.approx(np.log(2), rel=1e-5) and parts["corr"] == 0.0  # CE of a uniform guess
    # ... a corrected pixel with another class: it enters as a plain cross-entropy of its own
    target2, full2 = target.clone(), full.clone()
    target2[0, :, 0, 0] = torch.tensor([0.0, 1.0])
    full2[0, 0, 0] = True
    _, parts2 = dense_student_loss(logits, target2, full2, valid, cfg)
    assert parts2["corr"] == pytest.approx(np.log(2), rel=1e-5)
    # a pixel with no target mass (glass) changes nothing, whatever the student says there
    target3 = target.clone()
    target3[0, :, 3, 3] = 0.0
    logits3 = logits.detach().clone()
    logits3[0, 1, 3, 3] = 50.0
    ref, _ = dense_student_loss(logits.detach(), target3, full, valid, cfg)
    moved, _ = dense_student_loss(logits3, target3, full, valid, cfg)
    assert float(ref) == pytest.approx(float(moved), rel=1e-6)
    # the gradient pushes the student towards the teacher's class (a fresh student learns; no twin at zero)
    loss.backward()
    assert float(logits.grad[0, 0].sum()) < 0 < float(logits.grad[0, 1].sum())


def test_switch_margin_is_larger_than_the_held_out_noise():
    assert switch_margin([0.7], 0.02) == 0.1  # one tile: no spread to measure
    assert switch_margin([0.6, 0.6, 0.6], 0.02) == 0.02  # no spread: the floor
    noisy = [0.41, 0.78]
    assert switch_margin(noisy, 0.02) == pytest.approx(2 * np.std(noisy, ddof=1) / np.sqrt(2))
    assert switch_margin(noisy, 0.02) > 0.3


def test_dense_version_loads_as_ifkd_and_keeps_the_post_processing(tmp_path, tiny_sshr):  # noqa: F811
    from napari_wsss.models.card import save_card

    project = make_project(tmp_path)
    out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=1)))
    card = load_card(out)
    assert card.method == "ifkd" and card.config["seg_head"] == "fcn"
    assert card.metrics["held_out"]["kept"] == "last" and "switch_margin" in card.metrics["held_out"]
    seg = load_segmenter(out, "cpu")
    assert isinstance(seg, SegNetSegmenter) and isinstance(seg.model, SegNet)
    img = np.random.default_rng(0).integers(0, 255, (1, 64, 80, 3), dtype=np.uint8)
    plain = seg.predict(img)
    # test-time flips: the mean of the tile's and its mirrors' probabilities
    card.config["tta_flips"] = True
    save_card(out, card)
    flipped = load_segmenter(out, "cpu")
    expect = (flipped.tissue_probs(img) + flipped.tissue_probs(np.ascontiguousarray(img[:, :, ::-1])).flip(-1)
              + flipped.tissue_probs(np.ascontiguousarray(img[:, ::-1])).flip(-2)) / 3
    got = flipped.predict(img)
    assert not np.allclose(got.probs, plain.probs)
    np.testing.assert_array_equal(got.class_map[0], expect.argmax(1)[0].numpy())


def test_anchor_keeps_the_student_near_the_base_weights(tmp_path, tiny_sshr):  # noqa: F811
    """L2-SP (``anchor_weight``): the backbone taken from the base drifts less from it; BN statistics can stay."""
    from napari_wsss.models.card import load_weights

    base = {k: v for k, v in load_weights(tiny_sshr).items() if k.startswith("backbone.")}

    def drift(opts: dict, name: str) -> tuple[float, float]:
        project = make_project(tmp_path / name)
        w = load_weights(run_to_end(finetune(project, tiny_sshr, options=dict(FAST, refit=False, lr=1e-2, **opts))))
        params = sum(float(((w[k] - v) ** 2).sum()) for k, v in base.items() if "running" not in k
                     and v.dtype.is_floating_point)
        stats = sum(float(((w[k] - v) ** 2).sum()) for k, v in base.items() if "running" in k)
        return params, stats

    free, free_stats = drift({}, "free")
    held, held_stats = drift({"anchor_weight": 100.0, "freeze_bn": True}, "anchored")
    assert held < 0.5 * free
    assert free_stats > 0 and held_stats == 0  # frozen batch-norm statistics are the base's


def test_the_version_mixes_fine_tuned_and_base_weights(tmp_path, tiny_sshr):  # noqa: F811
    """``interpolate`` (WiSE-FT): a student that started as the whole base is written as share x its fine-tuned
    weights + the rest of the base's; the card says so, the default depends on what else it learns from, and a
    share outside (0, 1] is refused."""
    from napari_wsss.models.card import load_weights

    base = load_weights(tiny_sshr)

    def run(share: float, name: str) -> tuple[dict, dict]:
        project = make_project(tmp_path / name)
        out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, student="copy", refit=False, lr=1e-2,
                                                                    num_threads=1, interpolate=share)))
        return load_weights(out), load_card(out).config["finetune"]

    tuned, tuned_ft = run(1.0, "alone")
    mixed, mixed_ft = run(0.25, "mixed")
    moved = [k for k, v in base.items() if v.is_floating_point() and not torch.equal(v, tuned[k])]
    assert len(moved) > 10  # the fine-tune changed the network
    for k in moved:
        torch.testing.assert_close(mixed[k], 0.25 * tuned[k] + 0.75 * base[k], rtol=1e-4, atol=1e-5)
    assert tuned_ft["mixed_with_base"].startswith("no")
    assert mixed_ft["mixed_with_base"].startswith("0.25 x fine-tuned + 0.75 x ")
    # the default: mixed when the corrections are all the student learns from, not when unreviewed tiles (the
    # base's maps) already hold it near the base
    for n_tiles, expected in ((4, "0.6 x fine-tuned"), (8, "no")):
        project = make_project(tmp_path / f"default{n_tiles}", n_tiles=n_tiles)
        out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, student="copy", refit=False, epochs=1)))
        assert load_card(out).config["finetune"]["mixed_with_base"].startswith(expected)
    with pytest.raises(ValueError, match="interpolate=0 is not a share"):
        run_to_end(finetune(make_project(tmp_path / "zero"), tiny_sshr, options=dict(FAST, interpolate=0.0)))
