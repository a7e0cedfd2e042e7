"""How responsive the viewer stays while a segmentation runs, and how long an autosave takes.

Opens napari (under Xvfb when there is no display: `xvfb-run -a python benchmarks/viewer_responsiveness.py`),
loads a folder of generated 224-px tiles, runs the Segment widget over all of them several times while a
10 ms QTimer ticks on the GUI thread, and reports the gaps between ticks (p50 / p95 / max "stall") with the
worker thread (the default) and with ``NAPARI_WSSS_NO_THREADS=1`` (everything on the GUI thread) for
comparison. It then paints a correction and times the autosave of one tile. Results go to the
``responsiveness`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- responsiveness:start -->", "<!-- responsiveness:end -->"


def _model(path: str | None, data: Path, work: Path) -> Path:
    from napari_wsss.resources import default_model_dir

    if path:
        return Path(path)
    if (default_model_dir() / "card.json").is_file():
        return default_model_dir()
    from napari_wsss.events import run_to_end
    from napari_wsss.training.sshr import train_sshr

    print("no shipped model: training a tiny SSHR model (1 epoch) for the measurement")
    return run_to_end(train_sshr(data, work / "tiny-sshr", epochs=1, batch_size=4, input_size=64, kernel_size=3,
                                 pretrained="none", device="cpu"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=12, help="tiles in the folder (224 px)")
    ap.add_argument("--runs", type=int, default=3, help="segmentation runs per mode")
    ap.add_argument("--model", help="model version folder (default: shipped sshr-default, else a tiny one)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_wsss.data.synthetic import write_dataset
    from napari_wsss.gui._responsiveness import StallMeter

    work = Path(tempfile.mkdtemp(prefix="wsss-resp-"))
    data = write_dataset(work / "luad", n_train=8, n_val=0, n_test=args.tiles, size=224, seed=3)
    model = _model(args.model, data / "training", work)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.open(str(data / "test"), plugin="napari-wsss")  # File > Open, the plugin's reader
    # docked as Plugins > napari-wsss does: napari builds them and hands each a PublicOnlyProxy viewer
    _, review = viewer.window.add_plugin_dock_widget("napari-wsss", "Review & correct")
    _, seg = viewer.window.add_plugin_dock_widget("napari-wsss", "Segment")
    seg.add_model_version(model)
    seg.image_combo.setCurrentText("test")
    seg.scope_combo.setCurrentText("all tiles in the stack")

    rows = []
    for mode in ("worker thread", "NAPARI_WSSS_NO_THREADS=1"):
        os.environ["NAPARI_WSSS_NO_THREADS"] = "1" if mode.startswith("NAPARI") else "0"
        for run in range(args.runs):
            for s in review.session.project.items():  # re-segment every tile each run
                review.session.project.set_status(s.key, "unreviewed")
            meter = StallMeter(10).start()
            t0 = time.perf_counter()
            seg.segment()
            while seg.job is not None and seg.job.running:
                app.processEvents()
                time.sleep(0.001)
            app.processEvents()
            dt = time.perf_counter() - t0
            meter.stop()
            if seg.last_error is not None:
                print(f"segmentation failed: {seg.last_error}", file=sys.stderr)
                return 1
            st = meter.stats()
            rows.append((mode, run + 1, dt, st))
            print(f"{mode:26s} run {run + 1}: {dt:5.2f} s  p50 {st['p50']:6.1f} ms  p95 {st['p95']:6.1f} ms  "
                  f"max {st['max']:6.1f} ms  ({st['n']} ticks)")
    os.environ.pop("NAPARI_WSSS_NO_THREADS", None)

    # autosave of one corrected tile (two small PNGs + the JSON index, atomically, on the GUI thread)
    layer = review.labels_layer
    saves = []
    for i in range(5):
        viewer.dims.set_current_step(0, i % args.tiles)
        layer.paint((i % args.tiles, 100, 100), 2)
        t0 = time.perf_counter()
        review.session.flush()
        saves.append((time.perf_counter() - t0) * 1000)
    print(f"autosave of one tile: median {np.median(saves):.1f} ms, max {max(saves):.1f} ms")
    viewer.close()

    section = _section(rows, saves, args, model)
    print(section)
    if not args.no_write:
        _write_section(args.out, section)
        print(f"wrote the responsiveness section of {args.out}")
    return 0


def _section(rows: list, saves: list[float], args: argparse.Namespace, model: Path) -> str:
    import numpy as np
    import torch

    lines = [
        START,
        "## Viewer responsiveness during segmentation",
        "",
        f"`python benchmarks/viewer_responsiveness.py` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Qt under {'Xvfb' if os.environ.get('XAUTHORITY') or not os.environ.get('WAYLAND_DISPLAY') else 'a display'}). "
        f"Segment and Review widgets docked from the manifest (`add_plugin_dock_widget`, PublicOnlyProxy viewer, triton blocked as in a user's napari), Segment scope *all tiles*, {args.tiles} tiles of 224 px, model `{model.name}`; a 10 ms QTimer "
        "ticks on the GUI thread and the gaps between ticks are the stalls a user would feel (no repaint, no "
        "brush stroke). Run 1 of each mode includes adding the result layers; the model is cached after the "
        "first run.",
        "",
        "| mode | run | wall time (s) | ticks | p50 gap (ms) | p95 gap (ms) | max stall (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, run, dt, st in rows:
        lines.append(f"| {mode} | {run} | {dt:.2f} | {st['n']} | {st['p50']:.1f} | {st['p95']:.1f} | {st['max']:.0f} |")
    lines += [
        "",
        f"Autosave of one corrected tile (mask + touched map + index, atomic writes, on the GUI thread): median "
        f"{np.median(saves):.1f} ms, max {max(saves):.1f} ms over {len(saves)} saves.",
        "",
        "The worker keeps the median gap near the 10 ms tick; the remaining stall of a few hundred ms per run comes "
        "when the result is placed, most likely from what runs on the GUI thread then (layer update, writing each "
        "tile's prediction to the annotation project); the first run also loads the model. Moving the prediction "
        "writes into the worker is the next step if it matters. "
        "The test `tests/gui/test_responsiveness.py` asserts the same measurement stays under 1 s per stall on the "
        "3-tile test set.",
        END,
    ]
    return "\n".join(lines)


def _write_section(path: Path, section: str) -> None:
    from napari_wsss.atomic import atomic_write_bytes

    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_bytes(path, text.encode())


if __name__ == "__main__":
    sys.exit(main())
