"""Nuclei of the synthetic H&E generator: class-typical placement and vectorised splatting.

Nuclei sit on jittered global lattices whose every attribute is hashed from (seed, lattice index), so a region
rendered alone and the same region cut from a larger render hold the same nuclei. Sizes are in level-0 pixels
at roughly 10x (about 1 um per pixel): lymphocytes 6-8 px across, tumour nuclei 9-15 px, spindle nuclei
10-18 px long and 3-4 px wide, necrotic dust 1-3 px.

A nucleus table is a dict of 1-D float32 arrays of equal length: ``cy, cx`` (centre, global pixels), ``a, b``
(semi-axes, px), ``theta`` (major-axis angle, radians, from +x towards +y), ``amp`` (haematoxylin optical
density), ``ves`` (0 solid .. 1 vesicular with nucleolus), ``ring`` (0..1 ghost outline), ``opac`` (how much
the nucleus hides the matrix), ``a2 b2 a3 b3 a4 b4`` (boundary harmonics: pleomorphism) and ``cls``.
"""

from __future__ import annotations

import numpy as np

from .synthetic_noise import hash_uniform, mix_seed, point_noise

FIELDS = ("cy", "cx", "a", "b", "theta", "amp", "ves", "ring", "opac", "a2", "b2", "a3", "b3", "a4", "b4", "cls")
TE, NEC, LYM, TAS = 0, 1, 2, 3


class _Lattice:
    """Jittered lattice points covering a box; ``u(k)`` gives a hashed uniform per point for attribute ``k``."""

    def __init__(self, seed: int, y0: float, x0: float, y1: float, x1: float, spacing: float):
        self.seed = seed
        iy = np.arange(int(np.floor(y0 / spacing)), int(np.ceil(y1 / spacing)) + 1)
        ix = np.arange(int(np.floor(x0 / spacing)), int(np.ceil(x1 / spacing)) + 1)
        self.iy, self.ix = (g.ravel() for g in np.meshgrid(iy, ix, indexing="ij"))
        self.spacing = spacing

    def u(self, k: int) -> np.ndarray:
        return hash_uniform(self.iy, self.ix, mix_seed(self.seed, k))

    def centres(self, jitter: float) -> tuple[np.ndarray, np.ndarray]:
        s = self.spacing
        cy = (self.iy + 0.5 + jitter * (self.u(101) - 0.5) * 2) * s
        cx = (self.ix + 0.5 + jitter * (self.u(102) - 0.5) * 2) * s
        return cy.astype(np.float32), cx.astype(np.float32)


def _table(n: int, **cols) -> dict[str, np.ndarray]:
    out = {}
    for f in FIELDS:
        v = cols.get(f, 0.0)
        out[f] = np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)).astype(np.float32)
    return out


def concat(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    tables = [t for t in tables if len(t["cy"])]
    if not tables:
        return _table(0)
    return {f: np.concatenate([t[f] for t in tables]) for f in FIELDS}


def select(t: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {f: v[keep] for f, v in t.items()}


def _harmonics(lat_u, n: int, strength: float, k0: int) -> dict[str, np.ndarray]:
    """Random boundary harmonics (k = 2, 3, 4) with amplitude up to ``strength``."""
    out = {}
    for j, k in enumerate((2, 3, 4)):
        amp = strength * lat_u(k0 + 2 * j) / (1 + 0.5 * j)
        ph = lat_u(k0 + 2 * j + 1) * 2 * np.pi
        out[f"a{k}"] = amp * np.cos(ph)
        out[f"b{k}"] = -amp * np.sin(ph)
    return out


def _accept(lat: _Lattice, p: float | np.ndarray) -> np.ndarray:
    return lat.u(100) < p


# -- class generators --------------------------------------------------------------------------------------
# Each returns a nucleus table for the box [y0, y1) x [x0, x1); ``m`` is the morphology dict of the spec.

def lymphocytes(seed, y0, x0, y1, x1, m, cls=LYM, spacing=None, accept=None):
    """Small round very dark lymphocytes, densely packed, a few larger plasma/histiocyte-like cells."""
    lat = _Lattice(mix_seed(seed, 11), y0, x0, y1, x1, spacing or m["lym_spacing"])
    keep = _accept(lat, accept if accept is not None else m["lym_accept"])
    cy, cx = lat.centres(0.32)
    u = lat.u
    big = u(9) < 0.06
    a = np.where(big, 4.6 + 1.2 * u(1), m["lym_r"] * (0.88 + 0.24 * u(1)))
    b = a * np.where(big, 0.7 + 0.2 * u(2), 0.85 + 0.15 * u(2))
    t = _table(len(cy), cy=cy, cx=cx, a=a, b=b, theta=u(3) * np.pi,
               amp=np.where(big, 1.0, m["lym_amp"]) * (0.85 + 0.3 * u(4)), ves=np.where(big, 0.6, 0.08),
               opac=0.95, cls=cls, **_harmonics(u, len(cy), m["lym_irreg"], 20))
    return select(t, keep)


def tumour(seed, y0, x0, y1, x1, m):
    """Large irregular vesicular tumour nuclei: rings around gland lumens plus crowded solid filler.

    Returns (nuclei, glands) where glands = (cy, cx, lumen_radius) arrays.
    """
    g = m["gland_spacing"]
    pad = 0.7 * g
    glat = _Lattice(mix_seed(seed, 21), y0 - pad, x0 - pad, y1 + pad, x1 + pad, g)
    gkeep = _accept(glat, m["gland_p"])
    gy, gx = glat.centres(0.22)
    gr = (0.17 + 0.2 * glat.u(1)) * g
    gy, gx, gr = gy[gkeep], gx[gkeep], gr[gkeep]
    g_ids = (glat.iy[gkeep], glat.ix[gkeep])

    ring_sp = m["te_r"] * 1.45
    kmax = int(np.ceil(2 * np.pi * 0.32 * g / ring_sp)) + 1
    nk = np.floor(2 * np.pi * gr / ring_sp).astype(np.int64)
    k = np.arange(kmax)[None, :]
    valid = k < nk[:, None]
    iy = (g_ids[0][:, None] * 64 + k).ravel()
    ix = np.broadcast_to(g_ids[1][:, None], valid.shape).ravel()
    rs = mix_seed(seed, 22)
    u = lambda j: hash_uniform(iy, ix, mix_seed(rs, j))  # noqa: E731
    phase0 = np.repeat(hash_uniform(g_ids[0], g_ids[1], mix_seed(rs, 99)) * 2 * np.pi, kmax)
    ang = phase0 + (2 * np.pi * np.tile(np.arange(kmax), len(gr)) + 0.6 * (u(1) - 0.5)) / np.repeat(
        np.maximum(nk, 1), kmax)
    rad = np.repeat(gr, kmax) + m["te_r"] * (0.9 + 0.5 * (u(2) - 0.5))
    cy = np.repeat(gy, kmax) + rad * np.sin(ang)
    cx = np.repeat(gx, kmax) + rad * np.cos(ang)
    a = m["te_r"] * (1.0 + m["te_pleo"] * (u(3) - 0.3))
    b = a * (0.55 + 0.3 * u(4))
    ring = _table(len(cy), cy=cy, cx=cx, a=a, b=b, theta=ang + 0.4 * (u(5) - 0.5),
                  amp=m["te_amp"] * (0.75 + 0.5 * u(6)), ves=0.25 + 0.5 * u(7), opac=0.9, cls=TE,
                  **_harmonics(u, len(cy), m["te_irreg"], 30))
    ring = select(ring, valid.ravel())

    flat = _Lattice(mix_seed(seed, 23), y0, x0, y1, x1, m["te_r"] * 2.4)
    fy, fx = flat.centres(0.4)
    fu = flat.u
    # Filler nuclei stay out of the glands (lumen + ring of epithelium).
    if len(gy):
        d2 = (fy[:, None] - gy[None, :]) ** 2 + (fx[:, None] - gx[None, :]) ** 2
        clear = np.all(d2 > ((gr + 2.6 * m["te_r"]) ** 2)[None, :], axis=1)
    else:
        clear = np.ones(len(fy), bool)
    fa = m["te_r"] * (1.0 + m["te_pleo"] * (fu(3) - 0.3))
    filler = _table(len(fy), cy=fy, cx=fx, a=fa, b=fa * (0.6 + 0.35 * fu(4)), theta=fu(5) * np.pi,
                    amp=m["te_amp"] * (0.75 + 0.5 * fu(6)), ves=0.25 + 0.5 * fu(7), opac=0.9, cls=TE,
                    **_harmonics(fu, len(fy), m["te_irreg"], 30))
    filler = select(filler, clear & _accept(flat, m["te_fill"]))
    lumens = _table(len(gy), cy=gy, cx=gx, a=gr + 0.8, b=(gr + 0.8) * (0.8 + 0.2 * glat.u(2)[gkeep]),
                    theta=glat.u(3)[gkeep] * np.pi, opac=1.0, cls=TE,
                    **{k: v[gkeep] for k, v in _harmonics(glat.u, len(glat.iy), 0.12, 40).items()})
    return concat([ring, filler]), lumens


def spindles(seed, y0, x0, y1, x1, m, angle_at):
    """Sparse elongated fibroblast nuclei aligned with the local fibre direction ``angle_at(cy, cx)``."""
    lat = _Lattice(mix_seed(seed, 31), y0, x0, y1, x1, m["tas_spacing"])
    keep = _accept(lat, 0.75)
    cy, cx = lat.centres(0.45)
    u = lat.u
    a = m["tas_len"] * (0.7 + 0.6 * u(1))
    t = _table(len(cy), cy=cy, cx=cx, a=a, b=m["tas_w"] * (0.8 + 0.4 * u(2)),
               theta=angle_at(cy, cx) + 0.35 * (u(3) - 0.5), amp=m["tas_amp"] * (0.8 + 0.4 * u(4)), ves=0.1,
               opac=0.9, cls=TAS, **_harmonics(u, len(cy), 0.06, 20))
    return select(t, keep)


def necrosis(seed, y0, x0, y1, x1, m):
    """Karyorrhectic nuclear dust, pyknotic nuclei and faint ghost-cell outlines."""
    dust = _Lattice(mix_seed(seed, 41), y0, x0, y1, x1, m["nec_dust_spacing"])
    dy, dx = dust.centres(0.5)
    du = dust.u
    da = 0.6 + 1.0 * du(1)
    # Dust clusters where cells broke up; between clusters the debris is mostly eosinophilic.
    cluster = point_noise(mix_seed(seed, 44), dy / 30.0, dx / 30.0)
    t_dust = select(_table(len(dy), cy=dy, cx=dx, a=da, b=da * (0.6 + 0.4 * du(2)), theta=du(3) * np.pi,
                           amp=m["nec_dust_amp"] * (0.6 + 0.8 * du(4)), opac=0.6, cls=NEC),
                    _accept(dust, m["nec_dust_p"] * np.clip(2.2 * cluster - 0.35, 0.05, 1.6)))
    pyk = _Lattice(mix_seed(seed, 42), y0, x0, y1, x1, 15.0)
    py, px = pyk.centres(0.45)
    pu = pyk.u
    pa = 1.8 + 1.3 * pu(1)
    t_pyk = select(_table(len(py), cy=py, cx=px, a=pa, b=pa * (0.75 + 0.25 * pu(2)), theta=pu(3) * np.pi,
                          amp=m["nec_pyk_amp"] * (0.8 + 0.4 * pu(4)), opac=0.9, cls=NEC,
                          **_harmonics(pu, len(py), 0.12, 20)),
                   _accept(pyk, m["nec_pyk_p"]))
    gh = _Lattice(mix_seed(seed, 43), y0, x0, y1, x1, 13.0)
    hy, hx = gh.centres(0.4)
    hu = gh.u
    ha = 4.5 + 2.0 * hu(1)
    t_ghost = select(_table(len(hy), cy=hy, cx=hx, a=ha, b=ha * (0.7 + 0.3 * hu(2)), theta=hu(3) * np.pi,
                            amp=0.35 + 0.25 * hu(4), ring=1.0, opac=0.15, cls=NEC,
                            **_harmonics(hu, len(hy), 0.15, 20)),
                     _accept(gh, m["nec_ghost_p"]))
    return concat([t_dust, t_pyk, t_ghost])


def holes(seed, y0, x0, y1, x1, p):
    """Small round/oval empty spaces (vessel lumens, fat, tearing): a table with ``amp`` 0 and full opacity."""
    lat = _Lattice(mix_seed(seed, 51), y0, x0, y1, x1, 30.0)
    cy, cx = lat.centres(0.45)
    u = lat.u
    a = 2.2 + 4.0 * u(1) ** 2
    t = _table(len(cy), cy=cy, cx=cx, a=a, b=a * (0.55 + 0.45 * u(2)), theta=u(3) * np.pi, amp=0.0, opac=1.0,
               cls=-1, **_harmonics(u, len(cy), 0.15, 20))
    return select(t, _accept(lat, p))


# -- splatting ------------------------------------------------------------------------------------------------

def _splat_group(t, y0, x0, h, w, P):
    n = len(t["cy"])
    r = np.arange(P, dtype=np.float32) - (P // 2)
    py = np.floor(t["cy"]).astype(np.int64)
    px = np.floor(t["cx"]).astype(np.int64)
    # Offsets of window pixels from the nucleus centre (float32 throughout: this is the hot loop).
    oy = (py - t["cy"]).astype(np.float32)[:, None, None] + r[None, :, None]
    ox = (px - t["cx"]).astype(np.float32)[:, None, None] + r[None, None, :]
    c = np.cos(t["theta"])[:, None, None]
    s = np.sin(t["theta"])[:, None, None]
    a = t["a"][:, None, None]
    b = t["b"][:, None, None]
    al = (ox * c + oy * s) / a
    ac = (-ox * s + oy * c) / b
    rr = np.sqrt(al * al + ac * ac) + 1e-6
    cs, sn = al / rr, ac / rr
    c2, s2 = cs * cs - sn * sn, 2 * cs * sn
    c3, s3 = c2 * cs - s2 * sn, s2 * cs + c2 * sn
    c4, s4 = c2 * c2 - s2 * s2, 2 * s2 * c2
    g = lambda f: t[f][:, None, None]  # noqa: E731
    mrad = 1 + g("a2") * c2 + g("b2") * s2 + g("a3") * c3 + g("b3") * s3 + g("a4") * c4 + g("b4") * s4
    scale = np.sqrt(a * b)
    inside = np.clip((mrad - rr) * scale / 0.9 + 0.5, 0.0, 1.0)
    q = np.minimum(rr / mrad, 1.0)
    ves = g("ves")
    ring = g("ring")
    q2 = q * q
    prof = (1 - ves - ring) + ves * (0.42 + 0.8 * q2 * q2) + ring * np.maximum(1 - ((q - 0.85) * 5.0) ** 2, 0)
    # A nucleolus: small dark dot at the centre of vesicular nuclei.
    prof += ves * 0.9 * np.maximum(1 - rr * rr * (scale * scale) / 1.5, 0)
    hval = (g("amp") * prof * inside).ravel()
    occ = (g("opac") * inside).ravel()
    yy = (py[:, None, None] + r[None, :, None].astype(np.int64)) - y0
    xx = (px[:, None, None] + r[None, None, :].astype(np.int64)) - x0
    yy = np.broadcast_to(yy, (n, P, P)).ravel()
    xx = np.broadcast_to(xx, (n, P, P)).ravel()
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w) & (occ > 0)
    idx = yy[ok] * w + xx[ok]
    hmap = np.bincount(idx, weights=hval[ok], minlength=h * w).reshape(h, w)
    omap = np.bincount(idx, weights=occ[ok], minlength=h * w).reshape(h, w)
    return hmap, omap


def splat(t: dict[str, np.ndarray], y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Render nuclei into a (h, w) region at global offset (y0, x0).

    Returns:
        (haematoxylin optical density, occupancy in [0, 1]), both (h, w) float32.
    """
    hmap = np.zeros((h, w), np.float64)
    omap = np.zeros((h, w), np.float64)
    if len(t["cy"]):
        ext = np.maximum(t["a"], t["b"]) * (1 + np.abs(t["a2"]) + np.abs(t["a3"]) + np.abs(t["a4"])
                                            + np.abs(t["b2"]) + np.abs(t["b3"]) + np.abs(t["b4"]))
        # Windows just big enough for each size bin keep the work per nucleus small.
        edges = [0.0, 2.5, 4.0, 5.5, 7.0, 9.0, np.inf]
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (ext > lo) & (ext <= hi)
            if sel.any():
                P = 2 * int(np.ceil(min(hi, float(ext[sel].max())) + 1.0)) + 1
                grp = select(t, sel)
                step = max(1, 16000 // (P * P))  # bounded temporaries whatever the region size
                for i in range(0, len(grp["cy"]), step):
                    hm, om = _splat_group({k: v[i:i + step] for k, v in grp.items()}, y0, x0, h, w, P)
                    hmap += hm
                    omap += om
    # Overlapping nuclei darken but saturate like real stacked chromatin.
    hmap = 2.2 * np.tanh(hmap / 2.2)
    return hmap.astype(np.float32), np.minimum(omap, 1.0).astype(np.float32)
