"""Whole-slide images as lazy dask pyramids, through one ``Slide`` interface whatever the format.

Nothing is read until a region is computed: every level is a dask array chunked along the file's own tiles, so a
100k x 100k level 0 costs no memory until a window of it is asked for. Two backends fill the same ``Slide``:

* OpenSlide (``slide_openslide.py``) for the scanner formats it recognises (Aperio SVS, Hamamatsu NDPI/VMS,
  3DHISTECH MRXS, Leica SCN, Philips TIFF, Ventana BIF): it is their reference reader;
* tifffile (``slide_tifffile.py``) for OME-TIFF and plain TIFF pyramids, which OpenSlide sees only level 0 of
  when the levels are SubIFDs, and which tifffile reads chunk-native; a generic tiled TIFF goes to whichever
  of the two sees more levels (tifffile on a tie).

The choice is ``openslide.OpenSlide.detect_format`` (which reads the file's content) plus the suffix.
DICOM WSI (wsidicom) is not read: see docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .slide_openslide import detect_format, openslide_level_count
from .slide_tifffile import tifffile_level_count

# Suffixes only OpenSlide reads (3DHISTECH .mrxs, Hamamatsu .ndpi/.vms/.vmu, Leica .scn, Ventana .bif,
# Sakura .svslide); TIFF-family suffixes either backend may read.
OPENSLIDE_ONLY_SUFFIXES = (".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".bif", ".svslide")
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".tf8", ".btf", ".ome.tif", ".ome.tiff") + OPENSLIDE_ONLY_SUFFIXES
SUPPORTED_FORMATS = ("Aperio .svs, Hamamatsu .ndpi/.vms, 3DHISTECH .mrxs, Leica .scn, Philips .tiff, Ventana .bif, "
                     "generic tiled/pyramidal .tif, OME-TIFF (8-bit RGB bright-field; DICOM WSI is not read: "
                     "convert it to OME-TIFF or SVS)")


@dataclass
class Slide:
    """An open slide.

    Attributes:
        path: the file.
        levels: dask arrays ``(H_l, W_l, 3)`` uint8 RGB, level 0 first (full resolution).
        downsamples: level-0 pixels per level pixel, per level (1.0 first).
        mpp: microns per level-0 pixel (x) when the file says so, else None.
        objective: the scan's objective power (e.g. 20 or 40) when the file says so, else None.
        backend: "tifffile" or "openslide", the reader behind ``levels``.
        vendor: the format as the backend names it ("aperio", "hamamatsu", "ome", "generic-tiff", ...).
    """

    path: Path
    levels: list[Any]
    downsamples: list[float]
    mpp: float | None = None
    _handle: Any = field(default=None, repr=False)
    objective: float | None = None
    backend: str = "tifffile"
    vendor: str | None = None

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

    def info(self) -> dict[str, Any]:
        """What outputs record about their source: path, backend, vendor, mpp, objective, level-0 shape."""
        return {"path": str(self.path), "backend": self.backend, "vendor": self.vendor, "mpp": self.mpp,
                "objective": self.objective, "shape": list(self.shape)}

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_slide_path(path: str | Path) -> bool:
    """True for a file either backend opens as a slide.

    Scanner formats OpenSlide recognises count whatever their level count (a one-level SVS is still a slide);
    a generic TIFF needs a pyramid (more than one level), so a tile saved as a tiled TIFF stays an image.
    """
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith(SLIDE_SUFFIXES):
        return False
    fmt = detect_format(path)
    if fmt is not None and fmt != "generic-tiff":
        return True
    return max(tifffile_level_count(path), openslide_level_count(path) if fmt else 0) > 1


def has_slide_only_suffix(path: str | Path) -> bool:
    """True for suffixes only slides use (.svs, .ndpi, .mrxs, ...): such a file is opened as a slide or refused
    with ``open_slide``'s message, never handed to an image reader."""
    return Path(path).name.lower().endswith((".svs", *OPENSLIDE_ONLY_SUFFIXES))


def choose_backend(path: Path) -> str:
    """"openslide" or "tifffile" for an existing file (see the module docstring for the rule).

    Raises:
        ValueError: a suffix only OpenSlide reads, on a file OpenSlide does not recognise.
    """
    fmt = detect_format(path)
    if fmt is not None and fmt != "generic-tiff":
        return "openslide"
    if fmt is None:
        if path.name.lower().endswith(OPENSLIDE_ONLY_SUFFIXES):
            raise ValueError(unsupported_message(path, "OpenSlide does not recognise it (truncated, or its side "
                                                       "files missing?)"))
        return "tifffile"
    # generic tiled TIFF: both read it; OpenSlide misses SubIFD levels, tifffile misses none it reads
    return "openslide" if openslide_level_count(path) > tifffile_level_count(path) else "tifffile"


def unsupported_message(path: Path, why: str) -> str:
    """One line: which file, why not, and what is supported."""
    return f"Cannot open {path} as a slide: {why}. Supported: {SUPPORTED_FORMATS}."


def open_slide(path: str | Path, backend: str = "auto") -> Slide:
    """Open a whole-slide image lazily through the backend that reads it best.

    Args:
        path: the slide file (for MRXS/VMS the index file beside its data folder).
        backend: "auto" (see ``choose_backend``), or "openslide" / "tifffile" to insist on one.
    Raises:
        FileNotFoundError: no such file.
        ValueError: neither backend reads it (or the one insisted on cannot), with the file name and the formats
            supported; or not 8-bit RGB.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No slide at {path}.")
    if backend not in ("auto", "openslide", "tifffile"):
        raise ValueError(f"backend must be auto, openslide or tifffile, got {backend!r}.")
    chosen = choose_backend(path) if backend == "auto" else backend
    if chosen == "openslide":
        from .slide_openslide import open_openslide

        if backend == "openslide" and detect_format(path) is None:
            raise ValueError(unsupported_message(path, "OpenSlide does not recognise it"))
        return Slide(path, **open_openslide(path))
    from .slide_tifffile import NotATiffPyramid, open_tifffile

    try:
        return Slide(path, **open_tifffile(path))
    except NotATiffPyramid as e:
        if backend != "auto":
            raise
        raise ValueError(unsupported_message(path, "neither OpenSlide nor tifffile reads it (not a slide, or "
                                                   "truncated)")) from e
