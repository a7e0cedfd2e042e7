"""The glass around a slide's tissue, found once on a coarse level, so every segmented slide pixel there is background.

Why: a model trained with glass detection off (``glass_min_size: 0``, e.g. ``sshr-glas``, because colon gland
lumens are white and must stay gland) labels empty glass as a tissue class; on whole slides that turned the glass
around the tissue into gland and falsified class areas (summary mm², cohort tables, GeoJSON).

What counts as glass: the near-white region *connected to the slide's edge* on a coarse view of the slide. Not
every near-white region: a lumen, a vessel or a tear inside the tissue is white too, but it is enclosed by tissue,
while the glass around the tissue reaches the edge of the scanned frame. The coarse tissue mask alone (the one
``tissue_blocks`` judges windows by) would turn large lumens into glass; edge-connectivity leaves every enclosed
white region to the model, whatever its size. Its limits, chosen on purpose: glass fully ringed by tissue stays
the model's call, and a slide whose tissue touches every edge gets no glass from here.

Resolution: the coarse view holds at most ``MASK_PIXELS`` pixels (the coarsest level, strided if larger), so
each of its pixels covers many slide pixels. Where a coarse pixel is glass the whole footprint is background;
in the one-pixel rim around the tissue, where a coarse pixel mixes tissue and glass, the segmented level's own
near-white pixels decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MASK_PIXELS = 1 << 20  # coarse view size: about 1 M pixels (a 1000 x 1000 thumbnail), a fraction of a second
READ_PIXELS = 1 << 16  # pixels of the coarse view read at a time


@dataclass(frozen=True)
class SlideGlass:
    """Glass around the tissue on a coarse grid over the whole slide.

    Attributes:
        outside: (h, w) bool, True where the coarse pixel is glass connected to the slide's edge.
        rim: (h, w) bool, the tissue pixels next to ``outside`` (mixed pixels the fine level decides).
    """

    outside: np.ndarray
    rim: np.ndarray

    def _grid(self, y0: int, x0: int, y1: int, x1: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Coarse row and column index of every pixel of a box of a level of ``shape`` (pixel centres)."""
        mh, mw = self.outside.shape
        rows = np.minimum(((np.arange(y0, y1) + 0.5) * mh / shape[0]).astype(np.int64), mh - 1)
        cols = np.minimum(((np.arange(x0, x1) + 0.5) * mw / shape[1]).astype(np.int64), mw - 1)
        return rows, cols

    def pixels(self, box: tuple[int, int, int, int], shape: tuple[int, int],
               white: np.ndarray | Callable[[], np.ndarray]) -> np.ndarray:
        """(y1 - y0, x1 - x0) bool: which pixels of ``box`` are glass around the tissue.

        Args:
            box: (y0, x0, y1, x1) in pixels of the segmented level.
            shape: (H, W) of that level (the coarse grid spans the same slide).
            white: that box's near-white pixels ((y1 - y0, x1 - x0) bool, ``data.tiles.is_background``), or a
                function giving them: called only when the box touches the tissue's rim.
        """
        y0, x0, y1, x1 = box
        rows, cols = self._grid(y0, x0, y1, x1, shape)
        glass = self.outside[np.ix_(rows, cols)]
        rim = self.rim[np.ix_(rows, cols)]
        if rim.any():
            glass |= rim & np.asarray(white() if callable(white) else white, dtype=bool)
        return glass


def slide_glass(levels: list[Any], max_pixels: int = MASK_PIXELS) -> SlideGlass:
    """Find the glass around the tissue on the coarsest level of ``levels``.

    Args:
        levels: the slide's levels, ``(H_l, W_l, 3)`` uint8 arrays (dask or numpy), finest first; the coarsest one
            is read whole, strided down to about ``max_pixels``.
    Returns:
        The coarse glass and rim masks (see :class:`SlideGlass`).
    """
    from scipy.ndimage import binary_dilation
    from skimage.measure import label

    from ..data.tiles import as_rgb_uint8, is_background

    coarse = levels[-1]
    h, w = int(coarse.shape[0]), int(coarse.shape[1])
    step = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    # read in bands of about READ_PIXELS strided pixels: a slide with one level only is not read in one piece
    rows = max(1, READ_PIXELS // math.ceil(w / step)) * step
    rgb = np.concatenate([as_rgb_uint8(np.asarray(coarse[y: min(h, y + rows): step, ::step]), "slide thumbnail")
                          for y in range(0, h, rows)])
    white = is_background(rgb, min_size=4)  # as tissue_blocks judges tissue: specks and pinholes do not count
    framed = np.pad(white, 1, constant_values=True)  # one glass frame joins all glass that reaches an edge
    lab = label(framed, connectivity=1)  # 4-connected: a lumen touching glass only at a corner stays enclosed
    outside = (lab == lab[0, 0])[1:-1, 1:-1]
    rim = binary_dilation(outside, np.ones((3, 3), bool)) & ~outside
    return SlideGlass(outside, rim)


def region_glass(levels: list[Any], level: int, box: tuple[int, int, int, int], rgb: np.ndarray) -> np.ndarray:
    """(y1 - y0, x1 - x0) bool glass around the tissue in a region of a slide segmented on its own (the Segment
    widget's field of view, drawn rectangle or whole image at a coarser level).

    Args:
        levels: the slide's levels, finest first; ``level`` the one ``box`` (y0, x0, y1, x1) is in.
        rgb: the region's (y1 - y0, x1 - x0, 3) uint8 pixels as read (before any stain normalisation).
    """
    from ..data.tiles import is_background

    shape = (int(levels[level].shape[0]), int(levels[level].shape[1]))
    return slide_glass(levels).pixels(box, shape, lambda: is_background(np.asarray(rgb)[..., :3]))
