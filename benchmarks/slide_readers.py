"""Reading whole slides through the two backends of ``data/slide.py``: OpenSlide and tifffile, same files.

Reads every chunk of every level of the real SVS files in ../shared/data/real-slides (and an SVS-like pyramid
written here with tifffile) through ``open_slide(path, backend=...)`` with dask's threaded scheduler, best of
``--repeats`` runs, and writes the "slide-readers" section of docs/benchmarks.md.

    python benchmarks/slide_readers.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, machine, write_section  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real-slides"


def _read_all(path: Path, backend: str, repeats: int) -> tuple[float, int, str]:
    import dask

    from napari_wsss.data.slide import open_slide

    best, n_px = float("inf"), 0
    for _ in range(repeats):
        with open_slide(path, backend=backend) as slide:
            t = time.perf_counter()
            with dask.config.set(scheduler="threads"):
                for lv in slide.levels:  # a reduction touches every chunk once, holding none of them
                    lv.sum(dtype=np.uint64).compute()
            n_px = sum(lv.shape[0] * lv.shape[1] for lv in slide.levels)
            best = min(best, time.perf_counter() - t)
            chunks = "x".join(str(c) for c in slide.levels[0].chunksize[:2])
    return best, n_px, chunks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    files = [p for p in (REAL / "tcga-cr-7395-01a-01-ts1.svs", REAL / "cmu-1-small-region.svs") if p.is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(REPO))
        from tests._slides import write_svs

        rng = np.random.default_rng(0)
        img = np.clip(rng.normal(170, 30, (4096, 4096, 3)), 0, 255).astype(np.uint8)
        files.append(write_svs(Path(tmp) / "generated-4096-jpeg.svs", img, n_levels=3, tile=256,
                               compression="jpeg"))
        rows = []
        for p in files:
            for backend in ("openslide", "tifffile"):
                sec, n_px, chunks = _read_all(p, backend, args.repeats)
                rows.append(f"| {p.name} | {backend} | {chunks} | {n_px / 1e6:.1f} | {sec:.2f} | "
                            f"{n_px / 1e6 / sec:.0f} |")
                print(rows[-1], flush=True)
    body = "\n".join([
        "Every chunk of every level read through `open_slide(path, backend=...)` (dask threaded scheduler), best of "
        f"{args.repeats}; `python benchmarks/slide_readers.py --repeats {args.repeats}`. Files: the real SVS slides in "
        "../shared/data/real-slides (TCGA: JPEG 2000, two levels; CMU-1-Small-Region: JPEG, one level) and a "
        "4096 x 4096 JPEG SVS-like pyramid written with tifffile. `auto` picks OpenSlide for all three (Aperio).",
        "",
        "| file | backend | level-0 chunk | Mpx read | s | Mpx/s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Machine: {machine()}.",
    ])
    write_section("slide-readers", body)


if __name__ == "__main__":
    main()
