"""One Slide interface over OpenSlide and tifffile: the same pixels and metadata whichever reads a file.

Slides are written here with tifffile in the layouts scanners use (tests/_slides.py); formats nothing here can
write (NDPI, MRXS, SCN, BIF, ...) are checked against OpenSlide's own verdict on files we can make.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.data.slide import (
    OPENSLIDE_ONLY_SUFFIXES,
    choose_backend,
    is_slide_path,
    open_slide,
)
from napari_wsss.data.slide_openslide import composite_on_white
from tests._slides import real_slide, write_generic_pyramid, write_ome_pyramid, write_svs

openslide = pytest.importorskip("openslide", reason="openslide-python + openslide-bin are project dependencies")


@pytest.fixture
def image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 255, (512, 384, 3), dtype=np.uint8)


def _same_pyramid(a, b, image: np.ndarray) -> None:  # noqa: ANN001
    assert [lv.shape for lv in a.levels] == [lv.shape for lv in b.levels]
    assert a.downsamples == pytest.approx(b.downsamples)
    for lv in range(len(a.levels)):
        expect = image[:: 2**lv, :: 2**lv]
        for sl in [(slice(None), slice(None)), (slice(37, 201), slice(5, 130)), (slice(70, 71), slice(3, 90))]:
            ra, rb = np.asarray(a.levels[lv][sl]), np.asarray(b.levels[lv][sl])
            assert np.array_equal(ra, expect[sl]) and np.array_equal(rb, expect[sl]), (lv, sl)


def test_svs_like_through_both_backends(tmp_path: Path, image: np.ndarray) -> None:
    p = write_svs(tmp_path / "s.svs", image, mpp=0.2527, mag=40)
    assert openslide.OpenSlide.detect_format(str(p)) == "aperio"
    assert is_slide_path(p) and choose_backend(p) == "openslide"
    with open_slide(p) as os_, open_slide(p, backend="tifffile") as tf:
        assert (os_.backend, os_.vendor, tf.backend, tf.vendor) == ("openslide", "aperio", "tifffile", "aperio")
        _same_pyramid(os_, tf, image)
        assert os_.mpp == tf.mpp == pytest.approx(0.2527)
        assert os_.objective == tf.objective == 40
        assert os_.info()["objective"] == 40 and os_.info()["backend"] == "openslide"


def test_generic_tiled_pyramid_through_both_backends(tmp_path: Path, image: np.ndarray) -> None:
    p = write_generic_pyramid(tmp_path / "g.tif", image)
    assert openslide.OpenSlide.detect_format(str(p)) == "generic-tiff"
    assert choose_backend(p) == "tifffile"  # both see three levels; tifffile reads chunk-native
    with open_slide(p, backend="openslide") as os_, open_slide(p) as tf:
        assert tf.backend == "tifffile" and len(tf.levels) == 3
        _same_pyramid(os_, tf, image)
        assert os_.mpp is None and tf.mpp is None


def test_ome_pyramid_goes_to_tifffile(tmp_path: Path, image: np.ndarray) -> None:
    """OpenSlide sees only level 0 of a SubIFD (OME) pyramid; tifffile sees all of it, so tifffile reads it."""
    p = write_ome_pyramid(tmp_path / "o.ome.tif", image, mpp=0.5)
    with openslide.OpenSlide(str(p)) as s:
        assert s.level_count == 1
    assert choose_backend(p) == "tifffile"
    with open_slide(p) as tf, open_slide(p, backend="openslide") as os_:
        assert (tf.backend, tf.vendor, len(tf.levels), tf.mpp) == ("tifffile", "ome", 3, pytest.approx(0.5))
        assert np.array_equal(np.asarray(os_.levels[0][40:300, 10:200]), image[40:300, 10:200])
        assert np.array_equal(np.asarray(tf.levels[2]), image[::4, ::4])


def test_openslide_levels_are_lazy_tile_aligned_and_picklable(tmp_path: Path, image: np.ndarray) -> None:
    import dask.array as da

    p = write_svs(tmp_path / "s.svs", np.concatenate([image] * 3, 1), tile=48)
    image = np.concatenate([image] * 3, 1)
    with open_slide(p) as slide:
        lv = slide.levels[0]
        assert isinstance(lv, da.Array) and lv.dtype == np.uint8
        # chunks: the smallest multiple of the file's 48 px tile that is >= 512 (528), cut at the level's edge
        assert lv.chunks[:2] == ((512,), (528, 528, 96))
        assert slide.levels[1].chunks[:2] == ((256,), (528, 48))
        # a level travels to another process (a dask.distributed worker) and reopens the file there
        back = pickle.loads(pickle.dumps(slide.levels[1]))
        assert np.array_equal(np.asarray(back[10:100, 20:90]), image[::2, ::2][10:100, 20:90])


def test_transparent_regions_are_composited_on_white() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (0, 0, 0, 0)  # nothing scanned: white glass
    rgba[0, 2] = (0, 100, 200, 128)  # half: halfway to white
    rgba[1] = (50, 60, 70, 255)
    out = composite_on_white(rgba)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [127, 177, 227] and out[1].tolist() == [[50, 60, 70]] * 3


@pytest.mark.parametrize("suffix", OPENSLIDE_ONLY_SUFFIXES)
def test_formats_we_cannot_write_follow_openslide(tmp_path: Path, suffix: str, image: np.ndarray) -> None:
    """A slide-only suffix OpenSlide does not recognise gets one line naming the file and the formats; one whose
    content OpenSlide does recognise (here a generic tiled pyramid renamed) opens as OpenSlide says."""
    junk = tmp_path / f"broken{suffix}"
    junk.write_bytes(b"II*\x00 not really a slide")
    assert openslide.OpenSlide.detect_format(str(junk)) is None
    with pytest.raises(openslide.OpenSlideUnsupportedFormatError):
        openslide.OpenSlide(str(junk))
    assert not is_slide_path(junk)
    with pytest.raises(ValueError, match=rf"broken\{suffix}.*Supported: Aperio \.svs, Hamamatsu \.ndpi") as e:
        open_slide(junk)
    assert "\n" not in str(e.value)
    renamed = write_generic_pyramid(tmp_path / f"renamed{suffix}", image)
    verdict = openslide.OpenSlide.detect_format(str(renamed))
    if verdict is None:  # OpenSlide's MRXS/VMS drivers also want their side files: refused, like junk
        with pytest.raises(ValueError, match="OpenSlide does not recognise"):
            open_slide(renamed)
    else:
        assert verdict == "generic-tiff"
        with open_slide(renamed) as slide:
            assert np.array_equal(np.asarray(slide.levels[1][:50, :60]), image[::2, ::2][:50, :60])


def test_files_neither_backend_reads(tmp_path: Path) -> None:
    for name in ("broken.svs", "broken.tif", "notes.ome.tiff"):
        p = tmp_path / name
        p.write_bytes(b"II*\x00garbage")
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')} as a slide: neither OpenSlide nor "
                                             r"tifffile reads it.*Supported: .*OME-TIFF"):
            open_slide(p)
    with pytest.raises(ValueError, match="backend must be"):
        open_slide(p, backend="bioformats")


def test_one_level_tiff_stays_an_image_but_one_level_svs_is_a_slide(tmp_path: Path, image: np.ndarray) -> None:
    assert not is_slide_path(write_generic_pyramid(tmp_path / "tile.tif", image, n_levels=1))
    p = write_svs(tmp_path / "one.svs", image, n_levels=1)
    assert is_slide_path(p)
    with open_slide(p) as slide:
        assert slide.backend == "openslide" and len(slide.levels) == 1


def test_real_jpeg2000_svs_two_levels() -> None:
    """A TCGA frozen section (JPEG 2000 tiles, two levels) reads the same through OpenSlide and tifffile."""
    p = real_slide("tcga-cr-7395-01a-01-ts1.svs")
    with open_slide(p) as os_, open_slide(p, backend="tifffile") as tf:
        assert os_.backend == "openslide" and os_.vendor == "aperio"
        assert [lv.shape for lv in os_.levels] == [(3567, 4443, 3), (1783, 2221, 3)]
        assert os_.mpp is None and os_.objective is None  # this file's description carries neither
        assert tf.mpp is None and tf.objective is None
        region = (slice(700, 1900), slice(1100, 2600))
        assert np.array_equal(np.asarray(os_.levels[0][region]), np.asarray(tf.levels[0][region]))
        # level 1's downsample is 2.0005, not 2: OpenSlide places a region at a level-0 origin, so chunks away
        # from (0, 0) land a fraction of a pixel off tifffile's grid and are resampled; the same tissue, not
        # the same bytes (see docs/design.md)
        assert os_.downsamples[1] == pytest.approx(2.0005, abs=1e-4)
        a = np.asarray(os_.levels[1][:512, :512]).astype(int)
        b = np.asarray(tf.levels[1][:512, :512]).astype(int)
        assert np.array_equal(a, b)
        far = (slice(1200, 1700), slice(1500, 2200))
        diff = np.abs(np.asarray(os_.levels[1][far]).astype(int) - np.asarray(tf.levels[1][far]).astype(int))
        assert diff.mean() < 8


def test_real_one_level_svs() -> None:
    """CMU-1-Small-Region: JPEG tiles, one level, 20x at 0.499 um/px, read by OpenSlide as a slide."""
    p = real_slide("cmu-1-small-region.svs")
    assert is_slide_path(p)
    with open_slide(p) as os_, open_slide(p, backend="tifffile") as tf:
        assert (os_.backend, len(os_.levels), os_.shape) == ("openslide", 1, (2967, 2220))
        assert os_.mpp == tf.mpp == pytest.approx(0.499) and os_.objective == tf.objective == 20
        region = (slice(1000, 1600), slice(300, 1400))
        assert np.array_equal(np.asarray(os_.levels[0][region]), np.asarray(tf.levels[0][region]))
