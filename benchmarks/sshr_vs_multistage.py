"""SSHR vs the multi-stage baseline: test mIoU, per-class IoU and training wall time of every stage.

    python benchmarks/sshr_vs_multistage.py                         # generated set (temp folder)
    python benchmarks/sshr_vs_multistage.py --data /tmp/syn         # reuse/create a generated folder
    python benchmarks/sshr_vs_multistage.py --luad /data/LUAD-HistoSeg   # also on a real dataset
    python benchmarks/sshr_vs_multistage.py --reuse-sshr models/sshr-default   # SSHR already trained on
                                                                     # the same generated set (its card)

Both methods share the backbone, input size, epochs per training stage, batch size, learning rate and seed;
the baseline's CAM network is SSHR's network without HFRM. Results replace the section between the
markers below in docs/benchmarks.md (other sections are left alone).
"""

from __future__ import annotations

import argparse
import os
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_wsss.atomic import atomic_write_bytes
from napari_wsss.data.synthetic import write_dataset
from napari_wsss.events import Progress, run_to_end
from napari_wsss.models.card import load_card
from napari_wsss.training.multistage import train_multistage
from napari_wsss.training.sshr import train_sshr

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- sshr_vs_multistage:start -->", "<!-- sshr_vs_multistage:end -->"
COMMON = dict(backbone="small_cnn", input_size=112, epochs=8, batch_size=16, lr=0.02, kernel_size=7,
              pretrained=False, seed=0, num_threads=2)


def log(p: Progress, t0: float = time.time()) -> None:
    if p.total and (p.step % 100 == 0 or p.step == p.total):
        print(f"[{time.time() - t0:6.0f}s] {p.desc} {p.step}/{p.total} loss={p.metrics.get('loss', float('nan')):.3g}",
              flush=True)


def run_pair(data: Path, work: Path, reuse_sshr: Path | None, options: dict) -> dict:
    """Train (or reuse) SSHR and train the baseline on ``data``; return both cards' numbers."""
    if reuse_sshr is not None:
        sshr_dir = reuse_sshr
    else:
        sshr_dir = run_to_end(train_sshr(data, work / "sshr", overwrite=True, **options), log)
    ms_dir = run_to_end(train_multistage(data, work / "multistage", overwrite=True, **options), log)
    out = {}
    for name, d in (("SSHR", sshr_dir), ("multi-stage", ms_dir)):
        card = load_card(d)
        out[name] = {"test": card.metrics.get("test", {}), "val": card.metrics.get("val", {}),
                     "train_seconds": card.metrics["train_seconds"],
                     "stage_seconds": card.metrics.get("stage_seconds", {"cam+hfrm": card.metrics["train_seconds"]}),
                     "config": {k: card.config.get(k) for k in ("backbone", "input_size", "epochs", "batch_size", "lr")}}
    return out


def render(title: str, res: dict, classes: list[str]) -> str:
    s, m = res["SSHR"], res["multi-stage"]
    lines = [f"### {title}", "",
             "| method | test mIoU | " + " | ".join(f"IoU {c}" for c in classes)
             + " | FwIoU | mDice | pixel acc | val mIoU | training wall time (s) |",
             "|---|---" + "|---" * len(classes) + "|---|---|---|---|---|"]
    for name, r in (("SSHR", s), ("multi-stage", m)):
        t = r["test"]
        stages = " + ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items())
        lines.append(f"| {name} | {t.get('mIoU', float('nan')):.4f} | "
                     + " | ".join(f"{t.get('IoU', {}).get(c, float('nan')):.4f}" for c in classes)
                     + f" | {t.get('FwIoU', float('nan')):.4f} | {t.get('mDice', float('nan')):.4f} | "
                     f"{t.get('pixel_accuracy', float('nan')):.4f} | {r['val'].get('mIoU', float('nan')):.4f} | "
                     f"{r['train_seconds']:.0f} ({stages}) |")
    ratio = m["train_seconds"] / max(1e-9, s["train_seconds"])
    d_miou = s["test"].get("mIoU", 0) - m["test"].get("mIoU", 0)
    lines += ["", f"- Time ratio multi-stage / SSHR: **{ratio:.2f}x**; SSHR - multi-stage test mIoU: **{d_miou:+.4f}**.",
              f"- Settings (both): {json.dumps(s['config'])}; the baseline trains its segmentation network for as "
              "many epochs as its CAM network.", ""]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md, atomically."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{START}\n{text.rstrip()}\n{END}\n"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END) + 1 :]
    else:
        new = old.rstrip() + "\n\n" + block
    atomic_write_bytes(path, new.encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="generated dataset folder to reuse/create (default: temp)")
    p.add_argument("--luad", type=Path, help="a LUAD-HistoSeg folder (training/, val/, test/) to run on as well")
    p.add_argument("--reuse-sshr", type=Path, help="SSHR model version already trained on --data with these settings")
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=COMMON["epochs"])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, help="also write raw numbers as JSON")
    p.add_argument("--work", type=Path, help="keep the trained models here (default: a temp folder, removed)")
    args = p.parse_args(argv)
    load_start = os.getloadavg()[0]
    options = {**COMMON, "epochs": args.epochs}
    gen_args = dict(n_train=args.n_train, n_val=40, n_test=100, size=224, seed=0, difficulty=0.5)
    sections, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="wsss-bench-") as tmp:
        data = args.data or Path(tmp) / "syn"
        if not (data / "training").is_dir():
            write_dataset(data, **gen_args)
        work = args.work or Path(tmp)
        res = run_pair(data, work, args.reuse_sshr, options)
        raw["synthetic"] = res
        sections.append(render(f"Generated set ({', '.join(f'{k}={v}' for k, v in gen_args.items())})",
                               res, ["TE", "NEC", "LYM", "TAS"]))
        if args.luad:
            res = run_pair(args.luad, work / "luad", None, options)
            raw["luad"] = res
            sections.append(render(f"LUAD-HistoSeg ({args.luad})", res, ["TE", "NEC", "LYM", "TAS"]))
    header = (f"## SSHR vs multi-stage baseline\n\nMeasured by `benchmarks/sshr_vs_multistage.py` on "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU only, "
              f"torch {torch.__version__}; 1-min load average {load_start:.1f} at the start and "
              f"{os.getloadavg()[0]:.1f} at the end (2 cores: above ~2 means other jobs shared the CPU and times are "
              "noisy). Command: `python benchmarks/sshr_vs_multistage.py "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`. Metrics over the 4 tissue classes "
              "(ground-truth background ignored).\n")
    write_section(header + "\n" + "\n".join(sections), args.out)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
