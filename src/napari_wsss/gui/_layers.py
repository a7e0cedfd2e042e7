"""Layer names and layer <-> array conversions, in one place (no magic strings elsewhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..classes import ClassSchema

META_KEY = "napari_wsss"  # layer.metadata[META_KEY] holds what the plugin knows about a layer


def unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy``, for identity checks only.

    napari hands every docked widget its own proxy of the viewer, and each attribute read through a proxy
    (``viewer.layers[name]``) returns a new proxy: ``is``/``id()`` on them never agree across widgets. Compare
    what they wrap instead (``__wrapped__`` is wrapt's public name for it; nothing private is read).
    """
    for _ in range(8):  # proxies of proxies are possible; a bound keeps a broken object from looping
        inner = getattr(obj, "__wrapped__", None)
        if inner is None or not _is_proxy(obj):
            return obj
        obj = inner
    return obj


def _is_proxy(obj: Any) -> bool:
    try:
        import wrapt
    except ImportError:  # napari always brings wrapt; without it nothing can be a proxy
        return False
    return isinstance(obj, wrapt.ObjectProxy)


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same napari object, whichever proxies they came through."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def segmentation_name(image_name: str, version: str) -> str:
    return f"{image_name} segmentation [{version}]"


def confidence_name(image_name: str, version: str) -> str:
    return f"{image_name} confidence [{version}]"


def labels_colormap(schema: ClassSchema) -> Any:
    """napari colormap that paints each class in its schema colour (background transparent)."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=schema.label_colours())


def labels_features(schema: ClassSchema) -> dict[str, list]:
    """Per-label table so napari's status bar names the class under the cursor."""
    return {
        "index": [0] + [c.index + 1 for c in schema.foreground],
        "class": ["background"] + [c.name for c in schema.foreground],
        "description": [schema.classes[-1].description] + [c.description for c in schema.foreground],
    }


def labels_layer_kwargs(schema: ClassSchema, name: str, **extra: Any) -> dict[str, Any]:
    meta = {META_KEY: {"schema": schema.to_dict(), **extra.pop("meta", {})}}
    return {"name": name, "colormap": labels_colormap(schema), "features": labels_features(schema),
            "metadata": meta, "opacity": 0.5, **extra}


def layer_meta(layer: Any) -> dict[str, Any]:
    return dict(getattr(layer, "metadata", {}).get(META_KEY, {}))


SOURCE_KINDS = ("tiles", "slide", "image")  # what the reader opens; the plugin's outputs carry other kinds


def is_tissue_image(layer: Any) -> bool:
    """An RGB image layer of tissue that Segment and SAM can read: the reader's tiles, slides and images, or a
    user's own RGB array; never the plugin's outputs (a (classes, H, W) confidence map is an Image layer too, and
    choosing it switched the model line and failed as "not an RGB image")."""
    from napari.layers import Image

    kind = layer_meta(layer).get("kind")
    return isinstance(layer, Image) and bool(getattr(layer, "rgb", False)) and (kind is None or kind in SOURCE_KINDS)


def layer_schema(layer: Any) -> ClassSchema | None:
    d = layer_meta(layer).get("schema")
    return ClassSchema.from_dict(d) if d else None


def rgb_plane(data: Any, index: tuple[int, ...] = ()) -> Any:
    """The (H, W, 3) plane of an image layer's data at a leading index (stack of tiles)."""
    arr = data[index] if index else data
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"The selected layer holds an array of shape {tuple(arr.shape)}; Segment needs RGB "
                         "H&E images (..., H, W, 3). Open the colour image, not a single channel.")
    return arr


def to_numpy(arr: Any) -> np.ndarray:
    return np.asarray(arr.compute() if hasattr(arr, "compute") else arr)


# -- review / project helpers (the review widget and the project session use these) ---------------------------
SLIDE_GRID = 1024  # level-0 pixels per side of a slide review region


def image_source(layer: Any) -> tuple[str, str] | None:
    """(kind, path) of the data an image layer came from (our reader's metadata, or napari's ``source.path`` for
    one RGB image another reader opened), or None for in-memory arrays.

    kind is ``"tiles"`` (a folder), ``"slide"`` or ``"image"`` (a file).
    """
    meta = layer_meta(layer)
    kind = meta.get("kind")
    if kind == "tiles" and meta.get("folder"):
        return "tiles", str(meta["folder"])
    if kind in ("slide", "image") and meta.get("path"):
        return kind, str(meta["path"])
    path = foreign_path(layer) if kind is None else None
    if path is not None and path.is_file() and not getattr(layer, "multiscale", True) \
            and getattr(layer, "rgb", False) and getattr(layer, "ndim", 0) == 2:
        return "image", str(path)  # one RGB image another reader opened (napari's builtins): a project as ours
    return None


def foreign_path(layer: Any) -> Any:
    """The file or folder (a ``Path``) another reader (napari's builtins) opened ``layer`` from, as napari keeps
    it in ``layer.source.path``; None for ours and for arrays."""
    from pathlib import Path

    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(path) if path and not layer_meta(layer).get("kind") else None


def reopen_hint(viewer: Any) -> str | None:
    """One line for image layers another reader opened that get no project (a folder as a stack): reopen them
    with ours. napari's reader dialog offers its builtins beside napari-wsss (walk-through: Review then said
    "open tiles or a slide from a file" of an image opened from a file)."""
    from napari.layers import Image

    names = [ly.name for ly in viewer.layers if isinstance(ly, Image) and foreign_path(ly) is not None
             and image_source(ly) is None]
    if not names:
        return None
    one = len(names) == 1
    return (f"{', '.join(names[:3])} {'was' if one else 'were'} opened by another reader: open {'it' if one else 'them'}"
            " again with File > Open and choose napari-wsss in napari's reader dialog to keep corrections.")


PROJECT_ROOT = "project_root"  # layer metadata: a project folder the user chose instead of the default one


def project_root_of(layer: Any) -> Any:
    """The annotation project folder of an image layer (a ``Path``): the one chosen with Review's 'Use another
    project folder…', else the default beside the data (``store.default_project_root``); None for arrays."""
    from pathlib import Path

    from ..store import default_project_root

    src = image_source(layer)
    if src is None:
        return None
    chosen = layer_meta(layer).get(PROJECT_ROOT)
    return Path(chosen) if chosen else default_project_root(src[1])


def is_segmentation_of(layer: Any, image_name: str) -> bool:
    """True for a segmentation Labels layer made (or restored) for the image layer called ``image_name``."""
    m = layer_meta(layer)
    return m.get("kind") == "segmentation" and m.get("image") == image_name


def is_result_of(layer: Any, image_name: str) -> bool:
    """True for a segmentation (an earlier view of a slide included) or its confidence map made for the image
    layer called ``image_name``."""
    m = layer_meta(layer)
    return m.get("kind") in ("segmentation", "confidence", "earlier view") and m.get("image") == image_name


def level_factors(levels: Any, level: int) -> tuple[float, float]:
    """(y, x) level-0 pixels per pixel of pyramid ``level``, per axis as napari draws the level.

    Scanners halve odd sizes down or up, so the two axes differ (a 4443 x 3567 slide's level 1 is 2221 x 1783:
    2.00045 and 2.00056); one factor for both put a result of that level a pixel or two off at the far edge.
    """
    h0, w0 = levels[0].shape[:2]
    h, w = levels[level].shape[:2]
    return h0 / h, w0 / w


def placement_factors(placement: dict[str, Any]) -> tuple[float, float]:
    """(y, x) downsample of a slide placement: a ``[y, x]`` pair, or one number for both (older layers/records)."""
    ds = placement["downsample"]
    return (float(ds[0]), float(ds[1])) if isinstance(ds, (list, tuple, np.ndarray)) else (float(ds), float(ds))


def result_geometry(image_layer: Any, placement: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, translate) that put a segmentation result with ``placement`` on top of ``image_layer``."""
    scale, translate = np.asarray(image_layer.scale, float), np.asarray(image_layer.translate, float)
    if placement.get("kind") == "slide":
        f = np.asarray(placement_factors(placement))
        s2 = scale[-2:] * f
        # napari centres a pyramid level's pixel j at level-0 coordinate j * f + (f - 1) / 2 (its first pixel
        # spans the level-0 pixels 0..f-1): without that half-step a coarse result sat (f - 1) / 2 px up-left
        t2 = translate[-2:] + (np.asarray(placement["origin"], float) + (f - 1) / 2) * scale[-2:]
        return s2, t2
    return scale, translate


def status_text(counts: dict[str, int]) -> str:
    """``"12 / 40 reviewed (5 corrected, 7 accepted)"``."""
    return (f"{counts['reviewed']} / {counts['total']} reviewed ({counts['corrected']} corrected, "
            f"{counts['accepted']} accepted)")


def drawn_rectangle(viewer: Any, image_layer: Any) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) in ``image_layer`` data pixels (level 0 for a slide) of the rectangle the user drew.

    Uses the selected shape of the active Shapes layer, else the last rectangle of the topmost Shapes layer.

    Raises:
        ValueError: no Shapes layer / rectangle, or one that misses the image.
    """
    from napari.layers import Shapes

    shapes = [ly for ly in viewer.layers if isinstance(ly, Shapes) and len(ly.data)]
    if not shapes:
        raise ValueError("No rectangle drawn: add a Shapes layer, draw a rectangle over the region to segment "
                         "(rectangle tool), then click Segment.")
    active = viewer.layers.selection.active
    layer = active if active in shapes else shapes[-1]
    idx = sorted(layer.selected_data)[-1] if layer.selected_data else None
    if idx is None:
        rects = [i for i, t in enumerate(layer.shape_type) if t == "rectangle"]
        idx = rects[-1] if rects else len(layer.data) - 1
    verts = np.asarray(layer.data[idx], float)
    world = np.array([layer.data_to_world(v) for v in verts])
    data = np.array([image_layer.world_to_data(w) for w in world])[:, -2:] if image_layer.ndim == world.shape[1] \
        else np.array([image_layer.world_to_data(np.r_[np.zeros(image_layer.ndim - 2), w[-2:]])[-2:] for w in world])
    h, w = (image_layer.level_shapes[0] if image_layer.multiscale else image_layer.data.shape[-3:-1]
            if image_layer.rgb else image_layer.data.shape[-2:])[:2]
    y0, x0 = np.floor(data.min(0)).astype(int)
    y1, x1 = np.ceil(data.max(0)).astype(int)
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(int(h), y1), min(int(w), x1)
    if y1 - y0 < 16 or x1 - x0 < 16:
        raise ValueError(f"The drawn rectangle covers {max(0, y1 - y0)} x {max(0, x1 - x0)} pixels of "
                         f"{image_layer.name!r}; draw one of at least 16 x 16 pixels over the image.")
    return int(y0), int(x0), int(y1), int(x1)


def camera(viewer: Any) -> Any:
    """The viewer's camera (napari 0.9 moved it to ``viewer.scene.camera``; ``viewer.camera`` is deprecated)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
