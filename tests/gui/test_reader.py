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
    assert get_reader(str(tmp_path / "notes.txt")) is None
    (tmp_path / "labels.zarr").mkdir()  # another reader's folder format: left to it
    assert get_reader(str(tmp_path / "labels.zarr")) is None


@pytest.mark.parametrize("content", ["empty", "notes", "nested"])
def test_a_folder_without_images_says_so_in_one_line(make_napari_viewer, tmp_path: Path, content: str) -> None:  # noqa: ANN001
    """File > Open with napari-wsss on a folder holding no images: one line naming it (and the subfolders that
    do hold images), not napari's "Reader 'napari-wsss' ... refused the file"."""
    from PIL import Image

    from ._plugin import open_path

    folder = tmp_path / "case"
    folder.mkdir()
    if content == "notes":
        (folder / "notes.txt").write_text("x")
    if content == "nested":
        (folder / "train").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "train" / "a.png")
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match=r"No images in .*case: napari-wsss opens a folder of H&E tiles") as e:
        open_path(viewer, folder)
    assert "\n" not in str(e.value) and ("subfolder(s) train hold images" in str(e.value)) == (content == "nested")
    assert len(viewer.layers) == 0


def test_a_tile_stack_opens_on_tile_0_with_a_tile_slider(make_napari_viewer, tiny_dataset: Path) -> None:  # noqa: ANN001
    """The slider under a stack is labelled "tile" (was "-3") and the stack opens on tile 0 (napari puts a first
    layer on its middle step: Review said "tile 1 of 0-3")."""
    from ._plugin import REVIEW, dock, open_path

    viewer = make_napari_viewer()
    layers = open_path(viewer, tiny_dataset / "test")
    assert len(layers) == 2 and layers[0].data.shape[0] == 3
    assert viewer.dims.axis_labels[0] == "tile"
    assert viewer.dims.current_step[0] == 0
    review = dock(viewer, REVIEW)
    assert review.position_label.text().startswith("tile 1 / 3")


def test_glas_layout_opens_with_its_ground_truth(make_napari_viewer, tmp_path) -> None:  # noqa: ANN001
    """A real dataset as it comes (images/ + masks/, 255 = gland) opens from File > Open: the tiles and the
    pathologists' masks in the colon-gland classes. Before: 'no reader' for that folder."""
    from PIL import Image

    from ._plugin import open_path

    for sub in ("images", "masks"):
        (tmp_path / "glas" / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(40, 60), (50, 30)]):
        Image.fromarray(np.full((h, w, 3), 180, np.uint8)).save(tmp_path / "glas" / "images" / f"train_{i}.png")
        m = np.zeros((h, w), np.uint8)
        m[:10, :10] = 255
        Image.fromarray(m).save(tmp_path / "glas" / "masks" / f"train_{i}.png")
    viewer = make_napari_viewer()
    layers = open_path(viewer, tmp_path / "glas")
    assert [ly.name for ly in layers] == ["glas", "glas ground truth"]
    gt = np.asarray(layers[1].data[0])
    assert gt[0, 0] == 1 and gt[20, 20] == 2  # gland = label 1, non-gland = label 2
    assert layers[0].data.shape == (2, 50, 60, 3)


def test_reader_opens_openslide_formats_through_the_slide_interface(tmp_path: Path) -> None:
    """An Aperio SVS goes through OpenSlide; its mpp, objective and backend ride in the layer's metadata."""
    from tests._slides import write_svs

    img = np.random.default_rng(1).integers(0, 255, (256, 192, 3), dtype=np.uint8)
    p = write_svs(tmp_path / "case.svs", img, n_levels=2, mpp=0.25, mag=40)
    assert get_reader(str(p)) is not None
    ((levels, kw, kind),) = read_path(str(p))
    meta = kw["metadata"]["napari_wsss"]
    assert kind == "image" and kw["multiscale"] and [lv.shape for lv in levels] == [(256, 192, 3), (128, 96, 3)]
    assert (meta["backend"], meta["vendor"], meta["mpp"], meta["objective"]) == ("openslide", "aperio", 0.25, 40)
    assert np.array_equal(np.asarray(levels[1][10:50, 20:70]), img[::2, ::2][10:50, 20:70])
    junk = tmp_path / "scan.mrxs"
    junk.write_bytes(b"not a slide")
    assert get_reader(str(junk)) is not None  # claimed, then refused with the one-line message
    with pytest.raises(ValueError, match=r"scan\.mrxs as a slide.*Supported"):
        read_path(str(junk))


def test_a_bad_file_in_a_folder_is_named_in_one_line(make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                     tiny_dataset: Path) -> None:
    """File > Open on a tile folder holding a file that is not an image: the same one line as for the file alone
    (it was PIL's bare "cannot identify image file")."""
    import shutil

    from ._plugin import open_path

    folder = tmp_path / "tiles"
    folder.mkdir()
    shutil.copy(sorted((tiny_dataset / "test" / "img").glob("*.png"))[0], folder)
    (folder / "notes.tif").write_text("not an image")
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match=r"Cannot read .*notes\.tif.*remove it from the folder"):
        open_path(viewer, folder)
    assert len(viewer.layers) == 0


def test_a_mask_opened_by_mistake_is_called_a_mask(make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """File > Open on a GlaS mask (or its masks/ folder) instead of the image: it said 'grayscale ... use the
    original colour scan'; it now says it is a mask and what to open instead, and adds no layer."""
    from PIL import Image

    from ._plugin import open_path

    (tmp_path / "masks").mkdir()
    mask = np.zeros((40, 50), np.uint8)
    mask[5:20, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "train_1.png")
    viewer = make_napari_viewer()
    for path in (tmp_path / "masks" / "train_1.png", tmp_path / "masks"):
        with pytest.raises(ValueError, match=r"train_1\.png looks like a mask.*open its image instead") as e:
            open_path(viewer, path)
        assert "\n" not in str(e.value)
    assert len(viewer.layers) == 0
