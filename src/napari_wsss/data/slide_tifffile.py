"""The tifffile backend of :mod:`.slide`: OME-TIFF, SubIFD pyramids and other TIFF pyramids tifffile reads.

tifffile is the better reader for these: OpenSlide sees only level 0 of a SubIFD or OME pyramid (its
generic-TIFF driver walks top-level directories only), and tifffile's zarr store hands dask the file's own tiles
as chunks, decoded straight to RGB (no RGBA round trip).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class NotATiffPyramid(ValueError):
    """tifffile cannot read the file at all (as opposed to a TIFF it reads that is not 8-bit RGB)."""


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Probing a file that is not a TIFF makes tifffile log warnings; the caller reports the failure itself."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR + 10)
    try:
        yield
    finally:
        log.setLevel(level)


def open_tifffile(path: Path) -> dict[str, Any]:
    """Levels, downsamples and metadata of a TIFF pyramid, for ``Slide(**...)``.

    Raises:
        ValueError: not a readable TIFF, or not 8-bit chunky RGB, with the file name and what to do.
    """
    import dask.array as da
    import tifffile
    import zarr

    try:
        with quiet_tifffile():
            tf = tifffile.TiffFile(path)
    except Exception as e:
        raise NotATiffPyramid(f"Cannot open {path} as TIFF ({type(e).__name__}: {e}). The file is truncated or not a "
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
            arr = da.from_zarr(zarr.open(series.aszarr(level=i), mode="r"))
            if arr.dtype != np.uint8:
                raise ValueError(f"{path}: dtype {arr.dtype}; expected 8-bit RGB.")
            h0 = h0 or shape[0]
            levels.append(arr)
            downsamples.append(h0 / shape[0])
        mpp, objective = read_mpp(tf), read_objective(tf)
        vendor = "aperio" if tf.is_svs else "ome" if tf.is_ome else "generic-tiff"
    except ValueError:
        tf.close()
        raise
    except Exception as e:
        tf.close()
        raise NotATiffPyramid(f"Cannot read the image pyramid of {path} ({type(e).__name__}: {e}); the file may be "
                         "truncated.") from e
    return {"levels": levels, "downsamples": downsamples, "mpp": mpp, "objective": objective, "vendor": vendor,
            "backend": "tifffile", "_handle": tf}


def tifffile_level_count(path: Path) -> int:
    """Levels of the first series' pyramid as tifffile sees them (0 when tifffile cannot read the file)."""
    try:
        import tifffile

        with quiet_tifffile(), tifffile.TiffFile(path) as tf:
            return len(tf.series[0].levels) if tf.series else 0
    except Exception:  # noqa: BLE001  (any failure means "not for tifffile")
        return 0


def _aperio_field(desc: str, key: str) -> float | None:
    """A number from an Aperio ImageDescription (``...|MPP = 0.25|AppMag = 20|...``)."""
    for part in desc.split("|"):
        name, _, value = part.partition("=")
        if name.strip() == key:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _ome_pixels_attr(tf: Any, pattern: str) -> str | None:
    xml = tf.ome_metadata if tf.is_ome else None
    m = re.search(pattern, xml or "")
    return m.group(1) if m else None


_OME_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def read_mpp(tf: Any) -> float | None:
    """Microns per level-0 pixel: Aperio ``MPP``, OME ``PhysicalSizeX``, else TIFF resolution tags; None if absent."""
    page = tf.pages[0]
    desc = getattr(page, "description", "") or ""
    mpp = _aperio_field(desc, "MPP") if desc.startswith("Aperio") else None
    if mpp:
        return mpp
    size = _ome_pixels_attr(tf, r'<Pixels [^>]*PhysicalSizeX="([0-9.eE+-]+)"')
    if size:
        unit = _ome_pixels_attr(tf, r'<Pixels [^>]*PhysicalSizeXUnit="([^"]+)"') or "µm"
        if unit in _OME_UNITS_UM:
            return float(size) * _OME_UNITS_UM[unit]
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


def read_objective(tf: Any) -> float | None:
    """Objective magnification (e.g. 20 or 40): Aperio ``AppMag`` or OME ``NominalMagnification``; None if absent."""
    desc = getattr(tf.pages[0], "description", "") or ""
    mag = _aperio_field(desc, "AppMag") if desc.startswith("Aperio") else None
    if mag:
        return mag
    nominal = _ome_pixels_attr(tf, r'<Objective [^>]*NominalMagnification="([0-9.eE+-]+)"')
    return float(nominal) if nominal else None
