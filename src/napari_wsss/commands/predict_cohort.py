"""``napari-wsss predict SLIDES... --out DIR``: many slides on a Dask cluster (see ``inference.cohort``).

``predict`` routes here when it is given more than one input, a CSV manifest, a glob, a folder holding
pyramidal slides, or one slide with a cohort option (``--workers``, ``--scheduler``, ``--geojson``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COHORT_OPTIONS = ("workers", "scheduler", "geojson")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cohorts (several slides, a folder of slides, a glob or a CSV with a 'path' column)")
    g.add_argument("--workers", type=int, help="local Dask worker processes (default: one per CUDA device, else 1); "
                   "each loads the model once and segments one slide at a time")
    g.add_argument("--scheduler", help="run on an existing Dask cluster, e.g. tcp://HOST:PORT (its workers need "
                   "napari-wsss and the same paths to slides, model and --out)")
    g.add_argument("--geojson", action="store_true", help="also write --out/geojson/<slide>.geojson: class "
                   "polygons in slide level-0 pixels for QuPath (added to finished slides on a rerun)")


def wants_cohort(args: argparse.Namespace) -> bool:
    from ..data.slide_list import is_cohort_input

    return is_cohort_input(args.input) or any(getattr(args, o) not in (None, False) for o in COHORT_OPTIONS)


def run_cohort_command(args: argparse.Namespace, model_dir: Path) -> int:
    """Segment the cohort; 0 when every slide is done or skipped, 2 when any failed (they are listed)."""
    from ..data.slide_list import list_slides
    from ..events import run_to_end
    from ..inference.cohort import CohortOptions, run_cohort
    from ..inference.cohort_cluster import cohort_client, dashboard_link
    from . import print_notes, print_progress

    if args.confidence:
        raise ValueError("--confidence writes PNGs beside tiles; a cohort's <slide>/labels.zarr already holds "
                         "confidence/. Leave --confidence out.")
    if args.out.suffix == ".zarr":
        from ..data.slide_list import is_cohort_input

        # one slide given with a cohort option (--geojson): say that the option made it a cohort
        opts = [f"--{o}" for o in COHORT_OPTIONS if getattr(args, o) not in (None, False)]
        why = f" ({' '.join(opts)} runs even one slide as a cohort)" if opts and not is_cohort_input(args.input) else ""
        raise ValueError(f"-o {args.out}: a cohort{why} writes one folder per slide; give a folder, e.g. -o "
                         f"{args.out.with_suffix('')}.")
    if args.device and not args.scheduler:  # local workers have this machine's devices: say so before starting
        from ..device import select_device

        select_device(args.device)
    slides = list_slides(args.input)
    folders = {Path(i).resolve() for i in args.input if Path(i).is_dir()} | {s.path.parent.resolve() for s in slides}
    if args.out.resolve() in folders:
        raise ValueError(f"-o {args.out} is a folder of input slides; give a separate output folder, e.g. "
                         f"-o {args.out.name}-segmented.")
    opts = CohortOptions(level=args.level, batch_size=args.batch_size, device=args.device,
                         stain_normalise=args.stain_normalise,
                         stain_reference=str(args.stain_reference) if args.stain_reference else None,
                         geojson=args.geojson, overwrite=args.overwrite)
    print_notes(args)  # the model chosen for the slides, now that they are checked
    with cohort_client(args.workers, args.scheduler, args.device) as (client, threads):
        link = dashboard_link(client)
        n_workers = len(client.scheduler_info().get("workers", {}))
        print(f"{len(slides)} slide(s) on {n_workers} Dask worker(s) "
              f"({args.scheduler or 'local cluster'}); dashboard: "
              f"{link or 'not served (install bokeh for the Dask dashboard)'}", file=sys.stderr, flush=True)
        opts = CohortOptions(**{**opts.__dict__, "threads": threads})
        res = run_to_end(run_cohort(slides, model_dir, args.out, client, opts), print_progress)
    print(file=sys.stderr)
    print(f"{res.count('done')} segmented, {res.count('skipped')} already finished (skipped), "
          f"{res.count('failed')} failed; manifest: {res.manifest}", file=sys.stderr)
    if res.failed:
        shown = "; ".join(f"{e['name']} ({e['error']})" for e in res.failed[:5])
        more = f"; and {len(res.failed) - 5} more" if len(res.failed) > 5 else ""
        print(f"napari-wsss predict: error: {len(res.failed)} of {len(slides)} slide(s) failed: {shown}{more}. "
              "The others are finished; fix or remove those slides and rerun the same command to do them.",
              file=sys.stderr)
    print(res.out)
    return 2 if res.failed else 0
