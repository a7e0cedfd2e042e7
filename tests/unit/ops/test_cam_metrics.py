import numpy as np
import pytest
import torch

from napari_wsss.ops import cam as cam_ops
from napari_wsss.ops.metrics import confusion_matrix, scores_from_confusion


def test_minmax_and_fuse():
    cams = [torch.randn(2, 3, 4, 4) for _ in range(4)]
    fused = cam_ops.fuse_cams(cams, (0.0, 0.6, 0.2, 0.2), (16, 16))
    assert fused.shape == (2, 3, 16, 16) and fused.min() >= 0 and fused.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="weight"):
        cam_ops.fuse_cams(cams, (1.0,), (16, 16))


def test_gate_background_argmax():
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 0] = 0.9
    maps[0, 1] = 0.5
    gated = cam_ops.gate_classes(maps, torch.tensor([[0.1, 0.9, 0.05]]), 0.2)
    assert gated[0, 0].max() == 0 and gated[0, 1].max() == 0.5  # class 0 vetoed by its probability
    bg = torch.tensor([[[True, False], [False, False]]])
    cm = cam_ops.argmax_class_map(gated, bg)
    assert cm.tolist() == [[[3, 1], [1, 1]]]
    scores = cam_ops.add_background(gated, bg)
    assert scores.shape == (1, 4, 2, 2) and scores[0, 3, 0, 0] == 1 and scores[0, 1, 0, 0] == 0


def test_metrics_ignore_background_ground_truth():
    gt = np.array([[0, 0, 1, 1], [2, 2, 4, 4]])
    pred = np.array([[0, 0, 1, 0], [2, 4, 0, 4]])
    cm = confusion_matrix(pred, gt, 5)
    s = scores_from_confusion(cm, ["A", "B", "C", "D", "BG"])
    assert s["IoU"]["A"] == pytest.approx(2 / 3)  # the gt-background pixel predicted A is ignored
    assert s["IoU"]["B"] == pytest.approx(1 / 2)
    assert s["IoU"]["C"] == pytest.approx(1 / 2)  # predicted as background: a miss
    assert np.isnan(s["IoU"]["D"])
    assert s["mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["background_IoU"] == pytest.approx(1 / 3)
    perfect = scores_from_confusion(confusion_matrix(gt, gt, 5))
    assert perfect["mIoU"] == 1 and perfect["FwIoU"] == pytest.approx(1) and perfect["mDice"] == 1


def test_normalise_per_image_compares_classes_by_shape():
    import torch

    from napari_wsss.ops.cam import normalise_per_image

    s = torch.zeros(1, 3, 10, 10)
    s[0, 0, :5] = 0.2  # a weakly firing class over half the image
    s[0, 1] = 0.5  # a strongly firing class everywhere
    out = normalise_per_image(s, 0.9)
    assert float(out[0, 0, 0, 0]) == pytest.approx(1.0) and float(out[0, 1, 0, 0]) == pytest.approx(1.0)
    assert float(out[0, 2].abs().max()) == 0.0  # a gated-off class stays zero


def test_fill_class_holes_only_fills_enclosed_holes():
    from napari_wsss.ops.cam import fill_class_holes

    cm = np.ones((1, 9, 9), np.uint8)
    cm[0, 1:6, 1:6] = 0  # a gland ring ...
    cm[0, 3, 3] = 1  # ... with a lumen predicted as the other class
    cm[0, 8, 0] = 0  # an open notch stays
    out = fill_class_holes(cm, [0])
    assert out[0, 3, 3] == 0 and out[0, 7, 7] == 1 and (out[0, 1:6, 1:6] == 0).all()
