"""Whole-slide segmentation with bounded memory: halo windows, blended stitching, lazy zarr label pyramid.

The slide level is cut into ``block`` x ``block`` output blocks. Each block is predicted inside a window that
extends ``overlap // 2`` pixels beyond it on every side, and where neighbouring windows overlap their class
scores are blended with a linear ramp, so no seam appears at block borders. Blocks are processed in column
bands, row by row; only two rows of window scores of one band are held in memory, so peak memory depends on
``block``, ``band`` and ``batch_size``, not on the slide's size. Windows whose area is glass on a coarse level
(or, failing that, on the window itself) never reach the model. Glass around the tissue is background in the
output whatever the model says (``slide_glass``: near-white connected to the slide's edge on a coarse view), so
a model that leaves white to the network (gland lumens) does not label the slide's empty glass as tissue.

Output (a zarr group, written as blocks finish, so a viewer can show results as they arrive):

* ``labels/0 .. labels/L``: uint8 napari label pyramid (0 = background, class ``i`` = ``i + 1``), level
  ``l`` downsampled ``2**l`` times from the segmented level by nearest-neighbour striding;
* ``confidence/0 .. confidence/L``: uint8, the winning class's blended score x 255;
* group attributes: source level, downsample of that level, block, overlap, class schema, model name, the
  slide's mpp and objective power and what read it (``source``: path, backend, vendor), and ``complete``
  (false until the last block is written).

A new ``out`` is written in place, so a viewer can watch it fill in; a killed run leaves it marked incomplete.
An ``out`` that exists (a rerun with ``--overwrite``) stays whole until the new result is: that one is built in
a hidden folder beside it and swapped in at the end (``atomic.replace_dir``), so a kill keeps the earlier one.
"""

from __future__ import annotations

import math
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import clean_leftovers, partial_dir, replace_dir
from ..events import Cancelled, Progress, StopFlag, never_stop
from .segmenter import Segmenter
from .slide_glass import slide_glass

GLASS_RULE = "edge-connected"  # the ``glass`` attribute: how glass around the tissue was found (slide_glass)


@dataclass
class SlideSegmentation:
    """Result of :func:`segment_slide`: the zarr group and what was done."""

    path: Path
    labels: list[Any]  # zarr arrays, finest first
    confidence: list[Any]
    level: int
    downsample: float
    windows_predicted: int
    windows_skipped: int


def _ramp(n: int, overlap: int) -> np.ndarray:
    if overlap <= 0:
        return np.ones(n, np.float32)
    r = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1).astype(np.float32)
    return np.clip(r / overlap, 1e-3, 1.0)


def tissue_blocks(levels: list[Any], level: int, block: int, min_fraction: float = 0.01) -> np.ndarray | None:
    """(n_rows, n_cols) bool: which output blocks hold tissue, judged on the coarsest level with >= 4 px per block.

    Returns None when the pyramid has no coarser level to judge from (then each window is checked itself).
    """
    from ..data.tiles import is_background

    h, w = levels[level].shape[:2]
    n_i, n_j = math.ceil(h / block), math.ceil(w / block)
    best = None
    for lv in range(level + 1, len(levels)):
        ds = h / levels[lv].shape[0]
        if block / ds >= 4:
            best = lv
    if best is None:
        return None
    coarse = np.asarray(levels[best])  # small: the coarse level is what a thumbnail is made of
    tissue = ~is_background(coarse, min_size=4)
    ds = h / coarse.shape[0]
    out = np.zeros((n_i, n_j), bool)
    for i in range(n_i):
        for j in range(n_j):
            sub = tissue[int(i * block / ds): int(math.ceil((i + 1) * block / ds)),
                         int(j * block / ds): int(math.ceil((j + 1) * block / ds))]
            out[i, j] = sub.size > 0 and sub.mean() >= min_fraction
    return out


def _create_outputs(path: Path, shape: tuple[int, int], block: int, n_levels: int, attrs: dict) -> tuple:
    import zarr

    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({**attrs, "complete": False})
    labels, conf = [], []
    for lv in range(n_levels):
        f = 2**lv
        shp = (math.ceil(shape[0] / f), math.ceil(shape[1] / f))
        ch = (max(1, block // f),) * 2
        labels.append(root.create_array(f"labels/{lv}", shape=shp, chunks=ch, dtype="uint8", fill_value=0))
        conf.append(root.create_array(f"confidence/{lv}", shape=shp, chunks=ch, dtype="uint8", fill_value=0))
    return root, labels, conf


def write_pyramid_block(arrays: list[Any], y0: int, x0: int, data: np.ndarray) -> None:
    """Write a level-0 block and its strided copies into every pyramid level (block origins are aligned)."""
    for lv, arr in enumerate(arrays):
        f = 2**lv
        sub = data[::f, ::f]
        arr[y0 // f: y0 // f + sub.shape[0], x0 // f: x0 // f + sub.shape[1]] = sub


def segment_slide(
    segmenter: Segmenter,
    levels: list[Any],
    out: str | Path,
    *,
    level: int = 0,
    block: int = 512,
    overlap: int = 64,
    batch_size: int = 8,
    band: int = 8,
    mpp: float | None = None,
    should_stop: StopFlag = never_stop,
    objective: float | None = None,
    source: dict | None = None,
    glass_outside: bool = True,
) -> Generator[Progress, None, SlideSegmentation]:
    """Segment one level of a slide pyramid into a zarr label pyramid at ``out``.

    Args:
        segmenter: a loaded model (``Segmenter`` contract).
        levels: the slide's levels, ``(H_l, W_l, 3)`` uint8 arrays (dask or numpy), finest first.
        out: folder for the zarr group (an existing one is replaced once the new result is complete).
        level: which level to segment (coordinates of the output are that level's pixels).
        block: output block size in pixels, a power of two (pyramid levels stay aligned).
        overlap: total overlap between neighbouring windows (each window is ``block + overlap``).
        batch_size: windows per model call.
        band: output blocks per column band (bounds memory: two rows of ``band + 2`` windows are cached).
        mpp: the slide's microns per level-0 pixel, when known; recorded with the output's own pixel size
            (``mpp * downsample``) so exports and other viewers can place the labels in micrometres.
        objective: the slide's objective power (20, 40, ...), when known; recorded beside ``mpp``.
        source: what to record about the slide (``Slide.info()``: path, backend, vendor, ...), when known.
        glass_outside: make the glass around the tissue background (``slide_glass.slide_glass``); recorded in the
            output's ``glass`` attribute.
    Raises:
        Cancelled: when ``should_stop()`` turns true; the zarr group stays marked ``complete = False``.
        ValueError: ``block`` not a power of two, or a level out of range.
    """
    import zarr

    if block <= 0 or block & (block - 1):
        raise ValueError(f"block must be a power of two (got {block}); e.g. 256, 512 or 1024.")
    if not 0 <= level < len(levels):
        raise ValueError(f"level {level} does not exist; the slide has levels 0..{len(levels) - 1}.")
    h, w = int(levels[level].shape[0]), int(levels[level].shape[1])
    schema = segmenter.card.class_schema
    n_levels = max(1, min(int(math.log2(block)), int(math.ceil(math.log2(max(h, w) / 256))) + 1))
    downsample = float(levels[0].shape[0]) / h
    attrs = {"source_level": level, "downsample": downsample, "block": block, "overlap": overlap,
             "schema": schema.to_dict(), "model": getattr(segmenter.card, "name", ""), "shape": [h, w],
             "mpp": mpp, "level_mpp": mpp * downsample if mpp else None, "objective": objective,
             "source": source or {}, "glass": GLASS_RULE if glass_outside else None}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)  # what killed reruns left beside it
    build = partial_dir(out) if out.exists() else out
    try:
        result = yield from _segment_into(build, segmenter, levels, level, block, overlap, batch_size, band, attrs,
                                          n_levels, should_stop)
    except BaseException:
        if build != out:
            shutil.rmtree(build, ignore_errors=True)  # the earlier result stays as it was
        raise
    if build == out:
        return result
    replace_dir(build, out)
    root = zarr.open_group(str(out), mode="r+")
    return replace(result, path=out, labels=[root[f"labels/{lv}"] for lv in range(n_levels)],
                   confidence=[root[f"confidence/{lv}"] for lv in range(n_levels)])


def _segment_into(out: Path, segmenter: Segmenter, levels: list[Any], level: int, block: int, overlap: int,
                  batch_size: int, band: int, attrs: dict, n_levels: int, should_stop: StopFlag
                  ) -> Generator[Progress, None, SlideSegmentation]:
    """The body of :func:`segment_slide`, writing the zarr group at ``out`` (created here)."""
    from ..data.tiles import as_rgb_uint8, is_background

    img = levels[level]
    h, w = int(img.shape[0]), int(img.shape[1])
    halo = overlap // 2
    win = block + 2 * halo
    n_i, n_j = math.ceil(h / block), math.ceil(w / block)
    schema = segmenter.card.class_schema
    k1, bg = schema.n_classes, schema.background_index
    downsample = attrs["downsample"]
    root, lab_arrays, conf_arrays = _create_outputs(out, (h, w), block, n_levels, attrs)

    tissue = tissue_blocks(levels, level, block)
    glass_map = slide_glass(levels) if attrs.get("glass") else None
    if tissue is not None:  # a window matters if its block or a neighbour (its halo) holds tissue
        pad = np.pad(tissue, 1)
        window_tissue = np.zeros_like(tissue)
        for di in (0, 1, 2):
            for dj in (0, 1, 2):
                window_tissue |= pad[di: di + n_i, dj: dj + n_j]
    else:
        window_tissue = np.ones((n_i, n_j), bool)
    ramp = np.outer(_ramp(win, overlap), _ramp(win, overlap))
    n_pred = n_skip = max_cached = 0
    total_blocks, done_blocks = n_i * n_j, 0

    def window_box(i: int, j: int) -> tuple[int, int, int, int]:
        return i * block - halo, j * block - halo, i * block + block + halo, j * block + block + halo

    def read_window(i: int, j: int) -> np.ndarray:
        y0, x0, y1, x1 = window_box(i, j)
        cy0, cx0, cy1, cx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
        crop = as_rgb_uint8(np.asarray(img[cy0:cy1, cx0:cx1]), "slide window")
        full = np.full((win, win, 3), 255, np.uint8)  # glass outside the slide
        full[cy0 - y0: cy1 - y0, cx0 - x0: cx1 - x0] = crop
        return full

    # Torch segmenters (``predict_scores``) keep each window's class probabilities on their device: blending,
    # argmax and confidence run there and only the uint8 label and confidence blocks come back. Others give
    # numpy probabilities, blended on the host. Both do the same float32 arithmetic in the same order.
    scorer = getattr(segmenter, "predict_scores", None)
    min_glass, ramp_t = None, None
    if scorer is not None:
        import torch

        from .predict import glass_min_size

        min_glass = glass_min_size(segmenter.card)

    def blend(i: int, j: int, cache: dict) -> tuple[Any, Any, tuple[int, int]]:
        """Accumulate the weighted scores of the windows over block (i, j): (acc, wsum, origin)."""
        by0, bx0 = i * block, j * block
        by1, bx1 = min(h, by0 + block), min(w, bx0 + block)
        nonlocal ramp_t
        if scorer is not None:
            dev = next((v.device for v in cache.values() if v is not None), torch.device("cpu"))
            if ramp_t is None or ramp_t.device != dev:
                ramp_t = torch.from_numpy(ramp).to(dev)
            acc = torch.zeros((k1, by1 - by0, bx1 - bx0), dtype=torch.float32, device=dev)
            wsum = torch.zeros((by1 - by0, bx1 - bx0), dtype=torch.float32, device=dev)
            rmp = ramp_t
        else:
            acc = np.zeros((k1, by1 - by0, bx1 - bx0), np.float32)
            wsum = np.zeros((by1 - by0, bx1 - bx0), np.float32)
            rmp = ramp
        for wi in (i - 1, i, i + 1):
            for wj in (j - 1, j, j + 1):
                if (wi, wj) not in cache:
                    continue
                y0, x0, y1, x1 = window_box(wi, wj)
                oy0, ox0, oy1, ox1 = max(by0, y0), max(bx0, x0), min(by1, y1), min(bx1, x1)
                if oy1 <= oy0 or ox1 <= ox0:
                    continue
                wgt = rmp[oy0 - y0: oy1 - y0, ox0 - x0: ox1 - x0]
                probs = cache[(wi, wj)]
                sl = (slice(oy0 - by0, oy1 - by0), slice(ox0 - bx0, ox1 - bx0))
                if probs is None:
                    acc[bg][sl] += wgt
                else:
                    acc[(slice(None), *sl)] += probs[:, oy0 - y0: oy1 - y0, ox0 - x0: ox1 - x0] * wgt
                wsum[sl] += wgt
        return acc, wsum, (by0, bx0)

    def block_white(i: int, j: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Near-white pixels of block (i, j): from its window, read already, else (a skipped window) read now."""
        wm = white_cache.get((i, j))
        if wm is None:
            return is_background(as_rgb_uint8(np.asarray(img[box[0]:box[2], box[1]:box[3]]), "slide block"))
        return wm[halo: halo + box[2] - box[0], halo: halo + box[3] - box[1]]

    def finalize(i: int, j: int, cache: dict) -> None:
        if scorer is not None:
            with torch.inference_mode():
                acc, wsum, (by0, bx0) = blend(i, j, cache)
                probs = acc / torch.clamp(wsum, min=1e-6)
                cm = probs.argmax(0).to(torch.uint8).cpu().numpy()
                conf = (probs.amax(0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        else:
            acc, wsum, (by0, bx0) = blend(i, j, cache)
            probs = acc / np.maximum(wsum, 1e-6)
            cm = probs.argmax(0).astype(np.uint8)
            conf = (probs.max(0) * 255 + 0.5).astype(np.uint8)
        if glass_map is not None:  # glass around the tissue is background, as skipped glass windows are
            box = (by0, bx0, by0 + cm.shape[0], bx0 + cm.shape[1])
            glass = glass_map.pixels(box, (h, w), lambda: block_white(i, j, box))  # only on the tissue's rim
            cm[glass], conf[glass] = bg, 255
        write_pyramid_block(lab_arrays, by0, bx0, schema.to_labels(cm))
        write_pyramid_block(conf_arrays, by0, bx0, conf)

    white_cache: dict[tuple[int, int], np.ndarray] = {}  # windows' near-white pixels, for the glass rim

    def load_batch(i: int, js: list[int]) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray | None]:
        """Reader thread: the windows, which hold tissue, and the glass the model needs (off the model's path)."""
        stack = np.stack([read_window(i, j) for j in js])
        white = is_background(stack)  # per window, as for one window at a time
        keep = [n for n in range(len(js)) if not white[n].all()]
        glass = None
        if scorer is not None and keep:
            from .predict import glass_mask

            glass = glass_mask(stack[keep], min_glass, white=white[keep])
        return stack, white, keep, glass

    # One reader thread fetches the next batch of windows (tile decoding releases the GIL) while the model
    # runs on the current one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        for j0 in range(0, n_j, band):
            j1 = min(n_j, j0 + band)
            cols = range(max(0, j0 - 1), min(n_j, j1 + 1))
            batches = [(i, todo[b: b + batch_size]) for i in range(n_i)
                       for todo in [[j for j in cols if window_tissue[i, j]]]
                       for b in range(0, len(todo), batch_size)]
            pending: dict[int, Future] = {}

            def fetch(k: int) -> None:
                if k < len(batches) and k not in pending:
                    bi, bjs = batches[k]
                    pending[k] = pool.submit(load_batch, bi, bjs)

            cache: dict[tuple[int, int], np.ndarray | None] = {}
            k = 0
            for i in range(n_i + 1):
                if i < n_i:
                    for j in cols:
                        if not window_tissue[i, j]:
                            cache[(i, j)] = None
                            n_skip += 1
                    while k < len(batches) and batches[k][0] == i:
                        if should_stop():
                            raise Cancelled("slide segmentation cancelled; the partial result is marked incomplete")
                        fetch(k)
                        stack, white, keep, glass = pending.pop(k).result()
                        fetch(k + 1)
                        js = batches[k][1]
                        if glass_map is not None:
                            white_cache.update({(i, j): white[n] for n, j in enumerate(js)})
                        for n, j in enumerate(js):
                            if n not in keep:
                                cache[(i, j)] = None
                                n_skip += 1
                        if keep and scorer is not None:
                            probs_dev = scorer(stack[keep], background=glass)
                            for m, n in enumerate(keep):
                                cache[(i, js[n])] = probs_dev[m].half()
                            n_pred += len(keep)
                        elif keep:
                            pred = segmenter.predict(stack[keep], batch_size=len(keep))
                            for m, n in enumerate(keep):
                                cache[(i, js[n])] = pred.probs[m].astype(np.float16)
                            n_pred += len(keep)
                        k += 1
                max_cached = max(max_cached, sum(v is not None for v in cache.values()))
                if i >= 1:  # row i-1 has all its neighbours now
                    for j in range(j0, j1):
                        finalize(i - 1, j, cache)
                    done_blocks += j1 - j0
                    for key in [key for key in cache if key[0] <= i - 2]:
                        del cache[key]
                        white_cache.pop(key, None)
                    yield Progress(done_blocks, total_blocks, "segmenting slide",
                                   {"predicted": n_pred, "skipped": n_skip, "max_cached_windows": max_cached})
    root.attrs["complete"] = True
    root.attrs["windows_predicted"], root.attrs["windows_skipped"] = n_pred, n_skip
    return SlideSegmentation(out, lab_arrays, conf_arrays, level, downsample, n_pred, n_skip)
