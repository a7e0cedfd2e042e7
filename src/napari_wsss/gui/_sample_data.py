"""npe2 sample-data hooks: the generated LUAD-style tiles and slide that ship with the plugin, and real tissue."""

from __future__ import annotations

from ..resources import sample_data_dir
from ._reader import open_on_first_tile, read_slide_layer, read_tile_folder


def _need(path):  # noqa: ANN001, ANN202
    if not path.exists():
        raise FileNotFoundError(f"Sample data missing at {path}; regenerate it with `make sample-data`.")
    return path


def sample_tiles() -> list:
    """Synthetic LUAD-style test tiles with their ground-truth masks."""
    folder = _need(sample_data_dir() / "luad_synthetic" / "test")
    layers = read_tile_folder(folder)
    open_on_first_tile(str(folder))
    return layers


def sample_slide() -> list:
    """A synthetic pyramidal H&E slide (multiscale)."""
    return [read_slide_layer(_need(sample_data_dir() / "slide" / "synthetic_slide.tif"))]


def sample_ihc() -> list:
    """The real immunohistochemistry tissue image scikit-image ships (offline)."""
    from skimage import data

    return [(data.immunohistochemistry(), {"name": "IHC (scikit-image)", "rgb": True}, "image")]
