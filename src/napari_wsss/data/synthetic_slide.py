"""Synthetic whole-slide images: pyramidal tiled TIFF of any size with an exact class-map twin.

Level 0 is rendered window by window (``render_region`` with a halo, so windows join exactly) and handed to
tifffile as a tile generator: the whole level never exists in memory. Coarser levels are 2x2 means of the level
above, accumulated in disk-backed temporary memmaps next to the output and streamed out the same way. The mask
(``<stem>_mask.tif``, uint8 class map 0..3 tissue, 4 glass) has the same pyramid (levels by 2x2 subsampling).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..atomic import atomic_save

MPP = 1.0  # microns per level-0 pixel (LUAD-HistoSeg's 10x is about 1 um/px)


def slide_spec(seed: int, shape: tuple[int, int], difficulty: float):
    """The section spec of a slide: all four classes in large smooth regions, glass margins around it."""
    from .synthetic_render import N_FG, Spec, morphology, random_stain

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x511DE]))
    d = float(difficulty)
    side = float(min(shape))
    return Spec(
        seed=int(rng.integers(0, 2**32)), difficulty=d, classes=tuple(range(N_FG)),
        class_bias=rng.normal(0, 0.08, N_FG).astype(np.float32),
        class_cell=float(np.clip(side / 4, 300, 2000)), tissue_cell=float(np.clip(side / 3, 300, 4000)),
        tissue_thr=0.0, hole_p=0.1, cleft_thr=0.16, fibre_angle=float(rng.uniform(0, np.pi)),
        stain=random_stain(rng, d), blur=0.55 + 0.4 * d, noise=1.5 + 2.0 * d, morph=morphology(rng, d),
        slide_shape=(int(shape[0]), int(shape[1])),
    )


def _n_levels(shape: tuple[int, int], levels: int | None) -> int:
    if levels is not None:
        if int(levels) < 1:
            raise ValueError(f"levels must be >= 1 (or None for automatic), got {levels}.")
        return int(levels)
    n, h, w = 1, shape[0], shape[1]
    while max(h, w) >= 1024:
        h, w, n = (h + 1) // 2, (w + 1) // 2, n + 1
    return n


def _tiles_from(arr: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Row-major full-size tiles of a (H, W[, C]) array (edge tiles zero-padded), read block by block."""
    H, W = arr.shape[:2]
    for y in range(0, H, tile):
        for x in range(0, W, tile):
            blk = np.asarray(arr[y:y + tile, x:x + tile])
            if blk.shape[:2] != (tile, tile):
                pad = [(0, tile - blk.shape[0]), (0, tile - blk.shape[1])] + [(0, 0)] * (blk.ndim - 2)
                blk = np.pad(blk, pad, mode="edge")
            yield blk


def _down_image(blk: np.ndarray) -> np.ndarray:
    """2x2 mean of an (h, w, 3) uint8 block (odd edges replicate)."""
    h, w = blk.shape[:2]
    if h % 2 or w % 2:
        blk = np.pad(blk, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    f = blk.astype(np.uint16)
    s = f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


def _downsample_into(src: np.ndarray, dst_img: np.ndarray, block: int) -> None:
    """Fill a half-size memmap from ``src`` block by block (2x2 mean)."""
    H, W = src.shape[:2]
    for y in range(0, H, block):
        for x in range(0, W, block):
            dst_img[y // 2:(y + block + 1) // 2, x // 2:(x + block + 1) // 2] = _down_image(
                np.asarray(src[y:y + block, x:x + block]))


def write_slide(path: str | os.PathLike, shape: tuple[int, int] = (4096, 4096), seed: int = 0,
                difficulty: float = 0.5, tile: int = 512, levels: int | None = None) -> Path:
    """Write a synthetic pyramidal H&E slide and its ground truth; return the slide path.

    Args:
        path: output ``.tif``; the class map goes to ``<stem>_mask.tif`` beside it.
        shape: level-0 (H, W) in pixels (1 um/px); any size, memory stays bounded by the tile size.
        seed: same seed, same slide.
        difficulty: as ``generate_tile``.
        tile: TIFF tile side (256 or 512), also the render window.
        levels: pyramid levels including level 0; None halves until the longer side is < 1024 px.

    Files: RGB uint8 JPEG-compressed tiled TIFF with the coarser levels as SubIFDs; mask uint8 zlib.
    """
    import tifffile

    from .synthetic_render import render_region

    H, W = (int(v) for v in shape)
    if H < 1 or W < 1:
        raise ValueError(f"shape must be two positive ints (H, W), got {shape!r}.")
    if tile not in (256, 512):
        raise ValueError(f"tile must be 256 or 512, got {tile}.")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}.")
    path = Path(path)
    mask_path = path.with_name(f"{path.stem}_mask{path.suffix or '.tif'}")
    n_lv = _n_levels((H, W), levels)
    spec = slide_spec(seed, (H, W), difficulty)
    res = (1e4 / MPP, 1e4 / MPP)

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wsss-slide-", dir=path.parent) as tmpd:
        # Level 1 of image and mask are filled while level 0 streams out; level-0 mask goes to disk too.
        mask0 = np.lib.format.open_memmap(Path(tmpd) / "mask0.npy", "w+", np.uint8, (H, W))
        shapes = [(H, W)]
        for _ in range(1, n_lv):
            h, w = shapes[-1]
            shapes.append(((h + 1) // 2, (w + 1) // 2))
        img_lv = [None] + [np.lib.format.open_memmap(Path(tmpd) / f"img{i}.npy", "w+", np.uint8, (*s, 3))
                           for i, s in enumerate(shapes[1:], 1)]

        def level0() -> Iterator[np.ndarray]:
            for y in range(0, H, tile):
                for x in range(0, W, tile):
                    h, w = min(tile, H - y), min(tile, W - x)
                    img, cm = render_region(spec, y, x, h, w, halo=48)
                    mask0[y:y + h, x:x + w] = cm
                    if n_lv > 1:
                        img_lv[1][y // 2:(y + h + 1) // 2, x // 2:(x + w + 1) // 2] = _down_image(img)
                    if (h, w) != (tile, tile):
                        img = np.pad(img, ((0, tile - h), (0, tile - w), (0, 0)), mode="edge")
                    yield img

        opts = dict(tile=(tile, tile), photometric="rgb", compression="jpeg", compressionargs={"level": 90},
                    resolutionunit="CENTIMETER")
        with atomic_save(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=H * W * 3 > 2**31) as tw:
            tw.write(level0(), shape=(H, W, 3), dtype=np.uint8, subifds=n_lv - 1, resolution=res,
                     description=f"napari-wsss synthetic H&E slide seed={seed} difficulty={difficulty}",
                     metadata=None, **opts)
            for i in range(1, n_lv):
                if i + 1 < n_lv:
                    _downsample_into(img_lv[i], img_lv[i + 1], 2 * tile)
                f = 2 ** i
                tw.write(_tiles_from(img_lv[i], tile), shape=(*shapes[i], 3), dtype=np.uint8,
                         subfiletype=1, resolution=(res[0] / f, res[1] / f), metadata=None, **opts)
            _share(tmp)
        mopts = dict(tile=(tile, tile), photometric="minisblack", compression="zlib", resolutionunit="CENTIMETER")
        with atomic_save(mask_path) as tmp, tifffile.TiffWriter(tmp, bigtiff=H * W > 2**31) as tw:
            tw.write(_tiles_from(mask0, tile), shape=(H, W), dtype=np.uint8, subifds=n_lv - 1, resolution=res,
                     description="napari-wsss synthetic class map: 0 TE, 1 NEC, 2 LYM, 3 TAS, 4 background",
                     metadata=None, **mopts)
            for i in range(1, n_lv):
                f = 2 ** i
                tw.write(_tiles_from(mask0[::f, ::f], tile), shape=shapes[i], dtype=np.uint8, subfiletype=1,
                         resolution=(res[0] / f, res[1] / f), metadata=None, **mopts)
            _share(tmp)
        mask0 = img_lv = None  # release the memmaps before their folder goes (closures hold the names)
    return path


def _share(path: Path) -> None:
    """Give a finished file the usual umask permissions (the atomic temp file is created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
