"""Small slides the tests write with tifffile, in the layouts scanners and converters use, and the real ones.

* ``write_svs``: an Aperio SVS (tiled level 0 with the Aperio ImageDescription incl. MPP and AppMag, a stripped
  thumbnail, then one tiled directory per level), the layout OpenSlide's Aperio driver and tifffile both read;
* ``write_generic_pyramid``: a plain tiled TIFF whose levels are top-level directories (NewSubfileType 1), as
  libvips and many converters write it: OpenSlide's generic-TIFF driver and tifffile both read all levels;
* ``write_ome_pyramid``: an OME-TIFF with SubIFD levels and PhysicalSizeX: tifffile reads the pyramid,
  OpenSlide sees only level 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REAL_SLIDES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-slides"


def _levels(image: np.ndarray, n_levels: int) -> list[np.ndarray]:
    out = [image]
    for _ in range(n_levels - 1):
        out.append(out[-1][::2, ::2])
    return out


def write_svs(path: Path, image: np.ndarray, n_levels: int = 3, tile: int = 64, mpp: float = 0.499,
              mag: float = 20, compression: str = "zlib") -> Path:
    import tifffile

    h, w = image.shape[:2]
    head = f"Aperio Image Library v12.0.15\r\n{w}x{h} ({tile}x{tile}) -"
    levels = _levels(image, n_levels)
    with tifffile.TiffWriter(path) as tw:
        tw.write(image, tile=(tile, tile), photometric="rgb", compression=compression, metadata=None,
                 description=f"{head}|AppMag = {mag:g}|MPP = {mpp}|Filename = test")
        tw.write(image[::8, ::8], photometric="rgb", metadata=None, description=f"{head}|thumbnail")
        for lv in levels[1:]:
            tw.write(lv, tile=(tile, tile), photometric="rgb", compression=compression, metadata=None,
                     description=f"{head}|AppMag = {mag:g}|MPP = {mpp}")
    return path


def write_generic_pyramid(path: Path, image: np.ndarray, n_levels: int = 3, tile: int = 64) -> Path:
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(_levels(image, n_levels)):
            tw.write(lv, tile=(tile, tile), photometric="rgb", compression="zlib", metadata=None,
                     subfiletype=0 if i == 0 else 1)
    return path


def write_ome_pyramid(path: Path, image: np.ndarray, n_levels: int = 3, tile: int = 64, mpp: float = 0.25,
                      ) -> Path:
    import tifffile

    levels = _levels(image, n_levels)
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(image, tile=(tile, tile), subifds=n_levels - 1, photometric="rgb", compression="zlib",
                 metadata={"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp, "PhysicalSizeXUnit": "µm"})
        for lv in levels[1:]:
            tw.write(lv, tile=(tile, tile), subfiletype=1, photometric="rgb", compression="zlib")
    return path


def real_slide(name: str) -> Path:
    """A real slide from the workplace's shared data; skips, saying why, where it is absent."""
    p = REAL_SLIDES / name
    if not p.is_file():
        pytest.skip(f"real slide {name} not found ({p}): this test runs where the workplace's shared data sits "
                    "beside the checkout (../shared/data/real-slides, see its README); a checkout without it skips")
    return p
