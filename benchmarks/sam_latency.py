"""SAM latency for CAM+SAM and the SAM refine widget: encoder (set_image), embedding-cache hit, and
prompt-to-mask decoder latency (p50/p95), with random-weight SAMs (no checkpoint download).

Models: the tiny SAM the tests use (ViT depth 2, width 96, 1024 px input) and, unless --no-vit-b, a SAM with
vit_b's exact architecture (random weights: speed is the same as the real checkpoint's, quality is not).
The decoder is identical in vit_b/l/h, so its latency here is the real one for every model type.

    .venv/bin/python benchmarks/sam_latency.py            # writes the cam_sam section of docs/benchmarks.md
    .venv/bin/python benchmarks/sam_latency.py --no-write --repeats 10 --no-vit-b
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_wsss.models.sam import (EmbeddingCache, LoadedSam, SamArch, SamSession, build_sam, infer_arch,
                                    load_sam)

START, END = "<!-- cam_sam:start -->", "<!-- cam_sam:end -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def tiny_arch() -> SamArch:
    return SamArch(img_size=1024, patch_size=16, embed_dim=96, depth=2, num_heads=4, mlp_ratio=4.0, window_size=14,
                   global_attn_indexes=(1,), out_chans=256, mask_in_chans=16, decoder_dim=256, decoder_depth=2,
                   decoder_mlp_dim=2048, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def bench(name: str, loaded: LoadedSam, image: np.ndarray, repeats: int, encoder_repeats: int) -> dict:
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        enc = []
        for _ in range(encoder_repeats):
            s = SamSession(loaded, EmbeddingCache(tmp))
            s.cache.root = None  # time the encoder, not the disk
            t0 = time.perf_counter()
            s.set_image(image)
            enc.append(time.perf_counter() - t0)
        SamSession(loaded, EmbeddingCache(tmp)).embed(image)  # write the cache entry
        hit = []
        for _ in range(max(3, repeats // 3)):
            s = SamSession(loaded, EmbeddingCache(tmp))  # fresh memory: read from disk
            t0 = time.perf_counter()
            s.set_image(image)
            hit.append(time.perf_counter() - t0)
    prompts = {
        "1 point": lambda: dict(points=rng.uniform(0, [h, w], (1, 2))),
        "5 points (+/-)": lambda: dict(points=rng.uniform(0, [h, w], (5, 2)), labels=np.array([1, 1, 1, 0, 0])),
        "50 CAM points": lambda: dict(points=rng.uniform(0, [h, w], (50, 2))),
        "box": lambda: dict(box=np.array([h * 0.2, w * 0.2, h * 0.7, w * 0.8])),
    }
    dec = {}
    for label, make in prompts.items():
        s.predict(**make())  # warm-up
        ts = []
        for _ in range(repeats):
            kw = make()
            t0 = time.perf_counter()
            s.predict(**kw)
            ts.append(time.perf_counter() - t0)
        dec[label] = (pct(ts, 50), pct(ts, 95))
    params = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    return {"name": name, "params": params, "encoder": (pct(enc, 50), pct(enc, 95)), "hit": (pct(hit, 50), pct(hit, 95)),
            "decoder": dec}


def render(rows: list[dict], args: argparse.Namespace, device: str, seconds: float) -> str:
    lines = [
        START,
        "## CAM+SAM (EPLC-SAM) and SAM refine: latency",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/sam_latency.py{' --no-vit-b' if args.no_vit_b else ''}` "
        f"({args.repeats} decoder repeats, {args.size}x{args.size} px RGB tile, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, device `{device}`, {platform.processor() or platform.machine()}; "
        f"took {seconds:.0f} s; 1-min load average {args.load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end — other jobs shared the cores, so these are pessimistic).",
        "",
        "Random-weight SAMs built from `segment_anything.modeling` (nothing downloaded): *tiny* = ViT depth 2, "
        "width 96, 1024 px input, the model the tests use; *vit_b-shaped* = vit_b's exact architecture. Speed "
        "depends only on the architecture, so the vit_b row is what a real `sam_vit_b_01ec64.pth` costs here. The "
        "mask decoder is the same in vit_b/l/h, so the decoder columns hold for every model type.",
        "",
        "| model | params (M) | encoder `set_image` p50 / p95 (ms) | cache hit (disk) p50 (ms) | "
        + " | ".join(f"decoder {k} p50 / p95 (ms)" for k in rows[0]["decoder"]) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(rows[0]["decoder"]),
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['params']:.1f} | {r['encoder'][0]:.0f} / {r['encoder'][1]:.0f} | "
                     f"{r['hit'][0]:.1f} | " + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in r["decoder"].values()) + " |")
    lines += [
        "",
        "The decoder is identical in every row, so differences between rows in the decoder columns are noise from other load on the CPU, not a model difference; on a quiet machine of this kind (/work/shared/docs/environment.md) `set_image` of the tiny SAM on a 512 px tile took 1.4 s and a point+box `predict` 0.05 s. Rerun the command on an idle machine (or a GPU) for figures to quote.",
        "",
        "Reading it: in the viewer a prompt costs one decoder call (the *decoder* columns, which include upscaling "
        "the mask to the tile) once the tile's embedding exists; the first prompt on a new tile also pays the "
        "encoder, or only the cache read when the tile was embedded before (embeddings are cached on disk by "
        "image hash and model, `~/.cache/napari-wsss/sam` or `$NAPARI_WSSS_SAM_CACHE`). No GPU was available for "
        "this run; on CUDA the same script reports the device column as `cuda`.",
        "",
        "**Quality is not reported:** with a random tiny SAM on generated tiles, CAM+SAM masks (and mIoU) carry no "
        "information about the method. Quality needs a real SAM checkpoint and real H&E data "
        "(`napari-wsss train --method cam_sam --sam-checkpoint sam_vit_b_01ec64.pth ...`, then `napari-wsss evaluate`).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, doc: Path = DOC) -> None:
    from napari_wsss.atomic import atomic_write_bytes

    old = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    if START in old and END in old:
        new = old[: old.index(START)] + text.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    atomic_write_bytes(doc, new.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--size", type=int, default=512, help="tile side in px")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-vit-b", action="store_true", help="skip the vit_b-shaped model (slow on CPU)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    args.load = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny_sam.pth"
        torch.save(build_sam(tiny_arch()).state_dict(), path)
        tiny = load_sam(path, "auto", args.device)  # the real loader path
        rows.append(bench("tiny (depth 2, width 96)", tiny, image, args.repeats, 5))
        print(rows[-1], flush=True)
    if not args.no_vit_b:
        from segment_anything import sam_model_registry

        model = sam_model_registry["vit_b"]().to(args.device).eval()
        arch = infer_arch(model.state_dict())
        vit_b = LoadedSam(model, arch, Path("random-vit_b"), "bench-vit_b")
        rows.append(bench("vit_b-shaped (random weights)", vit_b, image, args.repeats, 2))
        print(rows[-1], flush=True)
    text = render(rows, args, args.device, time.perf_counter() - t_start)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the cam_sam section of {DOC}")


if __name__ == "__main__":
    main()
