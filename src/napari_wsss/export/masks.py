"""Label writers: palette PNG / TIFF masks for tiles, OME-Zarr and pyramidal TIFF label images for slides.

Tile masks (PNG, TIFF) hold the **class map** (dataset convention: classes ``0..K-1``, background ``K``) with the
schema's palette, exactly like LUAD-HistoSeg's masks. Whole-slide label images (OME-Zarr, pyramidal TIFF) hold
the **napari label image** (``0`` = background or not annotated, class ``i`` = ``i + 1``), the convention of
OME-NGFF ``labels`` and of QuPath/napari label overlays; the schema is stored beside the pixels.
All writers are atomic (temp file/folder + rename).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_save
from ..classes import ClassSchema
from ..data.tiles import read_mask, write_mask

MASK_SUFFIXES = {"png": ".png", "tiff": ".tif"}


def tiff_colormap(schema: ClassSchema) -> np.ndarray:
    """(3, 256) uint16 TIFF palette (colour ``i`` = class-map value ``i``)."""
    pal = np.zeros((256, 3), np.uint16)
    pal[: schema.n_classes] = schema.palette().astype(np.uint16) * 257
    return np.ascontiguousarray(pal.T)


def write_tiff_mask(path: str | Path, class_map: np.ndarray, schema: ClassSchema) -> Path:
    """Write a class map (or a (N, H, W) stack as pages) as a palette TIFF, atomically."""
    import tifffile

    cm = schema.validate_class_map(class_map, str(path))
    with atomic_save(path) as tmp:
        tifffile.imwrite(tmp, cm, photometric="palette", colormap=tiff_colormap(schema), compression="zlib",
                         metadata={"schema": json.dumps(schema.to_dict())})
    return Path(path)


def write_class_map(path: str | Path, class_map: np.ndarray, schema: ClassSchema) -> Path:
    """Write a class map by suffix: ``.png`` (palette PNG, via ``data.tiles.write_mask``) or ``.tif``/``.tiff``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return write_mask(path, class_map, schema)
    if suffix in (".tif", ".tiff"):
        return write_tiff_mask(path, class_map, schema)
    raise ValueError(f"{path}: cannot write a mask as {suffix or 'a file without suffix'}; use .png or .tif.")


def read_class_map(path: str | Path, schema: ClassSchema) -> np.ndarray:
    """Read a PNG or TIFF mask as an (H, W) uint8 class map, checked against ``schema``."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            arr = tifffile.imread(path)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"Cannot read mask {path}: {type(e).__name__}: {e}.") from e
        if arr.ndim != 2:
            raise ValueError(f"{path}: mask has shape {arr.shape}; expected one (H, W) plane of class indices.")
        return schema.validate_class_map(arr, str(path))
    return read_mask(path, schema)


# -- whole-slide label images -------------------------------------------------------------------------------
def n_pyramid_levels(shape: tuple[int, int], min_size: int = 256) -> int:
    """Levels (each 2x smaller) until the longer side is at most ``min_size``."""
    return 1 + max(0, math.ceil(math.log2(max(shape) / min_size))) if max(shape) > min_size else 1


def write_ome_zarr_labels(path: str | Path, shape: tuple[int, int], regions: Iterator[tuple[int, int, np.ndarray]],
                          schema: ClassSchema, *, downsample: float = 1.0, name: str = "tissue",
                          chunk: int = 512, n_levels: int | None = None, extra: dict[str, Any] | None = None,
                          mpp: float | None = None) -> list[Any]:
    """Write an OME-NGFF 0.4 label image (zarr v2 layout) region by region (bounded memory).

    Args:
        path: the ``.ome.zarr`` folder to create (must not exist: callers write inside an atomic folder).
        shape: (H, W) of the label image at its finest level.
        regions: ``(y, x, labels)`` blocks in that level's pixels; ``labels`` (h, w) uint8 napari label values.
        downsample: level-0 slide pixels per label pixel (recorded as the scale of level 0).
        n_levels: pyramid levels (default: down to ~256 px); level ``l`` is level 0 strided by ``2**l``.
        mpp: microns per level-0 slide pixel, when the slide says so: the scales are then in micrometres (axis
            unit ``micrometer``), so the labels overlay the slide in physical units as well as in pixels.

    Returns:
        the zarr arrays, finest first.
    """
    import zarr

    n_levels = n_levels or n_pyramid_levels(shape)
    root = zarr.open_group(str(path), mode="w-", zarr_format=2)
    arrays = []
    for lv in range(n_levels):
        f = 2**lv
        shp = (math.ceil(shape[0] / f), math.ceil(shape[1] / f))
        arrays.append(root.create_array(str(lv), shape=shp, chunks=(min(chunk, shp[0]), min(chunk, shp[1])),
                                        dtype="uint8", fill_value=0))
    for y, x, block in regions:
        _write_strided(arrays, y, x, np.asarray(block, np.uint8))
    colors = [{"label-value": c.index + 1, "rgba": [*c.colour, 255]} for c in schema.foreground]
    unit = {"unit": "micrometer"} if mpp else {}
    axes = [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
    root.attrs.update({
        "multiscales": [{
            "version": "0.4", "name": name, "axes": axes,
            "datasets": [{"path": str(lv), "coordinateTransformations": [
                {"type": "scale", "scale": [(mpp or 1.0) * downsample * 2**lv] * 2}]} for lv in range(n_levels)],
        }],
        "image-label": {"version": "0.4", "colors": colors,
                        "properties": [{"label-value": c.index + 1, "class": c.name} for c in schema.foreground]},
        "napari_wsss": {"convention": "napari labels: 0 = background/unannotated, class i = i + 1",
                        "schema": schema.to_dict(), "mpp": mpp, **(extra or {})},
    })
    return arrays


def _write_strided(arrays: list[Any], y: int, x: int, block: np.ndarray) -> None:
    for lv, arr in enumerate(arrays):
        f = 2**lv
        oy, ox = -(-y // f), -(-x // f)  # first level-l pixel whose level-0 source row is inside the block
        sub = block[oy * f - y:: f, ox * f - x:: f]
        h, w = min(sub.shape[0], arr.shape[0] - oy), min(sub.shape[1], arr.shape[1] - ox)
        if h > 0 and w > 0:
            arr[oy: oy + h, ox: ox + w] = sub[:h, :w]


def read_ome_zarr_labels(path: str | Path, level: int = 0) -> np.ndarray:
    """Level ``level`` of a label image written by :func:`write_ome_zarr_labels`, as a numpy array."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    return np.asarray(root[str(level)][...])


def write_pyramidal_tiff_labels(path: str | Path, levels: list[Any], schema: ClassSchema, tile: int = 256,
                                downsample: float = 1.0, mpp: float | None = None) -> Path:
    """Write label levels (finest first; arrays that support slicing, e.g. zarr) as a tiled pyramidal TIFF.

    Pixels are napari label values (0 = background/unannotated, class i = i + 1) with a palette colour map, so
    viewers show the classes in their colours. Tiles are streamed: memory holds one tile at a time. With ``mpp``
    (microns per level-0 slide pixel) every level carries its pixel size as TIFF resolution tags (pixels per
    centimetre), as QuPath and tifffile read them.
    """
    import tifffile

    pal = np.zeros((256, 3), np.uint16)
    for c in schema.foreground:
        pal[c.index + 1] = np.asarray(c.colour, np.uint16) * 257
    cmap = np.ascontiguousarray(pal.T)
    desc = json.dumps({"napari_wsss": {"convention": "napari labels: 0 = background/unannotated, class i = i + 1",
                                       "schema": schema.to_dict(), "downsample": downsample, "mpp": mpp}})

    def tiles(arr: Any) -> Iterator[np.ndarray]:
        h, w = arr.shape
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                t = np.zeros((tile, tile), np.uint8)
                part = np.asarray(arr[y: y + tile, x: x + tile])
                t[: part.shape[0], : part.shape[1]] = part
                yield t

    with atomic_save(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=levels[0].shape[0] * levels[0].shape[1] > 2**31) as tw:
            for lv, arr in enumerate(levels):
                kw: dict[str, Any] = {"subifds": len(levels) - 1, "description": desc} if lv == 0 else \
                    {"subfiletype": 1}
                if mpp:
                    px_per_cm = 1e4 / (mpp * downsample * 2**lv)
                    kw.update(resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
                tw.write(tiles(arr), shape=tuple(arr.shape), dtype=np.uint8, tile=(tile, tile),
                         photometric="palette", colormap=cmap, compression="zlib", **kw)
    return Path(path)


def read_pyramidal_tiff_labels(path: str | Path, level: int = 0) -> np.ndarray:
    import tifffile

    return tifffile.imread(path, level=level)
