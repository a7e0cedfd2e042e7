"""The Segment widget's worker body and what it says about the result (kept apart from the widget's Qt code).

``segment_job`` runs in a worker (``_worker.run_job``): it loads the model once per (folder, device), segments
each plane and returns the class maps with a one-line stain warning when the planes are stained unlike the
model's training data.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Progress
from ._layers import layer_meta

SEGMENTERS: dict[tuple[str, str], Any] = {}  # loaded models by (folder, device), shared with the slide job


def segment_job(model_dir: Path, device: str, planes: list[tuple[Any, Any]], *, should_stop: Any,
                stain_normalise: bool = False, names: dict[Any, str] | None = None,
                slide_region: tuple[list[Any], int, tuple[int, int, int, int]] | None = None,
                ) -> Generator[Progress, None, tuple[Any, list, str | None]]:
    """Worker body: load (cached) model, segment each plane; returns (card, [(key, class_map, confidence)],
    a stain warning or None).

    ``slide_region``: (the slide's levels, level, box) when the one plane is a region of a slide: the glass
    around the slide's tissue becomes background there, as in whole-slide results (``inference.slide_glass``)."""
    from ..events import Cancelled
    from ..inference.segmenter import load_segmenter
    from ..inference.tiling import WINDOW_PIXELS, blank_windows, segment_image

    key = (str(model_dir), device)
    if key not in SEGMENTERS:
        yield Progress(0, None, f"loading model {Path(model_dir).name}")
        SEGMENTERS[key] = load_segmenter(model_dir, device)
    seg = SEGMENTERS[key]
    read = planes
    if stain_normalise:  # whole planes, before any windowing (Macenko needs the tissue's full stain range)
        from ..inference.stain_normalise import with_stain_normalisation

        norm = with_stain_normalisation(seg).normaliser
        planes = [(k, norm(np.asarray(p))) for k, p in planes]
    results = []
    for i, (plane_key, plane) in enumerate(planes):
        if should_stop():
            raise Cancelled("segmentation cancelled")
        yield Progress(i * 100, len(planes) * 100, f"segmenting {i + 1}/{len(planes)}")
        if int(plane.shape[0]) * int(plane.shape[1]) <= WINDOW_PIXELS:
            # whole, as ``predict_image``, the CLI, the benchmarks and fine-tuning's held-out check predict a tile:
            # 512-px windows (each normalised on its own) changed 2-3 % of a GlaS tile's pixels, so the viewer's
            # mask was not the CLI's and the base model scored 0.93 on a tile the user had accepted unchanged
            plane = np.asarray(plane)
            pred = seg.predict(plane[None], batch_size=1)
            blank, bg = blank_windows(plane), seg.card.class_schema.background_index
            if blank.any():  # all-glass windows stay glass, as when the viewer windowed (blank_windows)
                pred.class_map[0][blank] = bg
                pred.probs[0][:, blank] = 0.0
                pred.probs[0][bg, blank] = 1.0
        else:
            gen = segment_image(seg, plane, should_stop=should_stop)
            while True:
                try:
                    p = next(gen)
                except StopIteration as stop:
                    pred = stop.value
                    break
                yield Progress(i * 100 + int(100 * (p.fraction or 0)), len(planes) * 100,
                               f"segmenting {i + 1}/{len(planes)}")
        class_map, confidence = pred.class_map[0], pred.probs[0].max(0)
        if slide_region is not None:
            from ..inference.slide_glass import region_glass

            glass = region_glass(*slide_region, read[i][1])
            class_map, confidence = class_map.copy(), confidence.copy()
            class_map[glass], confidence[glass] = seg.card.class_schema.background_index, 1.0
        results.append((plane_key, class_map, confidence))
    return seg.card, results, stain_warning(seg.card, planes, names)


def plane_names(layer: Any, planes: list[tuple[Any, Any]]) -> dict[Any, str]:
    """How the stain warning names a stack's planes: "tile 3 (04.tif)", as the slider and the file list know them
    (a bare "tile 3" sent the user counting tiles in the walk-through on real TCGA nuclei tiles)."""
    files = layer_meta(layer).get("files") or []
    return {k: f"tile {k[0]} ({Path(files[k[0]]).name})" for k, _ in planes
            if isinstance(k, tuple) and len(k) == 1 and 0 <= k[0] < len(files)}


GUI_ADVICE = ("tick 'stain-normalise' and segment again, or correct a few tiles (Review & correct) and fine-tune the "
              "model (Fine-tune)")


def stain_warning(card: Any, planes: list[tuple[Any, Any]], names: dict[Any, str] | None = None) -> str | None:
    """The one-line warning when planes are stained unlike the model's training data (None: alike, or the card
    holds no stain statistics)."""
    from ..ops.stain import out_of_depth, out_of_depth_message

    stats = card.stain.get("stats")
    if not stats:
        return None
    names = names or {}
    flagged = [(names.get(key) or ("tile " + ",".join(map(str, key)) if key != () else "the image"), r)
               for key, plane in planes if (r := out_of_depth(np.asarray(plane)[..., :3], stats))]
    return out_of_depth_message(flagged, len(planes), card.name or "the model", GUI_ADVICE) if flagged else None
