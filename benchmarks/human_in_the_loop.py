"""Human in the loop: how much do k corrected tiles improve a model, and how long does fine-tuning take?

    python benchmarks/human_in_the_loop.py                      # shipped models/sshr-default if present
    python benchmarks/human_in_the_loop.py --base path/to/version
    xvfb-run -a python benchmarks/human_in_the_loop.py --stall  # also: viewer event-loop stalls while it runs

A simulated pathologist: starting from the base model, the tiles of a generated "slide folder" are segmented
and stored in an annotation project; the first k tiles are corrected with their ground truth and accepted
(k = 0, 5, 10, 20); IFKD fine-tunes the base on them (napari_wsss.training.ifkd, default settings except the
thread count) and the new version is scored on generated test tiles no one touched and on the folder's
never-corrected tiles. k = 0 is the base model (fine-tuning needs at least one corrected tile). Two folders by
default (``--difficulties 0.5 0.9``): one like the base's training data, one harder (another lab's slides). Writes the section between the markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.synthetic import generate_tile, write_dataset
from napari_wsss.data.tiles import read_rgb
from napari_wsss.evaluation import evaluate
from napari_wsss.events import Progress, run_to_end
from napari_wsss.models.card import load_card
from napari_wsss.store import Project

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, machine, write_section  # noqa: E402

KEY = "human_in_the_loop"
QUICK_BASE = dict(backbone="small_cnn", input_size=112, epochs=4, batch_size=16, lr=0.02, kernel_size=7,
                  pretrained=False, seed=0, num_threads=2)


def log(p: Progress, t0: float = time.time()) -> None:
    if p.total and (p.step % 25 == 0 or p.step == p.total):
        m = " ".join(f"{k}={v:.3g}" for k, v in p.metrics.items() if k in ("loss", "held_out"))
        print(f"[{time.time() - t0:6.0f}s] {p.desc} {p.step}/{p.total} {m}", flush=True)


def make_pool(folder: Path, n: int, seed: int, size: int = 224, difficulty: float = 0.5) -> dict[str, np.ndarray]:
    """Tiles a pathologist would open (no labels in the names) and their ground truth masks."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        tile = generate_tile(rng, size=size, difficulty=difficulty)
        Image.fromarray(tile.image).save(folder / f"tile{i:03d}.png")
        truth[f"tile{i:03d}"] = tile.mask
    return truth


def segmented_project(folder: Path, base: Path) -> Project:
    """The project after the Segment widget ran the base model on every tile."""
    from napari_wsss.inference.segmenter import load_segmenter

    seg = load_segmenter(base, "cpu")
    project = Project.open(folder, LUAD_HISTOSEG)
    files = sorted(folder.glob("*.png"))
    project.register([{"key": f.stem, "image": f.name} for f in files])
    card = load_card(base)
    for f in files:
        project.save_prediction(f.stem, seg.predict(read_rgb(f)[None]).class_map[0], card)
    return project


def correct(project: Project, truth: dict[str, np.ndarray], k: int) -> None:
    """The pathologist paints the first k tiles to their truth (touched = changed pixels) and accepts them."""
    for key in sorted(truth)[:k]:
        pred = project.load_prediction(key)
        project.save_correction(key, truth[key], truth[key] != pred)
        project.set_status(key, "accepted")


def score_tiles(model: Path, images: np.ndarray, masks: np.ndarray) -> float:
    """mIoU of a model version on in-memory tiles (the folder's never-corrected tiles)."""
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.ops.metrics import confusion_matrix, scores_from_confusion

    pred = load_segmenter(model, "cpu").predict(images, batch_size=16).class_map
    return float(scores_from_confusion(confusion_matrix(pred, masks, LUAD_HISTOSEG.n_classes))["mIoU"])


def base_model(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    if args.base is not None:
        return args.base, args.base_note or f"`{args.base}`"
    shipped = REPO / "models" / "sshr-default"
    if (shipped / "card.json").is_file():
        return shipped, "the shipped `models/sshr-default`"
    from napari_wsss.training.sshr import train_sshr

    data = work / "train-data"
    if not (data / "training").is_dir():
        write_dataset(data, n_train=args.n_train, n_val=0, n_test=0, seed=11)
    t0 = time.time()
    base = run_to_end(train_sshr(data, work / "quick-sshr", overwrite=True, evaluate=False, **QUICK_BASE), log)
    return base, (f"a quickly trained SSHR (`models/sshr-default` did not exist yet): small_cnn, 112 px, "
                  f"{QUICK_BASE['epochs']} epochs on {args.n_train} generated tiles ({time.time() - t0:.0f} s)")


def run_scenario(args: argparse.Namespace, work: Path, base: Path, difficulty: float) -> dict:
    """One simulated folder at ``difficulty``: k = 0, 5, 10, 20 corrected tiles -> fine-tune -> scores."""
    from napari_wsss.training.ifkd import finetune

    tag = f"d{difficulty:g}"
    data = work / f"data-{tag}"
    if not (data / "test" / "img").is_dir():
        write_dataset(data, n_train=0, n_val=0, n_test=args.n_test, seed=11, difficulty=difficulty)
    pool_src = work / f"pool-src-{tag}"
    shutil.rmtree(pool_src, ignore_errors=True)
    truth = make_pool(pool_src, args.pool, seed=23, difficulty=difficulty)
    keys = sorted(truth)[max(args.ks):]  # never corrected at any k: the tiles "use this version" re-segments
    un_images = np.stack([read_rgb(pool_src / f"{k}.png") for k in keys])
    un_masks = np.stack([truth[k] for k in keys])
    base_scores = evaluate(base, data / "test", device="cpu")
    rows = [{"k": 0, "mIoU": base_scores["mIoU"], "IoU": base_scores["IoU"], "seconds": 0.0, "held_out": None,
             "unreviewed": score_tiles(base, un_images, un_masks)}]
    print(f"[{tag}] base test mIoU {base_scores['mIoU']:.4f}, unreviewed {rows[0]['unreviewed']:.4f}", flush=True)
    for k in args.ks:
        if k == 0:
            continue
        folder = work / f"pool-{tag}-k{k}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(folder.parent / f"{folder.name}.wsss", ignore_errors=True)
        shutil.copytree(pool_src, folder)
        project = segmented_project(folder, base)
        correct(project, truth, k)
        t0, c0 = time.perf_counter(), time.process_time()
        out = run_to_end(finetune(project, base, options={"num_threads": args.threads, "device": "cpu",
                                                          **args.options}), log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        scores = evaluate(out, data / "test", device="cpu")
        card = load_card(out)
        rows.append({"k": k, "mIoU": scores["mIoU"], "IoU": scores["IoU"], "seconds": wall, "cpu_seconds": cpu,
                     "held_out": card.metrics["held_out"], "epochs": card.metrics["epochs_run"],
                     "switches": card.metrics["switches"], "unreviewed": score_tiles(out, un_images, un_masks)})
        print(f"[{tag}] k={k}: test mIoU {scores['mIoU']:.4f} (base {base_scores['mIoU']:.4f}), unreviewed "
              f"{rows[-1]['unreviewed']:.4f}, {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        if k == args.spread_k:  # the same corrections, other fine-tune seeds: how much is noise?
            spread = [(scores["mIoU"], rows[-1]["unreviewed"])]
            for seed in args.seeds:
                o = run_to_end(finetune(project, base, f"seed{seed}", options={
                    "num_threads": args.threads, "device": "cpu", **args.options, "seed": seed}))
                spread.append((evaluate(o, data / "test", device="cpu")["mIoU"], score_tiles(o, un_images, un_masks)))
            rows[-1]["spread"] = spread
    return {"difficulty": difficulty, "rows": rows, "n_unreviewed": len(keys), "first_unreviewed": max(args.ks)}


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="hitl-"))
    base, base_note = base_model(args, work)
    scenarios = [run_scenario(args, work, base, d) for d in args.difficulties]
    stall = None
    if args.stall:
        d = args.difficulties[0]
        stall = measure_stall(work, base, make_pool(work / f"pool-src-d{d:g}", args.pool, seed=23, difficulty=d),
                              args, work / f"pool-src-d{d:g}")
    return {"scenarios": scenarios, "base_note": base_note, "stall": stall, "work": str(work)}


def measure_stall(work: Path, base: Path, truth: dict, args: argparse.Namespace, pool_src: Path) -> dict:
    """Run the k=10 fine-tune from the Fine-tune widget in a napari viewer and time the event loop's gaps."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_wsss.gui._responsiveness import StallMeter

    folder = work / "pool-stall"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder.parent / f"{folder.name}.wsss", ignore_errors=True)
    shutil.copytree(pool_src, folder)
    project = segmented_project(folder, base)
    correct(project, truth, 10)
    viewer = napari.Viewer(show=True)
    _, w = viewer.window.add_plugin_dock_widget("napari-wsss", "Fine-tune")  # as the Plugins menu does
    w.set_project(project.root)
    w.add_base_version(base)
    app = QApplication.instance()
    meter = StallMeter().start()
    t0 = time.perf_counter()
    w.start()
    while w.job is None or w.job.running:
        app.processEvents()
        time.sleep(0.002)
    stats = meter.stop().stats()
    stats["seconds"] = time.perf_counter() - t0
    stats["error"] = repr(w.last_error) if w.last_error else None
    viewer.close()
    print(f"event-loop gaps while fine-tuning in the viewer: {stats}", flush=True)
    return stats


SCENARIO_NOTES = {
    0.5: "generator difficulty 0.5, the distribution the shipped model was trained on",
    0.9: ("generator difficulty 0.9: stronger stain variation, blur and noise and more alike morphologies, "
          "a stand-in for slides from another lab that the model has not seen"),
}


def scenario_table(sc: dict, names: list[str]) -> list[str]:
    lines = ["| k corrected | test mIoU | " + " | ".join(f"IoU {n}" for n in names)
             + " | unreviewed tiles mIoU | held-out mIoU before -> after | epochs (switches) | fine-tune wall s "
             "| CPU s |",
             "|---:|---:|" + "---:|" * len(names) + "---:|---|---|---:|---:|"]
    for r in sc["rows"]:
        held = r["held_out"]
        hs = (f"{held['before']:.3f} -> {held['after']:.3f} ({held['n_tiles']} tiles)"
              if held and held.get("n_tiles") else "–")
        ep = f"{r['epochs']} ({r['switches']})" if "epochs" in r else "–"
        lines.append(f"| {r['k']} | {r['mIoU']:.4f} | " + " | ".join(f"{r['IoU'][n]:.3f}" for n in names)
                     + f" | {r['unreviewed']:.4f} | {hs} | {ep} | {r['seconds']:.0f} | {r.get('cpu_seconds', 0):.0f} |")
    return lines


def report(res: dict, args: argparse.Namespace) -> str:
    names = LUAD_HISTOSEG.foreground_names
    cmd = "python benchmarks/human_in_the_loop.py" + (" --stall" if args.stall else "")
    lines = [
        "## Human in the loop: fine-tuning from k corrected tiles (IFKD)",
        "",
        f"`{cmd}` (under `xvfb-run -a` for `--stall`). Base model: " + res["base_note"] + ". A simulated "
        f"pathologist opens a folder of {args.pool} generated 224 px tiles, corrects the first k to their ground "
        "truth and accepts them; the other tiles stay unreviewed (the teacher labels them). IFKD fine-tuning with "
        "its default settings (`napari_wsss.training.ifkd.FinetuneConfig`"
        + (f", with {args.options}" if args.options else "") + "; the student a segmentation network on the base's "
        "backbone; 20 % of the corrected tiles held out for the teacher/student switch and the held-out score, the "
        f"last epoch kept). Scored on {args.n_test} generated test tiles no one touched "
        "(same difficulty as the folder) and on the folder's never-corrected tiles (the ones \"use this version\" "
        "re-segments). k = 0 is the base model.",
    ]
    for sc in res["scenarios"]:
        note = SCENARIO_NOTES.get(sc["difficulty"], f"generator difficulty {sc['difficulty']:g}")
        lines += ["", f"**Folder: {note}.** Unreviewed tiles: tiles {sc['first_unreviewed']}-"
                  f"{sc['first_unreviewed'] + sc['n_unreviewed'] - 1} of the folder ({sc['n_unreviewed']} tiles, "
                  "never corrected at any k).", "", *scenario_table(sc, names)]
        for r in sc["rows"]:
            if r.get("spread"):
                base_row = sc["rows"][0]
                t = [a - base_row["mIoU"] for a, _ in r["spread"]]
                u = [b - base_row["unreviewed"] for _, b in r["spread"]]
                lines += ["", f"k = {r['k']} repeated with fine-tune seeds {args.options.get('seed', 0)} and "
                          f"{', '.join(map(str, args.seeds))} (the seed picks which corrected tiles are held out and "
                          f"the batch order): test mIoU change {np.mean(t):+.4f} on average (from {min(t):+.4f} to "
                          f"{max(t):+.4f}), never-corrected tiles {np.mean(u):+.4f} (from {min(u):+.4f} to "
                          f"{max(u):+.4f})."]
    if res["stall"]:
        s = res["stall"]
        lines += ["", f"Viewer responsiveness while the k = 10 fine-tune ran from the Fine-tune widget (napari viewer "
                  f"under Xvfb, 10 ms QTimer): longest event-loop stall {s['max']:.0f} ms, p95 {s['p95']:.0f} ms, "
                  f"p50 {s['p50']:.0f} ms over {s['seconds']:.0f} s."]
    lines += ["", f"Machine: {machine()}. CPU s is this process's own CPU time."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, help="model version to start from (default: models/sshr-default, else a "
                                             "quickly trained SSHR)")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 5, 10, 20])
    p.add_argument("--pool", type=int, default=60, help="tiles in the simulated folder (k of them corrected)")
    p.add_argument("--n-train", type=int, default=400, help="generated training tiles (for the quick base model)")
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--difficulties", type=float, nargs="+", default=[0.5, 0.9],
                   help="generator difficulty of each simulated folder (and its test tiles)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spread-k", type=int, default=10, help="k whose fine-tune is repeated with other seeds")
    p.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3], help="extra fine-tune seeds at --spread-k")
    p.add_argument("--work", help="work folder (default: a temp folder)")
    p.add_argument("--stall", action="store_true", help="also measure the viewer's event-loop stalls (needs a display)")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    p.add_argument("--base-note", help="how to describe --base in the report")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fine-tune option (repeatable)")
    args = p.parse_args(argv)
    from napari_wsss.commands.train import parse_set

    args.options = parse_set(args.set)
    res = run(args)
    body = report(res, args)
    print(body)
    if not args.no_write:
        write_section(KEY, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
