"""npe2 reader: tile folders (as a stack), LUAD-style val/test folders (tiles + masks) and slides (multiscale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..classes import LUAD_HISTOSEG, ClassSchema
from ..data.slide import SLIDE_SUFFIXES, has_slide_only_suffix, is_slide_path, open_slide
from ..data.tiles import IMAGE_SUFFIXES, list_images, read_mask, read_rgb
from ._layers import META_KEY, labels_layer_kwargs

LayerData = tuple[Any, dict, str]


def get_reader(path: str | list[str]) -> Any:
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        from ..data.tiles import find_mask_layout

        has_images = find_mask_layout(p) is not None or (p / "img").is_dir() or any(
            q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir())
        return read_path if has_images else None
    if p.suffix.lower() in IMAGE_SUFFIXES or p.name.lower().endswith(SLIDE_SUFFIXES):
        return read_path
    return None


def read_path(path: str | list[str], schema: ClassSchema = LUAD_HISTOSEG) -> list[LayerData]:
    """Layers for a tile folder, an ``img/``+``mask/`` folder, a slide or a single image file."""
    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    if p.is_dir():
        return read_tile_folder(p, schema)
    if is_slide_path(p) or has_slide_only_suffix(p):
        return [read_slide_layer(p)]  # a slide-only suffix that opens as none gets open_slide's one-line error
    return [(read_rgb(p), {"name": p.stem, "rgb": True, "metadata": {META_KEY: {"kind": "image", "path": str(p)}}},
             "image")]


def read_slide_layer(path: Path) -> LayerData:
    """A slide (any format ``data.slide`` reads) as a lazy multiscale image; its metadata rides in the layer."""
    slide = open_slide(path)
    meta = {META_KEY: {"kind": "slide", "path": str(path), "downsamples": slide.downsamples, "mpp": slide.mpp,
                       "objective": slide.objective, "backend": slide.backend, "vendor": slide.vendor}}
    return slide.levels, {"name": path.stem, "rgb": True, "multiscale": True, "metadata": meta}, "image"


def _lazy_stack(files: list[Path], reader: Any, fill: int, rgb: bool) -> Any:
    """Lazy (N, H, W[, 3]) dask stack; tiles smaller than the largest are padded with ``fill``."""
    import dask
    import dask.array as da
    from PIL import Image

    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size[::-1])
        except Exception as e:  # one bad file in a folder: the same one line as a single bad file (read_rgb)
            raise ValueError(f"Cannot read {f}: {type(e).__name__}: {e}. The file is damaged or not an image; "
                             "re-export it or remove it from the folder.") from None
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)

    def load(f: Path, hw: tuple[int, int]) -> np.ndarray:
        arr = reader(f)
        if arr.shape[:2] != (h, w):
            pad = [(0, h - arr.shape[0]), (0, w - arr.shape[1])] + ([(0, 0)] if rgb else [])
            arr = np.pad(arr, pad, constant_values=fill)
        return arr

    shape = (h, w, 3) if rgb else (h, w)
    parts = [da.from_delayed(dask.delayed(load)(f, s), shape=shape, dtype=np.uint8) for f, s in zip(files, sizes)]
    return da.stack(parts), sizes


def read_tile_folder(folder: Path, schema: ClassSchema = LUAD_HISTOSEG) -> list[LayerData]:
    """A folder of tiles as one (N, H, W, 3) stack (slider = tile), plus ground-truth masks if present."""
    from ..data.tiles import find_mask_layout

    layout = find_mask_layout(folder)  # img/ + mask/ (LUAD-HistoSeg) or images/ + masks/ (GlaS)
    img_dir = layout[0] if layout else (folder / "img" if (folder / "img").is_dir() else folder)
    files = list_images(img_dir)
    stack, sizes = _lazy_stack(files, read_rgb, 255, rgb=True)
    meta = {META_KEY: {"kind": "tiles", "folder": str(folder), "files": [str(f) for f in files],
                       "sizes": [list(s) for s in sizes]}}
    layers: list[LayerData] = [(stack, {"name": folder.name, "rgb": True, "metadata": meta}, "image")]
    mask_dir = layout[1] if layout else folder / "mask"
    if img_dir != folder and mask_dir.is_dir():
        masks = {m.stem: m for m in list_images(mask_dir)}
        if all(f.stem in masks for f in files):
            mfiles = [masks[f.stem] for f in files]
            schema = _schema_for_masks(mfiles[0], schema)
            labels, _ = _lazy_stack(mfiles, lambda m: schema.to_labels(read_mask(m, schema)), 0, rgb=False)
            kw = labels_layer_kwargs(schema, f"{folder.name} ground truth", meta={"kind": "ground_truth"})
            layers.append((labels, kw, "labels"))
    return layers


def _schema_for_masks(mask: Path, default: ClassSchema) -> ClassSchema:
    """The class schema whose mask values explain a ground-truth mask (GlaS' 0/255 are not LUAD's indices)."""
    from ..classes import PRESETS

    for schema in (default, *PRESETS.values()):
        try:
            read_mask(mask, schema)
            return schema
        except ValueError:
            continue
    return default
