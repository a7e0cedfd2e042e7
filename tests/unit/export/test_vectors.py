"""Class maps <-> GeoJSON polygons: QuPath fields, (x, y) level-0 coordinates, holes, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_wsss.classes import LUAD_HISTOSEG as S
from napari_wsss.export.vectors import (
    class_map_to_features,
    features_to_class_map,
    read_geojson,
    read_geojson_class_map,
    write_geojson,
)

from .conftest import blob_mask


def _boundary(cm: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of a class boundary."""
    edge = np.zeros(cm.shape, bool)
    for v in np.unique(cm):
        m = cm == v
        edge |= ndimage.binary_dilation(m) & ~m
    return ndimage.binary_dilation(edge)


@pytest.mark.parametrize("origin, ds", [((0, 0), 1.0), ((100, 250), 2.0), ((7, 3), 4.0)])
def test_polygons_rasterise_back_within_a_pixel(rng, origin, ds) -> None:
    cm = blob_mask(rng, (48, 64))
    cm[0, 63] = 1  # a single pixel at the edge
    cm[40:, :5] = 2  # touching the border
    feats = class_map_to_features(cm, S, origin=origin, downsample=ds)
    back = features_to_class_map(feats, S, cm.shape, origin=origin, downsample=ds)
    wrong = back != cm
    assert not (wrong & ~_boundary(cm)).any(), "mismatch away from boundaries"
    assert wrong.mean() < 0.01


def test_qupath_fields_and_xy_order() -> None:
    cm = np.full((40, 60), S.background_index, np.uint8)
    cm[10:20, 30:50] = 0  # wide, short: x spans 30..50, y spans 10..20
    (f,) = class_map_to_features(cm, S, origin=(1000, 2000), downsample=1, item="k")
    assert f["properties"]["classification"] == {"name": "TE", "color": [205, 51, 51]}
    assert f["properties"]["objectType"] == "annotation" and f["properties"]["item"] == "k"
    ring = np.array(f["geometry"]["coordinates"][0][0])
    assert ring[:, 0].min() >= 2030 - 1 and ring[:, 0].max() <= 2050 + 1  # x first
    assert ring[:, 1].min() >= 1010 - 1 and ring[:, 1].max() <= 1020 + 1
    assert np.array_equal(ring[0], ring[-1])


def test_hole_is_an_interior_ring() -> None:
    cm = np.full((30, 30), S.background_index, np.uint8)
    cm[5:25, 5:25] = 0
    cm[12:18, 12:18] = S.background_index
    (f,) = class_map_to_features(cm, S)
    (poly,) = f["geometry"]["coordinates"]
    assert len(poly) == 2  # exterior + one hole
    back = features_to_class_map([f], S, cm.shape)
    assert back[15, 15] == S.background_index and back[8, 8] == 0


def test_geojson_file_round_trip_and_qupath_list(tmp_path, rng) -> None:
    cm = blob_mask(rng, (32, 32))
    feats = class_map_to_features(cm, S, origin=(64, 32))
    write_geojson(tmp_path / "a.geojson", feats)
    assert json.loads((tmp_path / "a.geojson").read_text())["type"] == "FeatureCollection"
    # QuPath writes a bare list of Features, with Polygon geometries and unknown classes mixed in
    qp = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": p}, "properties": f["properties"]}
          for f in feats for p in f["geometry"]["coordinates"]]
    qp.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 0]]]},
               "properties": {"classification": {"name": "Other", "color": [1, 2, 3]}}})
    (tmp_path / "qp.geojson").write_text(json.dumps(qp))
    assert len(read_geojson(tmp_path / "qp.geojson")) == len(qp)
    a = features_to_class_map(read_geojson(tmp_path / "a.geojson"), S, cm.shape, origin=(64, 32))
    b = features_to_class_map(read_geojson(tmp_path / "qp.geojson"), S, cm.shape, origin=(64, 32))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="Other"):
        features_to_class_map(qp, S, cm.shape, unknown="error")
    # without a shape: the polygons' bounding box
    cmap, origin = read_geojson_class_map(tmp_path / "a.geojson", S)
    assert origin[0] >= 64 and origin[1] >= 32


def test_bad_geojson_errors(tmp_path) -> None:
    (tmp_path / "bad.geojson").write_text("{nope")
    with pytest.raises(ValueError, match="not valid GeoJSON"):
        read_geojson(tmp_path / "bad.geojson")
    with pytest.raises(FileNotFoundError):
        read_geojson(tmp_path / "missing.geojson")
    (tmp_path / "other.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 0]]]},
         "properties": {"classification": {"name": "Stroma"}}}]}))
    with pytest.raises(ValueError, match="Stroma"):
        read_geojson_class_map(tmp_path / "other.geojson", S)


def test_a_mask_too_large_to_hold_is_refused_before_allocating() -> None:
    """`import --shape 100000 100000` allocated 10 GB before; now it says what to do instead."""
    with pytest.raises(ValueError, match="100000 x 100000.*too large"):
        features_to_class_map([], S, (100000, 100000))


def _feature(geometry: dict) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": {"classification": {"name": "TE"}}}


SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]


@pytest.mark.parametrize("geometry,words", [
    ({"type": "Polygon", "coordinates": [[[0, 0], [float("nan"), 0], [10, 10], [0, 0]]]}, "not a finite number"),
    ({"type": "Polygon", "coordinates": [[[0, 0]]]}, "1 distinct point"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [0, 0]]]}, "2 distinct point"),
    ({"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4]]]}, r"\[x, y\] numbers"),
    ({"type": "MultiPolygon", "coordinates": "x"}, "needs a list"),
])
def test_malformed_polygons_are_named_not_rasterised_to_nothing(tmp_path, geometry: dict, words: str) -> None:
    """NaN, one- and two-point rings used to end in 'cannot write empty image' or a numpy error."""
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [_feature(geometry)]}))
    with pytest.raises(ValueError, match=f"a.geojson: feature 0: .*{words}"):
        read_geojson_class_map(tmp_path / "a.geojson", S)


def test_features_that_are_not_a_list_or_not_objects_name_the_file(tmp_path) -> None:
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": "x"}))
    with pytest.raises(ValueError, match="'features' should be a list"):
        read_geojson(tmp_path / "a.geojson")
    (tmp_path / "a.geojson").write_text(json.dumps([_feature({"type": "Polygon", "coordinates": [SQUARE]}), 3]))
    with pytest.raises(ValueError, match="feature 1 should be an object"):
        read_geojson(tmp_path / "a.geojson")


def test_points_only_are_refused_and_points_among_polygons_noted(tmp_path) -> None:
    point = _feature({"type": "Point", "coordinates": [1, 2]})
    (tmp_path / "p.geojson").write_text(json.dumps([point]))
    with pytest.raises(ValueError, match="Point geometries, which cover no area"):
        read_geojson_class_map(tmp_path / "p.geojson", S)
    (tmp_path / "m.geojson").write_text(json.dumps([point, _feature({"type": "Polygon", "coordinates": [SQUARE]})]))
    notes: list[str] = []
    cm, _ = read_geojson_class_map(tmp_path / "m.geojson", S, notes=notes)
    assert (cm == S.index_of("TE")).sum() == 100
    assert len(notes) == 1 and "points or lines" in notes[0]


def test_polygons_outside_the_mask_are_refused_or_noted(tmp_path) -> None:
    """--shape that misses every polygon gave an empty mask with exit 0."""
    far = _feature({"type": "Polygon", "coordinates": [[[x + 100, y + 100] for x, y in SQUARE]]})
    (tmp_path / "far.geojson").write_text(json.dumps([far]))
    with pytest.raises(ValueError, match="none of its 1 polygon.*x 100..110"):
        read_geojson_class_map(tmp_path / "far.geojson", S, shape=(32, 32), origin=(0, 0))
    (tmp_path / "two.geojson").write_text(json.dumps([far, _feature({"type": "Polygon", "coordinates": [SQUARE]})]))
    notes: list[str] = []
    cm, _ = read_geojson_class_map(tmp_path / "two.geojson", S, shape=(32, 32), origin=(0, 0), notes=notes)
    assert (cm == S.index_of("TE")).sum() == 100
    assert len(notes) == 1 and notes[0].startswith("1 of 2 polygon(s) fill no pixel")


@pytest.mark.parametrize("shape,downsample,words", [((0, 5), 1.0, "at least 1 x 1"), (None, 0.0, "positive"),
                                                     (None, float("nan"), "positive")])
def test_mask_geometry_options_out_of_range(tmp_path, shape, downsample, words: str) -> None:
    (tmp_path / "a.geojson").write_text(json.dumps([_feature({"type": "Polygon", "coordinates": [SQUARE]})]))
    with pytest.raises(ValueError, match=words):
        read_geojson_class_map(tmp_path / "a.geojson", S, shape=shape, downsample=downsample)


def test_per_pixel_noise_round_trips_exactly_and_specks_can_be_left_out() -> None:
    """A noisy mask has thousands of components; one contour pass keeps every pixel (it took ~4 s per 224-px tile
    with a contour pass per component; benchmarks/faults.py measures it)."""
    from napari_wsss.export.vectors import mask_polygons

    rng = np.random.default_rng(0)
    cm = rng.integers(0, S.n_classes, (64, 64)).astype(np.uint8)
    feats = class_map_to_features(cm, S, include_background=True)
    assert np.array_equal(features_to_class_map(feats, S, cm.shape), cm)
    blob = np.zeros((40, 40), bool)
    blob[5:30, 5:30] = True
    blob[10:20, 10:20] = False  # a hole of 100 px
    blob[12, 12] = True  # an island in the hole
    blob[35, 35] = True  # a one-pixel speck
    blob[25, 7] = False  # a one-pixel hole
    exact = mask_polygons(blob)
    assert len(exact) == 3 and sorted(len(p) for p in exact) == [1, 1, 3]  # the blob has its two holes
    kept = mask_polygons(blob, min_area=2)
    assert len(kept) == 1 and len(kept[0]) == 2  # the blob and its large hole
    simple = mask_polygons(blob, min_area=2, tolerance=1.0)
    assert sum(len(r) for r in simple[0]) < sum(len(r) for r in kept[0])
    back = features_to_class_map([{"geometry": {"type": "MultiPolygon", "coordinates": simple},
                                   "properties": {"class_index": 0}}], S, blob.shape)
    assert ((back == 0) != blob).sum() <= 2 + 60  # the speck, the small hole and the corners simplification cuts
