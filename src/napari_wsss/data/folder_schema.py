"""Which classes a training folder was made with, read from the files the project's set makers write beside it.

The Train widget and ``napari-wsss train --data`` (without ``--schema``) both choose the classes this way: an
exported set trained with the default LUAD classes failed on its file names.
"""

from __future__ import annotations

from pathlib import Path


def schema_of_training_folder(folder: str | Path) -> tuple[str, str] | None:
    """The classes a training folder was made with, as (choice for the classes box, the file that says so).

    Patch sets name them in ``split.json``, exported sets in ``manifest.json``, sets made from tags in
    ``schema.json``; ``labels.csv``'s header names the classes of a set without them. The choice is a preset's short
    name, or the path of a schema file; None when the folder says nothing (the box is left as it is).
    """
    import csv
    import json

    from ..classes import PRESETS, load_schema

    folder = Path(folder)

    def preset(names: list[str] | None = None, name: str | None = None) -> str | None:
        for short, schema in PRESETS.items():
            if name is not None and schema.name == name:
                return short
            if names is not None and [n.lower() for n in names] in ([c.lower() for c in schema.foreground_names],
                                                                  [c.name.lower() for c in schema.classes]):
                return short
        return None

    for where in (folder, folder.parent):  # the set's root, or its training/ subfolder chosen as the data
        for fname in ("split.json", "manifest.json"):
            f = where / fname
            try:
                d = json.loads(f.read_text())["schema"]
                name = preset(name=d["name"]) or preset([c["name"] for c in d["classes"]])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if name:
                return name, str(f)
        f = where / "schema.json"
        if f.is_file():
            try:
                schema = load_schema(f)
            except (ValueError, KeyError, OSError):
                continue
            return preset(name=schema.name) or str(f), str(f)
        f = where / "labels.csv"
        if f.is_file():
            try:
                with open(f, newline="") as fh:
                    header = next(csv.reader(fh))
            except (OSError, StopIteration, csv.Error):
                continue
            name = preset(header[1:])
            if name:
                return name, str(f)
    return None
