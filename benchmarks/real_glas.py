"""Real tissue: methods trained from image-level labels on real GlaS colon images, scored on held-out real images.

    python benchmarks/real_glas.py                          # every row (CPU: about an hour on 2 idle cores)
    python benchmarks/real_glas.py --methods sshr mil --epochs 2 --ks 0 5   # a shorter run
    python benchmarks/real_glas.py --no-methods --ks 0 5 10 20              # only the human-in-the-loop curve

Data: ../shared/data/glas/train (85 real H&E images with the pathologists' gland masks; see its README). The
split is by image (``napari-wsss patches``, seed 0): 68 images are cut into 56-px patches that keep only their
image-level labels (gland present, non-gland present); 17 images are held out whole for validation and never
trained on. Scores are the GlaS protocol's: mIoU over gland and non-gland (predicted glass counts as
non-gland), on the 17 held-out images.

1. Methods: SSHR, SSHR + SegMix, multi-stage, MIL, MIL -> IFKD, each small_cnn from scratch with the same patches and epochs,
   beside two trivial answers (every pixel gland / non-gland) and the published image-level results on the GlaS
   test set (not the same images: a reference, not a comparison).
2. Human in the loop: from a base model (``models/sshr-glas`` when present, else the SSHR trained in 1), a
   pathologist corrects k whole real training images (their masks are the corrections) and fine-tunes (IFKD,
   default settings); the untouched 17 held-out images are scored after each k. The synthetic LUAD demo model
   is scored on the same images with tumour epithelium read as gland (its k = 0).
Writes the section between the ``real_glas`` markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_wsss.classes import load_schema
from napari_wsss.events import Progress, run_to_end

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, machine, write_section  # noqa: E402

KEY = "real_glas"
GLAS = REPO.parent / "shared" / "data" / "glas" / "train"
SCHEMA = load_schema("glas")
PATCH = 56  # px: 45 % of GlaS patches carry a single label at this size (see scripts/train_glas_model.py)
BASE = dict(backbone="small_cnn", input_size=PATCH, batch_size=32, lr=0.02, pretrained=False, seed=0,
            glass_min_size=0, schema="glas", hed_scale=0.05, hed_shift=0.05)
METHODS = {
    "sshr": ("sshr", dict(kernel_size=7, calibrate=False)),
    "sshr+segmix": ("sshr", dict(kernel_size=7, calibrate=False, segmix=True)),
    "multistage": ("multistage", dict(kernel_size=7, calibrate=False)),
    "mil": ("mil", dict()),
    # MIL -> IFKD; the validation images are the scored ones here, so they do not drive switching (last kept)
    "ifkd": ("ifkd", dict(use_val=False)),
}
PUBLISHED = [("OEEM (Li et al., MICCAI 2022), ResNet38, GlaS test", 0.776, None),
             ("MAA (Bioengineering 2025), GlaS test", 0.820, 0.901)]


def log(p: Progress, t0: float = time.time()) -> None:
    if p.total and (p.step % 100 == 0 or p.step == p.total):
        m = " ".join(f"{k}={v:.3g}" for k, v in p.metrics.items() if k in ("loss", "mIoU", "held_out"))
        print(f"[{time.time() - t0:6.0f}s] {p.desc} {p.step}/{p.total} {m}", flush=True)


def two_class_scores(pred: list[np.ndarray], truth: list[np.ndarray]) -> dict:
    """GlaS protocol on class maps (gland 0, non-gland 1, glass 2 -> non-gland): mIoU, per-class IoU, Dice."""
    inter, union = np.zeros(2), np.zeros(2)
    tp, fp, fn = np.zeros(2), np.zeros(2), np.zeros(2)
    for p, t in zip(pred, truth):
        p = np.where(p == 2, 1, p)
        t = np.where(t == 2, 1, t)
        for c in range(2):
            a, b = p == c, t == c
            inter[c] += (a & b).sum()
            union[c] += (a | b).sum()
            tp[c] += (a & b).sum()
            fp[c] += (a & ~b).sum()
            fn[c] += (~a & b).sum()
    iou = inter / np.maximum(union, 1)
    d = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return {"mIoU": float(iou.mean()), "IoU": {"gland": float(iou[0]), "non-gland": float(iou[1])},
            "mDice": float(d.mean()), "Dice": {"gland": float(d[0]), "non-gland": float(d[1])}}


def load_val(data: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    from napari_wsss.data.tiles import list_mask_pairs, read_mask, read_rgb

    pairs = list_mask_pairs(data / "val")
    return ([p.image.stem for p in pairs], [read_rgb(p.image) for p in pairs],
            [read_mask(p.mask, SCHEMA) for p in pairs])


def score_model(model: Path, images: list[np.ndarray], truth: list[np.ndarray], map_to_gland=None) -> dict:
    from napari_wsss.inference.segmenter import load_segmenter

    seg = load_segmenter(model, "cpu")
    preds = [seg.predict(im[None]).class_map[0] for im in images]
    if map_to_gland is not None:
        preds = [map_to_gland(p) for p in preds]
    return two_class_scores(preds, truth)


def train_methods(args: argparse.Namespace, data: Path, work: Path, val: tuple) -> list[dict]:
    from napari_wsss.methods import METHODS as REG

    rows = []
    for name in args.methods:
        method, extra = METHODS[name]
        out = work / f"model-{name.replace('+', '-')}"
        t0, c0 = time.perf_counter(), time.process_time()
        run_to_end(REG.get(method).train(data, out, overwrite=True, evaluate=False, num_threads=args.threads,
                                         **{**BASE, "epochs": args.epochs, **extra}), log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = score_model(out, val[1], val[2])
        rows.append({"method": name, **s, "seconds": wall, "cpu_seconds": cpu, "model": str(out)})
        print(f"{name}: val mIoU {s['mIoU']:.4f} {s['IoU']} ({wall:.0f} s)", flush=True)
    return rows


def _draw_order(data: Path, draw: int) -> list[str]:
    """The training images in the order a draw corrects them (nested: k = 5 are the first 5 of k = 10)."""
    split = json.loads((data / "split.json").read_text())
    train_names = sorted((k for k, v in split["images"].items() if v["split"] == "train"),
                         key=lambda n: int(n.split("_")[-1]) if n.split("_")[-1].isdigit() else n)
    rng = np.random.default_rng(draw)
    return [train_names[i] for i in rng.permutation(len(train_names))]


def _hitl_one(job: dict) -> dict:
    """One fine-tune of a human-in-the-loop curve (its own process: one thread, its own project folder)."""
    import torch

    from napari_wsss.data.tiles import read_mask, read_rgb
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.models.card import load_card
    from napari_wsss.store import Project
    from napari_wsss.training.ifkd import finetune

    torch.set_num_threads(job["threads"])
    k, base, glas = job["k"], Path(job["base"]), Path(job["glas"])
    order = _draw_order(Path(job["data"]), job["draw"])
    folder = Path(job["folder"])
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder.parent / f"{folder.name}.wsss", ignore_errors=True)
    folder.mkdir(parents=True)
    in_project = order if job["with_unreviewed"] else order[:k]  # the rest unreviewed: the teacher's tiles
    for n in in_project:
        shutil.copy(glas / "images" / f"{n}.png", folder / f"{n}.png")
    project = Project.open(folder, SCHEMA)
    project.register([{"key": n, "image": f"{n}.png"} for n in in_project])
    seg, card = load_segmenter(base, "cpu"), load_card(base)
    for n in order[:k]:
        pred = seg.predict(read_rgb(folder / f"{n}.png")[None]).class_map[0]
        project.save_prediction(n, pred, card)
        truth = read_mask(glas / "masks" / f"{n}.png", SCHEMA)
        project.save_correction(n, truth, truth != pred)
        project.set_status(n, "accepted")
    t0, c0 = time.perf_counter(), time.process_time()
    out = run_to_end(finetune(project, base, options={"num_threads": job["threads"], "device": "cpu",
                                                      **job["options"]}))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    val = load_val(Path(job["data"]))
    s = score_model(out, val[1], val[2])
    print(f"k={k} draw {job['draw']}{' (+unreviewed)' if job['with_unreviewed'] else ''}: "
          f"val mIoU {s['mIoU']:.4f}, {wall:.0f} s", flush=True)
    return {"k": k, "draw": job["draw"], **s, "seconds": wall, "cpu_seconds": cpu, "corrected": order[:k],
            "held_out": load_card(out).metrics.get("held_out")}


def _earlier_runs(args: argparse.Namespace, with_unreviewed: bool) -> dict[tuple[int, int], dict]:
    """Fine-tunes an earlier run of the same code already measured (``--reuse-runs``), by (k, draw)."""
    if not args.reuse_runs:
        return {}
    prev = json.loads(args.reuse_runs.read_text())
    rows = prev.get("hitl_unrev" if with_unreviewed else "hitl") or []
    return {(r["k"], r["draw"]): r for row in rows for r in row.get("runs", [])}


def hitl(args: argparse.Namespace, data: Path, work: Path, base: Path, val: tuple, with_unreviewed: bool = False
         ) -> list[dict]:
    """k whole real training images corrected to their masks -> IFKD fine-tune -> score the held-out images.

    Each k is run for ``args.draws`` draws of which images are corrected (the gain depends a lot on which), in
    ``args.jobs`` processes; a row is the mean over the draws, with each draw's change beside it.
    """
    from concurrent.futures import ProcessPoolExecutor

    base_scores = score_model(base, val[1], val[2])
    jobs = [{"k": k, "draw": d, "base": str(base), "glas": str(GLAS), "data": str(data), "threads": args.threads,
             "options": args.ft_options, "with_unreviewed": with_unreviewed,
             "folder": str(work / f"hitl-k{k}-d{d}{'-unrev' if with_unreviewed else ''}")}
            for k in args.ks if k > 0
            for d in range(args.unrev_draws if with_unreviewed and args.unrev_draws else args.draws)]
    done = _earlier_runs(args, with_unreviewed)
    todo = [j for j in jobs if (j["k"], j["draw"]) not in done]
    if args.jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(_hitl_one, todo))
    else:
        runs = [_hitl_one(j) for j in todo]
    runs += [{**done[(j["k"], j["draw"])], "reused": True} for j in jobs if (j["k"], j["draw"]) in done]
    rows = [{"k": 0, **base_scores, "seconds": 0.0, "cpu_seconds": 0.0, "changes": [], "runs": []}]
    for k in [k for k in args.ks if k > 0]:
        mine = sorted((r for r in runs if r["k"] == k), key=lambda r: r["draw"])
        mean = lambda key, sub=None: float(np.mean([r[key] if sub is None else r[key][sub] for r in mine]))  # noqa: E731
        cpu = [r["cpu_seconds"] for r in mine if r.get("cpu_seconds") is not None]  # reused runs may lack it
        rows.append({"k": k, "mIoU": mean("mIoU"), "IoU": {c: mean("IoU", c) for c in ("gland", "non-gland")},
                     "seconds": mean("seconds"), "cpu_seconds": float(np.mean(cpu)) if cpu else None,
                     "changes": [r["mIoU"] - base_scores["mIoU"] for r in mine], "runs": mine})
    return rows


def hitl_table(rows: list[dict]) -> list[str]:
    """Markdown rows of a human-in-the-loop curve (means over draws; change against its k = 0 row)."""
    f = lambda v: f"{v:.3f}"  # noqa: E731
    base = rows[0]["mIoU"]
    return ["| corrected images k | gland IoU | non-gland IoU | mIoU | change (mean) | change per draw | "
            "fine-tune wall | CPU time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *(f"| {r['k']} | {f(r['IoU']['gland'])} | {f(r['IoU']['non-gland'])} | {f(r['mIoU'])} | "
              f"{r['mIoU'] - base:+.3f} | {' / '.join(f'{c:+.3f}' for c in r.get('changes', [])) or '-'} | "
              f"{r['seconds']:.0f} s | {_cpu(r)} |" for r in rows)]


def _draws(n: int) -> str:
    return "1 draw" if n == 1 else f"{n} draws"


def _cpu(row: dict) -> str:
    """A row's CPU time; "-" where it was not recorded (runs rebuilt from their saved versions)."""
    return "-" if row.get("cpu_seconds") is None else f"{row['cpu_seconds']:.0f} s"


def luad_demo_row(val: tuple) -> dict | None:
    """The synthetic LUAD demo model on real colon tissue, tumour epithelium read as gland."""
    demo = REPO / "models" / "sshr-default"
    if not (demo / "card.json").is_file():
        return None
    return score_model(demo, val[1], val[2], map_to_gland=lambda p: np.where(p == 0, 0, 1).astype(np.uint8))


def trivial_rows(val: tuple) -> list[tuple[str, dict]]:
    return [(name, two_class_scores([np.full(t.shape, c, np.uint8) for t in val[2]], val[2]))
            for name, c in (("every pixel gland", 0), ("every pixel non-gland", 1))]


def luad_demo_hitl(args: argparse.Namespace, data: Path, work: Path, val: tuple) -> int:
    """(b) of the real-tissue issue: the synthetic LUAD demo, remapped to the gland classes, corrected on real
    images and fine-tuned; the curve a pathologist starting from the demo would see."""
    from napari_wsss.models.remap import remap_version

    base = work / "sshr-default-as-glas"
    remap_version(REPO / "models" / "sshr-default", base, SCHEMA, {"gland": "TE", "non-gland": "TAS"},
                  overwrite=True)
    rows = hitl(args, data, work, base, val)
    lines = ["### Real tissue, human in the loop from the synthetic LUAD demo", "",
             f"Command: `python benchmarks/real_glas.py {shown_args()}`  ",
             f"Machine: {machine()}  ",
             "Base: `models/sshr-default` (trained on generated LUAD-like tiles only) remapped to the gland classes "
             "with `napari-wsss remap --map gland=TE --map non-gland=TAS` (its CAM channels for tumour epithelium "
             "and stroma); k whole real GlaS training images corrected to their masks, IFKD fine-tune with default "
             "settings, the same 17 held-out real images scored.", "",
             *hitl_table(rows)]
    if args.notes:
        lines += ["", args.notes]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(KEY + "_luad_demo", text)
    return 0


def shown_args() -> str:
    """The command line as a reader reruns it (the --notes text and scratch folders left out)."""
    out, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--notes", "--work"):
            skip = True
            continue
        out.append(a)
    return " ".join(out)


def report(res: dict, args: argparse.Namespace) -> str:
    f = lambda v: f"{v:.3f}"  # noqa: E731
    lines = [
        "## Real tissue: GlaS colon images (`benchmarks/real_glas.py`)",
        "",
        f"Command: `python benchmarks/real_glas.py {shown_args()}`".rstrip() + "  ",
        f"Machine: {machine()}  ",
        f"Data: {res['n_train_images']} real GlaS training images as {res['n_patches']} patches of {PATCH} px (stride "
        f"{args.stride}) with image-level labels only; scored on {res['n_val']} other real images held out whole "
        f"(split by image, seed 0: {', '.join(res['val_names'])}). mIoU = mean of gland and non-gland IoU, "
        "predicted glass counted as non-gland (the GlaS protocol). Every network is small_cnn from scratch on "
        f"the CPU, {args.epochs} epochs, input {PATCH} px at the images' own scale (0.62 um/px), H&E stain jitter "
        "0.05; rows without a note predict by the argmax of the class maps (no per-image normalisation, no hole "
        "filling).",
        "",
        "| model | gland IoU | non-gland IoU | mIoU | mDice | train time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in res["trivial"]:
        lines.append(f"| {name} (trivial) | {f(s['IoU']['gland'])} | {f(s['IoU']['non-gland'])} | {f(s['mIoU'])} "
                     f"| {f(s['mDice'])} | - |")
    if res.get("luad_demo"):
        s = res["luad_demo"]
        lines.append(f"| `sshr-default` (synthetic LUAD demo; TE read as gland) | {f(s['IoU']['gland'])} | "
                     f"{f(s['IoU']['non-gland'])} | {f(s['mIoU'])} | {f(s['mDice'])} | - |")
    if res.get("shipped"):
        two_stage = res.get("shipped_method") == "ifkd"
        stages = res.get("shipped_stages") or ([{"stage": 1, "val": res["shipped_stage1"]}]
                                               if res.get("shipped_stage1") else [])
        for st in stages[:-1] if len(stages) > 1 else stages:  # earlier stages as the recipe scored them
            s, n = st["val"], st["stage"]
            what = ("SSHR + SegMix; + per-image CAM normalisation, lumens filled, test-time flips" if n == 1 else
                    f"stage {n - 1} distilled on whole images, patch labels gating its maps; test-time flips")
            lines.append(f"| `sshr-glas` stage {n} alone ({what}; from the shipped card) | {f(s['IoU']['gland'])} | "
                         f"{f(s['IoU']['non-gland'])} | {f(s['mIoU'])} | {f(s['mDice'])} | see its card |")
        s = res["shipped_raw"]
        lines.append(f"| `models/sshr-glas` weights, argmax only{' (no flips)' if two_stage else ''} | "
                     f"{f(s['IoU']['gland'])} | {f(s['IoU']['non-gland'])} | {f(s['mIoU'])} | {f(s['mDice'])} | "
                     "see its card |")
        s = res["shipped"]
        last = len(stages) if len(stages) > 1 else 2
        how = (f"stage {last - 1} distilled on whole images, patch labels gating its maps; test-time flips"
               if two_stage else "+ per-image CAM normalisation, lumens filled, test-time flips")
        lines.append(f"| **`models/sshr-glas` (shipped: {how})** | "
                     f"{f(s['IoU']['gland'])} | {f(s['IoU']['non-gland'])} | **{f(s['mIoU'])}** | {f(s['mDice'])} "
                     "| see its card |")
    for r in res["methods"]:
        lines.append(f"| {r['method']} | {f(r['IoU']['gland'])} | {f(r['IoU']['non-gland'])} | {f(r['mIoU'])} | "
                     f"{f(r['mDice'])} | {r['seconds']:.0f} s ({r['cpu_seconds']:.0f} CPU s) |")
    for name, miou, dice in PUBLISHED:
        lines.append(f"| published: {name} | - | - | {miou:.3f} | {dice if dice else '-'} | - |")
    for rows, where in ((res["hitl"], "the project holds only the k corrected images"),
                        (res.get("hitl_unrev"), "the project holds all the training images, k of them corrected, "
                                                "the rest unreviewed: the teacher's tiles, as in a pathologist's "
                                                "folder")):
        if not rows:
            continue
        lines += ["", f"Human in the loop on real tissue, base: {res['hitl_base']}. k whole real training images "
                  f"corrected to their masks and accepted ({where}), IFKD fine-tune with default settings, the "
                  f"held-out images scored (none of them corrected); {_draws(len(rows[-1].get('runs', [])))} of which "
                  "images are corrected "
                  "(draw d: seed d; nested in k), each row their mean:", "", *hitl_table(rows)]
        reused = sum(bool(r.get("reused")) for row in rows for r in row.get("runs", []))
        if reused:
            lines += ["", f"{reused} of these fine-tunes were measured by an earlier run of the same code "
                      "(`--reuse-runs`), the others by this one."]
    if res.get("methods_from"):
        lines += ["", "The method rows are taken from an earlier run of the same code (`--methods-from`), not retrained "
                  "by this command."]
    lines += ["", res.get("notes", "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global GLAS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glas", type=Path, default=None, help="GlaS training folder (default ../shared/data/glas/train)")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--no-methods", dest="methods", action="store_const", const=[])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--stride", type=int, default=PATCH)
    p.add_argument("--ks", type=int, nargs="*", default=[0, 5, 10, 20])
    p.add_argument("--base", type=Path, help="human-in-the-loop base (default models/sshr-glas)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=3,
                   help="draws of which k images are corrected (seeds 0..N-1); each row is their mean")
    p.add_argument("--unrev-draws", type=int, default=0, help="draws for the --with-unreviewed table (0: --draws)")
    p.add_argument("--jobs", type=int, default=1, help="fine-tunes run at once (processes of --threads each)")
    p.add_argument("--reuse-runs", type=Path, metavar="RESULTS_JSON",
                   help="keep the fine-tunes (same k and draw) an earlier run of the same code measured; run the rest")
    p.add_argument("--methods-from", type=Path, metavar="RESULTS_JSON",
                   help="take the method rows from an earlier run's results.json instead of training them again")
    p.add_argument("--work", type=Path)
    p.add_argument("--notes", default="", help="text appended under the tables")
    p.add_argument("--set", dest="ft_set", action="append", default=[], metavar="KEY=VALUE",
                   help="fine-tuning option for the human-in-the-loop rows (FinetuneConfig field)")
    p.add_argument("--luad-demo-hitl", action="store_true",
                   help="only the human-in-the-loop curve from the synthetic LUAD demo remapped to the gland "
                        "classes (gland <- TE, non-gland <- TAS); its own section")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--with-unreviewed", action="store_true",
                   help="human in the loop also with a project holding every training image, k corrected, the "
                        "rest unreviewed (the teacher's tiles), as a pathologist's folder would")
    args = p.parse_args(argv)
    args.ft_options = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
                       for k, v in (kv.split("=", 1) for kv in args.ft_set)}
    GLAS = args.glas or GLAS
    if not (GLAS / "images").is_dir():
        print(f"skipped: no GlaS images at {GLAS} (see ../shared/data/glas/README.md)")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from napari_wsss.export.patches import make_patches

    work = Path(args.work or tempfile.mkdtemp(prefix="real-glas-"))
    data = work / "patches"
    if not (data / "split.json").is_file():
        run_to_end(make_patches(GLAS, data, SCHEMA, size=PATCH, stride=args.stride, val_fraction=0.2, seed=0))
    split = json.loads((data / "split.json").read_text())
    val = load_val(data)
    res: dict = {"val_names": val[0], "n_val": len(val[0]), "n_patches": split["counts"]["patches"],
                 "n_train_images": split["counts"]["train_images"], "trivial": trivial_rows(val),
                 "luad_demo": luad_demo_row(val), "notes": args.notes}
    if args.luad_demo_hitl:
        return luad_demo_hitl(args, data, work, val)
    shipped = REPO / "models" / "sshr-glas"
    if (shipped / "card.json").is_file():
        res["shipped"] = score_model(shipped, val[1], val[2])
        raw = work / "sshr-glas-argmax"  # the same weights without the two inference options
        shutil.rmtree(raw, ignore_errors=True)
        shutil.copytree(shipped, raw)
        from napari_wsss.models.card import load_card, save_card

        card = load_card(raw)
        card.config.update(cam_norm_quantile=0.0, fill_holes=[], tta_flips=False)
        save_card(raw, card)
        res["shipped_raw"] = score_model(raw, val[1], val[2])
        res["shipped_method"] = card.method
        res["shipped_stage1"] = (card.config.get("teacher_card") or {}).get("metrics", {}).get("val")
        res["shipped_stages"] = card.metrics.get("stages")  # every stage's score, for a recipe of several rounds
    if args.methods_from:
        res["methods"] = json.loads(args.methods_from.read_text())["methods"]
        res["methods_from"] = str(args.methods_from)
    else:
        res["methods"] = train_methods(args, data, work, val)
    base = args.base or (shipped if (shipped / "card.json").is_file() else None)
    if base is None and res["methods"]:
        base = Path(res["methods"][0]["model"])
    res["hitl_base"] = f"`{base.relative_to(REPO) if base.is_relative_to(REPO) else base.name}`" if base else "-"
    res["hitl"] = hitl(args, data, work, base, val) if base is not None and len(args.ks) > 1 else []
    res["hitl_unrev"] = (hitl(args, data, work, base, val, True)
                         if base is not None and len(args.ks) > 1 and args.with_unreviewed else [])
    (work / "results.json").write_text(json.dumps(res, indent=1, default=str))
    text = report(res, args)
    print(text)
    if not args.no_write:
        write_section(KEY, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
