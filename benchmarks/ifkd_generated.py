"""MIL -> IFKD on the generated set of the SSHR vs multi-stage section (same data, epochs, input size, seed).

    python benchmarks/ifkd_generated.py [--work DIR]

Trains ``napari-wsss train --method ifkd`` (MIL teacher, then its fused maps distilled into a SegNet; validation
split drives switching) and prints the test scores of the student and its teacher as JSON; the numbers are
quoted under the SSHR vs multi-stage table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("triton", None)  # type: ignore[arg-type]  (see docs/design.md: no triton beside a viewer)


def main(argv: list[str] | None = None) -> int:
    from napari_wsss.data.synthetic import write_dataset
    from napari_wsss.events import run_to_end
    from napari_wsss.models.card import load_card
    from napari_wsss.training.ifkd_train import train_ifkd

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, help="work folder (default: a temp folder)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ifkd-gen-"))
    data = work / "gen600"
    if not (data / "training").is_dir():
        write_dataset(data, n_train=600, n_val=40, n_test=100, size=224, seed=0, difficulty=0.5)
    t0 = time.perf_counter()
    out = run_to_end(train_ifkd(data, work / "ifkd", overwrite=True, backbone="small_cnn", input_size=112,
                                epochs=6, batch_size=16, lr=0.02, distil_epochs=6, num_threads=args.threads,
                                device="cpu", pretrained=False, seed=0))
    card, teacher = load_card(out), load_card(work / "ifkd-teacher")
    print(json.dumps({"student_test": card.metrics["test"], "teacher_test_mIoU": teacher.metrics["test"]["mIoU"],
                      "wall_seconds": round(time.perf_counter() - t0), "stage_seconds": card.metrics["stage_seconds"],
                      "switches": card.metrics["switches"], "validation": card.metrics["validation"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
