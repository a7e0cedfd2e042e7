"""`make demo`: napari with the sample data and the plugin's widgets: segment, correct, fine-tune, segment a slide.

It walks the user's path: the sample data is opened and the widgets are docked by napari's own launcher
(``napari FOLDER --plugin napari-wsss -w napari-wsss Segment "Review & correct"``), and this same file runs
inside that napari as its startup script (napari's ``application.startup_script`` setting, in a settings file
made for the run) to drive the flow. The sample data is copied to a temporary folder first, because the
annotation project (corrections, slide segmentations) is written beside the data and the repository's
sample_data/ must stay clean. With ``--headless`` (no display; the Makefile runs it under Xvfb) the flow runs
unattended and writes screenshots to ``--out`` (docs/img/) instead of leaving the window open.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def wait_for(job, app, timeout: float = 600.0) -> None:  # noqa: ANN001
    t0 = time.time()
    while job is not None and job.running and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.02)


def dock_of(widget):  # noqa: ANN001, ANN201
    """The QDockWidget napari wrapped ``widget`` in (None when it is not docked)."""
    from qtpy.QtWidgets import QDockWidget

    p = widget.parentWidget()
    while p is not None and not isinstance(p, QDockWidget):
        p = p.parentWidget()
    return p


def shoot(viewer, app, path: Path) -> None:  # noqa: ANN001
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # e.g. napari's notifications would cover the canvas
    app.processEvents()
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}")


FLOW_ENV = "NAPARI_WSSS_DEMO_FLOW"  # set for the napari child: this file is its startup script


def main(argv: list[str] | None = None) -> int:
    """Copy the sample data, then start napari's launcher on it with this file as the startup script."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--headless", action="store_true", help="run unattended and write screenshots")
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="screenshot folder (headless)")
    args = ap.parse_args(argv)

    from napari_wsss.resources import sample_data_dir

    work = Path(tempfile.mkdtemp(prefix="napari-wsss-demo-"))
    tiles = Path(shutil.copytree(sample_data_dir() / "luad_synthetic" / "test", work / "test"))
    slide = work / "synthetic_slide.tif"
    shutil.copy(sample_data_dir() / "slide" / "synthetic_slide.tif", slide)
    print(f"demo data copied to {work} (projects are written beside it)")
    settings = work / "napari-settings.yaml"
    settings.write_text(f"application:\n  startup_script: {Path(__file__).resolve()}\n")
    status = work / "demo-status.json"
    env = dict(os.environ, NAPARI_CONFIG=str(settings),
               **{FLOW_ENV: json.dumps({"headless": args.headless, "out": str(args.out.resolve()),
                                        "slide": str(slide), "status": str(status)})})
    napari_exe = Path(sys.executable).with_name("napari")
    rc = subprocess.call([str(napari_exe), str(tiles), "--plugin", "napari-wsss",
                          "-w", "napari-wsss", "Segment", "Review & correct"], env=env)
    flow = json.loads(status.read_text()) if status.is_file() else {"rc": 1, "error": "the demo flow did not run"}
    if flow.get("error"):
        print(f"demo: {flow['error']}", file=sys.stderr)
    if args.headless:
        shutil.rmtree(work, ignore_errors=True)
    return rc or int(flow.get("rc", 1))


def _docked(viewer, cls_name: str):  # noqa: ANN001, ANN202
    for w in viewer.window.dock_widgets.values():
        if type(w).__name__ == cls_name:
            return w
    return None


def flow(opts: dict) -> int:
    """The demo inside napari: the launcher already opened the tiles and docked Segment and Review."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.current_viewer()
    app = QApplication.instance()
    args = argparse.Namespace(headless=opts["headless"], out=Path(opts["out"]))
    slide = Path(opts["slide"])
    viewer.window._qt_window.resize(1500, 950)
    seg, review = _docked(viewer, "SegmentWidget"), _docked(viewer, "ReviewWidget")
    gt = [ly for ly in viewer.layers if ly.name.endswith("ground truth")]
    for ly in gt:
        ly.visible = False
    seg.image_combo.setCurrentText("test")
    seg.scope_combo.setCurrentText("all tiles in the stack")
    seg.segment()
    wait_for(seg.job, app)
    if seg.last_error is not None:
        print(f"demo: segmentation failed: {seg.last_error}", file=sys.stderr)
        return 1
    if not args.headless:
        print("Segmented the sample tiles. Correct them with the Review & correct widget; File > Open Sample > "
              "napari-wsss > slide for a whole slide.")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    # show the tile with the most classes in its image-level label
    names = [Path(f).name for f in viewer.layers["test"].metadata["napari_wsss"]["files"]]
    best = max(range(len(names)), key=lambda i: names[i].split("[")[-1].count("1"))
    viewer.dims.set_current_step(0, best)
    viewer.reset_view()
    shoot(viewer, app, args.out / "segment_tiles.png")

    # a pathologist's correction: pick TE in the palette and paint a band across the tile
    layer = review.labels_layer
    review.palette_buttons[0].click()  # 1: TE
    h, w = layer.data.shape[1:]
    layer.brush_size = 30
    for x in range(w // 6, 5 * w // 6, 8):
        layer.paint((best, h // 2, x), layer.selected_label)
    review.flush()
    if dock_of(review) is not None:  # the launcher docks -w widgets as tabs: bring Review to the front
        dock_of(review).raise_()
    shoot(viewer, app, args.out / "review_correct.png")

    # the pathologist corrects four tiles to the truth and accepts them, then fine-tunes on them (IFKD, worker)
    truth = gt[0].data
    for i in [best] + [j for j in range(len(names)) if j != best][:3]:
        viewer.dims.set_current_step(0, i)
        diff = np.nonzero(np.asarray(truth[i]) != np.asarray(layer.data[i]))
        if diff[0].size:
            layer.data_setitem((np.full(diff[0].size, i), *diff), np.asarray(truth[i])[diff])
        review.set_status("accepted")
    viewer.dims.set_current_step(0, best)
    docks = [d for d in (dock_of(seg), dock_of(review)) if d is not None]
    for dock in docks:  # room for the Fine-tune widget in the screenshot
        dock.hide()
    ft_dock, ft = viewer.window.add_plugin_dock_widget("napari-wsss", "Fine-tune")  # Plugins menu
    ft.refresh()
    ft.start()
    wait_for(ft.job, app)
    if ft.last_error is not None:
        print(f"demo: fine-tuning failed: {ft.last_error}", file=sys.stderr)
        return 1
    shoot(viewer, app, args.out / "finetune.png")
    viewer.window.remove_dock_widget(ft_dock)
    for dock in docks:
        dock.show()

    for ly in gt:
        ly.visible = True
    layer.visible = False
    shoot(viewer, app, args.out / "ground_truth_tiles.png")

    viewer.layers.clear()
    viewer.open(str(slide), plugin="napari-wsss")  # File > Open
    seg.image_combo.setCurrentText(viewer.layers[0].name)
    seg.scope_combo.setCurrentText("whole slide, full resolution (tiled, saved as zarr)")
    seg.segment()
    wait_for(seg.job, app)
    if seg.last_error is not None:
        print(f"demo: slide segmentation failed: {seg.last_error}", file=sys.stderr)
        return 1
    viewer.reset_view()
    shoot(viewer, app, args.out / "segment_slide.png")
    print(f"demo ran headless (no display): screenshots are in {args.out}/")
    viewer.close()
    return 0




def _run_flow() -> None:
    """Startup-script side: run :func:`flow` once napari's event loop has started; report to the parent."""
    from qtpy.QtCore import QTimer

    opts = json.loads(os.environ[FLOW_ENV])

    def go() -> None:
        import traceback

        try:
            rc, error = flow(opts), None
        except Exception:
            rc, error = 1, traceback.format_exc()
        Path(opts["status"]).write_text(json.dumps({"rc": rc, "error": error}))
        if rc and opts["headless"]:
            import napari

            napari.current_viewer().close()

    def ready() -> bool:  # napari may process events while it still opens the folder and docks the widgets
        import napari

        v = napari.current_viewer()
        return v is not None and _docked(v, "SegmentWidget") is not None and _docked(v, "ReviewWidget") is not None

    timer = QTimer()

    def poll() -> None:
        if ready():
            timer.stop()
            go()

    timer.timeout.connect(poll)
    timer.start(200)
    _run_flow.timer = timer  # type: ignore[attr-defined]  # keep it alive


if os.environ.get(FLOW_ENV):  # napari runs this file as its startup script
    _run_flow()
elif __name__ == "__main__":
    sys.exit(main())
