"""Whole-slide segmentation from the viewer: a worker writes a zarr label pyramid; the layer fills in as it runs.

The worker runs ``inference.slide_segmentation.segment_slide``; on its first progress report the zarr
arrays exist, and the GUI adds a multiscale Labels layer that reads them lazily and refreshes on every report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..events import Progress
from ._layers import META_KEY, labels_layer_kwargs, layer_meta, segmentation_name


def slide_output_path(image_layer: Any, version: str, level: int) -> Path:
    """Beside the slide, in its project folder (``<stem>.wsss/segmentations/``); a temp folder if unknown.

    A new name for every run (``-2``, ``-3``, ...): an earlier result may hold corrections written back into its
    pyramid, and segmenting again must not delete it (reopening shows the newest complete one).
    """
    from ._layers import project_root_of

    root = project_root_of(image_layer) if layer_meta(image_layer).get("path") else None
    root = root or Path(tempfile.mkdtemp(prefix="napari-wsss-"))
    out = root / "segmentations" / f"{version}-level{level}.zarr"
    n = 2
    while out.exists():
        out = root / "segmentations" / f"{version}-level{level}-{n}.zarr"
        n += 1
    return out


def slide_job(model_dir: Path, device: str, levels: list[Any], out: Path, level: int, segmenters: dict, *,
              should_stop: Any, mpp: float | None = None, objective: float | None = None,
              source: dict | None = None) -> Generator[Progress, None, Any]:
    """Worker body: load (cached) model and segment one slide level into ``out``."""
    from ..inference.segmenter import load_segmenter
    from ..inference.slide_segmentation import segment_slide

    key = (str(model_dir), device)
    if key not in segmenters:
        yield Progress(0, None, f"loading model {Path(model_dir).name}")
        segmenters[key] = load_segmenter(model_dir, device)
    result = yield from segment_slide(segmenters[key], levels, out, level=level, mpp=mpp, objective=objective,
                                     source=source, should_stop=should_stop)
    return segmenters[key].card, result


class LiveSlideLayer:
    """Adds the zarr pyramid as a multiscale Labels layer once it exists, and refreshes it as blocks land."""

    def __init__(self, viewer: Any, image_layer: Any, out: Path, card: Any, level: int) -> None:
        self.viewer, self.image_layer, self.out, self.card, self.level = viewer, image_layer, out, card, level
        self.layer: Any = None

    def update(self) -> None:
        if self.layer is None:
            if not (self.out / "labels" / "0").exists():
                return
            self.layer = add_slide_result_layer(self.viewer, self.image_layer, self.out, self.card.name,
                                                self.card.class_schema, self.level, method=self.card.method)
        else:
            self.layer.refresh()

    def finish(self, complete: bool) -> None:
        self.update()
        if self.layer is not None:
            self.layer.refresh()
            self.layer.metadata[META_KEY]["complete"] = complete
            if not complete and not self.layer.name.endswith("(incomplete)"):
                self.layer.name = f"{self.layer.name} (incomplete)"
            if complete:
                retire_earlier_results(self.viewer, self.image_layer.name, self.layer)


def retire_earlier_results(viewer: Any, image_name: str, keep: Any) -> list[str]:
    """Hide the image's earlier whole-slide result layers (a cancelled run's "(incomplete)" one, or another model's)
    and make them read-only, the rule for a replaced result layer (``ProjectSession.detach``); returns their names.

    A cancelled run's layer stayed on screen over the complete one that followed, its blank blocks and half-finished
    classes blending into it; after "Use this version" the base model's result showed through the new one's glass.
    Retired, not removed: the zarr stays on disk (a killed run's result is never deleted) and the layer can be shown
    again from the layer list.
    """
    from ._layers import unwrap

    retired = []
    for ly in list(viewer.layers):
        meta = layer_meta(ly)
        if (unwrap(ly) is not unwrap(keep) and meta.get("kind") == "segmentation" and meta.get("image") == image_name
                and meta.get("placement", {}).get("kind") == "slide_full" and not meta.get("retired")):
            ly.visible, ly.editable = False, False
            unwrap(ly).metadata[META_KEY]["retired"] = True
            retired.append(ly.name)
    return retired


def add_slide_result_layer(viewer: Any, image_layer: Any, out: Path, version: str, schema: Any, level: int,
                           **meta: Any) -> Any:
    """The zarr label pyramid at ``out`` as a lazy multiscale Labels layer over ``image_layer``."""
    import zarr

    root = zarr.open_group(str(out), mode="r")
    n = sum(1 for _ in root["labels"].array_keys())
    data = [root[f"labels/{i}"] for i in range(n)]
    ds = image_layer.data[0].shape[0] / image_layer.data[level].shape[0]
    name = segmentation_name(image_layer.name, f"{version} whole slide")
    if name in viewer.layers:
        viewer.layers.remove(name)
    meta = {"kind": "segmentation", "model": version, "image": image_layer.name, "zarr": str(out),
            "placement": {"kind": "slide_full"}, **meta}
    kw = labels_layer_kwargs(schema, name, meta=meta)
    return viewer.add_labels(data, multiscale=True, scale=image_layer.scale[-2:] * ds,
                             translate=image_layer.translate[-2:], **kw)


def saved_slide_result(project_root: Path) -> Path | None:
    """The newest complete full-resolution (level 0) whole-slide segmentation kept in a slide's project."""
    import zarr

    found = []
    for z in sorted(Path(project_root, "segmentations").glob("*.zarr")):
        try:
            attrs = dict(zarr.open_group(str(z), mode="r").attrs)
        except Exception:  # noqa: BLE001  (a folder that is not a readable zarr group is not ours to show)
            continue
        if attrs.get("complete") and attrs.get("source_level") == 0 and "schema" in attrs:
            found.append((z.stat().st_mtime, z))
    return max(found)[1] if found else None


def reopen_slide_result(viewer: Any, image_layer: Any, project_root: Path) -> Any:
    """Reopening a slide: show its saved whole-slide result again (with the corrections written into it)."""
    import zarr

    from ..classes import ClassSchema

    out = saved_slide_result(project_root)
    if out is None:
        return None
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    layer = add_slide_result_layer(viewer, image_layer, out, attrs.get("model") or out.stem,
                                   ClassSchema.from_dict(attrs["schema"]), 0)
    layer.metadata[META_KEY]["complete"] = True
    return layer
