"""The OpenSlide backend of :mod:`.slide`: the scanner formats OpenSlide reads, as lazy dask levels.

OpenSlide (``openslide-python`` with the ``openslide-bin`` wheel, no system library) is the reference reader
of the vendors' formats: Aperio SVS, Hamamatsu NDPI/VMS, 3DHISTECH MRXS, Leica SCN, Philips TIFF, Ventana BIF
and top-level-directory tiled TIFF pyramids. It knows each vendor's quirks (JPEG 2000 and restart-marker
tiles, sparse Philips tiles, overlapping Ventana tiles, MRXS's side files) and normalises their metadata into
``openslide.mpp-x`` and ``openslide.objective-power``.

Each level is a dask array over an array-like adapter: computing a chunk calls ``read_region`` for exactly that
chunk (a multiple of the file's tile size, so reads stay tile-aligned), and OpenSlide's RGBA (transparent where
the scanner wrote nothing) is composited on white, which the glass detection reads as background.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_MIN = 512  # px: dask chunks are the smallest multiple of the file's tile at least this large


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 un-premultiplied RGBA -> (H, W, 3) uint8 RGB over white (opaque pixels unchanged)."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    return ((rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


class OpenSlideLevel:
    """Array-like ``(H, W, 3)`` uint8 view of one OpenSlide level: slicing reads that region.

    Picklable (it reopens the file by path in the receiving process), so a level can travel to a
    dask.distributed worker.
    """

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, handle: Any, path: Path, level: int) -> None:
        self.handle, self.path, self.level = handle, Path(path), level
        w, h = handle.level_dimensions[level]
        self.shape = (int(h), int(w), 3)
        self.downsample = float(handle.level_downsamples[level])

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys, xs = (k if isinstance(k, slice) else slice(int(k) % n, int(k) % n + 1) for k, n in zip(key[:2], self.shape))
        y0, y1, sy = ys.indices(self.shape[0])
        x0, x1, sx = xs.indices(self.shape[1])
        h, w = max(0, y1 - y0), max(0, x1 - x0)
        if h == 0 or w == 0:
            out = np.zeros((h, w, 3), np.uint8)
        else:  # read_region takes the level-0 origin and the size in level pixels
            loc = (int(round(x0 * self.downsample)), int(round(y0 * self.downsample)))
            out = composite_on_white(np.asarray(self.handle.read_region(loc, self.level, (w, h))))
        out = out[::sy, ::sx][:, :, key[2]]
        return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key[:2])]

    def __reduce__(self) -> tuple:
        return _reopened_level, (str(self.path), self.level)


@functools.lru_cache(maxsize=16)
def _cached_handle(path: str) -> Any:
    import openslide

    return openslide.OpenSlide(path)


def _reopened_level(path: str, level: int) -> OpenSlideLevel:
    """Unpickling: one OpenSlide handle per file and process, shared by that file's levels."""
    return OpenSlideLevel(_cached_handle(path), Path(path), level)


def detect_format(path: Path) -> str | None:
    """OpenSlide's vendor name for the file ("aperio", "hamamatsu", "generic-tiff", ...), None if it reads none."""
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001  (no OpenSlide, or a file it chokes on: not an OpenSlide slide)
        return None


def openslide_level_count(path: Path) -> int:
    """Levels OpenSlide sees in the file (0 when it cannot open it)."""
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as s:
            return int(s.level_count)
    except Exception:  # noqa: BLE001
        return 0


def _float_property(props: Any, name: str) -> float | None:
    try:
        value = float(props[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _tile_size(props: Any, level: int) -> tuple[int, int]:
    try:
        return int(props[f"openslide.level[{level}].tile-height"]), int(props[f"openslide.level[{level}].tile-width"])
    except (KeyError, ValueError):
        return 256, 256


def open_openslide(path: Path) -> dict[str, Any]:
    """Levels, downsamples and metadata of a slide OpenSlide reads, for ``Slide(**...)``.

    Raises:
        ValueError: OpenSlide cannot open the file (corrupt, or its side files missing), with the file name.
    """
    import dask.array as da
    import openslide
    from dask.base import tokenize

    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as e:
        raise ValueError(f"Cannot open {path} with OpenSlide ({type(e).__name__}: {e}); the file is truncated, or "
                         "its side files (MRXS/VMS folders) are missing.") from e
    props = handle.properties
    stat = path.stat()
    levels = []
    for lv in range(handle.level_count):
        adapter = OpenSlideLevel(handle, path, lv)
        th, tw = _tile_size(props, lv)
        chunks = (th * max(1, math.ceil(CHUNK_MIN / th)), tw * max(1, math.ceil(CHUNK_MIN / tw)), 3)
        name = "openslide-" + tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns, lv)
        levels.append(da.from_array(adapter, chunks=chunks, name=name, asarray=False, fancy=False,
                                    meta=np.empty((0, 0, 0), np.uint8)))
    return {"levels": levels, "downsamples": [float(d) for d in handle.level_downsamples],
            "mpp": _float_property(props, openslide.PROPERTY_NAME_MPP_X),
            "objective": _float_property(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
            "vendor": props.get(openslide.PROPERTY_NAME_VENDOR), "backend": "openslide", "_handle": handle}
