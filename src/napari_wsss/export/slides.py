"""Reading the images behind project items, and whole-slide label images of exported regions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSchema
from ..store import Item, Project, default_project_root


def resize_nearest(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes (class maps must not be interpolated)."""
    if tuple(arr.shape[:2]) == tuple(shape):
        return arr
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * arr.shape[0] / shape[0]).astype(int), arr.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * arr.shape[1] / shape[1]).astype(int), arr.shape[1] - 1)
    return arr[rows][:, cols]


class SourceReader:
    """Reads item images: tiles from the project's data folder, regions from its slide (opened once)."""

    def __init__(self, project: Project) -> None:
        self.source = Path(project.source)
        self._slide: Any = None

    @property
    def slide(self) -> Any:
        if self._slide is None:
            from ..data.slide import open_slide

            if not self.source.is_file():
                raise FileNotFoundError(f"The project's slide {self.source} is not there any more; move it back "
                                        "or export only geojson / ome-zarr / pyramidal-tiff (no images needed).")
            self._slide = open_slide(self.source)
        return self._slide

    def tile_path(self, it: Item) -> Path:
        if it.image is None:
            raise ValueError(f"Item {it.key!r} names no image file in the project index.")
        p = Path(it.image)
        if not p.is_absolute():
            p = (self.source if self.source.is_dir() else self.source.parent) / p
        return p

    def level_downsample(self, level: int) -> float:
        return float(self.slide.downsamples[level])

    def read(self, it: Item, level: int, shape: tuple[int, int]) -> np.ndarray:
        """(H, W, 3) uint8 image of an item at ``level`` (regions) with the mask's ``shape``."""
        if it.region is None:
            from ..data.tiles import read_rgb

            img = read_rgb(self.tile_path(it))
            return img[: shape[0], : shape[1]] if img.shape[:2] != shape else img
        y0, x0 = it.region[0], it.region[1]
        ds = self.level_downsample(level)
        lh, lw = self.slide.levels[level].shape[:2]
        ya, xa = int(round(y0 / ds)), int(round(x0 / ds))
        out = np.full((*shape, 3), 255, np.uint8)  # beyond the slide's edge: glass
        yb, xb = min(lh, ya + shape[0]), min(lw, xa + shape[1])
        if yb > ya and xb > xa:
            out[: yb - ya, : xb - xa] = self.slide.read_region(ya, xa, yb, xb, level)
        return out

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()


def write_slide_labels(tmp: Path, project: Project, sources: SourceReader, blocks: list, formats: tuple[str, ...],
                        level: int | None, schema: ClassSchema) -> dict[str, Any]:
    """OME-Zarr and/or pyramidal TIFF label image of every exported region, at the slide's full resolution.

    The base level always has the slide's level-0 size, whatever level the regions were segmented or tiled at
    (a field of view segmented at level 1 is upsampled, nearest-neighbour), so the label image overlays the
    slide in QuPath or napari without a scale. ``level`` is the tiles' level and only recorded.
    """
    from .masks import write_ome_zarr_labels, write_pyramidal_tiff_labels

    lv, ds = 0, 1.0
    mpp = None
    try:
        h0, w0 = sources.slide.shape
        mpp = sources.slide.mpp
    except (FileNotFoundError, ValueError):  # no slide: cover the regions
        h0, w0 = max(b[0].region[2] for b in blocks), max(b[0].region[3] for b in blocks)
    shape = (int(np.ceil(h0 / ds)), int(np.ceil(w0 / ds)))

    def regions():
        for it, mask, _ilv, _ids in blocks:
            y0, x0, y1, x1 = it.region[:4]
            ya, xa = int(round(y0 / ds)), int(round(x0 / ds))
            shp = (max(1, int(round((y1 - y0) / ds))), max(1, int(round((x1 - x0) / ds))))
            yield ya, xa, schema.to_labels(resize_nearest(mask, shp))

    stem = default_project_root(project.source).stem if project.source else "slide"
    (tmp / "slides").mkdir(exist_ok=True)
    zpath = tmp / "slides" / f"{stem}.ome.zarr"
    scratch = "ome-zarr" not in formats
    if scratch:
        zpath = tmp / ".scratch.ome.zarr"
    rec: dict[str, Any] = {"source": project.source, "level": lv, "downsample": ds, "shape": list(shape), "mpp": mpp,
                           "tiles_level": level,
                           "regions": [b[0].key for b in blocks]}
    arrays = write_ome_zarr_labels(zpath, shape, regions(), schema, downsample=ds, mpp=mpp,
                                   extra={"source": project.source, "level": lv})
    if not scratch:
        rec["ome_zarr"] = f"slides/{stem}.ome.zarr"
    if "pyramidal-tiff" in formats:
        rec["tiff"] = f"slides/{stem}.labels.tif"
        write_pyramidal_tiff_labels(tmp / rec["tiff"], arrays, schema, downsample=ds, mpp=mpp)
    if scratch:
        shutil.rmtree(zpath)
    return rec
