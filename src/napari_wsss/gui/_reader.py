"""npe2 reader: tile folders (as a stack), LUAD-style val/test folders (tiles + masks) and slides (multiscale)."""

from __future__ import annotations

from functools import partial
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
        if _has_images(p):
            return read_path
        if p.suffix.lower() == ".zarr" or any((p / f).exists() for f in (".zgroup", ".zarray", "zarr.json")):
            return None  # another reader's folder format (napari's own opens zarr)
        return partial(_no_images, message=_no_images_message(p))
    if p.suffix.lower() in IMAGE_SUFFIXES or p.name.lower().endswith(SLIDE_SUFFIXES):
        return read_path
    return None


def _no_images_message(folder: Path) -> str:
    """One line for a folder napari-wsss was asked to open that holds no images (and where they may be)."""
    subs = sorted(q.name for q in folder.iterdir() if q.is_dir() and not q.name.startswith(".")
                  and (_has_images(q)))
    where = (f" Its subfolder(s) {', '.join(subs[:5])}{'…' if len(subs) > 5 else ''} hold images: open one of "
             "those." if subs else "")
    return (f"No images in {folder}: napari-wsss opens a folder of H&E tiles ({', '.join(sorted(IMAGE_SUFFIXES))}), "
            f"a folder with img/ + mask/ or images/ + masks/, a slide or an image file.{where}")


def _has_images(folder: Path) -> bool:
    """True when ``folder`` holds tiles directly or in the img/ + mask/ (images/ + masks/) layouts."""
    from ..data.tiles import find_mask_layout

    try:
        return find_mask_layout(folder) is not None or (folder / "img").is_dir() or any(
            q.suffix.lower() in IMAGE_SUFFIXES for q in folder.iterdir())
    except OSError:
        return False


def _no_images(path: Any, *, message: str, **_: Any) -> list[LayerData]:
    raise ValueError(message)


def read_path(path: str | list[str], schema: ClassSchema = LUAD_HISTOSEG) -> list[LayerData]:
    """Layers for a tile folder, an ``img/``+``mask/`` folder, a slide or a single image file."""
    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    if p.is_dir():
        layers = read_tile_folder(p, schema)
        open_on_first_tile(str(p))
        return layers
    if is_slide_path(p) or has_slide_only_suffix(p):
        return [read_slide_layer(p)]  # a slide-only suffix that opens as none gets open_slide's one-line error
    return [(read_rgb(p), {"name": p.stem, "rgb": True, "metadata": {META_KEY: {"kind": "image", "path": str(p)}}},
             "image")]


def open_on_first_tile(folder: str) -> None:
    """Show tile 0 when the stack arrives: napari puts a viewer's first layer on the middle step (tile 1 of 0-3).

    A reader returns data, not viewer state, so this waits for the layer in the current viewer (if any), after
    napari's own handler (``position="last"``), once.
    """
    try:
        import napari
    except ImportError:
        return
    viewer = napari.current_viewer()
    if viewer is None:
        return
    layers = viewer.layers

    def first_tile(event: Any) -> None:
        layer = event.value
        if layer.metadata.get(META_KEY, {}).get("folder") != folder:
            return
        layers.events.inserted.disconnect(first_tile)
        if layer.ndim >= 3:
            viewer.dims.set_current_step(0, 0)

    layers.events.inserted.connect(first_tile, position="last")


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
    axes = {"axis_labels": ("tile", "y", "x")}  # the slider under the stack reads "tile", not "-3"
    layers: list[LayerData] = [(stack, {"name": folder.name, "rgb": True, "metadata": meta, **axes}, "image")]
    mask_dir = layout[1] if layout else folder / "mask"
    if img_dir != folder and mask_dir.is_dir():
        masks = {m.stem: m for m in list_images(mask_dir)}
        if all(f.stem in masks for f in files):
            mfiles = [masks[f.stem] for f in files]
            schema = _schema_for_masks(mfiles[0], schema)
            labels, _ = _lazy_stack(mfiles, lambda m: schema.to_labels(read_mask(m, schema)), 0, rgb=False)
            kw = labels_layer_kwargs(schema, f"{folder.name} ground truth", meta={"kind": "ground_truth"})
            layers.append((labels, {**kw, **axes}, "labels"))
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
