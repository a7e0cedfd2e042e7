"""The manifest of an exported set: where every label came from, and the sha256 of every file.

``manifest.json`` (at the set's root) holds: ``format``/``format_version``, the napari-wsss version, ``created``,
the ``project`` (folder and data source), the class ``schema``, the export ``options`` (formats, filter, tile
size/overlap/level), one record per exported ``tiles`` entry (source image or slide region, model version,
reviewer status, touched-pixel fraction, timestamps, files, image-level labels), the ``slides`` and
``geojson`` files, and ``files``: ``{relative path: sha256}`` of every other file in the set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json
from ..json_checks import check_list, check_object, check_version

MANIFEST = "manifest.json"
FORMAT = "napari-wsss export"
FORMAT_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_tree(root: str | Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, str]:
    """``{posix relative path: sha256}`` of every file under ``root`` (sorted), except ``exclude``."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() not in exclude}


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> Path:
    """Hash every file under ``root`` into ``manifest["files"]`` and write ``root/manifest.json``."""
    manifest = {**manifest, "files": hash_tree(root)}
    return atomic_write_json(Path(root) / MANIFEST, manifest)


def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read and check the manifest of an exported set.

    Raises:
        FileNotFoundError: no ``manifest.json`` (not an exported set).
        ValueError: damaged, of another format, or newer than this version understands.
    """
    path = Path(root) / MANIFEST
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{root} is not a napari-wsss export: it has no {MANIFEST}. Give the folder that "
                                "`napari-wsss export` (or the Export widget) wrote.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the export is damaged — export it again.") from e
    fix = "the export is damaged or was not written by napari-wsss; nothing was read. Ask for a fresh export."
    d = check_object(d, "the manifest", str(path), fix)
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: format {d.get('format')!r}, expected {FORMAT!r}.")
    version = check_version(d, str(path), fix, default=0)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: export format {version} is newer than this napari-wsss understands "
                         f"({FORMAT_VERSION}); upgrade napari-wsss.")
    for field in ("schema", "files", "project", "options"):  # received files: shapes checked before any use
        if field in d:
            check_object(d[field], f"'{field}'", str(path), fix)
    for field in ("items", "tiles", "slides"):
        check_list(d, field, str(path), fix)
    check_list(d, "geojson", str(path), fix, of=str)
    return d


def verify_manifest(root: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Problems found comparing the files under ``root`` with the manifest's hashes (empty list: all match)."""
    root = Path(root)
    manifest = manifest if manifest is not None else load_manifest(root)
    listed: dict[str, str] = manifest.get("files", {})
    actual = hash_tree(root)
    problems = [f"missing: {p}" for p in sorted(set(listed) - set(actual))]
    problems += [f"not in the manifest: {p}" for p in sorted(set(actual) - set(listed))]
    problems += [f"changed (sha256 differs): {p}" for p in sorted(set(listed) & set(actual)) if listed[p] != actual[p]]
    return problems


def check_manifest(root: str | Path) -> dict[str, Any]:
    """Load the manifest and raise ValueError listing the files that do not match it."""
    m = load_manifest(root)
    problems = verify_manifest(root, m)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{root}: the files do not match {MANIFEST}: {'; '.join(problems[:5])}{more}. The set was "
                         "changed after export; export it again, or fix the files.")
    return m
