"""Layer names and layer <-> array conversions, in one place (no magic strings elsewhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..classes import ClassSchema

META_KEY = "napari_wsss"  # layer.metadata[META_KEY] holds what the plugin knows about a layer


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
