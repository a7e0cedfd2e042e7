"""The Dask cluster a cohort runs on: local worker processes by default, or an existing scheduler.

Local workers are one process each with one Dask thread (one slide at a time per process; the model inside
uses ``threads`` torch threads). Where CUDA devices exist (and the device is not forced to CPU), there is one
worker per device, pinned to it with ``CUDA_VISIBLE_DEVICES`` (each worker sees its GPU as ``cuda:0``), as
dask-cuda does. An existing cluster (``tcp://HOST:PORT``: a lab's scheduler, dask-jobqueue on SLURM, a Kubernetes
Dask cluster) is used as it is: its workers need napari-wsss installed and read the slides and model at the
same paths as this machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerPlan:
    """Local workers: how many, torch threads each, and the GPU each is pinned to (None: CPU)."""

    n_workers: int
    threads: int
    gpus: tuple[int | None, ...]


def cuda_device_count(device: str | None) -> int:
    """CUDA devices the workers may use (0 when the device is forced to CPU/MPS or torch sees none)."""
    requested = device or os.environ.get("NAPARI_WSSS_DEVICE") or "auto"
    if requested.split(":")[0] not in ("auto", "cuda"):
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001  (a broken CUDA install: run on CPU)
        return 0


def plan_workers(workers: int | None, device: str | None, cpus: int | None = None, n_gpus: int | None = None
                 ) -> WorkerPlan:
    """Local worker layout.

    Args:
        workers: worker processes (None: one per CUDA device, else 1).
        device: the run's device option (``cpu`` keeps GPUs out).
        cpus: cores to share (default: this process's CPU affinity).
        n_gpus: CUDA devices (default: :func:`cuda_device_count`).
    Raises:
        ValueError: ``workers`` < 1.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}.")
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_gpus = cuda_device_count(device) if n_gpus is None else n_gpus
    if (device or "auto").split(":")[0] not in ("auto", "cuda"):
        n_gpus = 0  # --device cpu / mps: no worker is pinned to a GPU
    n = workers or max(1, n_gpus)
    # torch threads: the cores shared out (a GPU worker needs few: the host only decodes and stitches)
    threads = max(1, cpus // n)
    if n_gpus:
        threads = min(threads, 4)
    gpus = tuple(i % n_gpus for i in range(n)) if n_gpus else (None,) * n
    return WorkerPlan(n, threads, gpus)


def worker_specs(plan: WorkerPlan) -> dict[str, dict[str, Any]]:
    """SpecCluster worker specs: a Nanny per worker, one Dask thread, its torch threads and GPU in its env."""
    from distributed import Nanny
    from distributed.system import MEMORY_LIMIT

    workers = {}
    for i, gpu in enumerate(plan.gpus):
        env = {"OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads),
               "NAPARI_WSSS_THREADS": str(plan.threads)}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        workers[f"wsss-{i}"] = {"cls": Nanny, "options": {
            "nthreads": 1, "host": "127.0.0.1", "env": env, "silence_logs": logging.ERROR, "memory_limit": MEMORY_LIMIT // plan.n_workers,
            "resources": {"GPU": 1} if gpu is not None else {}}}
    return workers


def local_cluster(plan: WorkerPlan, dashboard: str | None = ":0") -> Any:
    """A ``distributed.SpecCluster`` of ``plan.n_workers`` Nanny-managed worker processes on 127.0.0.1."""
    from distributed import Scheduler, SpecCluster

    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": dashboard}}
    return SpecCluster(scheduler=scheduler, workers=worker_specs(plan), silence_logs=logging.ERROR,
                       name="napari-wsss")


@contextmanager
def cohort_client(workers: int | None = None, scheduler: str | None = None, device: str | None = None
                  ) -> Iterator[tuple[Any, int | None]]:
    """Yield ``(client, torch threads per worker or None)`` on a new local cluster or on ``scheduler``.

    Raises:
        ValueError: both ``workers`` and ``scheduler`` given (an existing cluster has its own workers).
        OSError: the scheduler cannot be reached (with the address and what to check).
    """
    from distributed import Client

    if scheduler:
        if workers is not None:
            raise ValueError("--workers starts a local cluster; with --scheduler the cluster's own workers run the "
                             "slides. Give one of them.")
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot reach the Dask scheduler at {scheduler} ({e}); check the address "
                          "(tcp://HOST:PORT) and that the scheduler is running.") from e
        try:
            yield client, None
        finally:
            client.close()
        return
    plan = plan_workers(workers, device)
    with local_cluster(plan) as cluster, Client(cluster) as client:
        client.wait_for_workers(plan.n_workers, timeout=300)
        yield client, plan.threads


def dashboard_link(client: Any) -> str | None:
    """The Dask dashboard's address, or None when the scheduler serves none (bokeh not installed)."""
    try:
        info = client.scheduler_info()
        if not info.get("services", {}).get("dashboard"):
            return None
        return client.dashboard_link
    except Exception:  # noqa: BLE001
        return None
