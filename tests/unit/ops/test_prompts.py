"""CAM -> prompt points, the CAM-consistency filter and overlap resolution (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsss.ops import prompts


def _cam() -> np.ndarray:
    cam = np.zeros((32, 32), np.float32)
    cam[4:12, 4:12] = 0.6  # weak half of the region
    cam[4:12, 12:20] = 1.0  # strong half
    cam[20:, 20:] = 0.3  # below the threshold
    return cam


def test_points_stay_inside_the_cam_region() -> None:
    cam = _cam()
    pts = prompts.cam_to_points(cam, threshold=0.5, n_points=50, rng=0)
    assert pts.shape == (50, 2) and pts.dtype == np.float32
    ys, xs = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert prompts.cam_region(cam, 0.5)[ys, xs].all()
    assert len({(y, x) for y, x in zip(ys, xs)}) == 50  # distinct pixels


def test_points_follow_the_cam_weights() -> None:
    cam = _cam()
    rng = np.random.default_rng(1)
    strong = total = 0
    for _ in range(200):
        pts = prompts.cam_to_points(cam, 0.5, 5, rng)
        strong += int((pts[:, 1] >= 12).sum())
        total += len(pts)
    # equal areas, weights 1.0 vs 0.6: the strong half gets ~62 % of the draws
    assert 0.57 < strong / total < 0.68


def test_small_or_empty_region() -> None:
    cam = np.zeros((8, 8), np.float32)
    assert prompts.cam_to_points(cam, 0.5, 10, 0).shape == (0, 2)
    cam[2, 3] = cam[5, 6] = 0.9
    pts = prompts.cam_to_points(cam, 0.5, 10, 0)
    assert sorted(map(tuple, pts.astype(int).tolist())) == [(2, 3), (5, 6)]
    with pytest.raises(ValueError, match="one"):
        prompts.cam_to_points(np.zeros((2, 8, 8)), 0.5, 3)


def test_yx_to_xy() -> None:
    assert prompts.yx_to_xy(np.array([[1.0, 2.0]])).tolist() == [[2.0, 1.0]]


def test_consistency_filter() -> None:
    region = np.zeros((10, 10), bool)
    region[:, :5] = True
    inside = np.zeros_like(region)
    inside[2:8, 1:5] = True
    assert prompts.consistency(region, inside) == 1.0 and prompts.passes_consistency(region, inside)
    spill = inside.copy()
    spill[2:8, 5] = True  # 6 of 30 pixels outside -> 0.8
    assert prompts.consistency(region, spill) == pytest.approx(0.8)
    assert not prompts.passes_consistency(region, spill) and prompts.passes_consistency(region, spill, 0.8)
    assert prompts.consistency(region, np.zeros_like(region)) == 0.0  # empty SAM mask is never kept


def test_resolve_overlaps_by_cam_and_background() -> None:
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :, :3] = True
    masks[1, :, 1:] = True  # overlaps class 0 on columns 1-2
    cams = np.zeros((3, 4, 4), np.float32)
    cams[0, :, :2] = 0.9
    cams[1, :, 2:] = 0.8
    cams[2] = 0.5  # no mask: only wins where no mask claims (nowhere here)
    bg = np.zeros((4, 4), bool)
    bg[0, 0] = True
    cm = prompts.resolve_overlaps(masks, cams, bg)
    assert cm.dtype == np.uint8
    assert cm[1].tolist() == [0, 0, 1, 1]
    assert cm[0, 0] == 3  # white glass = background index K
    masks[:] = False
    assert prompts.resolve_overlaps(masks, cams)[3].tolist() == [0, 0, 1, 1]  # no mask: CAM argmax


def test_points_box() -> None:
    assert prompts.points_box(np.zeros((0, 2))) is None
    assert prompts.points_box(np.array([[1, 5], [3, 2]])).tolist() == [1, 2, 3, 5]
