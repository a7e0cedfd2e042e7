"""README screenshot: a real GlaS colon image segmented by the shipped `sshr-glas`, through napari's own launcher.

    xvfb-run -a python scripts/screenshot_glas.py                 # writes docs/img/segment_glas.png
    python scripts/screenshot_glas.py --image train_14 --out /tmp # another held-out image, elsewhere

Like `make demo`: a validation image (never trained on) is copied to a temporary folder, napari's launcher opens
it and docks Segment and Review from the plugin's manifest, and this file, run as napari's startup script,
picks `sshr-glas (shipped)`, segments and takes the screenshot. The real image is read from
../shared/data/glas and never copied into the repository (only the screenshot is).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLAS = REPO.parent / "shared" / "data" / "glas" / "train"
ENV = "NAPARI_WSSS_GLAS_SHOT"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glas", type=Path, default=GLAS)
    ap.add_argument("--image", default="train_14", help="a validation image of models/sshr-glas (see its card)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = ap.parse_args(argv)
    src = args.glas / "images" / f"{args.image}.png"
    if not src.is_file():
        print(f"No image {src}; pass --glas DIR (see ../shared/data/glas/README.md).", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="napari-wsss-glas-"))
    folder = work / "glas"
    folder.mkdir()
    shutil.copy(src, folder / src.name)
    settings = work / "napari-settings.yaml"
    settings.write_text(f"application:\n  startup_script: {Path(__file__).resolve()}\n")
    status = work / "status.json"
    env = dict(os.environ, NAPARI_CONFIG=str(settings),
               **{ENV: json.dumps({"out": str(args.out.resolve()), "status": str(status)})})
    napari_exe = Path(sys.executable).with_name("napari")
    rc = subprocess.call([str(napari_exe), str(folder), "--plugin", "napari-wsss", "-w", "napari-wsss", "Segment",
                          "Review & correct"], env=env)
    res = json.loads(status.read_text()) if status.is_file() else {"rc": 1, "error": "the flow did not run"}
    if res.get("error"):
        print(res["error"], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return rc or int(res.get("rc", 1))


def _flow(opts: dict) -> int:
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.current_viewer()
    app = QApplication.instance()
    viewer.window._qt_window.resize(1500, 900)
    seg = next(w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "SegmentWidget")
    seg.method_combo.setCurrentText("sshr")
    i = seg.version_combo.findText("sshr-glas (shipped)")
    if i < 0:
        raise RuntimeError("models/sshr-glas is not installed; train it with scripts/train_glas_model.py")
    seg.version_combo.setCurrentIndex(i)
    seg.scope_combo.setCurrentText("all tiles in the stack")
    seg.segment()
    t0 = time.time()
    while seg.job is not None and seg.job.running and time.time() - t0 < 300:
        app.processEvents()
        time.sleep(0.02)
    if seg.last_error is not None:
        raise RuntimeError(f"segmentation failed: {seg.last_error}")
    for ly in viewer.layers:
        if "segmentation" in ly.name:
            ly.opacity = 0.45
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out / "segment_glas.png"), canvas_only=False)
    print(f"wrote {out / 'segment_glas.png'}")
    viewer.close()
    return 0


def _run() -> None:
    from qtpy.QtCore import QTimer

    opts = json.loads(os.environ[ENV])
    timer = QTimer()

    def poll() -> None:
        import traceback

        import napari

        v = napari.current_viewer()
        if v is None or not any(type(w).__name__ == "SegmentWidget" for w in v.window.dock_widgets.values()):
            return
        timer.stop()
        try:
            rc, error = _flow(opts), None
        except Exception:  # noqa: BLE001  (reported to the parent, which exits non-zero)
            rc, error = 1, traceback.format_exc()
            v.close()
        Path(opts["status"]).write_text(json.dumps({"rc": rc, "error": error}))

    timer.timeout.connect(poll)
    timer.start(200)
    _run.timer = timer  # type: ignore[attr-defined]


if os.environ.get(ENV):  # napari runs this file as its startup script
    _run()
elif __name__ == "__main__":
    sys.exit(main())
