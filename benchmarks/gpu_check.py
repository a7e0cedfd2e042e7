"""GPU checks: does bf16 autocast inference agree with CPU float32, and how fast does the default recipe train?

Run on a machine with CUDA: ``python benchmarks/gpu_check.py`` (``--quick`` for a smoke run). Writes the
``gpu_check`` section of docs/benchmarks.md.

1. Agreement: the shipped ``models/sshr-default`` segments generated test tiles (seed 7, never trained on) on
   the CPU in float32, on CUDA in float32 (``NAPARI_WSSS_NO_AUTOCAST=1``) and on CUDA with the default bf16
   autocast; reports pixel agreement with the CPU class maps, mIoU against the generator's masks and
   end-to-end tiles/s.
2. Training: ``scripts/train_default_model.py``'s recipe (SSHR, small_cnn, 1500 generated tiles) on CUDA;
   wall time and test mIoU next to the shipped card's CPU figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, machine, write_section  # noqa: E402

GPU = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu" only to smoke-test this script without a GPU


def agreement(n_tiles: int) -> dict:
    import torch

    from napari_wsss.data.synthetic import generate_tile
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.ops.metrics import confusion_matrix, scores_from_confusion
    from napari_wsss.resources import default_model_dir

    rng = np.random.default_rng(7)
    tiles = [generate_tile(rng) for _ in range(n_tiles)]
    images = np.stack([t.image for t in tiles])
    masks = np.stack([t.mask for t in tiles])
    out: dict = {}
    runs = [("CPU float32", "cpu", "1"), ("CUDA float32", GPU, "1"), ("CUDA bf16 autocast", GPU, "0")]
    for name, device, no_autocast in runs:
        os.environ["NAPARI_WSSS_NO_AUTOCAST"] = no_autocast
        seg = load_segmenter(default_model_dir(), torch.device(device))
        n_classes = seg.card.class_schema.n_classes
        seg.predict(images[:32], batch_size=32)  # warm-up (cuDNN autotuning, lazy init)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        pred = seg.predict(images, batch_size=32).class_map
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        cm = confusion_matrix(pred, masks, n_classes)
        out[name] = {"pred": pred, "mIoU": scores_from_confusion(cm)["mIoU"], "tiles_s": n_tiles / secs}
    os.environ.pop("NAPARI_WSSS_NO_AUTOCAST", None)
    ref = out["CPU float32"]["pred"]
    for v in out.values():
        v["agree"] = float((v.pop("pred") == ref).mean())
    return out


def training(n_train: int, epochs: int) -> dict:
    sys.path.insert(0, str(REPO / "scripts"))
    from train_default_model import RECIPE

    from napari_wsss.data.synthetic import write_dataset
    from napari_wsss.events import run_to_end
    from napari_wsss.models.card import load_card
    from napari_wsss.resources import default_model_dir
    from napari_wsss.training.sshr import train_sshr

    with tempfile.TemporaryDirectory(prefix="wsss-gpu-") as tmp:
        t0 = time.perf_counter()
        data = write_dataset(Path(tmp) / "syn", n_train=n_train, n_val=40, n_test=100, size=224, seed=0,
                             difficulty=0.5)
        gen_s = time.perf_counter() - t0
        out = run_to_end(train_sshr(data, Path(tmp) / "model", overwrite=True, seed=0, device=GPU,
                                    **{**RECIPE, "epochs": epochs}))
        card = load_card(out)
    shipped = load_card(default_model_dir())
    return {"gen_s": gen_s, "train_s": card.metrics["train_seconds"],
            "test_mIoU": card.metrics.get("test", {}).get("mIoU", float("nan")),
            "cpu_train_s": shipped.metrics.get("train_seconds"),
            "cpu_test_mIoU": shipped.metrics.get("test", {}).get("mIoU", float("nan")),
            "n_train": n_train, "epochs": epochs}


def render(agree: dict, train: dict | None, cmd: str) -> str:
    rows = [f"| {k} | {100 * v['agree']:.2f} % | {v['mIoU']:.4f} | {v['tiles_s']:.0f} |" for k, v in agree.items()]
    lines = ["## GPU checks: bf16 inference agreement and training time", "",
             f"Command: `{cmd}`  ", f"Machine: {machine()}", "",
             "Shipped `models/sshr-default` on generated 224 px test tiles (seed 7), end to end through "
             "`Segmenter.predict` at batch 32:", "",
             "| run | pixels agreeing with CPU float32 | mIoU vs generator masks | tiles/s |",
             "| --- | --- | --- | --- |", *rows]
    if train:
        lines += ["", f"Default recipe (`scripts/train_default_model.py`: SSHR, small_cnn, {train['n_train']} "
                  f"generated tiles, {train['epochs']} epochs) on CUDA: training {train['train_s']:.0f} s "
                  f"(data generation {train['gen_s']:.0f} s beside it), test mIoU {train['test_mIoU']:.4f}. "
                  f"The shipped card (same recipe on the 2-core CPU): {train['cpu_train_s']} s, test mIoU "
                  f"{train['cpu_test_mIoU']:.4f}. Same seed; GPU kernels are not bit-identical to the CPU's, "
                  "so the two models differ slightly."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="few tiles, one short training (smoke run)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import torch

    if GPU.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check needs CUDA: no GPU is visible to torch on this machine.", file=sys.stderr)
        return 2
    agree = agreement(32 if args.quick else 200)
    print(agree, flush=True)
    train = None if args.no_train else training(64 if args.quick else 1500, 1 if args.quick else 8)
    print(train, flush=True)
    cmd = ("python benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:])).strip()
    text = render(agree, train, cmd)
    print(text)
    if not args.no_write:
        write_section("gpu_check", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
