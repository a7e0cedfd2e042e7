"""Train > "From images with masks" picks the classes the masks are written in, and a greyed box says why.

Walk-through on a GlaS folder (images/ + masks/, 0/255): the classes box stayed "luad" and "Make patch set" failed
with "values [255] are outside the LUAD-HistoSeg schema"; with labels from the project's tags the patch box was
greyed out with no reason given. Reads real GlaS images from ../shared/data/glas (copied into the test's temporary
folder) and skips, saying why, where they are absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .._glas import GLAS, require_glas
from ._plugin import TRAIN, dock

NAMES = ("train_1.png", "train_10.png", "train_12.png")


@pytest.fixture
def glas_folder(tmp_path: Path) -> Path:
    require_glas(*(GLAS / sub / n for sub in ("images", "masks") for n in NAMES))
    folder = tmp_path / "glas"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for n in NAMES:
            shutil.copy(GLAS / sub / n, folder / sub / n)
    return folder


def test_a_glas_folder_picks_its_classes_and_makes_its_patch_set(glas_folder: Path, qtbot,  # noqa: ANN001
                                                                 make_napari_viewer) -> None:
    w = dock(make_napari_viewer(), TRAIN)
    assert w.schema_combo.currentText() == "luad"
    w.src_edit.setText(str(glas_folder))
    assert w.schema_combo.currentText() == "glas"
    assert w.status.text() == "Classes set to glas: the masks' values in glas fit them."
    w.make_patches()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)
    assert w.last_error is None, w.last_error
    split = json.loads((glas_folder.parent / "glas-patches56" / "split.json").read_text())
    assert split["schema"]["name"] == "colon-gland"


def test_a_schema_that_reads_the_masks_is_kept(glas_folder: Path, make_napari_viewer) -> None:  # noqa: ANN001
    """A schema file the person chose that fits the masks stays chosen (only a misfit is replaced)."""
    from napari_wsss.classes import load_schema

    custom = glas_folder.parent / "my-glands.json"
    custom.write_text(json.dumps({**load_schema("glas").to_dict(), "name": "my glands"}))
    w = dock(make_napari_viewer(), TRAIN)
    w.schema_combo.setCurrentText(str(custom))
    w.src_edit.setText(str(glas_folder))
    assert w.schema_combo.currentText() == str(custom)


def test_the_greyed_patch_box_says_why(make_napari_viewer) -> None:  # noqa: ANN001
    from napari_wsss.gui.train_widget import SOURCE_FOLDER, SOURCE_TAGS

    w = dock(make_napari_viewer(), TRAIN)
    assert w.patch_box.isEnabled() and w.patch_note.isHidden()
    w.source_combo.setCurrentText(SOURCE_TAGS)
    assert not w.patch_box.isEnabled() and not w.patches_btn.isEnabled()
    assert not w.patch_note.isHidden() and "labels come from the project's tags" in w.patch_note.text()
    assert "\n" not in w.patch_note.text() and w.patch_box.toolTip() == w.patch_note.text()
    w.source_combo.setCurrentText(SOURCE_FOLDER)
    assert w.patch_box.isEnabled() and w.patch_note.isHidden() and not w.patch_box.toolTip()
