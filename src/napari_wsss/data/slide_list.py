"""The slides of a cohort, from what a user types: slide files, folders of slides, globs and CSV manifests.

Each slide gets an output name (its file stem, or a CSV's ``id`` column) that is unique in the cohort, so every
slide's results can sit side by side in one output folder.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from .slide import SLIDE_SUFFIXES, is_slide_path

PATH_COLUMNS = ("path", "slide", "file", "filename")  # a CSV manifest's slide column, first found wins
ID_COLUMNS = ("id", "slide_id", "name")  # optional: the output name (default: the file's stem)
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class CohortSlide:
    """One slide of a cohort: its file and the name its outputs get (``<out>/<name>/...``)."""

    path: Path
    name: str


def slide_stem(path: Path) -> str:
    """File name without the slide suffix (``a.ome.tif`` -> ``a``)."""
    low = path.name.lower()
    for suf in sorted(SLIDE_SUFFIXES, key=len, reverse=True):
        if low.endswith(suf):
            return path.name[: -len(suf)]
    return path.stem


def has_slide_suffix(path: Path) -> bool:
    return path.name.lower().endswith(SLIDE_SUFFIXES)


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def is_slide_folder(folder: Path) -> bool:
    """A folder holding at least one pyramidal slide (a folder of plain tiles is not one)."""
    return folder.is_dir() and any(is_slide_path(f) for f in sorted(folder.iterdir()) if has_slide_suffix(f))


def is_cohort_input(inputs: list[str | Path]) -> bool:
    """Whether ``predict`` should run these inputs as a cohort: more than one, a CSV, a glob or a slide folder."""
    if len(inputs) != 1:
        return len(inputs) > 1
    text = str(inputs[0])
    p = Path(text)
    if p.suffix.lower() == ".csv" and p.is_file():
        return True
    if not p.exists() and is_glob(text):
        return True
    return is_slide_folder(p)


def list_slides(inputs: list[str | Path]) -> list[CohortSlide]:
    """The cohort's slides, in the order given (folders and globs sorted by name), each once.

    Args:
        inputs: slide files, folders (every file with a slide suffix in it, not recursive), glob patterns, or
            CSV manifests with a ``path`` column (relative paths are relative to the CSV) and an optional
            ``id`` column naming the outputs.
    Raises:
        FileNotFoundError: a named file or folder is not there, or a glob matches nothing.
        ValueError: a CSV without a path column, no slides at all, or two slides that would share an output
            name (with both paths, and how to tell them apart).
    """
    items: list[tuple[Path, str | None]] = []
    for raw in inputs:
        text = str(raw)
        p = Path(text)
        if p.is_dir():
            items += [(f, None) for f in sorted(p.iterdir()) if f.is_file() and has_slide_suffix(f)]
        elif p.is_file() and p.suffix.lower() == ".csv":
            items += _read_csv(p)
        elif p.exists():
            items.append((p, None))
        elif is_glob(text):
            hits = sorted(Path(h) for h in glob.glob(text, recursive=True))
            hits = [h for h in hits if h.is_file() and has_slide_suffix(h)]
            if not hits:
                raise FileNotFoundError(f"The pattern {text!r} matches no slide file ({', '.join(SLIDE_SUFFIXES)}); "
                                        "check the pattern, or quote it so the shell does not expand it.")
            items += [(h, None) for h in hits]
        else:
            raise FileNotFoundError(f"{text} does not exist; give slide files, a folder of slides, a glob or a "
                                    "CSV with a 'path' column.")
    seen: dict[Path, CohortSlide] = {}
    by_name: dict[str, CohortSlide] = {}
    for path, name in items:
        key = path.resolve()
        if key in seen:
            continue  # the same slide named twice (a file and its folder): segment it once
        s = CohortSlide(path, name or slide_stem(path))
        if s.name in by_name:
            raise ValueError(f"Two slides would share the output name {s.name!r}: {by_name[s.name].path} and "
                             f"{path}. Rename one, or list them in a CSV with an 'id' column of unique names.")
        seen[key] = by_name[s.name] = s
    if not seen:
        raise ValueError(f"No slides found in {', '.join(map(str, inputs))} (looked for {', '.join(SLIDE_SUFFIXES)}).")
    return list(seen.values())


def _read_csv(path: Path) -> list[tuple[Path, str | None]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    fields = {k.strip().lower(): k for k in (rows[0].keys() if rows else []) if k}
    col = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
    if col is None:
        raise ValueError(f"{path}: no slide column; expected a header with one of {', '.join(PATH_COLUMNS)} "
                         f"(got {', '.join(fields.values()) or 'an empty file'}).")
    idc = next((fields[c] for c in ID_COLUMNS if c in fields), None)
    out = []
    for n, row in enumerate(rows, 2):
        value = (row.get(col) or "").strip()
        if not value:
            raise ValueError(f"{path}, line {n}: the {col!r} column is empty; give the slide's path or drop the row.")
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        name = (row.get(idc) or "").strip() if idc else ""
        if name and (Path(name).name != name or name.startswith(".")):
            raise ValueError(f"{path}, line {n}: id {name!r} is not a plain file name; use letters, digits, - and _.")
        out.append((p, name or None))
    return out
