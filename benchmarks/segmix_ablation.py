"""SegMix ablation: SSHR, SSHR + SegMix, SSHR + SegMix + PCM on the same generated data, settings and seeds.

    python benchmarks/segmix_ablation.py                      # generated set in a temp folder
    python benchmarks/segmix_ablation.py --data /tmp/syn-sm   # reuse/create a generated folder
    python benchmarks/segmix_ablation.py --seeds 0 1 --epochs 10 --n-train 800

Every row trains the same SSHR network (backbone, input size, epochs, batch, lr, seed) from scratch; only the
SegMix / PCM switches differ. The PCM row is also scored with PCM switched off at inference (same weights), to
separate the effect of the consistency loss from that of refining CAMs at inference. Reports test mIoU (mean
and per seed), val mIoU and training wall time, and replaces the section between
``<!-- segmix:start -->`` / ``<!-- segmix:end -->`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

from napari_wsss.data.synthetic import write_dataset  # noqa: E402
from napari_wsss.events import Progress, run_to_end  # noqa: E402
from napari_wsss.models.card import load_card  # noqa: E402
from napari_wsss.training.sshr import train_sshr  # noqa: E402

COMMON = dict(backbone="small_cnn", input_size=112, epochs=6, batch_size=16, lr=0.02, kernel_size=7,
              pretrained=False, num_threads=2, device="cpu")
SEGMIX = dict(segmix=True, segmix_patch=56, segmix_ratio=0.25, segmix_min_patch=14, segmix_max_ratio=0.5,
              segmix_patience=2, segmix_window=10)
VARIANTS = {
    "SSHR": {},
    "SSHR + SegMix": SEGMIX,
    "SSHR + SegMix + PCM": {**SEGMIX, "pcm": True},
}
EXTENDED = {  # --extended: what the SegMix rows are made of
    "SSHR + PCM": {"pcm": True},
    "SSHR + SegMix, no feedback (56 px / 0.25 throughout)": {**SEGMIX, "segmix_patience": 10**6},
    "SSHR + SegMix, soft labels": {**SEGMIX, "segmix_labels": "soft"},
    # the first implementation: fixed 10-batch windows, one signal for both schedulers, every batch mixed
    "SSHR + SegMix, batch pacing (before)": {**SEGMIX, "segmix_pacing": "batches", "segmix_ratio_signal": "loss",
                                             "segmix_prob": 1.0},
}


def log(p: Progress, t0: float = time.time()) -> None:
    if p.total and p.desc.startswith("SSHR epoch") and (p.step % 25 == 0 or p.step == p.total):
        extra = f" patch={p.metrics['segmix_patch']:.0f} ratio={p.metrics['segmix_ratio']:.3f}" \
            if "segmix_patch" in p.metrics else ""
        print(f"[{time.time() - t0:6.0f}s] {p.desc} {p.step}/{p.total} loss={p.metrics.get('loss', float('nan')):.3g}"
              f"{extra}", flush=True)


def pcm_off_scores(model_dir: Path, data: Path) -> dict:
    """Test scores of a PCM-trained model with PCM switched off at inference (same weights)."""
    from napari_wsss.evaluation import evaluate_folder
    from napari_wsss.inference.predict import load_sshr

    card = load_card(model_dir)
    card.config["pcm_inference"] = False
    seg = load_sshr(model_dir, card, "cpu")
    return run_to_end(evaluate_folder(seg, data / "test"))


def run(data: Path, work: Path, seeds: list[int], options: dict, variants: dict,
        partial: Path | None = None) -> dict:
    """Train every variant for every seed; with ``partial``, rewrite the numbers so far after each model."""
    res: dict = {}
    for seed in seeds:
        for name, extra in variants.items():
            out = work / f"{name.replace(' ', '').replace('+', '_')}-s{seed}"
            print(f"== {name}, seed {seed}", flush=True)
            run_to_end(train_sshr(data, out, overwrite=True, **options, **extra, seed=seed), log)
            card = load_card(out)
            row = {"test_mIoU": card.metrics["test"]["mIoU"], "val_mIoU": card.metrics["val"]["mIoU"],
                   "test_IoU": card.metrics["test"]["IoU"], "train_seconds": card.metrics["train_seconds"],
                   "threshold": card.config.get("threshold"), "segmix": card.metrics.get("segmix")}
            res.setdefault(name, []).append(row)
            if extra.get("pcm"):
                off = pcm_off_scores(out, data)
                res.setdefault(name + " (PCM off at inference)", []).append(
                    {"test_mIoU": off["mIoU"], "val_mIoU": float("nan"), "test_IoU": off["IoU"],
                     "train_seconds": card.metrics["train_seconds"], "threshold": card.config.get("threshold"),
                     "segmix": None})
            if partial is not None:
                partial.write_text(json.dumps(res, indent=2))
    return res


def render(res: dict, seeds: list[int], gen_args: dict, options: dict, wall: float, load: float) -> str:
    classes = ["TE", "NEC", "LYM", "TAS"]
    lines = ["## SegMix ablation (SSHR)", "",
             f"Measured by `python benchmarks/segmix_ablation.py` on {machine()}; CPU only, the 2 cores were shared "
             f"with other developers' jobs (1-min load average {load:.1f} at the start), so training times are noisy "
             "(the same run took 18x longer under load) and only their ratio within one run means anything. "
             "Same generated data "
             f"({', '.join(f'{k}={v}' for k, v in gen_args.items())}), same settings and seed(s) {seeds} for every "
             f"row; metrics over the 4 tissue classes. Whole run {wall / 60:.0f} min.", "",
             "| variant | test mIoU (mean) | per seed | " + " | ".join(f"IoU {c}" for c in classes)
             + " | val mIoU | training time (s) | final SegMix patch / ratio |",
             "|---|---|---" + "|---" * len(classes) + "|---|---|---|"]
    base = statistics.mean(r["test_mIoU"] for r in res["SSHR"])
    for name, rows in res.items():
        m = statistics.mean(r["test_mIoU"] for r in rows)
        per = ", ".join(f"{r['test_mIoU']:.4f}" for r in rows)
        ious = " | ".join(f"{statistics.mean(r['test_IoU'].get(c, float('nan')) for r in rows):.4f}" for c in classes)
        val = statistics.mean(r["val_mIoU"] for r in rows)
        secs = statistics.mean(r["train_seconds"] for r in rows)
        sm = rows[-1]["segmix"]
        smtxt = f"{sm['patch']} px / {sm['ratio']:.3f} ({len(sm['history']) - 1} steps)" if sm else "-"
        lines.append(f"| {name} | {m:.4f} ({m - base:+.4f}) | {per} | {ious} | "
                     f"{'-' if val != val else f'{val:.4f}'} | {secs:.0f} | {smtxt} |")
    lines += ["", f"- Settings (all rows): {json.dumps(options)}; SegMix: {json.dumps(SEGMIX)}; PCM: relu affinity "
              "of the 4 stride-8 feature maps, consistency loss weight 0.2, refined CAMs at inference unless stated.",
              "- The gating threshold is picked on val per model when the trainer calibrates it (card `threshold`).",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="generated dataset folder to reuse/create (default: temp)")
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--epochs", type=int, default=COMMON["epochs"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--json", type=Path, help="also write raw numbers as JSON")
    p.add_argument("--extended", action="store_true", help="also SSHR+PCM, SegMix without feedback, soft labels")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args(argv)
    options = {**COMMON, "epochs": args.epochs}
    gen_args = dict(n_train=args.n_train, n_val=20, n_test=60, size=224, seed=0, difficulty=0.5)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    variants = {**VARIANTS, **(EXTENDED if args.extended else {})}
    with tempfile.TemporaryDirectory(prefix="wsss-segmix-") as tmp:
        data = args.data or Path(tmp) / "syn"
        if not (data / "training").is_dir():
            write_dataset(data, **gen_args)
        res = run(data, Path(tmp), args.seeds, options, variants, args.json)
    text = render(res, args.seeds, gen_args, options, time.perf_counter() - t0, load)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if not args.no_write:
        write_section("segmix", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
