"""Whole-slide segmentation: equals a single pass, skips glass, bounded memory, cancel leaves it incomplete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.events import Cancelled, Progress, run_to_end
from napari_wsss.inference.slide_segmentation import segment_slide

from .test_tiling import PixelSegmenter


class ReadCounter:
    """Array stand-in that records every region read from it (what a dask level would compute)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape, self.dtype = arr, arr.shape, arr.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        out = self.arr[key]
        self.reads.append(int(np.prod(out.shape[:2])))
        return out

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001, ANN204
        self.reads.append(int(np.prod(self.shape[:2])))
        return self.arr


def _pyramid(img: np.ndarray, n: int = 4) -> list[np.ndarray]:
    return [img[:: 2**i, :: 2**i] for i in range(n)]


def test_equals_single_pass(tmp_path: Path, rng: np.random.Generator) -> None:
    img = rng.integers(0, 200, (300, 520, 3), dtype=np.uint8)
    seg = PixelSegmenter()
    res = run_to_end(segment_slide(seg, _pyramid(img), tmp_path / "out.zarr", block=128, overlap=32, band=2))
    whole = seg.predict(img[None])
    got = np.asarray(res.labels[0][:])
    assert got.shape == (300, 520)
    assert np.array_equal(got, LUAD_HISTOSEG.to_labels(whole.class_map[0]))
    # pyramid level 1 is the strided level 0, and the group says it is complete
    assert np.array_equal(np.asarray(res.labels[1][:]), got[::2, ::2])
    import zarr

    assert zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["complete"] is True


def test_glass_windows_skip_model_and_reading(tmp_path: Path) -> None:
    img = np.full((512, 1024, 3), 240, np.uint8)
    img[:200, :200] = 90  # a little tissue in one corner
    seg = PixelSegmenter()
    level0 = ReadCounter(img)
    levels = [level0, *_pyramid(img)[1:]]
    res = run_to_end(segment_slide(seg, levels, tmp_path / "o.zarr", block=128, overlap=32))
    assert res.windows_predicted <= 9 and res.windows_skipped >= 20
    # level 0 was read only around the tissue, never whole
    assert sum(level0.reads) <= 9 * 160 * 160 < 512 * 1024 and max(level0.reads) <= 160 * 160
    lab = np.asarray(res.labels[0][:])
    assert (lab[:, 400:] == 0).all() and (lab[:150, :150] > 0).all()


@pytest.mark.parametrize("size", [(512, 1024), (1024, 2048)])
def test_memory_bounded_independent_of_size(tmp_path: Path, rng: np.random.Generator, size: tuple) -> None:
    img = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
    level0 = ReadCounter(img)
    progress: list[Progress] = []
    run_to_end(segment_slide(PixelSegmenter(), [level0], tmp_path / "m.zarr", block=64, overlap=16, band=4,
                             batch_size=4, glass_outside=False), progress.append)  # its reads: test_slide_glass
    # at most three rows of (band + 2) windows are held, whatever the slide size
    assert max(p.metrics["max_cached_windows"] for p in progress) <= 3 * (4 + 2)
    # every read is one window; total read is level 0 times the halo factor (80/64)^2 and the band-edge
    # repeats (4 + 2) / 4, not more
    assert max(level0.reads) <= 80 * 80
    assert sum(level0.reads) <= (80 / 64) ** 2 * (6 / 4) * size[0] * size[1]


def test_cancel_marks_incomplete(tmp_path: Path, rng: np.random.Generator) -> None:
    import zarr

    img = rng.integers(0, 200, (512, 512, 3), dtype=np.uint8)
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        run_to_end(segment_slide(PixelSegmenter(), [img], tmp_path / "c.zarr", block=64, overlap=16,
                                 batch_size=2, should_stop=lambda: next(calls, True)))
    assert zarr.open_group(str(tmp_path / "c.zarr"), mode="r").attrs["complete"] is False


def test_block_must_be_power_of_two(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="power of two"):
        run_to_end(segment_slide(PixelSegmenter(), [np.zeros((8, 8, 3), np.uint8)], tmp_path / "x", block=100))


def _killed_while_segmenting(levels: list, out: Path) -> None:
    """Segment into ``out`` in a child process that is killed (os._exit) after its first batch of windows."""
    import os

    pid = os.fork()
    if pid == 0:
        try:
            calls = []

            def die_on_second_check() -> bool:
                calls.append(1)
                if len(calls) > 1:
                    os._exit(9)
                return False

            run_to_end(segment_slide(PixelSegmenter(), levels, out, block=128, overlap=32, band=2,
                                     should_stop=die_on_second_check))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9


def test_a_killed_rerun_keeps_the_earlier_complete_result(tmp_path: Path, rng: np.random.Generator) -> None:
    """A rerun builds its result beside the earlier one and swaps it in at the end (before: it opened the
    earlier result with mode "w", so a kill left only a partial one)."""
    import zarr

    out = tmp_path / "out.zarr"
    first = run_to_end(segment_slide(PixelSegmenter(), _pyramid(rng.integers(0, 200, (300, 520, 3), np.uint8)), out,
                                     block=128, overlap=32, band=2))
    before = np.asarray(first.labels[0][:])
    _killed_while_segmenting(_pyramid(rng.integers(0, 200, (300, 520, 3), np.uint8)), out)
    kept = zarr.open_group(str(out), mode="r")
    assert kept.attrs["complete"] is True and np.array_equal(np.asarray(kept["labels/0"][:]), before)
    # the next rerun completes, swaps in, and clears what the killed one left
    img = rng.integers(0, 200, (300, 520, 3), np.uint8)
    res = run_to_end(segment_slide(PixelSegmenter(), _pyramid(img), out, block=128, overlap=32, band=2))
    assert res.path == out and np.array_equal(np.asarray(res.labels[0][:]),
                                              LUAD_HISTOSEG.to_labels(PixelSegmenter().predict(img[None]).class_map[0]))
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]


def test_a_killed_first_run_leaves_its_result_marked_incomplete(tmp_path: Path, rng: np.random.Generator) -> None:
    import zarr

    out = tmp_path / "new.zarr"
    _killed_while_segmenting(_pyramid(rng.integers(0, 200, (300, 520, 3), np.uint8)), out)
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is False  # in place: a viewer could watch it

