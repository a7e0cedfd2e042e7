"""Cohort throughput: serial vs a local Dask cluster, a run killed halfway and resumed, Dask's per-task cost.

Run: ``.venv/bin/python benchmarks/cohort.py [--tia-python /tmp/tia/bin/python]`` (the issue's size: 8 generated
slides of 10k x 10k, 2 workers; about an hour on the 2-core CPU machine, more with TIAToolbox).
``--size 2048 --count 4`` validates the script in a few minutes.
Writes the ``cohort`` section of docs/benchmarks.md. Every run is a separate process, as a user would start it:

* serial: one process, the model loaded once, slides one after another through the same per-slide task the
  cluster runs (``inference.cohort.segment_cohort_slide``), no Dask;
* cluster: ``napari-wsss predict SLIDES --out DIR --workers N`` (the CLI, cluster start-up included);
* kill/resume: the same CLI killed (SIGKILL, its process group) once half of the slides are finished, then
  rerun: the time lost is (time to the kill + rerun time) - the uninterrupted cluster time;
* Dask overhead: ``--noop`` no-op tasks mapped on a 2-worker local cluster (throughput per task), and
  sequential submit -> result round trips (latency per task).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, machine, write_section

CACHE = Path(tempfile.gettempdir()) / "napari_wsss_bench" / "cohort"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
CLI = [sys.executable, "-m", "napari_wsss.cli"]

SERIAL = """
import json, sys, time
from dataclasses import asdict
from pathlib import Path
from napari_wsss.data.slide_list import list_slides
from napari_wsss.inference.cohort import CohortOptions, segment_cohort_slide, _peak_rss_mb
from napari_wsss.inference.cohort_outputs import model_identity
slides, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
m = model_identity(model)
t0 = time.perf_counter()
recs = [segment_cohort_slide(str(s.path.resolve()), s.name, str(out), m, asdict(CohortOptions()))
        for s in list_slides([slides])]
print(json.dumps({"wall": time.perf_counter() - t0, "peak_mb": _peak_rss_mb(), "records": recs}))
"""


def make_slides(size: int, count: int) -> Path:
    """``count`` generated slides of ``size`` x ``size`` (cached between runs; masks kept aside)."""
    from napari_wsss.data.synthetic_slide import write_slide

    folder = CACHE / f"slides-{size}-{count}"
    masks = CACHE / f"masks-{size}-{count}"
    masks.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        p = folder / f"slide{i:02d}.tif"
        if not p.exists():
            write_slide(p, shape=(size, size), seed=100 + i)
            (folder / f"slide{i:02d}_mask.tif").replace(masks / f"slide{i:02d}_mask.tif")
    return folder


def manifest(out: Path) -> dict:
    try:
        return json.loads((out / "cohort.json").read_text())
    except (OSError, ValueError):
        return {}


def run_cli(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(CLI + args, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def per_worker_peaks(m: dict) -> list[float]:
    peaks: dict[int, float] = {}
    for e in m.get("slides", []):
        if e.get("pid") and e.get("peak_rss_mb"):
            peaks[e["pid"]] = max(peaks.get(e["pid"], 0.0), e["peak_rss_mb"])
    return sorted(peaks.values())


def kill_halfway(args: list[str], out: Path, count: int) -> tuple[float, int]:
    """Start the CLI, SIGKILL it (and its workers) once half the slides are done; (seconds, slides done)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(CLI + args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done = 0
    try:
        while proc.poll() is None:
            done = manifest(out).get("counts", {}).get("done", 0)
            if done >= count // 2:
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    t = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the workers exit with their parent; wait until they have
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return t, done


def _noop(i: int) -> int:
    return i


def dask_overhead(n: int, workers: int) -> dict:
    from napari_wsss.inference.cohort_cluster import cohort_client

    t0 = time.perf_counter()
    with cohort_client(workers, None, "cpu") as (client, _):
        start = time.perf_counter() - t0
        client.gather(client.map(_noop, range(50), pure=False))  # warm
        t1 = time.perf_counter()
        client.gather(client.map(_noop, range(n), pure=False))
        mapped = (time.perf_counter() - t1) / n
        lat = []
        for i in range(50):
            t2 = time.perf_counter()
            client.submit(_noop, i, pure=False).result()
            lat.append(time.perf_counter() - t2)
    return {"startup_s": start, "per_task_ms": mapped * 1e3, "roundtrip_ms": statistics.median(lat) * 1e3}


def run_tiatoolbox(python: Path, slides: Path, model: Path, work: Path) -> dict:
    """benchmarks/cohort_tiatoolbox.py in TIAToolbox's own venv; {"error": ...} when it cannot run."""
    script = Path(__file__).resolve().parent / "cohort_tiatoolbox.py"
    try:
        r = subprocess.run([str(python), str(script), str(slides), str(model), str(work / "tiatoolbox"),
                            "--ours", str(work / "serial")], env={**ENV, "NAPARI_WSSS_DEVICE": "cpu"},
                           capture_output=True, text=True, timeout=6 * 3600, check=False)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"[:300]}


def tia_text(tia: dict | None, count: int, ser: dict, cl_s: float, windows: int) -> str:
    if tia is None:
        return ("TIAToolbox side by side: not run here (pass `--tia-python` with a separate venv: `python -m venv "
                "/tmp/tia && /tmp/tia/bin/pip install tiatoolbox`).")
    if "error" in tia:
        return f"TIAToolbox side by side: failed to run ({tia['error']})."
    agree = (f"; its class maps agree with ours on {100 * statistics.mean(tia['agreement']):.1f} % of pixels"
             if tia.get("agreement") else "")
    return f"""TIAToolbox {tia['tiatoolbox']} side by side (`benchmarks/cohort_tiatoolbox.py`, its own venv; the same
weights wrapped as a TIAToolbox `ModelABC` whose `infer_batch` calls our `Segmenter.predict`; the same 576-px
windows at a 512-px stride, batch 8, its own tissue mask (`auto_get_mask`), one process, slides in turn):

| engine | slides per hour | peak memory | windows predicted |
| --- | --- | --- | --- |
| TIAToolbox `SemanticSegmentor` (serial) | {3600 * count / tia['wall']:.1f} | {tia['peak_mb']:.0f} MB | {tia.get('windows', '?')} |
| napari-wsss serial | {3600 * count / ser['wall']:.1f} | {ser['peak_mb']:.0f} MB | {windows} |
| napari-wsss `predict --workers N` | {3600 * count / cl_s:.1f} | per worker, above | {windows} |

TIAToolbox wall time {tia['wall']:.1f} s (model load included){agree}. The two differ in blending (TIAToolbox
averages overlapping windows, we ramp-blend) and in the tissue mask; the network and its weights are the same."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10000, help="slide side in pixels (level 0, 1 um/px)")
    ap.add_argument("--count", type=int, default=8, help="slides in the cohort")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--noop", type=int, default=1000, help="no-op tasks for Dask's per-task overhead")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "sshr-default")
    ap.add_argument("--note", default="", help="a sentence added to the section (e.g. why a reduced size)")
    ap.add_argument("--tia-python", type=Path, help="python of a separate venv with tiatoolbox installed, for the "
                    "side-by-side run (benchmarks/cohort_tiatoolbox.py); never the project's venv")
    a = ap.parse_args()

    load0 = os.getloadavg()[1]
    t0 = time.perf_counter()
    slides = make_slides(a.size, a.count)
    gen_s = time.perf_counter() - t0
    work = CACHE / f"runs-{a.size}-{a.count}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    serial = subprocess.run([sys.executable, "-c", SERIAL, str(slides), str(a.model), str(work / "serial")],
                            env={**ENV, "NAPARI_WSSS_DEVICE": "cpu"}, check=True, capture_output=True, text=True)
    ser = json.loads(serial.stdout.strip().splitlines()[-1])
    cl_args = ["predict", str(slides), "--model", str(a.model), "--workers", str(a.workers), "--device", "cpu"]
    cluster_s = run_cli(cl_args + ["-o", str(work / "cluster")])
    cl = manifest(work / "cluster")
    kill_s, done_at_kill = kill_halfway(cl_args + ["-o", str(work / "resume")], work / "resume", a.count)
    resume_s = run_cli(cl_args + ["-o", str(work / "resume")])
    rm = manifest(work / "resume")
    redone = rm.get("counts", {}).get("done", 0)
    ovh = dask_overhead(a.noop, 2)
    tia = run_tiatoolbox(a.tia_python, slides, a.model, work) if a.tia_python else None

    recs = ser["records"]
    per_slide = [r["seconds"] for r in recs]
    summaries = [json.loads((work / "serial" / r["name"] / "summary.json").read_text()) for r in recs]
    windows = sum(s["windows_predicted"] for s in summaries)
    per_window = sum(per_slide[1:]) / max(1, sum(s["windows_predicted"] for s in summaries[1:]))
    mp = a.size * a.size / 1e6
    slide_s = statistics.median(per_slide[1:] or per_slide)
    # on paper: a 40x slide, 100k x 80k px at 0.25 um/px, segmented at the model's ~1 um/px (level 2:
    # 25k x 20k = 500 MP, 5x a 10k slide) with the same tissue fraction as the generated slides
    scale_40x = 25000 * 20000 / (a.size * a.size)
    cpu_40x = slide_s * scale_40x
    gpu_10k = 66.0  # s per 10k x 10k slide on one H200 worker (throughput_cuda section, host-bound)
    gpu_40x = gpu_10k * 5
    rows_1000 = "\n".join(f"| {n} | {1000 * gpu_40x / n / 3600:.1f} h | {1000 * cpu_40x / n / 3600:.0f} h |"
                          for n in (1, 2, 4, 8, 16))
    peaks = per_worker_peaks(cl)
    lost = kill_s + resume_s - cluster_s
    noise = (" - negative: the loss is below the run-to-run spread of the shared machine in this run"
             if lost < 0 else "")
    cmd = (f"python benchmarks/cohort.py --size {a.size} --count {a.count} --workers {a.workers} --noop {a.noop}"
           + (" --tia-python /tmp/tia/bin/python" if a.tia_python else ""))
    body = f"""## Cohort runner on Dask distributed (`benchmarks/cohort.py`)

Command: `{cmd}`  
Machine: {machine()}; load average (5 min) {load0:.1f} at the start, {os.getloadavg()[1]:.1f} at the end
(other jobs on the machine: above the core count, wall times are inflated and noisy)  
Data: {a.count} generated slides of {a.size} x {a.size} px (1 um/px, `data.synthetic_slide.write_slide`, seeds 100..;
generated in {gen_s:.0f} s or reused from the cache); model {a.model.name}; level 0, 512-px blocks, batch 8, CPU.
{a.note}

| run | wall time | per slide | peak memory |
| --- | --- | --- | --- |
| serial (one process, model loaded once, no Dask) | {ser['wall']:.1f} s | {statistics.median(per_slide):.1f} s median | {ser['peak_mb']:.0f} MB (the process) |
| `predict --workers {a.workers}` (local cluster, start-up included) | {cluster_s:.1f} s | {statistics.median([e['seconds'] for e in cl['slides']]):.1f} s median in a worker | {', '.join(f'{p:.0f}' for p in peaks)} MB (per worker process) |
| same, SIGKILLed after {done_at_kill} of {a.count} slides | {kill_s:.1f} s to the kill | | |
| rerun of the same command | {resume_s:.1f} s | {redone} slides redone, {rm.get('counts', {}).get('skipped', 0)} skipped | |

- Time lost to the kill: {kill_s:.1f} + {resume_s:.1f} - {cluster_s:.1f} = **{lost:.1f} s** (the slides in flight
  at the kill, and a second cluster start-up and model load){noise}; finished slides were not redone.
- Dask's own cost (2-worker local cluster, no-op tasks): start-up {ovh['startup_s']:.1f} s;
  {a.noop} mapped tasks {ovh['per_task_ms']:.2f} ms per task; one submit -> result round trip
  {ovh['roundtrip_ms']:.1f} ms (median of 50). Against {slide_s:.0f} s per slide here, the scheduler's share is
  {ovh['roundtrip_ms'] / 1e3 / slide_s * 100:.3f} %.
- Serial per-slide cost: {slide_s:.1f} s per {mp:.0f} MP slide (median, first slide's model load excluded),
  {per_window * 1e3:.0f} ms per predicted 576-px window ({windows} windows predicted in all).

On paper, 1,000 slides at 40x. Assumptions: a 40x slide is 100k x 80k px at 0.25 um/px with the generated
slides' tissue fraction; the model (trained at about 1 um/px) segments pyramid level 2, 25k x 20k px, i.e.
{scale_40x:.1f}x the pixels of one slide here; time scales with pixels; one worker per GPU; a GPU worker's slide
costs what the CUDA section measured for a 10k slide on one H200 ({gpu_10k:.0f} s, bound by JPEG decoding on the
host, not the network) x 5 = {gpu_40x:.0f} s, and each GPU worker has its own host cores (3-4); the CPU column
uses this machine's serial per-slide cost per 2-core worker. Dask adds {ovh['roundtrip_ms']:.0f} ms per slide.

| workers (GPUs, or 2-core CPU workers) | 1,000 slides on GPUs | 1,000 slides on CPU workers |
| --- | --- | --- |
{rows_1000}

Segmenting level 0 (0.25 um/px) instead would cost 16x these.

{tia_text(tia, a.count, ser, cluster_s, windows)}
"""
    write_section("cohort", body)
    print(body)


if __name__ == "__main__":
    main()
