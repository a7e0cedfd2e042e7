"""Regenerate sample_data/ deterministically from the synthetic H&E generator (no real patient data).

    python scripts/make_sample_data.py [--out sample_data]

Writes ``luad_synthetic/`` (LUAD-HistoSeg layout: 40 training tiles with labels in the names, 8 val and
8 test tiles with palette-PNG masks, 224 px, seed 0) and ``slide/synthetic_slide.tif`` (3072 x 3072 pyramidal
tiled TIFF) with its class map ``slide/synthetic_slide_mask.tif``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from napari_wsss.data.synthetic import write_dataset, write_slide

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "sample_data")
    args = ap.parse_args(argv)
    out: Path = args.out
    ds = out / "luad_synthetic"
    if ds.exists():  # regenerate from scratch so no stale tiles of an older generator remain
        shutil.rmtree(ds)
    write_dataset(ds, n_train=40, n_val=8, n_test=8, size=224, seed=0, difficulty=0.5)
    write_slide(out / "slide" / "synthetic_slide.tif", shape=(3072, 3072), seed=0, difficulty=0.5, tile=512)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
