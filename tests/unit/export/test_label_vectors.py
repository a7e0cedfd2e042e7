"""Label pyramid -> GeoJSON: level chosen for bounded memory, coordinates in slide level-0 pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.export.label_vectors import geojson_level, write_label_pyramid_geojson
from napari_wsss.export.vectors import read_geojson, read_geojson_class_map


def test_level_keeps_the_traced_side_bounded() -> None:
    assert geojson_level((4000, 3000), 5) == 0
    assert geojson_level((100_000, 80_000), 9) == 4  # 6250 px wide at level 4
    assert geojson_level((100_000, 80_000), 3) == 2  # no coarser level: the coarsest there is


def test_polygons_in_level0_pixels(tmp_path: Path) -> None:
    lab = np.zeros((64, 96), np.uint8)
    lab[8:40, 16:48] = 1  # TE
    lab[40:60, 60:90] = 4  # TAS
    root = zarr.open_group(str(tmp_path / "l.zarr"), mode="w")
    root.attrs["schema"] = LUAD_HISTOSEG.to_dict()
    for lv in range(2):
        sub = lab[:: 2**lv, :: 2**lv]
        root.create_array(f"labels/{lv}", shape=sub.shape, dtype="uint8")[:] = sub
    # labels/0 is the slide's level 2 (downsample 4): polygons land at 4x the label coordinates
    out = write_label_pyramid_geojson(tmp_path / "l.zarr", tmp_path / "s.geojson", downsample=4.0, item="s",
                                      slide="s.svs")
    feats = read_geojson(out)
    assert sorted(f["properties"]["classification"]["name"] for f in feats) == ["TAS", "TE"]
    cm, _ = read_geojson_class_map(out, LUAD_HISTOSEG, (256, 384))
    expected = np.repeat(np.repeat(LUAD_HISTOSEG.from_labels(lab), 4, 0), 4, 1)
    assert (cm == expected).mean() > 0.99
