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


def shipped_model_dirs() -> list[Path]:
    """The shipped model version folders (those holding card.json), by name."""
    root = shipped_models_dir()
    return sorted(d for d in root.iterdir() if (d / "card.json").is_file()) if root.is_dir() else []


def resolve_model(value: str | Path, option: str = "--model") -> Path:
    """A model version folder from a path or a shipped model's name (``sshr-glas``): ``napari-wsss info`` lists
    the names, so every ``--model`` takes them. A path holding card.json wins over a name.

    Raises:
        FileNotFoundError: neither; one line naming the shipped models.
    """
    path = Path(value)
    if (path / "card.json").is_file():
        return path
    shipped = shipped_models_dir() / str(value)
    if path.name == str(value) and (shipped / "card.json").is_file():  # a plain name, not a path
        return shipped
    names = ", ".join(d.name for d in shipped_model_dirs()) or "none"
    what = "is a folder without card.json" if path.is_dir() else "does not exist"
    raise FileNotFoundError(f"{option} {value}: {what}, and no shipped model has that name; give a model version "
                            f"folder (card.json + weights.pt) or a shipped model: {names}.")


DEFAULT_MODEL = "sshr-default"


def default_model_dir() -> Path:
    """The model version the Segment button uses out of the box."""
    return shipped_models_dir() / DEFAULT_MODEL


def user_data_dir() -> Path:
    """Where napari-wsss keeps what it writes for data it may not write beside (projects of sample data or of
    read-only folders): ``$NAPARI_WSSS_DATA_DIR``, else platformdirs' user data folder (napari depends on it),
    else ``~/.napari-wsss``."""
    import os

    env = os.environ.get("NAPARI_WSSS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".napari-wsss"
    return Path(platformdirs.user_data_dir("napari-wsss", appauthor=False))


def is_shipped(path: Path) -> bool:
    """True for files that come with napari-wsss (the package, its sample data and models): never written to."""
    path = Path(path).resolve()
    return any(path.is_relative_to(d.resolve()) for d in (_PKG, sample_data_dir(), shipped_models_dir()))
