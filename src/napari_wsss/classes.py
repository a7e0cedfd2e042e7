"""Tissue class schemas: names, colours and indices of the classes a model predicts.

Two index spaces exist and are converted here only:

* the **class map** (dataset convention, what models, masks on disk and metrics use): foreground classes
  are ``0 .. K-1`` in schema order and background (white glass) is ``K`` — exactly LUAD-HistoSeg's and
  BCSS-WSSS's palette PNG masks;
* the **napari label image**: ``0`` is napari's transparent "no label", so background maps to ``0`` and
  foreground class ``i`` to label ``i + 1``. A pathologist then sees only tissue coloured, and erasing a
  region makes it background.

A third space, **mask values**, is what a dataset's own mask files hold (GlaS: gland 255, everything else 0).
A schema may give each class its ``mask_value``; :meth:`ClassSchema.map_mask_values` turns such masks into
class maps. A class no dataset annotates (GlaS: the glass) may say what it is scored as (``scored_as``).
Schemas come from presets or small JSON/TOML files (:func:`load_schema`; format in docs/class-schemas.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TissueClass:
    """One tissue class.

    Attributes:
        name: short code shown to the user and used in file names/CSV headers (e.g. ``"TE"``).
        colour: RGB 0..255 used in palette PNGs and in the napari Labels layer.
        index: value in the class map (dataset convention).
        description: long name for tooltips.
        background: True for the white-glass class.
        mask_value: the value this class has in the dataset's own mask files (None: not annotated there or
            the masks hold class indices).
        scored_as: name of the class this one counts as when scoring against masks that do not annotate it
            (GlaS: predicted glass is non-gland tissue); None: scored as itself.
    """

    name: str
    colour: tuple[int, int, int]
    index: int
    description: str = ""
    background: bool = False
    mask_value: int | None = None
    scored_as: str | None = None


@dataclass(frozen=True)
class ClassSchema:
    """An ordered set of foreground classes plus one background class (last index)."""

    name: str
    classes: tuple[TissueClass, ...]
    description: str = ""

    def __post_init__(self) -> None:
        indices = [c.index for c in self.classes]
        if indices != list(range(len(self.classes))):
            raise ValueError(f"Schema {self.name!r}: class indices must be 0..{len(self.classes) - 1} in order, got {indices}.")
        if len(self.classes) < 2:
            raise ValueError(f"Schema {self.name!r}: at least one tissue class and one background class are required.")
        bg = [c for c in self.classes if c.background]
        if len(bg) != 1 or not self.classes[-1].background:
            raise ValueError(f"Schema {self.name!r}: exactly one background class, placed last, is required.")
        names = [c.name.lower() for c in self.classes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Schema {self.name!r}: class names must be unique (case-insensitive), {dup} repeat.")
        values = [c.mask_value for c in self.classes if c.mask_value is not None]
        if len(set(values)) != len(values) or any(not 0 <= v <= 65535 for v in values):
            raise ValueError(f"Schema {self.name!r}: mask values must be distinct integers 0..65535, got {values}.")
        for c in self.classes:
            if c.scored_as is not None and (c.scored_as.lower() not in names or c.scored_as.lower() == c.name.lower()):
                raise ValueError(f"Schema {self.name!r}: class {c.name!r} is scored_as {c.scored_as!r}, which is "
                                 f"not another class of the schema ({', '.join(self.names)}).")

    # -- views ---------------------------------------------------------------------------------------
    @property
    def foreground(self) -> tuple[TissueClass, ...]:
        return self.classes[:-1]

    @property
    def n_foreground(self) -> int:
        return len(self.classes) - 1

    @property
    def n_classes(self) -> int:
        """Foreground + background."""
        return len(self.classes)

    @property
    def background_index(self) -> int:
        return len(self.classes) - 1

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def foreground_names(self) -> list[str]:
        return [c.name for c in self.foreground]

    def index_of(self, name: str) -> int:
        """Class-map index of a class name (case-insensitive)."""
        for c in self.classes:
            if c.name.lower() == name.lower():
                return c.index
        raise KeyError(f"Unknown class {name!r} in schema {self.name!r}; expected one of {self.names}.")

    @property
    def has_mask_values(self) -> bool:
        """True when the dataset's mask files hold ``mask_value``s rather than class indices."""
        return any(c.mask_value is not None for c in self.classes)

    def scored_lookup(self) -> np.ndarray:
        """(n_classes,) uint8: class index -> the class it is scored as (itself unless ``scored_as``)."""
        return np.array([self.index_of(c.scored_as) if c.scored_as else c.index for c in self.classes], np.uint8)

    def palette(self) -> np.ndarray:
        """(n_classes, 3) uint8 RGB colours indexed by class-map value."""
        return np.array([c.colour for c in self.classes], dtype=np.uint8)

    def pil_palette(self) -> list[int]:
        """Flat 768-entry palette for ``PIL.Image.putpalette`` (unused entries black)."""
        flat = self.palette().ravel().tolist()
        return flat + [0] * (768 - len(flat))

    # -- conversions -----------------------------------------------------------------------------------
    def validate_class_map(self, class_map: np.ndarray, source: str = "mask") -> np.ndarray:
        """Return ``class_map`` as uint8 after checking every value is a class index.

        Raises:
            ValueError: naming ``source`` and the offending values when they exceed the schema.
        """
        arr = np.asarray(class_map)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_classes):
            bad = np.unique(arr[(arr < 0) | (arr >= self.n_classes)])[:10].tolist()
            raise ValueError(
                f"{source}: values {bad} are outside the {self.name} schema (expected 0..{self.n_classes - 1}: "
                f"{', '.join(f'{c.index}={c.name}' for c in self.classes)}). Check that the mask belongs to this "
                "dataset or choose the matching class schema."
            )
        return arr.astype(np.uint8, copy=False)

    def map_mask_values(self, mask: np.ndarray, source: str = "mask") -> np.ndarray:
        """A dataset mask holding ``mask_value``s -> ``(H, W)`` uint8 class map.

        Raises:
            ValueError: values no class has (named, with the schema's mapping), or a schema without mask values.
        """
        if not self.has_mask_values:
            raise ValueError(f"{source}: the {self.name} schema gives no mask_value per class; its masks must "
                             "hold class indices (or add mask_value to the schema file).")
        arr = np.asarray(mask)
        lut = {c.mask_value: c.index for c in self.classes if c.mask_value is not None}
        values = np.unique(arr)
        bad_all = [int(v) for v in values if int(v) not in lut]
        bad = bad_all[:10]
        if bad:
            # Many stray values in between the class values are what JPEG compression or a smooth resize leaves
            # at every edge; the mask's classes cannot be recovered from them, so say how to make a clean one.
            lossy = len(bad_all) > 2 * len(lut) or str(source).lower().endswith((".jpg", ".jpeg"))
            hint = (f"; {len(bad_all)} stray values look like a lossy (JPEG) or smoothly resized mask: save masks "
                    "losslessly (PNG or TIFF) and resize them with nearest-neighbour only" if lossy else
                    ". Check the schema's mask_value entries or that the mask belongs to this dataset")
            raise ValueError(
                f"{source}: mask values {bad} belong to no class of the {self.name} schema (expected "
                f"{', '.join(f'{v}={self.classes[i].name}' for v, i in lut.items())}){hint}.")
        out = np.empty(arr.shape, np.uint8)
        for v in values:
            out[arr == v] = lut[int(v)]
        return out

    def to_labels(self, class_map: np.ndarray) -> np.ndarray:
        """Class map (background = K) -> napari label image (background = 0, class i = i + 1), uint8."""
        cm = np.asarray(class_map).astype(np.int16)
        out = cm + 1
        out[cm == self.background_index] = 0
        return out.astype(np.uint8)

    def from_labels(self, labels: np.ndarray) -> np.ndarray:
        """napari label image -> class map. Labels outside ``1..K`` (a stray brush value) become background."""
        lab = np.asarray(labels).astype(np.int64)
        out = lab - 1
        out[(lab <= 0) | (lab > self.n_foreground)] = self.background_index
        return out.astype(np.uint8)

    def label_colours(self) -> dict[int | None, tuple[float, float, float, float]]:
        """napari ``DirectLabelColormap`` colour dict: label value -> RGBA in 0..1 (0 transparent)."""
        colours: dict[int | None, tuple[float, float, float, float]] = {
            None: (0.0, 0.0, 0.0, 0.0),
            0: (0.0, 0.0, 0.0, 0.0),
        }
        for c in self.foreground:
            r, g, b = (v / 255.0 for v in c.colour)
            colours[c.index + 1] = (r, g, b, 1.0)
        return colours

    def to_dict(self) -> dict:
        """The full schema as JSON-ready data (cards, projects and manifests store this); optional fields
        appear only when set, so the presets' dicts are what they always were."""
        classes = []
        for c in self.classes:
            d: dict[str, Any] = {"name": c.name, "colour": list(c.colour), "index": c.index,
                                 "description": c.description, "background": c.background}
            if c.mask_value is not None:
                d["mask_value"] = c.mask_value
            if c.scored_as is not None:
                d["scored_as"] = c.scored_as
            classes.append(d)
        out: dict[str, Any] = {"name": self.name, "classes": classes}
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ClassSchema:
        try:
            classes = tuple(
                TissueClass(c["name"], tuple(c["colour"]), int(c["index"]), c.get("description", ""),
                            bool(c.get("background", False)),
                            None if c.get("mask_value") is None else int(c["mask_value"]), c.get("scored_as"))
                for c in d["classes"]
            )
            return cls(d["name"], classes, d.get("description", ""))
        except (KeyError, TypeError) as e:
            raise ValueError(f"Invalid class schema description {d!r}: missing or malformed field ({e}).") from e


# The palette both datasets' masks use (WSSS-Tissue code): red, green, blue, orange, white.
_PALETTE = [(205, 51, 51), (0, 255, 0), (65, 105, 225), (255, 165, 0), (255, 255, 255)]

LUAD_HISTOSEG = ClassSchema(
    "LUAD-HistoSeg",
    (
        TissueClass("TE", _PALETTE[0], 0, "tumour epithelium"),
        TissueClass("NEC", _PALETTE[1], 1, "necrosis"),
        TissueClass("LYM", _PALETTE[2], 2, "lymphocytes"),
        TissueClass("TAS", _PALETTE[3], 3, "tumour-associated stroma"),
        TissueClass("BG", _PALETTE[4], 4, "background (white glass)", background=True),
    ),
)

BCSS_WSSS = ClassSchema(
    "BCSS-WSSS",
    (
        TissueClass("TUM", _PALETTE[0], 0, "tumour"),
        TissueClass("STR", _PALETTE[1], 1, "stroma"),
        TissueClass("LYM", _PALETTE[2], 2, "lymphocytic infiltrate"),
        TissueClass("NEC", _PALETTE[3], 3, "necrosis"),
        TissueClass("BG", _PALETTE[4], 4, "background (white glass)", background=True),
    ),
)

# GlaS (MICCAI 2015 gland segmentation): masks hold 255 for gland and 0 for everything else; the glass is not
# annotated, so a pixel predicted as glass is scored as non-gland tissue.
GLAS = ClassSchema(
    "colon-gland",
    (
        TissueClass("gland", (205, 51, 51), 0, "colon gland (epithelium and lumen)", mask_value=255),
        TissueClass("non-gland", (65, 105, 225), 1, "non-gland tissue (stroma, space between glands)",
                    mask_value=0),
        TissueClass("glass", (255, 255, 255), 2, "background (white glass)", background=True,
                    scored_as="non-gland"),
    ),
    "Colon H&E, gland vs non-gland (GlaS challenge masks: gland 255, non-gland 0).",
)

PRESETS: dict[str, ClassSchema] = {"luad": LUAD_HISTOSEG, "bcss": BCSS_WSSS, "glas": GLAS}
SCHEMA_SUFFIXES = (".json", ".toml")


def get_schema(name: str) -> ClassSchema:
    """A preset by short name (``luad``, ``bcss``, ``glas``) or full name (``LUAD-HistoSeg``), or a schema file
    (``.json`` / ``.toml``); see :func:`load_schema`."""
    return load_schema(name)


def load_schema(spec: str | Path | ClassSchema | dict) -> ClassSchema:
    """The class schema ``spec`` names: a preset (short or full name), a ``.json``/``.toml`` schema file, a
    schema dict (``ClassSchema.to_dict()`` or the file format) or a schema itself.

    Raises:
        KeyError: an unknown preset name (listing the presets).
        FileNotFoundError: a schema file that does not exist.
        ValueError: a file that does not parse or describes no valid schema (what is wrong, what to write).
    """
    if isinstance(spec, ClassSchema):
        return spec
    if isinstance(spec, dict):
        return schema_from_spec(spec, "schema")
    text = str(spec)
    key = text.lower()
    for short, schema in PRESETS.items():
        if key in (short, schema.name.lower()):
            return schema
    path = Path(text)
    if path.suffix.lower() in SCHEMA_SUFFIXES or path.is_file():
        return read_schema_file(path)
    raise KeyError(f"Unknown class schema {text!r}; available: {sorted(PRESETS)}, or the path of a .json/.toml "
                   "schema file (see schemas/colon-gland.json).")


def read_schema_file(path: str | Path) -> ClassSchema:
    """Parse a JSON or TOML schema file (format: docs/class-schemas.md)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Class schema file {path} does not exist; give a preset ({', '.join(PRESETS)}) "
                                "or the path of a .json/.toml schema file.")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"{path}: not a valid {path.suffix.lstrip('.').upper() or 'JSON'} schema file "
                         f"({' '.join(str(e).split())}); see schemas/colon-gland.json for the format.") from None
    return schema_from_spec(data, str(path))


_CLASS_KEYS = {"name", "colour", "color", "index", "description", "background", "mask_value", "scored_as"}


def schema_from_spec(data: Any, source: str) -> ClassSchema:
    """A schema from file data: ``name``, ``classes`` (ordered: name, colour, description, background,
    mask_value, scored_as; ``index`` optional). A background class given first or in between is moved last
    (the class-map convention) unless explicit indices say otherwise, which is refused."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: {what}; see schemas/colon-gland.json for the format.")

    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        raise bad("expected a table with a non-empty 'name' and a list 'classes'")
    raw = data.get("classes")
    if not isinstance(raw, list) or len(raw) < 2:
        raise bad(f"'classes' must list at least two classes (tissue and one background), got {raw!r}")
    entries: list[dict[str, Any]] = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise bad(f"class {i + 1} must be a table with a non-empty 'name', got {c!r}")
        unknown = sorted(set(c) - _CLASS_KEYS)
        if unknown:
            raise bad(f"class {c['name']!r} has unknown fields {unknown} (expected some of {sorted(_CLASS_KEYS)})")
        colour = c.get("colour", c.get("color"))
        if (not isinstance(colour, (list, tuple)) or len(colour) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
            raise bad(f"class {c['name']!r}: 'colour' must be three integers 0..255 (RGB), got {colour!r}")
        for key, kind in (("background", bool), ("description", str), ("scored_as", str)):
            if key in c and not isinstance(c[key], kind):
                raise bad(f"class {c['name']!r}: {key!r} must be a {kind.__name__}, got {c[key]!r}")
        for key in ("mask_value", "index"):
            if key in c and (not isinstance(c[key], int) or isinstance(c[key], bool)):
                raise bad(f"class {c['name']!r}: {key!r} must be an integer, got {c[key]!r}")
        entries.append(c)
    n_bg = sum(bool(c.get("background")) for c in entries)
    if n_bg != 1:
        raise bad(f"exactly one class must have \"background\": true (the white glass), found {n_bg}")
    if any("index" in c for c in entries):
        if not all("index" in c for c in entries):
            raise bad("give 'index' for every class or for none (the order then gives the indices)")
        entries.sort(key=lambda c: c["index"])
        if [c["index"] for c in entries] != list(range(len(entries))):
            raise bad(f"indices must be 0..{len(entries) - 1}, got {sorted(c['index'] for c in entries)}")
        if not entries[-1].get("background"):
            raise bad("the background class must have the last index (class maps put background last); "
                      "renumber the classes or drop 'index' to let the order decide")
    else:  # order decides: tissue classes keep theirs, background goes last
        entries = [c for c in entries if not c.get("background")] + [c for c in entries if c.get("background")]
    try:
        classes = tuple(
            TissueClass(c["name"], tuple(c.get("colour", c.get("color"))), i, c.get("description", ""),
                        bool(c.get("background", False)), c.get("mask_value"), c.get("scored_as"))
            for i, c in enumerate(entries))
        return ClassSchema(data["name"], classes, str(data.get("description", "")))
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
