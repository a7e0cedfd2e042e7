"""The same cohort through TIAToolbox's SemanticSegmentor, with the same model weights (benchmark-only).

Runs in its own virtual environment, never the project's (TIAToolbox pins its own torch and ~6 GB of packages):

    python -m venv /tmp/tia && /tmp/tia/bin/pip install tiatoolbox
    PYTHONPATH=src /tmp/tia/bin/python benchmarks/cohort_tiatoolbox.py SLIDE_FOLDER MODEL_DIR OUT_DIR

Our model is wrapped as a TIAToolbox ``ModelABC`` whose ``infer_batch`` calls our ``Segmenter.predict`` (the
same weights, CAM fusion and glass gating), on the same windows as ``segment_slide`` (576 px read at level 0,
512 px stride, batch 8), one slide after another in one process (TIAToolbox has no cluster runner). Prints one
JSON line: wall seconds, peak memory (VmHWM), per-slide seconds, and the pixel agreement of its class maps with
ours where our labels are given (``--ours DIR`` of a cohort run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

COUNT = [0]  # windows the model was asked to predict


def peak_mb() -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def wrap(segmenter):
    import torch
    from tiatoolbox.models.models_abc import ModelABC

    class WsssModel(ModelABC):
        """napari-wsss's Segmenter behind TIAToolbox's model interface (uint8 NHWC in, NHWC scores out)."""

        def __init__(self) -> None:
            super().__init__()
            self.seg = segmenter
            self.dummy = torch.nn.Parameter(torch.zeros(1))  # TIAToolbox moves the module between devices

        def forward(self, x):
            return x

        @staticmethod
        def infer_batch(model, batch_data, *, device: str):
            imgs = np.asarray(batch_data.cpu() if hasattr(batch_data, "cpu") else batch_data).astype(np.uint8)
            COUNT[0] += len(imgs)
            probs = model.seg.predict(imgs, batch_size=len(imgs)).probs  # (N, K + 1, H, W)
            return np.ascontiguousarray(probs.transpose(0, 2, 3, 1))

        @staticmethod
        def postproc(image: np.ndarray) -> np.ndarray:
            return np.argmax(image, axis=-1)

    return WsssModel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slides", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--ours", type=Path, help="a cohort run's --out folder, to compare class maps with")
    a = ap.parse_args()

    from tiatoolbox.models import IOSegmentorConfig, SemanticSegmentor

    from napari_wsss.data.slide_list import list_slides
    from napari_wsss.inference.segmenter import load_segmenter

    slides = list_slides([a.slides])
    t0 = time.perf_counter()
    model = wrap(load_segmenter(a.model, "cpu"))
    io = IOSegmentorConfig(input_resolutions=[{"units": "baseline", "resolution": 1.0}],
                           output_resolutions=[{"units": "baseline", "resolution": 1.0}],
                           patch_input_shape=(576, 576), patch_output_shape=(576, 576), stride_shape=(512, 512),
                           save_resolution={"units": "baseline", "resolution": 1.0})
    seg = SemanticSegmentor(model=model, batch_size=8, num_workers=0, device="cpu", verbose=False)
    per_slide, agree = [], []
    for s in slides:
        t1 = time.perf_counter()
        res = seg.run([s.path], patch_mode=False, ioconfig=io, save_dir=a.out / s.name, overwrite=True,
                      output_type="zarr", auto_get_mask=True)
        per_slide.append(time.perf_counter() - t1)
        if a.ours:
            import zarr

            out = next(iter(res.values())) if isinstance(res, dict) else res
            z = zarr.open(str(out), mode="r")
            pred = np.asarray(z["predictions"][:]) if "predictions" in z else None
            ours = np.asarray(zarr.open_group(str(a.ours / s.name / "labels.zarr"), mode="r")["labels/0"][:])
            if pred is not None:
                h, w = min(pred.shape[0], ours.shape[0]), min(pred.shape[1], ours.shape[1])
                from napari_wsss.classes import LUAD_HISTOSEG

                theirs = LUAD_HISTOSEG.to_labels(pred[:h, :w].astype(np.uint8))
                agree.append(float((theirs == ours[:h, :w]).mean()))
    print(json.dumps({"wall": time.perf_counter() - t0, "peak_mb": peak_mb(), "per_slide": per_slide,
                      "agreement": agree, "windows": COUNT[0], "tiatoolbox": __import__("tiatoolbox").__version__}))


if __name__ == "__main__":
    sys.exit(main())
