from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.gui._reader import get_reader, read_path


def test_reader_opens_val_folder_as_stack_with_ground_truth(tiny_dataset: Path) -> None:
    reader = get_reader(str(tiny_dataset / "test"))
    assert reader is not None
    (img, img_kw, img_kind), (lab, lab_kw, lab_kind) = reader(str(tiny_dataset / "test"))
    assert img_kind == "image" and img.shape == (3, 64, 64, 3) and img_kw["rgb"]
    assert lab_kind == "labels" and lab.shape == (3, 64, 64)
    # masks are shown in napari's convention: background 0, class i -> i + 1, coloured by the schema
    values = set(np.unique(np.asarray(lab)).tolist())
    assert values <= {0, 1, 2, 3, 4}
    assert lab_kw["colormap"].color_dict[1][:3] == pytest.approx(np.array([205, 51, 51]) / 255)
    assert lab_kw["features"]["class"] == ["background", *LUAD_HISTOSEG.foreground_names]


def test_reader_opens_slide_as_multiscale(pyramid_tiff: Path) -> None:
    ((levels, kw, kind),) = read_path(str(pyramid_tiff))
    assert kind == "image" and kw["multiscale"] and len(levels) == 3


def test_reader_declines_unrelated_paths(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
