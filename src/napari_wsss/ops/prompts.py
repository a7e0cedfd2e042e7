"""CAM -> SAM prompts and back: pure NumPy functions (no model, no state).

Conventions: CAMs are (H, W) or (K, H, W) float in [0, 1]; masks are bool of the same spatial shape; points
are returned in the project's (y, x) pixel order as float arrays (N, 2) at pixel centres — SAM itself wants
(x, y), which :func:`yx_to_xy` gives. Class maps follow the class-map convention (foreground 0..K-1,
background K).
"""

from __future__ import annotations

import numpy as np

CONSISTENCY_MIN = 0.9
"""Paper: keep a SAM mask only if at least 90 % of it lies inside the CAM region."""


def cam_region(cam: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(H, W) CAM in [0, 1] -> (H, W) bool region ``cam >= threshold`` (and > 0)."""
    cam = np.asarray(cam, dtype=np.float32)
    return (cam >= threshold) & (cam > 0)


def cam_to_points(cam: np.ndarray, threshold: float = 0.5, n_points: int = 50,
                  rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Sample positive prompt points inside the thresholded CAM, with probability proportional to the CAM.

    Pixels are drawn without replacement (distinct points); when the region has fewer than ``n_points``
    pixels, all of them are returned.

    Args:
        cam: (H, W) float in [0, 1].
        threshold: region = ``cam >= threshold``.
        n_points: how many points (paper: 50).
        rng: a NumPy Generator or seed (reproducible prompts).
    Returns:
        (n, 2) float32 (y, x) pixel coordinates, n <= n_points (0 when the region is empty).
    """
    if n_points < 0:
        raise ValueError(f"n_points must be >= 0, got {n_points}.")
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"cam_to_points expects one (H, W) CAM, got shape {cam.shape}.")
    region = cam_region(cam, threshold)
    idx = np.flatnonzero(region)
    if idx.size == 0 or n_points == 0:
        return np.zeros((0, 2), np.float32)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    weights = cam.ravel()[idx]
    if idx.size <= n_points:
        chosen = idx
    else:
        chosen = rng.choice(idx, size=n_points, replace=False, p=weights / weights.sum())
    ys, xs = np.unravel_index(chosen, cam.shape)
    return np.stack([ys, xs], axis=1).astype(np.float32)


def yx_to_xy(points: np.ndarray) -> np.ndarray:
    """(N, 2) (y, x) -> (N, 2) (x, y), the order SAM's ``point_coords`` use."""
    return np.asarray(points)[:, ::-1].copy()


def consistency(region: np.ndarray, mask: np.ndarray) -> float:
    """|region ∩ mask| / |mask| (0 for an empty mask)."""
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    return float((np.asarray(region, bool) & mask).sum()) / n if n else 0.0


def passes_consistency(region: np.ndarray, mask: np.ndarray, min_ratio: float = CONSISTENCY_MIN) -> bool:
    """The CAM-consistency filter: keep a SAM mask only when ``consistency(region, mask) >= min_ratio``."""
    return consistency(region, mask) >= min_ratio


def resolve_overlaps(masks: np.ndarray, cams: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Merge per-class SAM masks into one class map.

    A pixel claimed by one kept mask takes that class; claimed by several, the class with the highest CAM
    there; claimed by none, the CAM argmax (SAM refines, the CAM still covers what SAM left out). Near-white
    pixels (``background``) are background whatever the masks say.

    Args:
        masks: (K, H, W) bool, all-False for classes without a kept mask.
        cams: (K, H, W) float in [0, 1] (gated: absent classes are 0).
        background: (H, W) bool or None.
    Returns:
        (H, W) uint8 class map (background = K).
    """
    return scores_to_class_map(combine_scores(masks, cams), background)


def combine_scores(masks: np.ndarray, cams: np.ndarray) -> np.ndarray:
    """(K, H, W) tissue scores in [0, 1] whose argmax is :func:`resolve_overlaps`' rule.

    ``0.5 + 0.5 * cam`` inside a class's kept mask, ``0.5 * cam`` outside: any mask beats any CAM, among
    masks the higher CAM wins.
    """
    masks = np.asarray(masks, bool)
    cams = np.clip(np.asarray(cams, np.float32), 0, 1)
    if masks.shape != cams.shape:
        raise ValueError(f"masks {masks.shape} and cams {cams.shape} must have the same (K, H, W) shape.")
    return 0.5 * cams + 0.5 * masks


def scores_to_class_map(scores: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """(K, H, W) scores (+ (H, W) bool background) -> (H, W) uint8 class map, background = K."""
    cls = np.asarray(scores).argmax(axis=0).astype(np.uint8)
    if background is not None:
        cls[np.asarray(background, bool)] = scores.shape[0]
    return cls


def points_box(points: np.ndarray) -> np.ndarray | None:
    """Bounding box (y0, x0, y1, x1) of (N, 2) (y, x) points, or None for no points."""
    points = np.asarray(points)
    if len(points) == 0:
        return None
    return np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
