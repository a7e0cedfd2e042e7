"""Tissue class schemas: names, colours and indices of the classes a model predicts.

Two index spaces exist and are converted here only:

* the **class map** (dataset convention, what models, masks on disk and metrics use): foreground classes
  are ``0 .. K-1`` in schema order and background (white glass) is ``K`` — exactly LUAD-HistoSeg's and
  BCSS-WSSS's palette PNG masks;
* the **napari label image**: ``0`` is napari's transparent "no label", so background maps to ``0`` and
  foreground class ``i`` to label ``i + 1``. A pathologist then sees only tissue coloured, and erasing a
  region makes it background.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    name: str
    colour: tuple[int, int, int]
    index: int
    description: str = ""
    background: bool = False


@dataclass(frozen=True)
class ClassSchema:
    """An ordered set of foreground classes plus one background class (last index)."""

    name: str
    classes: tuple[TissueClass, ...]

    def __post_init__(self) -> None:
        indices = [c.index for c in self.classes]
        if indices != list(range(len(self.classes))):
            raise ValueError(f"Schema {self.name!r}: class indices must be 0..{len(self.classes) - 1} in order, got {indices}.")
        bg = [c for c in self.classes if c.background]
        if len(bg) != 1 or not self.classes[-1].background:
            raise ValueError(f"Schema {self.name!r}: exactly one background class, placed last, is required.")

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
        return {
            "name": self.name,
            "classes": [
                {"name": c.name, "colour": list(c.colour), "index": c.index, "description": c.description,
                 "background": c.background}
                for c in self.classes
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassSchema:
        try:
            classes = tuple(
                TissueClass(c["name"], tuple(c["colour"]), int(c["index"]), c.get("description", ""),
                            bool(c.get("background", False)))
                for c in d["classes"]
            )
            return cls(d["name"], classes)
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

PRESETS: dict[str, ClassSchema] = {"luad": LUAD_HISTOSEG, "bcss": BCSS_WSSS}


def get_schema(name: str) -> ClassSchema:
    """Look up a preset by short name (``luad``, ``bcss``) or full name (``LUAD-HistoSeg``)."""
    key = name.lower()
    for short, schema in PRESETS.items():
        if key in (short, schema.name.lower()):
            return schema
    raise KeyError(f"Unknown class schema {name!r}; available: {sorted(PRESETS)}.")
