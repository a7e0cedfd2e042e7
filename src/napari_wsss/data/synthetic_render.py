"""Region renderer of the synthetic H&E generator: layout -> stain concentrations -> Beer-Lambert RGB.

``render_region(spec, y0, x0, h, w)`` returns the RGB image and the exact class map of one window of a (possibly
unbounded) synthetic section. Everything is a function of the spec and global coordinates, so windows rendered
separately join up (the slide writer relies on it) and a tile is the window (0, 0, size, size) of a tile spec.
Class-map values follow the LUAD-HistoSeg schema: 0 TE, 1 NEC, 2 LYM, 3 TAS, 4 background (white glass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from . import synthetic_nuclei as nuc
from .synthetic_noise import fbm, mix_seed, point_noise, value_noise

BG = 4
N_FG = 4
# Ruifrok & Johnston optical-density vectors (unit length) for haematoxylin and eosin.
H_RUIFROK = np.array([0.650, 0.704, 0.286])
E_RUIFROK = np.array([0.072, 0.990, 0.105])
# Eosin as scanned on many slides absorbs more blue than Ruifrok's (pinker, less magenta; Macenko's reference).
E_MACENKO = np.array([0.2159, 0.8012, 0.5581])


@dataclass
class Stain:
    """Per-tile/slide stain: unit OD vectors, concentration scales and the white level of the glass."""

    h_vec: np.ndarray
    e_vec: np.ndarray
    h_scale: float
    e_scale: float
    white: np.ndarray  # (3,) RGB of empty glass, 0..255


@dataclass
class Spec:
    """Everything that defines a synthetic section; windows of it are rendered by ``render_region``."""

    seed: int
    difficulty: float
    classes: tuple[int, ...]                 # foreground classes that may appear
    class_bias: np.ndarray                   # (4,) added to each class's layout field
    class_cell: float                        # size of class regions, px
    tissue_cell: float
    tissue_thr: float                        # tissue where the tissue field > thr
    hole_p: float                            # density of small glass holes (0 = none)
    cleft_thr: float                         # stroma clefts where fibre noise < thr (0 = none)
    fibre_angle: float
    stain: Stain
    blur: float                              # gaussian sigma, px
    noise: float                             # sensor noise sigma, grey levels
    morph: dict = field(default_factory=dict)
    slide_shape: tuple[int, int] | None = None  # set for slides: tissue fades to glass margins


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_stain(rng: np.random.Generator, d: float) -> Stain:
    """Perturbed stain vectors and intensities; spread grows with difficulty ``d``."""
    mix = rng.uniform(0.6, 1.0)
    e_base = _unit(mix * E_MACENKO + (1 - mix) * E_RUIFROK)
    jit = 0.04 + 0.08 * d
    h_vec = _unit(np.clip(H_RUIFROK + rng.normal(0, jit, 3), 0.05, None))
    e_vec = _unit(np.clip(e_base + rng.normal(0, jit, 3), 0.02, None))
    spread = 0.12 + 0.22 * d
    h_scale = float(np.exp(rng.normal(0, spread)))
    e_scale = float(np.exp(rng.normal(0, spread)))
    white = np.clip(rng.normal(244, 3, 3) + rng.normal(0, 2), 234, 254)
    return Stain(h_vec, e_vec, h_scale, e_scale, white)


def morphology(rng: np.random.Generator, d: float) -> dict:
    """Class-typical nucleus parameters; higher difficulty pulls the classes towards each other."""
    j = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    return {
        "lym_spacing": 8.0 + 2.6 * d + j(-0.4, 0.6), "lym_accept": 0.92 - 0.3 * d, "lym_r": 3.0 + 0.7 * d + j(-0.2, 0.3),
        "lym_amp": 1.75 - 0.45 * d, "lym_irreg": 0.05 + 0.1 * d,
        "gland_spacing": j(58, 76), "gland_p": 0.85 - 0.55 * d, "te_r": 5.8 - 1.3 * d + j(-0.5, 0.6),
        "te_pleo": 0.5 - 0.2 * d, "te_amp": 1.35, "te_irreg": 0.2 - 0.08 * d, "te_fill": 0.55,
        "tas_spacing": 28.0 - 8.0 * d + j(-3, 3), "tas_len": 7.5 - 1.5 * d, "tas_w": 1.7 + 0.8 * d,
        "tas_amp": 1.35, "tas_lym": 0.4 * d,
        "nec_dust_spacing": 5.5 + 1.0 * d, "nec_dust_p": 0.6 - 0.25 * d, "nec_dust_amp": 1.2,
        "nec_pyk_amp": 1.9 - 0.3 * d, "nec_pyk_p": 0.55, "nec_ghost_p": 0.55, "nec_intact": 0.35 * d,
        "te_lym": 0.12 + 0.2 * d,
    }


# -- layout ------------------------------------------------------------------------------------------------

def tissue_field(spec: Spec, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    t = fbm(mix_seed(spec.seed, 2), y0, x0, h, w, spec.tissue_cell, 3)
    t += (0.08 + 0.25 * spec.difficulty) * fbm(mix_seed(spec.seed, 3), y0, x0, h, w, spec.tissue_cell / 8, 2)
    if spec.slide_shape is not None:
        H, W = spec.slide_shape
        yy = (np.arange(y0, y0 + h, dtype=np.float32) + 0.5) / H * 2 - 1
        xx = (np.arange(x0, x0 + w, dtype=np.float32) + 0.5) / W * 2 - 1
        r2 = yy[:, None] ** 2 + xx[None, :] ** 2
        t = 0.5 * t + (1.0 - 1.25 * r2)
    return t


def class_fields(spec: Spec, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """(4, h, w) layout scores; the class map is their argmax (absent classes score -inf)."""
    out = np.full((N_FG, h, w), -np.inf, dtype=np.float32)
    irr = 0.12 + 0.3 * spec.difficulty
    for c in spec.classes:
        f = fbm(mix_seed(spec.seed, 10 + c), y0, x0, h, w, spec.class_cell, 2)
        f += irr * fbm(mix_seed(spec.seed, 20 + c), y0, x0, h, w, spec.class_cell / 7, 2)
        out[c] = f + spec.class_bias[c]
    return out


def layout(spec: Spec, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(class map without holes (h, w) uint8 0..3, tissue (h, w) bool before holes)."""
    cm = np.argmax(class_fields(spec, y0, x0, h, w), axis=0).astype(np.uint8)
    return cm, tissue_field(spec, y0, x0, h, w) > spec.tissue_thr


# -- textures -----------------------------------------------------------------------------------------------

def _fibres(spec: Spec, y0: int, x0: int, h: int, w: int):
    """Wavy oriented collagen texture in [0, 1] and the local fibre angle (both (h, w))."""
    s = spec.seed
    warp = 14.0 * fbm(mix_seed(s, 40), y0, x0, h, w, 70.0, 2)
    th = spec.fibre_angle
    yy = np.arange(y0, y0 + h, dtype=np.float64)[:, None]
    xx = np.arange(x0, x0 + w, dtype=np.float64)[None, :]
    along = xx * np.cos(th) + yy * np.sin(th)
    across = -xx * np.sin(th) + yy * np.cos(th) + warp
    f = 0.6 * point_noise(mix_seed(s, 41), across / 2.0, along / 18.0)
    f += 0.4 * point_noise(mix_seed(s, 42), across / 1.0, along / 9.0)
    gy, gx = np.gradient(warp)
    # Fibres run along the iso-lines of `across`: tangent = (d across/dy, -d across/dx) in (x, y).
    ang = np.arctan2(np.sin(th) - gx, np.cos(th) + gy)
    return f, ang


def render_region(spec: Spec, y0: int, x0: int, h: int, w: int, halo: int = 12,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render the window rows y0..y0+h, cols x0..x0+w of the section.

    Args:
        halo: extra border rendered and cropped (>= 48 makes windows join exactly; 6 is enough for a tile).
        rng: sensor-noise generator (defaults to one seeded from the spec and window).

    Returns:
        image (h, w, 3) uint8 RGB and class map (h, w) uint8 (0..3 tissue classes, 4 glass).
    """
    d = spec.difficulty
    m = spec.morph
    Y0, X0, Hh, Wh = y0 - halo, x0 - halo, h + 2 * halo, w + 2 * halo
    cm, tissue = layout(spec, Y0, X0, Hh, Wh)
    present = [c for c in spec.classes if np.any(cm[tissue] == c)] if tissue.any() else []

    cH = np.zeros((Hh, Wh), np.float32)
    cE = np.zeros((Hh, Wh), np.float32)
    tables = []
    pad = 12.0  # nuclei centred this far outside still reach in (glands add their own margin)
    box = (Y0 - pad, X0 - pad, Y0 + Hh + pad, X0 + Wh + pad)
    holes = np.zeros((Hh, Wh), bool)
    if spec.hole_p > 0:
        holes = nuc.splat(nuc.holes(spec.seed, *box, spec.hole_p), Y0, X0, Hh, Wh)[1] > 0.5
    s = spec.seed
    lumen = None
    for c in present:
        sel = cm == c
        if c == nuc.TE:
            t, glands = nuc.tumour(s, *box, m)
            tables += [t, nuc.lymphocytes(mix_seed(s, 71), *box, m, cls=nuc.TE, spacing=15.0, accept=m["te_lym"])]
            cyto = 0.68 + 0.2 * fbm(mix_seed(s, 50), Y0, X0, Hh, Wh, 9.0, 2)
            lumen = nuc.splat(glands, Y0, X0, Hh, Wh)[1]
            e = cyto * (1 - lumen) + 0.45 * lumen
            hh = 0.15 * (1 - lumen) + 0.03 * lumen + 0.05 * fbm(mix_seed(s, 51), Y0, X0, Hh, Wh, 4.0, 1)
        elif c == nuc.LYM:
            tables.append(nuc.lymphocytes(s, *box, m))
            e = 0.48 + 0.12 * fbm(mix_seed(s, 52), Y0, X0, Hh, Wh, 12.0, 2)
            hh = 0.22 + 0.08 * fbm(mix_seed(s, 53), Y0, X0, Hh, Wh, 6.0, 2)
        elif c == nuc.TAS:
            f, ang = _fibres(spec, Y0, X0, Hh, Wh)

            def angle_at(cy, cx, ang=ang):
                yi = np.clip((cy - Y0).astype(np.int64), 0, Hh - 1)
                xi = np.clip((cx - X0).astype(np.int64), 0, Wh - 1)
                return ang[yi, xi]

            tables.append(nuc.spindles(s, *box, m, angle_at))
            if m["tas_lym"] > 0:
                tables.append(nuc.lymphocytes(mix_seed(s, 72), *box, m, cls=nuc.TAS, spacing=14.0,
                                              accept=m["tas_lym"]))
            edema = 0.5 + 0.5 * fbm(mix_seed(s, 54), Y0, X0, Hh, Wh, 50.0, 2)
            fs = np.clip((f - 0.25) * 1.9, 0, 1)
            e = 0.55 + 0.75 * fs * (0.45 + 0.55 * edema)
            hh = 0.08 + 0.12 * fs
            if spec.cleft_thr > 0:
                holes |= sel & (f < spec.cleft_thr) & (edema < 0.55)
        else:  # necrosis
            tables.append(nuc.necrosis(s, *box, m))
            if m["nec_intact"] > 0:
                tables.append(nuc.lymphocytes(mix_seed(s, 73), *box, m, cls=nuc.NEC, spacing=16.0,
                                              accept=m["nec_intact"]))
            blot = fbm(mix_seed(s, 55), Y0, X0, Hh, Wh, 28.0, 3)
            gran = value_noise(mix_seed(s, 56), Y0, X0, Hh, Wh, 1.6) - 0.5
            e = 0.9 + 0.3 * blot + 0.35 * gran
            hh = 0.24 + 0.14 * fbm(mix_seed(s, 57), Y0, X0, Hh, Wh, 10.0, 2) + 0.25 * (
                value_noise(mix_seed(s, 58), Y0, X0, Hh, Wh, 1.3) - 0.5)
        cE[sel] = e[sel]
        cH[sel] = hh[sel]

    tissue &= ~holes
    cls_map = np.where(tissue, cm, BG).astype(np.uint8)
    t = nuc.concat(tables)
    if len(t["cy"]):
        yi = np.clip(np.floor(t["cy"]).astype(np.int64) - Y0, 0, Hh - 1)
        xi = np.clip(np.floor(t["cx"]).astype(np.int64) - X0, 0, Wh - 1)
        t = nuc.select(t, cls_map[yi, xi] == t["cls"].astype(np.uint8))
    nh, occ = nuc.splat(t, Y0, X0, Hh, Wh)
    # Chromatin: clumped, granular haematoxylin inside nuclei rather than a flat fill.
    nh *= 0.7 + 0.6 * value_noise(mix_seed(s, 61), Y0, X0, Hh, Wh, 1.7)
    st = spec.stain
    thick = 1.0 + (0.08 + 0.14 * d) * fbm(mix_seed(s, 60), Y0, X0, Hh, Wh, 90.0, 2)
    cH = (cH * (1 - occ) + nh) * thick * st.h_scale
    cE = (cE * (1 - 0.75 * occ) + 0.12 * occ) * thick * st.e_scale
    # Tissue is never as pale as glass: a floor keeps the background rule (near-white = glass) exact.
    cE = np.maximum(cE, 0.42)
    tf = tissue.astype(np.float32)
    cH *= tf
    cE *= tf
    if spec.blur > 0:
        # Optical blur, then the glass edge is re-imposed so the ground truth is exact: glass stays white and
        # the tissue rim keeps its eosin floor.
        cH = ndi.gaussian_filter(cH, spec.blur, mode="nearest", truncate=3.0) * tf
        cE = np.maximum(ndi.gaussian_filter(cE, spec.blur, mode="nearest", truncate=3.0), 0.42) * tf
    sl = (slice(halo, halo + h), slice(halo, halo + w))
    cH, cE = cH[sl], cE[sl]
    od = cH[..., None] * st.h_vec.astype(np.float32) + cE[..., None] * st.e_vec.astype(np.float32)
    img = st.white.astype(np.float32) * np.exp(-od)
    if rng is None:
        rng = np.random.default_rng(mix_seed(s, 99, y0, x0))
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(spec.noise)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), cls_map[sl]
