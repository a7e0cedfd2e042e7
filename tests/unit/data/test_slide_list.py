"""A cohort's slides from files, folders, globs and CSV manifests; which inputs ``predict`` runs as a cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.data.slide_list import is_cohort_input, list_slides, slide_stem
from tests.conftest import write_pyramid


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    img = np.full((128, 128, 3), 120, np.uint8)
    d = tmp_path / "slides"
    d.mkdir()
    for name in ("b.tif", "a.svs"):
        write_pyramid(d / name, img, n_levels=2)
    (d / "notes.txt").write_text("not a slide")
    return d


def test_folder_glob_csv_and_names(folder: Path, tmp_path: Path) -> None:
    assert [s.name for s in list_slides([folder])] == ["a", "b"]  # sorted, suffix dropped, .txt ignored
    assert [s.path.name for s in list_slides([str(folder / "*.tif")])] == ["b.tif"]
    csv = tmp_path / "cohort.csv"
    csv.write_text("id,path\ncase-7,slides/b.tif\n,slides/a.svs\n")  # relative to the CSV
    got = list_slides([csv])
    assert [(s.name, s.path.resolve()) for s in got] == [("case-7", (folder / "b.tif").resolve()),
                                                         ("a", (folder / "a.svs").resolve())]
    # the same slide named twice (its file and its folder) is segmented once
    assert len(list_slides([folder / "a.svs", folder])) == 2
    assert slide_stem(Path("x/c.ome.tiff")) == "c"


def test_bad_inputs_say_what_to_do(folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_pyramid(other / "a.tif", np.zeros((64, 64, 3), np.uint8), n_levels=2)
    with pytest.raises(ValueError, match="share the output name 'a'.*'id' column"):
        list_slides([folder, other / "a.tif"])
    with pytest.raises(FileNotFoundError, match="matches no slide"):
        list_slides([str(tmp_path / "*.ndpx")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_slides([tmp_path / "missing.tif"])
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file_name,x\na.tif,1\n")
    with pytest.raises(ValueError, match="no slide column"):
        list_slides([bad_csv])


def test_what_runs_as_a_cohort(folder: Path, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tiles / "t.tif")  # plain TIFF tile, no pyramid
    assert is_cohort_input([folder])
    assert is_cohort_input([folder / "a.svs", folder / "b.tif"])
    assert is_cohort_input([str(folder / "*.tif")])
    assert not is_cohort_input([folder / "a.svs"])  # one slide: the single-slide path, as before
    assert not is_cohort_input([tiles])  # a folder of tiles: tiles, as before
