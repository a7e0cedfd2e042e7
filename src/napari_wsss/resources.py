"""Where shipped files live: inside the package for a wheel, at the repository root for an editable install."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parent.parent  # src/napari_wsss -> repository root (editable install)


def _find(packaged: str, repo: str) -> Path:
    p = _PKG / packaged
    return p if p.exists() else _REPO / repo


def shipped_models_dir() -> Path:
    """Folder of model versions that ship with napari-wsss."""
    return _find("shipped_models", "models")


def sample_data_dir() -> Path:
    """Folder of the generated sample data set."""
    return _find("sample_data", "sample_data")


DEFAULT_MODEL = "sshr-default"


def default_model_dir() -> Path:
    """The model version the Segment button uses out of the box."""
    return shipped_models_dir() / DEFAULT_MODEL
