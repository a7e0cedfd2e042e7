"""Segment, SAM and Export offer only images of tissue: never the plugin's own outputs.

Walk-through: after a run, Segment's image chooser listed "folder3 confidence [sshr-glas]", a (2, H, W) float
layer; choosing it switched the model line to the demo model and Segment failed with "not an RGB image".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._plugin import EXPORT, SAM, SEGMENT, dock, open_path


def _items(combo) -> list[str]:  # noqa: ANN001
    return [combo.itemText(i) for i in range(combo.count())]


def test_choosers_list_tissue_images_not_results(qtbot, make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                 tiny_model: Path) -> None:
    viewer = make_napari_viewer()
    open_path(viewer, tiny_dataset / "test")
    viewer.add_image(np.full((40, 40, 3), 128, np.uint8), name="my rgb", rgb=True)  # a user's own RGB array
    viewer.add_image(np.zeros((40, 40), np.float32), name="grey map")
    seg = dock(viewer, SEGMENT)
    sam = dock(viewer, SAM)
    seg.add_model_version(tiny_model)
    seg.image_combo.setCurrentText("test")
    seg.confidence_check.setChecked(True)
    seg.segment()
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=60_000)
    assert seg.last_error is None, seg.last_error
    conf = [ly.name for ly in viewer.layers if ly.metadata.get("napari_wsss", {}).get("kind") == "confidence"]
    assert conf, [ly.name for ly in viewer.layers]
    export = dock(viewer, EXPORT)  # it exports the project of the image chosen: a result has none
    for combo in (seg.image_combo, sam.image_combo, export.image_combo):
        assert _items(combo) == ["test", "my rgb"], _items(combo)
    assert seg.image_combo.currentText() == "test"
