"""Fault catalogue: bad inputs, kills and concurrent writers against the CLI and the annotation project.

Each case builds its inputs in a fresh folder, runs ``napari-wsss`` in a child process (as a user would) and
counts a *clear answer*: exit code 2, one ``error:`` line on stderr written for that fault (not the CLI's generic
fallback for an unexpected TypeError and the like), no traceback, and every file that existed before the run
unchanged (nothing lost). Kill cases SIGKILL an ``export --overwrite`` at random moments and
count the earlier set surviving whole (or the new one complete); writer cases run 2 and 4 processes on one
project and count every update kept. Issue 15 lists the faults this catalogue grew from.

    .venv/bin/python benchmarks/faults.py              # writes the faults section of docs/benchmarks.md
    .venv/bin/python benchmarks/faults.py --no-write -k import   # only cases whose name holds "import"
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, in process too
from _fault_catalogue import MODEL, TEMPLATES, catalogue, make_project, tiles_dir  # noqa: E402
from _report import REPO, machine, write_section  # noqa: E402

KEY = "faults"
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
       "OMP_NUM_THREADS": "1", "NAPARI_WSSS_THREADS": "1"}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_wsss.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != "project.lock"}


def run_case(name: str, setup: Callable[[Path], list[str]], base: Path) -> tuple[bool, str]:
    d = base / f"case{abs(hash(name)) % 10**8}"
    argv = setup(d)
    before = snapshot(d) if d.exists() else {}
    pwned = Path("/tmp/napari_wsss_fault_pwned")
    pwned.unlink(missing_ok=True)
    r = cli(*argv)
    after = snapshot(d) if d.exists() else {}
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    lost = [p for p, h in before.items() if after.get(p) != h]
    problems = []
    if r.returncode != 2:
        problems.append(f"exit {r.returncode}")
    if "Traceback" in r.stderr:
        problems.append("traceback")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines")
    if lost:
        problems.append(f"changed/lost {lost[:2]}")
    if pwned.exists():
        problems.append("A RECEIVED FILE'S CODE RAN")
    if any("rerun with --debug" in e for e in errors):  # the boundary's fallback: one line, but not written for it
        problems.append(f"generic message ({errors[0].split('error: ', 1)[-1][:80]})")
    last = errors[-1] if errors else r.stderr.strip().splitlines()[-1:] or [""]
    return not problems, "; ".join(problems) or (last if isinstance(last, str) else last[0])


# -- kills -------------------------------------------------------------------------------------------------
def _killed(argv: list[str], delay: float) -> bool:
    """Run the CLI and SIGKILL it after ``delay`` s; True when the kill landed (it was still running)."""
    p = subprocess.Popen([sys.executable, "-m", "napari_wsss.cli", *argv], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        p.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def _valid_mask(path: Path, shape: tuple[int, int]) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except Exception:  # noqa: BLE001 - any failure to read is what this looks for
        return False
    return a.shape[:2] == shape


def _outcome(ok: bool, delay: float, landed: bool, note: str) -> tuple[bool, str]:
    when = f"killed at {delay:.1f} s" if landed else f"finished before the kill at {delay:.1f} s"
    return ok, f"{when}: {note}"


def kill_predict_tiles(d: Path, delay: float) -> tuple[bool, str]:
    from PIL import Image

    he = tiles_dir(d)
    rng = np.random.default_rng(3)
    for i in range(3, 16):
        Image.fromarray(rng.integers(100, 230, (64, 64, 3), dtype=np.uint8)).save(he / f"img{i}.png")
    before = snapshot(he)
    landed = _killed(["predict", str(he), "-o", str(d / "o")], delay)
    outs = sorted((d / "o").glob("*.png")) if (d / "o").is_dir() else []
    visible = [p for p in outs if not p.name.startswith(".")]
    whole = all(_valid_mask(p, (64, 64)) for p in visible)
    r = cli("predict", str(he), "-o", str(d / "o"), "--overwrite")
    after = sorted(p.name for p in (d / "o").iterdir())
    ok = snapshot(he) == before and whole and r.returncode == 0 and after == sorted(p.name for p in he.glob("*.png"))
    return _outcome(ok, delay, landed, f"{len(visible)} masks after the kill, all whole: {whole}; rerun exit "
                    f"{r.returncode}, {len(after)} files in the output (inputs untouched: {snapshot(he) == before})")


def _zarr_state(path: Path) -> str:
    import zarr

    if not path.exists():
        return "absent"
    try:
        return "complete" if zarr.open_group(str(path), mode="r").attrs.get("complete") else "incomplete"
    except Exception:  # noqa: BLE001
        return "unreadable"


SLIDE: dict[str, Path] = {}


def _slide(d: Path) -> Path:
    import shutil

    from napari_wsss.data.synthetic import write_slide

    if "s" not in SLIDE:
        SLIDE["s"] = write_slide(Path(tempfile.mkdtemp(prefix="faults-slide-")) / "s.tif", shape=(1536, 1536),
                                 tile=256)
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(SLIDE["s"], d / "s.tif")
    return d / "s.tif"


def kill_predict_slide(d: Path, delay: float, rerun: bool) -> tuple[bool, str]:
    """A first run killed leaves nothing or a result marked incomplete; a killed rerun keeps the earlier one."""
    slide = _slide(d)
    out = d / "s.zarr"
    argv = ["predict", str(slide), "-o", str(out)]
    earlier = None
    if rerun:
        assert cli(*argv).returncode == 0
        earlier = snapshot(out)
    landed = _killed([*argv, "--overwrite"] if rerun else argv, delay)
    state = _zarr_state(out)
    kept = earlier is None or snapshot(out) == earlier or state == "complete"
    ok_after_kill = (state in ("complete",) if rerun else state in ("absent", "incomplete", "complete")) and kept
    r = cli(*argv, "--overwrite")
    left = [p.name for p in d.iterdir() if p.name.startswith(".")]
    ok = ok_after_kill and r.returncode == 0 and _zarr_state(out) == "complete" and not left
    what = "rerun over a complete result" if rerun else "first run"
    return _outcome(ok, delay, landed, f"{what}: after the kill the result is {state}"
                    f"{' (the earlier one, unchanged)' if rerun and earlier == snapshot(out) else ''}; rerun exit "
                    f"{r.returncode}, result {_zarr_state(out)}, leftovers {left}")


def kill_export(d: Path, delay: float, overwrite: bool) -> tuple[bool, str]:
    """SIGKILL an export (first, or ``--overwrite`` onto an earlier set): no set or a whole one must remain."""
    from napari_wsss.export.manifest import verify_manifest

    root = make_project(d, n=6)
    if overwrite:
        assert cli("export", "--project", str(root), "--out", str(d / "set")).returncode == 0
    project_before = snapshot(root)
    landed = _killed(["export", "--project", str(root), "--out", str(d / "set"), *(["--overwrite"] * overwrite)],
                     delay)
    present = (d / "set").exists()
    whole = present and (d / "set" / "manifest.json").is_file() and not verify_manifest(d / "set")
    ok_after = whole if overwrite else (whole or not present)
    r = cli("export", "--project", str(root), "--out", str(d / "set"), "--overwrite")
    left = [p.name for p in d.iterdir() if p.name.startswith(".")]
    ok = ok_after and r.returncode == 0 and not left and snapshot(root) == project_before
    return _outcome(ok, delay, landed, f"{'overwrite' if overwrite else 'first export'}: "
                    f"{'a whole set' if whole else 'no set' if not present else 'A DAMAGED SET'} after the kill; "
                    f"rerun exit {r.returncode}, leftovers {left}")


def _project_whole(root: Path) -> tuple[bool, str]:
    """The index loads and every item it lists with a mask has a readable mask of its shape."""
    from napari_wsss.store import Project

    try:
        p = Project.load(root)
        bad = [it.key for it in p.items() if it.mask and p.load_mask(it.key) is None]
    except Exception as e:  # noqa: BLE001
        return False, f"project unreadable ({type(e).__name__}: {str(e)[:80]})"
    return not bad, f"{len(p.items())} items, {len(bad)} with a missing or unreadable mask"


def kill_import(d: Path, delay: float, into_existing: bool) -> tuple[bool, str]:
    root = make_project(d, n=12)
    s = d / "set"
    assert cli("export", "--project", str(root), "--out", str(s), "--filter", "all").returncode == 0
    target = root if into_existing else d / "new.wsss"
    argv = ["import", str(s), "--project", str(target), *(["--overwrite"] * into_existing)]
    if into_existing:  # the project's masks differ from the set's: an overwrite replaces them
        from napari_wsss.store import Project

        p = Project.load(target)
        for it in p.items():
            if it.mask:
                m = p.load_mask(it.key)
                p.save_correction(it.key, (m + 1) % 4, np.ones(m.shape, bool))
    landed = _killed(argv, delay)
    ok_after, note = _project_whole(target) if target.exists() else (True, "no project")
    r = cli(*argv[:4], "--overwrite")
    ok_rerun, note2 = _project_whole(target)
    ok = ok_after and r.returncode == 0 and ok_rerun
    return _outcome(ok, delay, landed, f"{'into a project with other masks' if into_existing else 'new project'}: "
                    f"after the kill {note}; rerun exit {r.returncode}, {note2}")


FT = ["--epochs", "1", "--batch-size", "4", "--set", "min_epoch_crops=1", "--patience", "0", "--switch-every", "0"]


def kill_finetune(d: Path, delay: float) -> tuple[bool, str]:
    """The project is only read until the new version appears whole (card and weights) or not at all."""
    from napari_wsss.models.card import load_card, load_weights

    root = make_project(d, n=6)
    before = snapshot(root)
    argv = ["finetune", "--project", str(root), "--base", str(MODEL), *FT]
    landed = _killed(argv, delay)
    models = root / "models"
    versions = [p for p in models.iterdir() if not p.name.startswith(".")] if models.is_dir() else []
    whole = True
    for v in versions:
        try:
            load_card(v), load_weights(v)
        except Exception:  # noqa: BLE001
            whole = False
    unchanged = {k: h for k, h in snapshot(root).items() if not k.startswith("models")} == before
    r = cli(*argv)
    ok = whole and unchanged and r.returncode == 0
    return _outcome(ok, delay, landed, f"{len(versions)} version(s) after the kill, all whole: {whole}; project "
                    f"unchanged: {unchanged}; rerun exit {r.returncode}")


def kill_cases(kills: int, rng: random.Random) -> list[tuple[str, Callable[[Path], tuple[bool, str]]]]:
    """(name, run(folder)) of ``kills`` random moments per command and route."""
    c: list[tuple[str, Callable[[Path], tuple[bool, str]]]] = []
    for _ in range(kills):
        c.append(("kill -9: predict tiles", lambda d, t=rng.uniform(1.5, 3.5): kill_predict_tiles(d, t)))
        c.append(("kill -9: predict slide, first run", lambda d, t=rng.uniform(2, 5): kill_predict_slide(d, t, False)))
        c.append(("kill -9: predict slide --overwrite", lambda d, t=rng.uniform(2, 5): kill_predict_slide(d, t, True)))
        c.append(("kill -9: export", lambda d, t=rng.uniform(0.3, 1.0): kill_export(d, t, False)))
        c.append(("kill -9: export --overwrite", lambda d, t=rng.uniform(0.3, 1.0): kill_export(d, t, True)))
        c.append(("kill -9: import into a new project", lambda d, t=rng.uniform(0.2, 0.55): kill_import(d, t, False)))
        c.append(("kill -9: import --overwrite", lambda d, t=rng.uniform(0.2, 0.55): kill_import(d, t, True)))
        c.append(("kill -9: finetune", lambda d, t=rng.uniform(1.5, 3.8): kill_finetune(d, t)))
    return c


# -- concurrent writers --------------------------------------------------------------------------------------
AUTOSAVE = """
import sys
import numpy as np
from napari_wsss.store import Project
p = Project.load(sys.argv[1])
for k in sys.argv[2:]:  # what the Review widget's autosave does: a correction, then a status
    m = np.full((48, 40), 2, np.uint8)
    p.save_correction(k, m, np.ones(m.shape, bool))
    p.set_status(k, "accepted")
"""


def writers(base: Path, n: int) -> tuple[bool, str]:
    """``n`` writers on one project at once: CLI imports of received sets (each its own items) and autosavers
    (corrections and statuses through store.py, as the viewer does). Every update must be kept."""
    import shutil

    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.store import Project

    d = base / f"writers{n}"
    keys = [f"t{i}" for i in range(6 * n)]
    share = [keys[j::n] for j in range(n)]
    rng = np.random.default_rng(n)
    masks = {k: rng.integers(0, 4, (48, 40)).astype(np.uint8) for k in keys}

    def project(root: Path, ks: list[str]) -> Project:
        from PIL import Image

        (d / "tiles").mkdir(parents=True, exist_ok=True)
        p = Project.open(d / "tiles", LUAD_HISTOSEG, root=root)
        for k in ks:
            if not (d / "tiles" / f"{k}.png").exists():
                Image.fromarray(np.full((48, 40, 3), 200, np.uint8)).save(d / "tiles" / f"{k}.png")
        p.register([{"key": k, "image": f"{k}.png"} for k in ks])
        for k in ks:
            p.save_prediction(k, np.zeros((48, 40), np.uint8), "v1")
        return p

    target = project(d / "p.wsss", keys)
    procs, expect = [], {}
    for j, ks in enumerate(share):
        if j % 2 == 0:  # a CLI import of a set holding these items, corrected
            src = project(d / f"src{j}.wsss", ks)
            for k in ks:
                src.save_correction(k, masks[k], np.ones((48, 40), bool))
            assert cli("export", "--project", str(src.root), "--out", str(d / f"set{j}")).returncode == 0
            shutil.rmtree(src.root)
            procs.append(subprocess.Popen([sys.executable, "-m", "napari_wsss.cli", "import", str(d / f"set{j}"),
                                           "--project", str(target.root)], env=ENV, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
            expect.update({k: ("corrected", masks[k]) for k in ks})
        else:
            procs.append(subprocess.Popen([sys.executable, "-c", AUTOSAVE, str(target.root), *ks], env=ENV,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            expect.update({k: ("accepted", np.full((48, 40), 2, np.uint8)) for k in ks})
    rcs = [q.wait() for q in procs]
    p = Project.load(target.root)
    kept = sum(p.item(k).status == st and np.array_equal(p.load_mask(k), m) for k, (st, m) in expect.items())
    return kept == len(keys) and rcs == [0] * n, (f"{(n + 1) // 2} CLI imports + {n // 2} autosavers: {kept} of "
                                                 f"{len(keys)} updates kept, exit codes {rcs}")


# -- vectorisation speed -------------------------------------------------------------------------------------
def _per_component_polygons(binary: np.ndarray) -> int:
    """The vectoriser before (a contour pass and a hole labelling per component), kept here to time it."""
    from skimage.measure import find_contours, label, regionprops

    n = 0
    comps = label(binary, connectivity=2)
    for rp in regionprops(comps):
        r0, c0, r1, c1 = rp.bbox
        comp = comps[r0:r1, c0:c1] == rp.label
        max(find_contours(np.pad(comp.astype(np.float32), 1), 0.5), key=len)
        holes = label(np.pad(~comp, 1, constant_values=True), connectivity=1)
        for hp in regionprops(holes):
            hr0, hc0, hr1, hc1 = hp.bbox
            if hr0 and hc0 and hr1 < holes.shape[0] and hc1 < holes.shape[1]:
                find_contours(np.pad((holes[hr0:hr1, hc0:hc1] == hp.label).astype(np.float32), 1), 0.5)
        n += 1
    return n


def vector_timing() -> list[str]:
    """Seconds to vectorise a 224-px tile: per-pixel noise (the worst case) and a smooth mask."""
    from napari_wsss.classes import LUAD_HISTOSEG as S
    from napari_wsss.export.vectors import class_map_to_features

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, S.n_classes, (224, 224)).astype(np.uint8)
    yy, xx = np.mgrid[:224, :224]
    smooth = ((np.hypot(yy - 112, xx - 112) // 30) % S.n_classes).astype(np.uint8)
    class_map_to_features(noisy[:16, :16], S)  # imports
    rows = ["| 224-px class map | vectoriser | polygons | seconds |", "| --- | --- | --- | --- |"]
    for name, cm in (("per-pixel noise", noisy), ("smooth rings", smooth)):
        t = time.perf_counter()
        n = sum(_per_component_polygons(cm == c.index) for c in S.classes if not c.background)
        rows.append(f"| {name} | before: one contour pass per component | {n} | {time.perf_counter() - t:.2f} |")
        for label_, kw in (("now: one pass, exact", {}), ("now: --min-area 4", {"min_area": 4}),
                           ("now: --min-area 4 --simplify 1", {"min_area": 4, "tolerance": 1.0})):
            t = time.perf_counter()
            feats = class_map_to_features(cm, S, **kw)
            n = sum(len(f["geometry"]["coordinates"]) for f in feats)
            rows.append(f"| {name} | {label_} | {n} | {time.perf_counter() - t:.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--kills", type=int, default=2, help="random kill moments per command and route")
    ap.add_argument("--part", choices=["all", "inputs", "kills", "writers"], default="all")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)

        def record(name: str, ok: bool, note: str) -> None:
            rows.append((name, ok, note))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {note}", flush=True)

        for name, setup in catalogue().items() if args.part in ("all", "inputs") else []:
            if args.k in name:
                try:
                    record(name, *run_case(name, setup, base))
                except Exception as e:  # noqa: BLE001 - a broken case is a failure of the catalogue, shown
                    record(name, False, f"case setup failed: {type(e).__name__}: {e}")
        rng = random.Random(0)
        for n, (name, run) in enumerate(kill_cases(args.kills if args.part in ("all", "kills") else 0, rng)):
            if args.k in name:
                record(name, *run(base / f"kill{n}"))
        for n in (2, 4) if args.part in ("all", "writers") else ():
            if args.k in "concurrent writers":
                record(f"{n} concurrent writers on one project", *writers(base, n))
        vec = vector_timing() if not args.k and args.part == "all" else []
        import shutil

        for t in [*TEMPLATES.values(), *SLIDE.values()]:
            shutil.rmtree(t.parent, ignore_errors=True)
    clear = sum(ok for _, ok, _ in rows)
    secs = time.perf_counter() - t0
    kinds = {"bad input": sum(1 for n, _, _ in rows if not n.startswith(("kill", "2 ", "4 "))),
             "kill -9": sum(1 for n, _, _ in rows if n.startswith("kill")),
             "concurrent writers": sum(1 for n, _, _ in rows if n.startswith(("2 ", "4 ")))}
    print(f"{clear} of {len(rows)} answered clearly with nothing lost ({secs:.0f} s)")
    print("\n".join(vec))
    if args.no_write or args.k or args.part != "all":
        return
    fails = [f"| {n} | {note.replace('|', '/')} |" for n, ok, note in rows if not ok]
    body = "\n".join([
        "## Faults: bad inputs, kills and concurrent writers (`benchmarks/faults.py`)", "",
        "Command: `OMP_NUM_THREADS=1 NAPARI_WSSS_THREADS=1 python benchmarks/faults.py` (inputs it generates; the "
        "shipped `models/sshr-default`)  ", f"Machine: {machine()}", "",
        f"{len(rows)} cases in {secs:.0f} s ({', '.join(f'{v} {k}' for k, v in kinds.items())}); every case runs "
        "`napari-wsss` in a child process. A bad input counts as answered clearly when it exits with code 2, prints "
        "one `error:` line written for that fault (not the generic fallback that points to `--debug`) and no "
        "traceback, and leaves every file that existed before unchanged. A kill -9 (at a random moment of the run) "
        "counts when nothing the user had changed, no damaged output looks complete (a folder of masks holds only "
        "whole masks, a set verifies against its manifest, a slide result is complete or marked incomplete, a "
        "project loads with every listed mask readable, a model version has its card and weights) and the rerun "
        "succeeds; writers when every update is kept.", "",
        f"**{clear} of {len(rows)} answered clearly with nothing lost.**", "",
        *(["| case not answered clearly | what happened |", "| --- | --- |", *fails, ""] if fails else []),
        f"Kill moments and what each left ({sum('killed at' in note for n, _, note in rows if n.startswith('kill'))} "
        f"of {kinds['kill -9']} landed while the command ran; the others ended first, machine load decides):", "",
        "| kill | what remained, and the rerun |", "| --- | --- |",
        *[f"| {n} | {note.replace('|', '/')} |" for n, ok, note in rows if n.startswith("kill")], "",
        "A kill during an import's write phase leaves the items written so far (each whole, with its mask; the "
        "project loads), not the whole set: the rerun (`--overwrite`) completes it. The index is written once per "
        "item, so a partial import is visible until then.", "",
        "Writers:", "", *[f"- {n}: {note}" for n, ok, note in rows if n.startswith(("2 ", "4 "))], "",
        "GeoJSON export speed (`vectors.mask_polygons`, one process, 1 thread; the 'before' rows time the earlier "
        "per-component algorithm, kept in the script without its ring conversion, so they understate it: the "
        "package's own earlier code took 2.6-4 s on the noisy tile):", "", *vec,
    ])
    write_section(KEY, body)


if __name__ == "__main__":
    main()
