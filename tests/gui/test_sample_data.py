"""File > Open Sample with Review docked: the sample's project goes to the user data folder, never into the
package or the checkout (walk-through: ``sample_data/luad_synthetic/test.wsss/`` appeared inside the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsss.resources import sample_data_dir
from napari_wsss.store import INDEX_FILE

from ._plugin import PLUGIN, REVIEW, dock


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NAPARI_WSSS_DATA_DIR", str(tmp_path / "user-data"))
    return tmp_path / "user-data"


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the shipped sample tiles standing in for the package's sample data, so no project an
    earlier run left beside the real one decides the outcome."""
    import shutil

    from napari_wsss import resources
    from napari_wsss.gui import _sample_data

    copy = tmp_path / "sample_data"
    shutil.copytree(sample_data_dir() / "luad_synthetic" / "test", copy / "luad_synthetic" / "test")
    monkeypatch.setattr(resources, "sample_data_dir", lambda: copy)
    monkeypatch.setattr(_sample_data, "sample_data_dir", lambda: copy)
    return copy


def test_sample_tiles_project_lives_in_the_user_data_folder(make_napari_viewer, data_dir: Path,  # noqa: ANN001
                                                            shipped: Path) -> None:
    beside = shipped / "luad_synthetic" / "test.wsss"
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "luad_tiles")
    assert viewer.dims.current_step[0] == 0 and viewer.dims.axis_labels[0] == "tile"  # not the middle tile
    review = dock(viewer, REVIEW)
    root = review.session.project.root
    assert (root / INDEX_FILE).is_file() and data_dir in root.parents and root.name == "test.wsss"
    assert not beside.exists()
    assert f"is kept in {root}" in review.message.text()
    review.session.project.set_status(review.session.units[0].key, "accepted")  # work is kept there, reopened
    review.close()
    again = make_napari_viewer()
    again.open_sample(PLUGIN, "luad_tiles")
    assert dock(again, REVIEW).session.project.counts()["accepted"] == 1
    assert not beside.exists()
