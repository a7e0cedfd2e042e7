"""Train the shipped default model (models/sshr-default) on CPU from the synthetic generator's data.

    python scripts/train_default_model.py                      # generate data in a temp folder, train, save
    python scripts/train_default_model.py --data /tmp/syn      # reuse (or create) a generated folder

The recipe: SSHR, small_cnn backbone from scratch, tiles downscaled 224 -> 112 px for training (inference
rescales the same way), poly SGD. The card records the data settings, seed, metrics and this command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from napari_wsss.data.synthetic import write_dataset
from napari_wsss.events import Progress, run_to_end
from napari_wsss.models.card import load_card, save_card
from napari_wsss.training.sshr import train_sshr

REPO = Path(__file__).resolve().parents[1]

RECIPE = dict(backbone="small_cnn", input_size=112, epochs=8, batch_size=16, lr=0.02, kernel_size=7,
              pretrained=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "models" / "sshr-default")
    p.add_argument("--data", type=Path, help="generated dataset folder to reuse/create (default: a temp folder)")
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--difficulty", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def log(p: Progress, t0: float = time.time()) -> None:
    if p.total and (p.step % 50 == 0 or p.step == p.total):
        print(f"[{time.time() - t0:6.0f}s] {p.desc} {p.step}/{p.total} "
              + " ".join(f"{k}={v:.3g}" for k, v in p.metrics.items() if k in ("loss", "mIoU")), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gen_args = dict(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, size=224, seed=args.seed,
                    difficulty=args.difficulty)
    with tempfile.TemporaryDirectory(prefix="wsss-default-") as tmp:
        data = args.data or Path(tmp) / "syn"
        if not (data / "training").is_dir():
            print(f"generating {gen_args} -> {data}", flush=True)
            write_dataset(data, **gen_args)
        command = "python scripts/train_default_model.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        out = run_to_end(train_sshr(data, args.out, overwrite=True, command=command.strip(), seed=args.seed,
                                    num_threads=args.threads, **{**RECIPE, "epochs": args.epochs}), log)
    card = load_card(out)
    card.training_data = ("synthetic generator: napari_wsss.data.synthetic.write_dataset("
                          + ", ".join(f"{k}={v}" for k, v in gen_args.items()) + ")")
    save_card(out, card)
    size_mb = (out / "weights.pt").stat().st_size / 1e6
    test = card.metrics.get("test", {})
    print(f"saved {out} ({size_mb:.2f} MB); train {card.metrics['train_seconds']} s; test mIoU "
          f"{test.get('mIoU', float('nan')):.4f} {test.get('IoU')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
