"""Model versions kept inside an annotation project (``models/<version>/``: card.json + weights.pt)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_dir
from .classes import ClassSchema
from .store_records import check_key


class ProjectModels:
    """The model-version part of :class:`napari_wsss.store.Project`; needs ``root`` and ``schema``.

    Model folders are never named in ``project.json``, so they are written apart from the index.
    """

    root: Path
    schema: ClassSchema

    def check_model(self, card: Any) -> None:
        """Raise a clear ValueError when a model (a ``ModelCard``) predicts other classes than the project."""
        from .models.card import check_schema

        check_schema(card, self.schema, "model")

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_versions(self) -> list[Path]:
        """Model version folders stored in the project (e.g. fine-tuned from its corrections), by name."""
        d = self.models_dir
        return sorted(p for p in d.iterdir() if (p / "card.json").is_file()) if d.is_dir() else []

    def add_model_version(self, folder: str | Path, name: str | None = None) -> Path:
        """Copy a model version folder into ``models/<name>`` (atomically), after checking its classes."""
        from .models.card import load_card

        card = load_card(folder)
        self.check_model(card)
        dst = self.models_dir / check_key(name or Path(folder).name)
        with atomic_dir(dst) as tmp:
            for f in Path(folder).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return dst
