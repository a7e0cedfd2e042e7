"""Whole-slide images (pyramidal TIFF / OME-TIFF / SVS) as lazy dask pyramids.

Nothing is read until a region is computed: every level is a dask array over tifffile's zarr store, chunked by
the file's own tiles, so a 100k x 100k level 0 costs no memory until a window of it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff", ".btf")


@dataclass
class Slide:
    """An open slide.

    Attributes:
        path: the file.
        levels: dask arrays ``(H_l, W_l, 3)`` uint8, level 0 first (full resolution).
        downsamples: level-0 pixels per level pixel, per level (1.0 first).
        mpp: microns per level-0 pixel when the file says so, else None.
    """

    path: Path
    levels: list[Any]
    downsamples: list[float]
    mpp: float | None = None
    _handle: Any = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (H, W)."""
        return tuple(self.levels[0].shape[:2])  # type: ignore[return-value]

    def read_region(self, y0: int, x0: int, y1: int, x1: int, level: int = 0) -> np.ndarray:
        """Read ``[y0:y1, x0:x1]`` of ``level`` (level pixel coordinates) as ``(h, w, 3)`` uint8."""
        return np.asarray(self.levels[level][y0:y1, x0:x1].compute())

    def best_level_for(self, max_pixels: int) -> int:
        """Finest level whose whole plane has at most ``max_pixels`` pixels (the coarsest if none)."""
        for i, lv in enumerate(self.levels):
            if lv.shape[0] * lv.shape[1] <= max_pixels:
                return i
        return len(self.levels) - 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_slide_path(path: str | Path) -> bool:
    """True for TIFF-family files that hold a pyramid (more than one level)."""
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith(SLIDE_SUFFIXES):
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            return bool(tf.series) and len(tf.series[0].levels) > 1
    except Exception:
        return False


def open_slide(path: str | Path) -> Slide:
    """Open a pyramidal TIFF/OME-TIFF/SVS lazily.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable TIFF, or not RGB — with the file name and what to do.
    """
    import dask.array as da
    import tifffile
    import zarr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No slide at {path}.")
    try:
        tf = tifffile.TiffFile(path)
    except Exception as e:
        raise ValueError(f"Cannot open {path} as TIFF ({type(e).__name__}: {e}). The file is truncated or not a "
                         "TIFF/SVS slide; re-export it from the scanner software.") from e
    try:
        series = tf.series[0]
        levels, downsamples = [], []
        h0 = None
        for i, lv in enumerate(series.levels):
            shape = lv.shape
            if lv.axes.startswith("S") and len(shape) == 3:  # planar RGB: (3, H, W)
                raise ValueError(f"{path}: planar (channel-first) RGB is not supported; save it as chunky RGB.")
            if len(shape) != 3 or shape[-1] != 3:
                raise ValueError(f"{path}: level {i} has shape {shape} (axes {lv.axes}); expected RGB (H, W, 3) "
                                 "as in bright-field H&E slides.")
            store = series.aszarr(level=i)
            arr = da.from_zarr(zarr.open(store, mode="r"))
            if arr.dtype != np.uint8:
                raise ValueError(f"{path}: dtype {arr.dtype}; expected 8-bit RGB.")
            h0 = h0 or shape[0]
            levels.append(arr)
            downsamples.append(h0 / shape[0])
        mpp = _read_mpp(tf)
    except ValueError:
        tf.close()
        raise
    except Exception as e:
        tf.close()
        raise ValueError(f"Cannot read the image pyramid of {path} ({type(e).__name__}: {e}); the file may be "
                         "truncated.") from e
    return Slide(path, levels, downsamples, mpp, tf)


def _read_mpp(tf: Any) -> float | None:
    """Microns per pixel from SVS (``MPP = 0.25``) or TIFF resolution tags; None when absent."""
    page = tf.pages[0]
    desc = getattr(page, "description", "") or ""
    if "MPP" in desc:
        for part in desc.split("|"):
            if part.strip().startswith("MPP"):
                try:
                    return float(part.split("=")[1])
                except (IndexError, ValueError):
                    pass
    try:
        tags = page.tags
        unit = tags["ResolutionUnit"].value
        xres = tags["XResolution"].value
        px_per_unit = xres[0] / xres[1]
        if px_per_unit > 0 and int(unit) == 3:  # centimetre
            return 1e4 / px_per_unit
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        pass
    return None
