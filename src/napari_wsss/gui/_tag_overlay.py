"""The Tag widget's overlay: one rectangle per tile over the image (same scale/translate), outlined grey while
untagged and in its first tag's class colour once tagged, with its tags written in it; the tile on screen is drawn
thicker. A light Shapes layer, so the whole slide shows what is tagged with what."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layers import layer_meta

UNTAGGED_COLOUR = (0.6, 0.6, 0.6, 0.8)
CURRENT_WIDTH, OTHER_WIDTH = 6.0, 2.0  # overlay edge widths (screen-independent, in data pixels / zoom)


def overlay_name(image_name: str) -> str:
    return f"{image_name} tags"


def tile_shape(layer: Any, tile: Any, i: int) -> np.ndarray:
    """Rectangle corners of tile ``i``: (y, x) level-0 pixels on a slide, (tile, y, x) on a tile stack."""
    if tile.region is not None:
        y0, x0, y1, x1, _ = tile.region
        return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)
    h, w = layer_meta(layer)["sizes"][i]
    return np.array([[i, 0, 0], [i, 0, w], [i, h, w], [i, h, 0]], float)


def tile_style(schema: Any, key: str, tags: dict[str, list[str]]) -> tuple[tuple, str]:
    """(edge RGBA, text) of a tile: grey untagged, white '-' tagged with no class, else its first class colour."""
    t = tags.get(key)
    if t is None:
        return UNTAGGED_COLOUR, ""
    if not t:
        return (1.0, 1.0, 1.0, 0.9), "-"
    r, g, b = schema.classes[schema.index_of(t[0])].colour
    return (r / 255, g / 255, b / 255, 1.0), " ".join(t)


def add_overlay(viewer: Any, layer: Any, tiles: list[Any], tags: dict[str, list[str]], schema: Any,
                kind: str) -> Any:
    """(Re)draw the overlay of ``layer``'s ``tiles``; returns the new Shapes layer."""
    name = overlay_name(layer.name)
    if name in viewer.layers:
        viewer.layers.remove(name)
    styles = [tile_style(schema, t.key, tags) for t in tiles]
    ndim = 3 if kind == "tiles" else 2
    return viewer.add_shapes(
        [tile_shape(layer, t, i) for i, t in enumerate(tiles)], shape_type="rectangle", name=name,
        edge_color=[s[0] for s in styles], face_color=[0, 0, 0, 0], edge_width=OTHER_WIDTH,
        features={"tags": [s[1] for s in styles]}, text={"string": "{tags}", "size": 10, "color": "white",
                                                        "anchor": "upper_left"},
        scale=layer.scale[-ndim:], translate=layer.translate[-ndim:], opacity=0.8,
        metadata={"napari_wsss": {"kind": "tags", "image": layer.name}})


def paint_tile(viewer: Any, overlay: Any, i: int, key: str, tags: dict[str, list[str]], schema: Any) -> None:
    """Restyle tile ``i`` after its tags changed (a layer the user removed is left alone)."""
    if overlay is None or overlay not in viewer.layers:
        return
    colour, text = tile_style(schema, key, tags)
    edge = np.asarray(overlay.edge_color).copy()
    edge[i] = colour
    overlay.edge_color = edge
    feats = overlay.features.copy()
    feats.loc[i, "tags"] = text
    overlay.features = feats


def highlight_tile(viewer: Any, overlay: Any, i: int, n: int) -> None:
    """Draw tile ``i`` of ``n`` thicker than the others."""
    if overlay is None or overlay not in viewer.layers:
        return
    widths = [OTHER_WIDTH] * n
    widths[i] = CURRENT_WIDTH
    overlay.edge_width = widths  # napari takes a list (one width per shape), not an array
