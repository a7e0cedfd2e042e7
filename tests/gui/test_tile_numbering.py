"""Review and Tag count the tiles of a stack the same way, from 1 ("tile 1 / 3"): Review said "tile 0 of 0–2"
while Tag said "tile 1 / 3" for the same tile (walk-through)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ._plugin import REVIEW, TAG, dock, open_path


def test_review_and_tag_number_the_same_tile_alike(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                   tmp_path: Path) -> None:
    tiles = Path(shutil.copytree(tiny_dataset / "test", tmp_path / "case"))
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    review, tag = dock(viewer, REVIEW), dock(viewer, TAG)
    key = review.session.units[0].key
    assert viewer.dims.current_step[0] == 0
    assert review.position_label.text() == f"tile 1 / 3: {key}"
    assert tag.position_label.text().startswith(f"tile 1 / 3: {key}")
    review.next_btn.click()
    assert review.position_label.text() == f"tile 2 / 3: {review.session.units[1].key}"
