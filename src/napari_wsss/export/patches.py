"""Real images with pixel masks (or QuPath GeoJSON) -> a weakly supervised training set the trainers read.

Each training image is cut into square patches that keep only their **image-level labels** (a class is present
when it covers at least ``min_fraction`` of the patch), so models learn from labels alone while the masks stay
for evaluation. The validation split is made **by source image, never by patch** (patches of one image overlap
and look alike: splitting them would leak), and validation images are written whole with their masks, so
evaluation sees what inference sees. Layout written (``training.common.resolve_data_dirs`` reads it)::

    training/<stem>_y<Y>_x<X>-[1 0].png   patches, labels in the name (LUAD-HistoSeg style, schema order)
    labels.csv                             filename,<tissue class names>: the same labels as a table
    val/img/<stem>.png, val/mask/<stem>.png whole validation images, palette class-map masks
    split.json                             each source image's split and counts, the schema, the command

The set is built in a folder beside ``out`` and renamed into place (``atomic.atomic_dir``).
"""

from __future__ import annotations

import csv
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_dir, atomic_write_json
from ..classes import ClassSchema
from ..data.tiles import (find_mask_layout, format_label_name, is_background, list_images,
                          list_mask_pairs, read_mask, read_rgb, write_mask)
from ..events import Cancelled, Progress, StopFlag, never_stop

FORMAT = "napari-wsss-patches"
FORMAT_VERSION = 1
DEFAULT_MIN_FRACTION = 0.01  # 1 % of the patch: a class on a few border pixels is annotation noise, not present
DEFAULT_MAX_GLASS = 0.8
GEOJSON_DIRS = ("geojson", "annotations")


@dataclass(frozen=True)
class Source:
    """One source image and where its mask comes from (a mask file or a GeoJSON file)."""

    image: Path
    mask: Path | None = None
    geojson: Path | None = None

    @property
    def name(self) -> str:
        return self.image.stem


def list_sources(folder: str | Path) -> list[Source]:
    """Images with masks: ``images/`` + ``masks/`` (GlaS), ``img/`` + ``mask/``, or ``images/`` (or ``img/``) +
    ``geojson/`` (QuPath exports named ``<image stem>.geojson``, level-0 pixels of the image).

    Raises:
        FileNotFoundError: none of these layouts; ValueError: an image without a mask or GeoJSON (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the folder with images/ and masks/ (or geojson/).")
    gj_dir = next((folder / d for d in GEOJSON_DIRS if (folder / d).is_dir()), None)
    img_dir = next((folder / d for d in ("images", "img") if (folder / d).is_dir()), None)
    if find_mask_layout(folder) is not None and gj_dir is None:
        return [Source(p.image, mask=p.mask) for p in list_mask_pairs(folder)]
    if img_dir is None or gj_dir is None:
        raise FileNotFoundError(f"{folder} must contain images/ + masks/ (or img/ + mask/) with the same file names, "
                                "or images/ + geojson/ with one QuPath GeoJSON export per image (<stem>.geojson).")
    gj = {p.stem: p for p in gj_dir.iterdir() if p.suffix.lower() in (".geojson", ".json")}
    images = list_images(img_dir)
    missing = [p.name for p in images if p.stem not in gj]
    if missing:
        raise ValueError(f"{folder}: {len(missing)} images have no GeoJSON in {gj_dir.name}/ (e.g. {missing[:3]}); "
                         "export one per image from QuPath (File > Export objects as GeoJSON).")
    return [Source(p, geojson=gj[p.stem]) for p in images]


def read_source_class_map(src: Source, shape: tuple[int, int], schema: ClassSchema) -> np.ndarray:
    """(H, W) uint8 class map of a source. GeoJSON: pixels no polygon covers are the background class, or the
    class the background is scored as when the schema says masks do not annotate it (GlaS: non-gland)."""
    if src.mask is not None:
        cm = read_mask(src.mask, schema)
    else:
        from .vectors import features_to_class_map, read_geojson

        cm = features_to_class_map(read_geojson(src.geojson), schema, shape)  # type: ignore[arg-type]
        cm = schema.scored_lookup()[cm] if schema.classes[-1].scored_as else cm
    if cm.shape != shape:
        raise ValueError(f"{src.mask or src.geojson}: mask is {cm.shape[0]}x{cm.shape[1]} px, its image "
                         f"{src.image.name} {shape[0]}x{shape[1]}; masks must have the image's size.")
    return cm


def patch_starts(n: int, size: int, stride: int) -> list[int]:
    """Starts along one axis every ``stride`` px; the last patch ends at ``n`` so the edge is covered."""
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] + size < n:
        starts.append(n - size)
    return starts


def patch_labels(class_map: np.ndarray, schema: ClassSchema, min_fraction: float) -> np.ndarray:
    """(n_foreground,) int64: tissue classes covering at least ``min_fraction`` of the patch."""
    counts = np.bincount(class_map.ravel(), minlength=schema.n_classes)[: schema.n_foreground]
    return (counts >= max(1.0, min_fraction * class_map.size)).astype(np.int64)


def split_sources(names: list[str], val_fraction: float, seed: int, val_list: list[str] | None = None
                  ) -> dict[str, str]:
    """``{name: "train" | "val"}`` by source image: the names of ``val_list`` (stems or file names), else a
    seeded random ``val_fraction`` of the images (at least one when the fraction is > 0 and two images exist).

    Raises:
        ValueError: a ``val_list`` name that is no source image, or a split that leaves no training image.
    """
    if val_list is not None:
        wanted = {Path(n).stem for n in val_list if n.strip()}
        unknown = sorted(wanted - set(names))
        if unknown:
            raise ValueError(f"--val-list names {len(unknown)} images that are not in the data, e.g. {unknown[:3]}; "
                             "list image file names or stems, one per line.")
        val = wanted
    else:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"--val-fraction {val_fraction}: expected 0 <= fraction < 1 (share of source images).")
        n_val = int(round(val_fraction * len(names)))
        if val_fraction > 0 and len(names) >= 2:
            n_val = min(max(n_val, 1), len(names) - 1)
        order = np.random.default_rng(seed).permutation(len(names))
        val = {names[i] for i in order[:n_val]}
    if len(val) >= len(names):
        raise ValueError(f"The split leaves no training image ({len(names)} images, {len(val)} for validation); "
                         "lower --val-fraction or shorten --val-list.")
    return {n: "val" if n in val else "train" for n in names}


def check_options(size: int, stride: int, min_fraction: float, max_glass: float) -> None:
    if size < 16:
        raise ValueError(f"--size {size}: expected a patch side of at least 16 pixels.")
    if not 0 < stride:
        raise ValueError(f"--stride {stride}: expected a positive step in pixels (default: the patch size).")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"--min-fraction {min_fraction}: expected a share of the patch between 0 and 1.")
    if not 0 <= max_glass <= 1:
        raise ValueError(f"--max-glass {max_glass}: expected a share of the patch between 0 and 1 (1 keeps all).")


def make_patches(
    data: str | Path,
    out: str | Path,
    schema: ClassSchema,
    *,
    size: int = 224,
    stride: int | None = None,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_glass: float = DEFAULT_MAX_GLASS,
    val_fraction: float = 0.2,
    seed: int = 0,
    val_list: list[str] | None = None,
    overwrite: bool = False,
    command: str = "",
    should_stop: StopFlag = never_stop,
) -> Generator[Progress, None, Path]:
    """Write a patch training set from the images and masks of ``data`` (see the module doc for the layout).

    Args:
        size, stride: patch side and step in source pixels (stride default: ``size``, no overlap).
        min_fraction: a class is a patch's label when it covers at least this share of the patch.
        max_glass: patches whose near-white glass share (``data.tiles.is_background``) exceeds this are dropped;
            so are patches left without any tissue label.
        val_fraction, seed, val_list: the validation split by source image (see :func:`split_sources`).
    Returns (generator value):
        ``out``.
    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is False (checked before any work).
        ValueError: bad options, an image smaller than a patch, masks that do not fit the schema.
    """
    stride = size if stride is None else stride
    check_options(size, stride, min_fraction, max_glass)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose a new folder or pass --overwrite.")
    sources = list_sources(data)
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{data}: several images share the stems {dup[:3]}; give each image a unique name.")
    split = split_sources(names, val_fraction, seed, val_list)
    fg = schema.foreground_names
    images: dict[str, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    label_counts = np.zeros(schema.n_foreground, np.int64)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "training").mkdir()
        (tmp / "val" / "img").mkdir(parents=True)
        (tmp / "val" / "mask").mkdir(parents=True)
        for k, src in enumerate(sources):
            if should_stop():
                raise Cancelled("patch extraction cancelled; nothing was written")
            rgb = read_rgb(src.image)
            h, w = rgb.shape[:2]
            cm = read_source_class_map(src, (h, w), schema)
            rec: dict[str, Any] = {"file": src.image.name, "split": split[src.name], "shape": [h, w]}
            if split[src.name] == "val":
                _write_png(tmp / "val" / "img" / f"{src.name}.png", rgb)
                write_mask(tmp / "val" / "mask" / f"{src.name}.png", cm, schema)
            else:
                if h < size or w < size:
                    raise ValueError(f"{src.image}: {h}x{w} px is smaller than a {size}-px patch; choose a smaller "
                                     "--size or leave the image out.")
                glass = is_background(rgb)
                kept = dropped_glass = dropped_unlabelled = 0
                for y in patch_starts(h, size, stride):
                    for x in patch_starts(w, size, stride):
                        if glass[y:y + size, x:x + size].mean() > max_glass:
                            dropped_glass += 1
                            continue
                        labels = patch_labels(cm[y:y + size, x:x + size], schema, min_fraction)
                        if not labels.any():
                            dropped_unlabelled += 1
                            continue
                        name = format_label_name(f"{src.name}_y{y}_x{x}", labels)
                        _write_png(tmp / "training" / name, rgb[y:y + size, x:x + size])
                        rows.append([name, *labels.tolist()])
                        label_counts += labels
                        kept += 1
                rec.update(patches=kept, dropped_glass=dropped_glass, dropped_unlabelled=dropped_unlabelled)
            images[src.name] = rec
            yield Progress(k + 1, len(sources), f"patches: {src.image.name} ({rec['split']})")
        if not rows:
            raise ValueError(f"No training patch was kept from {data}: every patch was mostly glass or had no tissue "
                             "label; raise --max-glass, lower --min-fraction or check the masks.")
        with (tmp / "labels.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", *fg])
            writer.writerows(rows)
        train = [r for r in images.values() if r["split"] == "train"]
        atomic_write_json(tmp / "split.json", {
            "format": FORMAT, "format_version": FORMAT_VERSION, "command": command,
            "source": str(Path(data).resolve()), "schema": schema.to_dict(),
            "options": {"size": size, "stride": stride, "min_fraction": min_fraction, "max_glass": max_glass,
                        "val_fraction": None if val_list is not None else val_fraction, "seed": seed,
                        "val_list": sorted(n for n, s in split.items() if s == "val") if val_list is not None else None},
            "counts": {"train_images": len(train), "val_images": len(images) - len(train),
                       "patches": len(rows), "dropped_glass": sum(r["dropped_glass"] for r in train),
                       "dropped_unlabelled": sum(r["dropped_unlabelled"] for r in train),
                       "patches_with_label": dict(zip(fg, label_counts.tolist()))},
            "images": images,
        })
    return out


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb)).save(path, format="PNG")


def read_val_list(path: str | Path) -> list[str]:
    """Names in a ``--val-list`` file: one image file name or stem per line; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--val-list {path} does not exist; give a text file with one image name per line.")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"--val-list {path} names no image; write one image file name or stem per line.")
    return names

