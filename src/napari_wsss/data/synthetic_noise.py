"""Position-hashed noise for the synthetic H&E generator.

Every random quantity of a rendered region is a pure function of (seed, global pixel/lattice coordinates), so a
slide rendered region by region joins without seams and a tile is reproducible from its seed alone. Arrays are
indexed ``(y, x)``; coordinates are in level-0 pixels.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint32(0x8DA6B343)
_M2 = np.uint32(0xD8163841)
_M3 = np.uint32(0xCB1AB31F)
_M4 = np.uint32(0x5BD1E995)
_M5 = np.uint32(0x27D4EB2D)


def mix_seed(*parts: int) -> int:
    """Combine integers (seed, salt, ...) into one 32-bit seed (splitmix-style, pure Python)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) & 0xFFFFFFFFFFFFFFFF) + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)
        h &= 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0xFFFFFFFF


def hash_uniform(iy: np.ndarray, ix: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 per integer lattice point; broadcasts ``iy`` against ``ix``."""
    with np.errstate(over="ignore"):
        a = np.asarray(iy).astype(np.uint32) * _M1  # int64 -> uint32 wraps negatives (intended)
        b = np.asarray(ix).astype(np.uint32) * _M2
        h = a ^ b ^ np.uint32(seed) * _M3
        h ^= h >> np.uint32(15)
        h *= _M4
        h ^= h >> np.uint32(13)
        h *= _M5
        h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _interp_index(start: float, n: int, cell: float, g0: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index (relative to node g0) and smoothstep weight of pixels start..start+n-1."""
    t = (start + np.arange(n, dtype=np.float64)) / cell - g0
    j = np.floor(t).astype(np.int64)
    f = t - j
    return j, (f * f * (3.0 - 2.0 * f)).astype(np.float32)


def value_noise(seed: int, y0: int, x0: int, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1], (h, w) float32, features about ``cell`` pixels wide.

    Separable: hashes only the lattice nodes, then interpolates along x, then along y (gathers, no matmul).
    """
    gy0 = int(np.floor(y0 / cell))
    gx0 = int(np.floor(x0 / cell))
    gh = int(np.floor((y0 + h - 1) / cell)) - gy0 + 2
    gw = int(np.floor((x0 + w - 1) / cell)) - gx0 + 2
    grid = hash_uniform(np.arange(gy0, gy0 + gh)[:, None], np.arange(gx0, gx0 + gw)[None, :], seed)
    jx, sx = _interp_index(x0, w, cell, gx0)
    jy, sy = _interp_index(y0, h, cell, gy0)
    gl = grid[:, jx]
    rows = gl + (grid[:, jx + 1] - gl) * sx[None, :]
    top = rows[jy]
    return top + (rows[jy + 1] - top) * sy[:, None]


def fbm(seed: int, y0: int, x0: int, h: int, w: int, cell: float, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of value noise, zero-mean, roughly in [-1, 1], (h, w) float32."""
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        out += np.float32(amp) * (value_noise(mix_seed(seed, k), y0, x0, h, w, cell / (2 ** k)) - 0.5)
        total += amp
        amp *= gain
    return out * np.float32(2.0 / total)


def point_noise(seed: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Value noise in [0, 1] at arbitrary lattice coordinates ``(u, v)`` (same shape), float32."""
    iu = np.floor(u)
    iv = np.floor(v)
    fu = (u - iu).astype(np.float32)
    fv = (v - iv).astype(np.float32)
    su = fu * fu * (3 - 2 * fu)
    sv = fv * fv * (3 - 2 * fv)
    iu = iu.astype(np.int64)
    iv = iv.astype(np.int64)
    a = hash_uniform(iu, iv, seed)
    b = hash_uniform(iu + 1, iv, seed)
    c = hash_uniform(iu, iv + 1, seed)
    d = hash_uniform(iu + 1, iv + 1, seed)
    top = a + (b - a) * su
    bot = c + (d - c) * su
    return top + (bot - top) * sv


def pixel_noise(seed: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Independent uniform [0, 1) per global pixel, (h, w) float32 (position-hashed, so seamless)."""
    return hash_uniform(np.arange(y0, y0 + h)[:, None], np.arange(x0, x0 + w)[None, :], seed)
