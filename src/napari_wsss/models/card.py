"""Model versions on disk: ``weights.pt`` (a state dict) + ``card.json`` (everything needed to rebuild and
trust it). One format for every method.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_dir, atomic_save
from ..classes import ClassSchema

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
FORMAT_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelCard:
    """Self-description of a model version.

    Attributes:
        method: METHODS registry name (``"sshr"``, ``"multistage"``, ...).
        backbone: BACKBONES registry name.
        schema: ``ClassSchema.to_dict()`` of the classes the model predicts.
        input_size: training tile size in pixels (square).
        mean, std: RGB normalisation applied to images scaled to 0..1.
        config: method-specific settings needed to rebuild and run the model (thresholds, head sizes, ...).
        training_data: where the training tiles came from (path or generator settings).
        metrics: evaluation numbers (e.g. ``{"test": {"mIoU": 0.8, ...}}``).
        seed, command: how to reproduce it.
        parent: name/path of the version this one was fine-tuned from.
        name: version name (the folder name).
        stain: the training data's stain, for inference: ``"stats"`` (``ops.stain.stain_statistics``: warns when
            an image is stained unlike the training data) and ``"macenko"`` (``ops.stain_norm``'s reference for
            optional stain normalisation); empty for versions made before they existed (checks are skipped).
    """

    method: str
    backbone: str
    schema: dict
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    config: dict[str, Any] = field(default_factory=dict)
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    command: str = ""
    parent: str | None = None
    name: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION
    stain: dict[str, Any] = field(default_factory=dict)

    @property
    def class_schema(self) -> ClassSchema:
        return ClassSchema.from_dict(self.schema)

    @property
    def working_scale(self) -> float:
        """Factor every tile is rescaled by before this model sees it, in inference, evaluation and fine-tuning.

        ``config["scale"]`` as the trainer recorded it (``data.scale.working_scale(input_size, tile_size)``);
        cards without it fall back to that rule from ``config["tile_size"]``, else 1 (tiles at their own size).
        """
        from ..data.scale import working_scale

        if self.config.get("scale") is not None:
            return float(self.config["scale"])
        if self.config.get("tile_size"):
            return working_scale(int(self.input_size), int(self.config["tile_size"]))
        return 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "card") -> ModelCard:
        required = {"method", "backbone", "schema"}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"{source}: model card lacks {missing}; it was not written by napari-wsss or is damaged.")
        if int(d.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(
                f"{source}: card format {d['format_version']} is newer than this napari-wsss understands "
                f"({FORMAT_VERSION}); upgrade napari-wsss."
            )
        known = set(cls.__dataclass_fields__)
        card = cls(**{k: v for k, v in d.items() if k in known})
        card.mean, card.std = tuple(card.mean), tuple(card.std)
        ClassSchema.from_dict(card.schema)  # validates
        return card


def check_schema(card: ModelCard, schema: ClassSchema, what: str = "model") -> None:
    """Raise a clear ValueError when a model predicts other classes than ``schema``."""
    model_names = card.class_schema.names
    if model_names != schema.names:
        raise ValueError(
            f"The {what} {card.name or ''} predicts classes {model_names}, but the project uses {schema.names} "
            f"({schema.name}). Choose a model trained on this class schema, or open the data with the "
            f"{card.class_schema.name} schema."
        )


def save_model(out_dir: str | Path, state_dict: dict, card: ModelCard, overwrite: bool = False) -> Path:
    """Write a model version folder atomically (both files appear together or not at all)."""
    import torch

    out_dir = Path(out_dir)
    card.name = card.name or out_dir.name
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        torch.save(state_dict, tmp / WEIGHTS_FILE)
        (tmp / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return out_dir


def save_card(model_dir: str | Path, card: ModelCard) -> Path:
    """Rewrite only the card (e.g. after evaluation added metrics), atomically."""
    path = Path(model_dir) / CARD_FILE
    with atomic_save(path) as tmp:
        tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return path


def load_card(model_dir: str | Path) -> ModelCard:
    """Read and validate ``card.json`` of a model version folder."""
    model_dir = Path(model_dir)
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No model card at {path}. A model version is a folder with {CARD_FILE} and {WEIGHTS_FILE} "
            "(as written by `napari-wsss train`)."
        )
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the model card is damaged.") from e
    card = ModelCard.from_dict(d, source=str(path))
    size = card.input_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{path}: 'input_size' should be a whole number of pixels >= 1, got {size!r:.40}; the "
                         "model card is damaged.")
    card.name = card.name or model_dir.name
    return card


def load_weights(model_dir: str | Path, map_location: Any = "cpu") -> dict:
    """Load the state dict of a model version (``weights_only=True``: no code runs from the file)."""
    import torch

    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No weights at {path}; the model version folder is incomplete.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        first = (str(e).strip().splitlines() or [""])[0][:200]  # torch's refusals run to several lines
        raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {first}); the file is damaged, or "
                         "holds more than tensors (refused: no code in a weights file is run).") from e


def model_summary(card: ModelCard) -> str:
    """Two short lines a user reads before trusting a model: its classes (schema) and what it was trained on.

    A model trained on the project's generated tiles says plainly that it is a demo: it has never seen real
    tissue, and on real H&E it does worse than trivial.
    """
    schema = card.class_schema
    bg = schema.classes[-1]
    classes = f"{schema.name}: {', '.join(schema.foreground_names)} (+ {bg.name})"
    data = (card.training_data or "").strip()
    if data.startswith("synthetic") or "synthetic" in data.split(":")[0]:
        trained = "DEMO model trained on generated (synthetic) tiles, not on real tissue; train or fine-tune " \
                  "on your own slides before relying on it."
    elif data:
        trained = f"trained on: {data if len(data) <= 160 else data[:157] + '...'}"
    else:
        trained = "trained on: not recorded in its card"
    if card.parent:
        trained += f" (fine-tuned from {card.parent})"
    return f"classes {classes}\n{trained}"
