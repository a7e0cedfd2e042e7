"""`make demo`: open napari with the sample data and the plugin's widgets, and segment the first tile.

With ``--headless`` (no display; run under Xvfb by the Makefile) the same flow runs unattended and writes
screenshots to ``--out`` (docs/img/) instead of leaving the window open.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def wait_for(job, app, timeout: float = 300.0) -> None:  # noqa: ANN001
    t0 = time.time()
    while job.running and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--headless", action="store_true", help="run unattended and write screenshots")
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="screenshot folder (headless)")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_wsss.gui._sample_data import sample_slide, sample_tiles
    from napari_wsss.gui.segment_widget import SegmentWidget

    viewer = napari.Viewer(title="napari-wsss demo")
    for data, kwargs, kind in sample_tiles():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    gt = [ly for ly in viewer.layers if ly.name.endswith("ground truth")]
    for ly in gt:
        ly.visible = False
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    widget.image_combo.setCurrentText("test")
    widget.scope_combo.setCurrentText("all tiles in the stack")
    widget.segment()
    app = QApplication.instance()
    if widget.job is not None:
        wait_for(widget.job, app)
    if widget.last_error is not None:
        print(f"demo: segmentation failed: {widget.last_error}", file=sys.stderr)
        return 1
    if not args.headless:
        napari.run()
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1400, 900)
    app.processEvents()
    shot = args.out / "segment_tiles.png"
    viewer.screenshot(str(shot), canvas_only=False)
    print(f"wrote {shot}")
    for ly in gt:
        ly.visible = True
    for ly in viewer.layers:
        if "segmentation" in ly.name:
            ly.visible = False
    app.processEvents()
    shot = args.out / "ground_truth_tiles.png"
    viewer.screenshot(str(shot), canvas_only=False)
    print(f"wrote {shot}")

    viewer.layers.clear()
    for data, kwargs, kind in sample_slide():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget.image_combo.setCurrentText(viewer.layers[0].name)
    widget.scope_combo.setCurrentText("whole image (coarsest level that fits)")
    widget.segment()
    if widget.job is not None:
        wait_for(widget.job, app)
    viewer.reset_view()
    app.processEvents()
    shot = args.out / "segment_slide.png"
    viewer.screenshot(str(shot), canvas_only=False)
    print(f"wrote {shot}")
    print(f"demo ran headless (no display): screenshots are in {args.out}/")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
