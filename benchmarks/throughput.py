"""Inference throughput, fraction of machine peak, whole-slide wall time and peak RSS, training step time.

Run: ``.venv/bin/python benchmarks/throughput.py`` (add ``--quick`` for a smoke run, ``--slides 20000 10000``
to choose slide sizes). Writes the ``throughput`` section of docs/benchmarks.md (``throughput_gpu`` when CUDA
is present). The model is the shipped ``models/sshr-default`` when it exists (speed does not depend on the
weights); tiles come from the project's synthetic generator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "napari_wsss_bench"


def load_model(device: str):  # noqa: ANN201
    """The shipped default SSHR model, or the same architecture untrained when it is absent."""
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.inference.predict import CamSegmenter
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.models.card import ModelCard
    from napari_wsss.models.sshr import SSHRNet
    from napari_wsss.resources import default_model_dir

    if (default_model_dir() / "card.json").is_file():
        return load_segmenter(default_model_dir(), device), "models/sshr-default"
    import torch

    card = ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(), name="untrained")
    model = SSHRNet("small_cnn", 4, pretrained=False)
    return CamSegmenter(model, card, torch.device(device)), "small_cnn SSHR (untrained; shipped model absent)"


def tiles(n: int, size: int = 224) -> np.ndarray:
    from napari_wsss.data.synthetic import generate_tile

    return np.stack([generate_tile(i, size=size).image for i in range(n)])


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU work is asynchronous: time what was done, not what was queued


def timed(fn, reps: int) -> float:  # noqa: ANN001
    """Median seconds of ``reps`` calls after one warm-up."""
    fn()
    _sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_flops(device: str, n: int = 2048) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def run() -> None:
        (a @ b).sum().item()

    return 2 * n**3 / timed(run, 5)


def model_flops(seg, x) -> float:  # noqa: ANN001
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        seg.model(x)
    return float(fc.get_total_flops())


def inference_figures(seg, imgs: np.ndarray, device: str, quick: bool) -> dict:  # noqa: ANN001
    import torch

    from napari_wsss.inference.predict import to_batch

    import copy

    model = seg.model
    x1 = to_batch(imgs[:1], seg.card, torch.device(device))
    flops = model_flops(seg, x1)
    n = len(imgs)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)

    # naive peer: one tile at a time, default settings (autograd on, default memory format, no batching)
    def naive() -> None:
        for i in range(n):
            plain(to_batch(imgs[i : i + 1], seg.card, torch.device(device)))

    t_naive = timed(naive, 1 if quick else 2)

    res = {"flops_per_tile": flops, "naive_tiles_s": n / t_naive, "batch": {}}
    model_cl = model.to(memory_format=torch.channels_last)
    for bs in ([1, 8] if quick else [1, 4, 8, 16, 32]):
        def batched(bs: int = bs) -> None:
            with torch.inference_mode():
                for i in range(0, n, bs):
                    xb = to_batch(imgs[i : i + bs], seg.card, torch.device(device))
                    model_cl(xb.contiguous(memory_format=torch.channels_last))

        res["batch"][bs] = n / timed(batched, 1 if quick else 2)
    best = max(res["batch"], key=res["batch"].get)
    res["best_batch"] = best

    # end to end (CAM fusion, gating, glass detection, argmax) through the Segmenter contract
    many = np.concatenate([imgs] * 4)  # several batches per call: per-call costs do not dominate

    def e2e() -> None:
        seg.predict(many, batch_size=best)

    res["e2e_tiles_s"] = len(many) / timed(e2e, 1 if quick else 2)
    res["peak_flops"] = matmul_flops(device)
    return res


def train_step_time(device: str, input_size: int, batch: int = 16) -> float:
    import torch

    from napari_wsss.models.sshr import SSHRNet, cam_logits
    from napari_wsss.ops.losses import hierarchical_loss

    model = SSHRNet("small_cnn", 4, pretrained=False).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, input_size, input_size, device=device)
    y = torch.randint(0, 2, (batch, 4), device=device).float()

    def step() -> None:
        opt.zero_grad()
        loss, _ = hierarchical_loss(cam_logits(model(x)), y)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return timed(step, 5)


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB.

    Linux's VmHWM belongs to the process's own address space. ru_maxrss is not enough here: exec carries the
    forking parent's high-water mark into the child's ru_maxrss, so a child started by a big parent reported the
    parent's size (earlier runs of this script over-stated the slide peaks that way).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def slide_child(size: int, device: str) -> None:
    """Run in a subprocess so the peak is this slide's alone; prints one JSON line."""
    from napari_wsss.data.slide import open_slide
    from napari_wsss.events import run_to_end
    from napari_wsss.inference.slide_segmentation import segment_slide

    path = CACHE / f"slide_{size}.tif"
    seg, _ = load_model(device)
    rss0 = peak_rss_mb()
    with open_slide(path) as slide, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_to_end(segment_slide(seg, slide.levels, Path(tmp) / "labels.zarr", batch_size=8))
        wall = time.perf_counter() - t0
    peak = peak_rss_mb()
    print(json.dumps({"size": size, "wall_s": wall, "peak_rss_mb": peak, "rss_after_model_mb": rss0,
                      "predicted": res.windows_predicted, "skipped": res.windows_skipped}))


def slide_figures(sizes: list[int], device: str) -> list[dict]:
    from napari_wsss.data.synthetic import write_slide

    out = []
    CACHE.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        path = CACHE / f"slide_{size}.tif"
        if not path.exists():
            t0 = time.perf_counter()
            write_slide(path, shape=(size, size), seed=size)
            print(f"generated {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        cp = subprocess.run([sys.executable, __file__, "--slide-child", str(size), "--device", device],
                            capture_output=True, text=True, check=True)
        out.append(json.loads(cp.stdout.strip().splitlines()[-1]))
        print(out[-1], file=sys.stderr)
    return out


def render(device: str, model_name: str, inf: dict, train_s: float, input_size: int, slides: list[dict],
           cmd: str) -> str:
    peak = inf["peak_flops"]
    best = inf["best_batch"]
    rows = [f"| {bs} | {v:.1f} | {v * 224 * 224 / 1e6:.2f} | {100 * v * inf['flops_per_tile'] / peak:.1f} % |"
            for bs, v in inf["batch"].items()]
    lines = [
        f"## Inference throughput and slide scale ({device.upper()})",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}  ",
        f"Model: {model_name}; 224x224 synthetic tiles (model input {input_size} px after the card's rescale); "
        f"{inf['flops_per_tile'] / 1e9:.2f} GFLOP per tile (torch FlopCounterMode).  ",
        f"Peak: a 2048x2048 float32 `torch.matmul` reached {peak / 1e9:.0f} GFLOP/s in the same run.",
        "",
        "Model forward only (inference_mode, channels-last):",
        "",
        "| batch | tiles/s | megapixels/s | fraction of matmul peak |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        f"- Naive peer (one tile at a time, autograd on, default memory format): {inf['naive_tiles_s']:.1f} tiles/s; "
        f"best batched ({best}) is **{inf['batch'][best] / inf['naive_tiles_s']:.2f}x** faster.",
        f"- End to end through `Segmenter.predict` (CAM fusion, gating, glass detection, argmax) at batch {best}: "
        f"{inf['e2e_tiles_s']:.1f} tiles/s ({inf['e2e_tiles_s'] * 224 * 224 / 1e6:.2f} MP/s).",
        f"- SSHR training step (small_cnn, batch 16 at {input_size} px, forward + backward + SGD): "
        f"{train_s * 1000:.0f} ms per batch.",
    ]
    if slides:
        lines += ["", "Whole generated slides, level 0, `segment_slide` (512-px blocks, 64-px overlap, batch 8, "
                  "glass skipped), each in its own process:", "",
                  "| slide (px) | wall time (s) | peak RSS (MB) | windows predicted | windows skipped (glass) |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {s['size']} x {s['size']} | {s['wall_s']:.0f} | {s['peak_rss_mb']:.0f} | {s['predicted']} | "
                  f"{s['skipped']} |" for s in slides]
        lines += ["", "Peak RSS includes Python, torch and the model (about "
                  f"{slides[0]['rss_after_model_mb']:.0f} MB before the slide is touched)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer tiles and repetitions (smoke run)")
    ap.add_argument("--slides", type=int, nargs="*", default=[10000, 20000], help="slide sizes (px, square)")
    ap.add_argument("--slide-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print instead of writing docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.slide_child:
        slide_child(args.slide_child, args.device)
        return 0
    import torch

    from napari_wsss.inference.predict import to_batch

    seg, name = load_model(args.device)
    imgs = tiles(16 if args.quick else 64)
    input_size = int(to_batch(imgs[:1], seg.card, torch.device(args.device)).shape[-1])
    inf = inference_figures(seg, imgs, args.device, args.quick)
    train_s = train_step_time(args.device, input_size)
    slides = slide_figures(args.slides, args.device) if args.slides else []
    cmd = "python benchmarks/throughput.py " + " ".join(a for a in (argv or sys.argv[1:]))
    text = render(args.device, name, inf, train_s, input_size, slides, cmd.strip())
    if args.no_write:
        print(text)
    else:
        write_section("throughput" if args.device == "cpu" else f"throughput_{args.device}", text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
