"""Review & correct docked first (the README's order) on a fresh folder of real tissue: it offers the model Segment
would preselect (sshr-glas, not the LUAD demo) and the new project takes that model's classes at once.

Walk-through on GlaS images: the palette read "1: TE, 2: NEC, 3: LYM, 4: TAS, 5: BG" and "Next most useful" listed
only sshr-default until the first Segment. Reads real GlaS images from ../shared/data/glas (copied into the test's
temporary folder) and skips, saying why, where they are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsss.store import Project

from .._glas import glas_copy
from ._plugin import REVIEW, SEGMENT, dock, open_path

NAMES = ("train_30.png", "train_31.png", "train_32.png")


@pytest.fixture
def glas_folder(tmp_path: Path) -> Path:
    return glas_copy(tmp_path / "colon", NAMES)


def test_review_docked_first_offers_the_real_tissue_model_and_its_classes(glas_folder: Path,  # noqa: ANN001
                                                                          make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    open_path(viewer, glas_folder)
    review = dock(viewer, REVIEW)
    assert [b.text() for b in review.palette_buttons] == ["1: gland", "2: non-gland", "3: glass"]
    project = Project.load(review.session.project.root)
    assert project.schema.name == "colon-gland" and project.schema_set_by == "model"  # not fixed: no user work
    assert "takes the colon-gland classes of sshr-glas" in review.message.text()
    combo = review.order_box.model_combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert "sshr-glas (shipped)" in labels and "sshr-default (shipped)" in labels
    assert combo.currentText() == "sshr-glas (shipped)"

    seg = dock(viewer, SEGMENT)  # Segment agrees on the model
    assert seg.version_combo.currentText() == "sshr-glas (shipped)"
    assert combo.currentText() == "sshr-glas (shipped)"


def test_segment_docked_first_with_the_demo_chosen_gives_review_its_classes(glas_folder: Path,  # noqa: ANN001
                                                                            make_napari_viewer) -> None:
    """The model Segment has chosen decides, as its first run would: the user picked the demo there."""
    viewer = make_napari_viewer()
    open_path(viewer, glas_folder)
    seg = dock(viewer, SEGMENT)
    seg.version_combo.setCurrentIndex(seg.version_combo.findText("sshr-default (shipped)"))
    seg.version_combo.activated.emit(seg.version_combo.currentIndex())  # what a click in the list emits
    review = dock(viewer, REVIEW)
    assert [b.text() for b in review.palette_buttons][:4] == ["1: TE", "2: NEC", "3: LYM", "4: TAS"]
    assert review.order_box.model_combo.currentText() == "sshr-default (shipped)"
    assert seg.version_combo.currentText() == "sshr-default (shipped)"
