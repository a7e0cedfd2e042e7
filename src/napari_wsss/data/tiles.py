"""Tile folders: images, image-level labels (in file names or a CSV) and palette-PNG masks.

Coordinate convention, stated once for the whole package: arrays are indexed ``(y, x)`` (row, column),
images are ``(H, W, 3)`` uint8 RGB, class maps ``(H, W)`` uint8, and regions are ``(y0, x0, y1, x1)`` in
level-0 pixels, end-exclusive.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import ClassSchema

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

# LUAD-HistoSeg: "...-[1 0 0 1].png"; BCSS-WSSS: "...-[0101].png". The bracket group is the last one.
_LABEL_RE = re.compile(r"\[([01](?:\s*[01])*)\]")


@dataclass(frozen=True)
class LabelledTile:
    """A training tile and its image-level multi-hot label (foreground classes only)."""

    path: Path
    labels: np.ndarray  # (n_foreground,) int64


@dataclass(frozen=True)
class MaskPair:
    """An evaluation tile and its pixel mask (palette PNG, class-map values)."""

    image: Path
    mask: Path


def list_images(folder: str | Path) -> list[Path]:
    """Image files (PNG/JPEG/TIFF) directly in ``folder``, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Give the folder that holds the tile images.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        layout = find_mask_layout(folder)
        if layout is not None:  # GlaS-style images/ + masks/: say what each command wants of such a folder
            img, mask = layout
            raise ValueError(
                f"{folder} holds no images itself but {img.name}/ + {mask.name}/ (images with pixel masks): give "
                f"{img} for the images alone, `napari-wsss evaluate --data {folder}` to score a model against the "
                f"masks, or cut a training set first with `napari-wsss patches {folder} --out SET --schema SCHEMA`."
            )
        raise ValueError(
            f"{folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)}). For a LUAD-HistoSeg style "
            "dataset give its training/ folder, or val/ or test/ (with img/ and mask/)."
        )
    return files


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Grayscale and RGBA with real transparency are refused rather than guessed at: an H&E model given a converted
    grayscale image predicts nonsense. A fully opaque alpha channel (common in exported PNGs, e.g. the MICCAI
    2015 tiles) is dropped. 16-bit RGB is rescaled to 8 bits.

    Raises:
        ValueError: unreadable/truncated file, or not an RGB image — with the file name and what to do.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            check_whole_size(*_tiff_size(path), str(path))
            arr = tifffile.imread(path, level=0) if _is_pyramidal(path) else tifffile.imread(path)
            if _is_cmyk_tiff(path):  # 4 ink channels would otherwise pass for RGBA (and be refused as "transparent")
                from PIL import Image

                arr = np.asarray(Image.fromarray(_as_uint8(arr), mode="CMYK").convert("RGB"))
        else:
            from PIL import Image

            try:
                im = Image.open(path)
            except Image.DecompressionBombError as e:  # PIL's own limit is below ours: its numbers, our advice
                raise TooLarge(f"{path} is too large to hold in memory at once ({e}); {_LARGE_HINT}") from None
            with im:
                check_whole_size(im.height, im.width, str(path))
                im.load()
                arr = np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK", "YCbCr") else im)
    except (FileNotFoundError, TooLarge):
        raise
    except Exception as e:
        raise ValueError(f"Cannot read {path}: {type(e).__name__}: {e}. The file is damaged or not an image; "
                         "re-export it or remove it from the folder.") from e
    return as_rgb_uint8(arr, str(path))


# Images are read into one array; past this many pixels (0.8 GB as RGB) that array would not fit comfortably, and
# a file's header can claim any size. Larger images belong on the lazy slide path (a pyramidal TIFF).
MAX_WHOLE_PIXELS = 1 << 28
_LARGE_HINT = ("save it as a pyramidal (tiled, multi-resolution) TIFF and open it as a slide, which is read "
               "lazily window by window (e.g. `vips tiffsave in.tif out.tif --tile --pyramid`), or crop it.")


class TooLarge(ValueError):
    """An image or mask larger than :data:`MAX_WHOLE_PIXELS`: refused before any memory is taken for it."""


def check_whole_size(h: int, w: int, what: str, hint: str = _LARGE_HINT) -> None:
    """Refuse (:class:`TooLarge`) an image or mask of ``h`` x ``w`` pixels, more than :data:`MAX_WHOLE_PIXELS`."""
    if int(h) * int(w) > MAX_WHOLE_PIXELS:
        raise TooLarge(f"{what} is {int(h)} x {int(w)} pixels ({int(h) * int(w) / 1e6:,.0f} Mpx), too large to "
                       f"hold in memory at once (at most {MAX_WHOLE_PIXELS / 1e6:,.0f} Mpx); {hint}")


def _tiff_size(path: Path) -> tuple[int, int]:
    """(H, W) of a TIFF's full-resolution image, from its header (no pixel read)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        shape, axes = series.shape, series.axes
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


def _is_cmyk_tiff(path: Path) -> bool:
    """True for a TIFF stored as CMYK (photometric SEPARATED, 4 inks), as print-oriented exports write."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages.first
        return page.photometric == tifffile.PHOTOMETRIC.SEPARATED and page.samplesperpixel == 4


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    return (arr // 257).astype(np.uint8) if arr.dtype == np.uint16 else arr.astype(np.uint8, copy=False)


def _is_pyramidal(path: Path) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return len(tf.series) > 0 and len(tf.series[0].levels) > 1


def as_rgb_uint8(arr: np.ndarray, source: str = "image") -> np.ndarray:
    """Check/convert an array to ``(H, W, 3)`` uint8 RGB, raising a clear ValueError otherwise."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        values = np.unique(arr[:: max(1, arr.shape[0] // 256), :: max(1, arr.shape[1] // 256)])
        if values.size <= 16:  # a class mask (GlaS 0/255, palette indices), not a scan: say so, not "grey scan"
            raise ValueError(f"{source} looks like a mask, not an H&E image (one channel, values "
                             f"{', '.join(map(str, values.tolist()))}); open its image instead, or the folder "
                             "holding images/ + masks/ (or img/ + mask/) to see the masks as ground truth.")
        raise ValueError(f"{source} is grayscale (shape {arr.shape}); expected an RGB H&E image (H, W, 3). "
                         "Use the original colour scan.")
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"{source} has shape {arr.shape}; expected an RGB image (H, W, 3).")
    if arr.shape[-1] == 4:
        opaque = 255 if arr.dtype == np.uint8 else 65535 if arr.dtype == np.uint16 else None
        if opaque is not None and (arr[..., 3] == opaque).all():
            return as_rgb_uint8(arr[..., :3], source)
        raise ValueError(f"{source} is RGBA with transparent pixels; expected RGB. Save it without the alpha channel (e.g. "
                         "`convert in.png -alpha off out.png`).")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.min() >= 0 and arr.max() <= 1:
        return (arr * 255 + 0.5).astype(np.uint8)
    raise ValueError(f"{source} has dtype {arr.dtype}; expected 8- or 16-bit RGB.")


def parse_labels_from_name(name: str, n_classes: int) -> np.ndarray:
    """Parse the image-level label from a LUAD-HistoSeg (``-[1 0 0 1]``) or BCSS-WSSS (``-[0101]``) name.

    Returns:
        (n_classes,) int64 multi-hot vector.

    Raises:
        ValueError: no bracketed label, or the wrong number of digits.
    """
    matches = _LABEL_RE.findall(Path(name).name)
    if not matches:
        raise ValueError(
            f"{name}: no image-level label in the file name; expected e.g. 'tile-[1 0 0 1].png' (LUAD-HistoSeg) "
            "or 'tile-[0101].png' (BCSS-WSSS), or give a labels CSV (filename,<class names>)."
        )
    digits = re.sub(r"\s+", "", matches[-1])
    if len(digits) != n_classes:
        raise ValueError(f"{name}: label [{matches[-1]}] has {len(digits)} digits; the class schema has "
                         f"{n_classes} foreground classes. Choose the matching class schema (luad, bcss, glas or a "
                         "schema file: --schema, or the Train widget's classes).")
    return np.array([int(c) for c in digits], dtype=np.int64)


def format_label_name(stem: str, labels: np.ndarray, style: str = "luad") -> str:
    """File name carrying ``labels``: ``stem-[1 0 0 1].png`` (luad) or ``stem-[1001].png`` (bcss)."""
    sep = " " if style == "luad" else ""
    return f"{stem}-[{sep.join(str(int(v)) for v in labels)}].png"


def read_labels_csv(csv_path: str | Path, schema: ClassSchema) -> dict[str, np.ndarray]:
    """Read ``filename,<class names...>`` rows (0/1 values) into ``{filename: labels}``."""
    csv_path = Path(csv_path)
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        names = schema.foreground_names
        missing = [n for n in ["filename", *names] if n not in header]
        if missing:
            raise ValueError(f"{csv_path}: columns {missing} are missing; expected header "
                             f"'filename,{','.join(names)}' (got {','.join(header)}).")
        out = {}
        for i, row in enumerate(reader, start=2):
            try:
                vals = [int(row[n]) for n in names]
            except (TypeError, ValueError):
                raise ValueError(f"{csv_path}, line {i}: class values must be 0 or 1, got "
                                 f"{[row.get(n) for n in names]}.") from None
            if any(v not in (0, 1) for v in vals):
                raise ValueError(f"{csv_path}, line {i}: class values must be 0 or 1, got {vals}.")
            out[row["filename"]] = np.array(vals, dtype=np.int64)
    return out


def list_training_tiles(folder: str | Path, schema: ClassSchema, labels_csv: str | Path | None = None
                        ) -> list[LabelledTile]:
    """Training tiles with image-level labels, from file names or from ``labels_csv``.

    Raises:
        ValueError: a file whose label cannot be parsed (named), or a CSV row for a missing file.
    """
    files = list_images(folder)
    if labels_csv is not None:
        table = read_labels_csv(labels_csv, schema)
        by_name = {p.name: p for p in files}
        unknown = sorted(set(table) - set(by_name))
        if unknown:
            raise ValueError(f"{labels_csv}: {len(unknown)} rows name files not in {folder}, e.g. {unknown[:3]}.")
        return [LabelledTile(by_name[n], lab) for n, lab in table.items()]
    return [LabelledTile(p, parse_labels_from_name(p.name, schema.n_foreground)) for p in files]


# Image/mask sub-folder pairs of an evaluation folder: LUAD-HistoSeg / BCSS-WSSS val/test, and the GlaS layout.
MASK_LAYOUTS = (("img", "mask"), ("images", "masks"))
# Mask file stems may add one of these to the image's stem (GlaS's original release: train_1_anno.bmp).
MASK_STEM_SUFFIXES = ("", "_anno", "_mask", "-mask", "_label", "_labels")


def find_mask_layout(folder: str | Path) -> tuple[Path, Path] | None:
    """``(images folder, masks folder)`` of ``folder`` (``img/`` + ``mask/`` or ``images/`` + ``masks/``), or None."""
    folder = Path(folder)
    for img, mask in MASK_LAYOUTS:
        if (folder / img).is_dir() and (folder / mask).is_dir():
            return folder / img, folder / mask
    return None


def list_mask_pairs(folder: str | Path) -> list[MaskPair]:
    """Evaluation pairs from ``folder/img`` + ``folder/mask`` or ``folder/images`` + ``folder/masks`` (GlaS),
    matched by file stem (a mask stem may end in ``_anno``/``_mask``). Images may differ in size.

    Raises:
        FileNotFoundError / ValueError: missing sub-folders or images without a mask (named).
    """
    folder = Path(folder)
    layout = find_mask_layout(folder)
    if layout is None:
        raise FileNotFoundError(f"{folder} must contain img/ and mask/ folders (LUAD-HistoSeg val/test layout) "
                                "or images/ and masks/ (GlaS layout), with the same file names.")
    img_dir, mask_dir = layout
    masks = {p.stem: p for p in list_images(mask_dir)}
    pairs, missing = [], []
    for img in list_images(img_dir):
        m = next((masks[img.stem + s] for s in MASK_STEM_SUFFIXES if img.stem + s in masks), None)
        (pairs.append(MaskPair(img, m)) if m is not None else missing.append(img.name))
    if missing:
        raise ValueError(f"{folder}: {len(missing)} images have no mask in {mask_dir.name}/ (e.g. {missing[:3]}); "
                         "give every image a mask of the same name.")
    return pairs


def read_mask(path: str | Path, schema: ClassSchema) -> np.ndarray:
    """Read a mask as an ``(H, W)`` uint8 class map, checked against ``schema``.

    Palette PNG/TIFF masks (what napari-wsss and LUAD-HistoSeg/BCSS-WSSS write) hold class indices. Greyscale
    masks hold the dataset's own values when the schema gives ``mask_value``s (GlaS: 255 gland, 0 the rest) and
    are mapped through them; otherwise they too hold class indices.

    Raises:
        ValueError: an RGB mask, an unreadable file, or values outside the schema (named).
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "1"):
                raise ValueError(f"{path}: mask mode {im.mode}; expected a palette (P) or single-channel image "
                                 "whose values are class indices (or the schema's mask values).")
            palette = im.mode == "P"
            arr = np.asarray(im.convert("L") if im.mode == "1" else im)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"Cannot read mask {path}: {type(e).__name__}: {e}.") from e
    if not palette and schema.has_mask_values:
        return schema.map_mask_values(arr, source=str(path))
    return schema.validate_class_map(arr, source=str(path))


def write_mask(path: str | Path, class_map: np.ndarray, schema: ClassSchema) -> Path:
    """Write a class map as a palette PNG (dataset convention), atomically."""
    from PIL import Image

    from ..atomic import atomic_save

    cm = schema.validate_class_map(class_map, source=str(path))
    im = Image.fromarray(cm, mode="P")
    im.putpalette(schema.pil_palette())
    with atomic_save(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def is_background(rgb: np.ndarray, threshold: int = 200, min_size: int = 64) -> np.ndarray:
    """Near-white glass: grey level > ``threshold``, without specks smaller than ``min_size`` pixels.

    Islands of glass and holes in it smaller than ``min_size`` pixels (4-connected, within each ``(H, W)`` image)
    are removed, exactly as ``skimage.morphology.remove_small_objects`` then ``remove_small_holes`` per image.

    Args:
        rgb: (..., H, W, 3) uint8.
    Returns:
        (..., H, W) bool.
    """
    rgb = np.asarray(rgb)
    white = _near_white(rgb, threshold)
    if white.ndim < 2:  # degenerate shapes keep their old per-row handling
        from skimage.morphology import remove_small_holes, remove_small_objects

        flat = white.reshape(-1, *white.shape[-2:])
        return np.stack([_clean(w, min_size, remove_small_objects, remove_small_holes) for w in flat]
                        ).reshape(white.shape)
    return _remove_small_islands(white.reshape(-1, *white.shape[-2:]), min_size).reshape(white.shape)


_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREY_CHUNK_PX = 1 << 19  # pixels per float32 chunk (6 MB): cache-sized instead of one 12-byte-per-pixel copy


def _near_white(rgb: np.ndarray, threshold) -> np.ndarray:
    """``rgb.astype(float32) @ _GREY > threshold``, computed a block of image rows at a time.

    Each row still goes through the same ``(W, 3) @ (3,)`` matmul as on the whole array, so the result is the
    same bit for bit; chunking only keeps the float copy in cache (about 2.5x faster on a 256-tile stack).
    """
    if rgb.ndim < 3:
        return rgb.astype(np.float32) @ _GREY > threshold
    rows = rgb.reshape(-1, *rgb.shape[-2:])
    white = np.empty(rows.shape[:2], dtype=bool)
    step = max(1, _GREY_CHUNK_PX // max(1, rows.shape[1]))
    for r in range(0, rows.shape[0], step):
        white[r:r + step] = rows[r:r + step].astype(np.float32) @ _GREY > threshold
    return white.reshape(rgb.shape[:-1])


def _remove_small_islands(stack: np.ndarray, min_size: int) -> np.ndarray:
    """(N, H, W) bool -> the same with small objects, then small holes, removed per image (see ``is_background``).

    Images with many short runs along rows (noise-like masks) go through scikit-image one by one, where pixel-wise
    labelling is cheaper; the rest through ``_remove_small_islands_runs`` in one batch.
    """
    n, h, w = stack.shape
    if stack.size == 0 or min_size - 1 < 1:  # nothing is small enough to remove (skimage: size <= min_size - 1)
        return stack.copy()
    stride = w + 2
    starts, ends = _row_runs(stack.reshape(n * h, w), stride)
    dense = np.bincount(starts // (h * stride), minlength=n) > (h * w) // 16
    if not dense.any():
        return _remove_small_islands_runs(stack, min_size, (starts, ends))
    from skimage.morphology import remove_small_holes, remove_small_objects

    out = np.empty_like(stack)
    for i in np.flatnonzero(dense):
        out[i] = _clean(stack[i], min_size, remove_small_objects, remove_small_holes)
    if not dense.all():
        out[~dense] = _remove_small_islands_runs(stack[~dense], min_size)
    return out


def _remove_small_islands_runs(stack: np.ndarray, min_size: int, runs=None) -> np.ndarray:
    """``_remove_small_islands`` on run-length encoded rows: no pixel-wise labelling, no per-image Python loop.

    Each image row is cut into maximal runs of True (objects) or, in the second step, of False (holes). Two runs
    on consecutive rows of the same image touch (4-connectivity) when their column ranges overlap; the connected
    components of that graph are the objects, and a component's size is the sum of its runs' lengths. Runs are
    kept as offsets ``row * (W + 2) + column`` into the flattened stack, so that runs of different rows never
    overlap and one sorted search finds every touching pair.
    """
    n, h, w = stack.shape
    stride = w + 2
    max_size = min_size - 1
    starts, ends = runs if runs is not None else _row_runs(stack.reshape(n * h, w), stride)
    keep = ~_in_small_component(starts, ends, h, stride, max_size)
    starts, ends = starts[keep], ends[keep]
    # The holes: the gaps between the kept runs of each row, including those at its two ends.
    row0 = np.arange(n * h, dtype=starts.dtype) * stride
    hole_starts = np.insert(ends, np.searchsorted(ends, row0), row0)
    hole_ends = np.insert(starts, np.searchsorted(starts, row0 + w), row0 + w)
    nonempty = hole_ends > hole_starts
    hole_starts, hole_ends = hole_starts[nonempty], hole_ends[nonempty]
    fill = _in_small_component(hole_starts, hole_ends, h, stride, max_size)
    starts = np.concatenate([starts, hole_starts[fill]])
    ends = np.concatenate([ends, hole_ends[fill]])
    order = np.argsort(starts, kind="stable")
    # Paint: alternating False / True segments between consecutive run boundaries.
    bounds = np.empty(2 * len(starts) + 2, dtype=np.intp)
    bounds[0], bounds[-1] = 0, n * h * stride
    bounds[1:-1:2], bounds[2:-1:2] = starts[order], ends[order]
    values = np.zeros(2 * len(starts) + 1, dtype=bool)
    values[1::2] = True
    painted = np.repeat(values, np.diff(bounds)).reshape(n * h, stride)
    return np.ascontiguousarray(painted[:, :w]).reshape(n, h, w)


def _row_runs(rows: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of True in each row of (R, W) bool ``rows``: start and end (exclusive) offsets
    ``r * stride + column``, sorted, with ``stride >= W + 2``."""
    padded = np.zeros((rows.shape[0], stride), dtype=bool)
    padded[:, 1:rows.shape[1] + 1] = rows
    flat = padded.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # edge k: flat[k] != flat[k + 1], i.e. column k % stride
    return edges[0::2], edges[1::2]


def _in_small_component(starts: np.ndarray, ends: np.ndarray, h: int, stride: int, max_size) -> np.ndarray:
    """For sorted row runs (see ``_row_runs``; images of ``h`` rows): is the run's 4-connected component at most
    ``max_size`` pixels?"""
    if len(starts) == 0:
        return np.zeros(0, dtype=bool)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    lengths = ends - starts
    # Candidate upper runs: not on the last row of an image; moved one row down, to compare columns directly.
    upper = np.flatnonzero((starts // stride) % h != h - 1)
    up_starts, up_ends = starts[upper] + stride, ends[upper] + stride
    # Run j touches the moved upper runs first[j] .. first[j] + count[j] - 1 (start < its end, end > its start).
    first = np.searchsorted(up_ends, starts, side="right")
    count = np.maximum(np.searchsorted(up_starts, ends, side="left") - first, 0)
    n_pairs = int(count.sum())
    if n_pairs == 0:
        return lengths <= max_size
    lower = np.repeat(np.arange(len(starts)), count)
    offset = np.arange(n_pairs) - np.repeat(np.cumsum(count) - count, count)
    above = upper[np.repeat(first, count) + offset]
    graph = coo_matrix((np.ones(n_pairs, dtype=np.int8), (above, lower)), shape=(len(starts), len(starts)))
    _, component = connected_components(graph, directed=True, connection="weak")
    sizes = np.bincount(component, weights=lengths)
    return sizes[component] <= max_size


def _clean(mask: np.ndarray, min_size: int, rso, rsh) -> np.ndarray:
    # Pale stroma has white specks and glass has dust: drop both kinds of small islands.
    try:
        mask = rso(mask, max_size=min_size - 1)
        return rsh(mask, max_size=min_size - 1)
    except TypeError:  # scikit-image < 0.26 names it min_size / area_threshold
        mask = rso(mask, min_size=min_size)
        return rsh(mask, area_threshold=min_size)
