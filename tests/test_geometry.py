"""Geometry inputs and EE-style constructors (docs/semantics.md section 2)."""

from __future__ import annotations

import json
from typing import ClassVar

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from pyproj import CRS

from xr_getregion import Geometry, GeometryError
from xr_getregion.errors import CRSError
from xr_getregion.geometry import read_geometry

EPSG4326 = CRS.from_epsg(4326)


def test_point_forms_match_ee():
    assert Geometry.Point([-90.7, 34.71]).shape.equals(shapely.Point(-90.7, 34.71))
    assert Geometry.Point(-90.7, 34.71).shape.equals(shapely.Point(-90.7, 34.71))
    p = Geometry.Point([500_000, 4_000_000], "EPSG:32615")
    assert p.crs == CRS.from_epsg(32615)
    assert not p.geodesic


def test_multipoint_nested_and_flat():
    a = Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]])
    b = Geometry.MultiPoint([-90.49, 34.85, -90.48, 34.84])
    assert a.shape.equals(b.shape)
    assert len(a.shape.geoms) == 2


def test_geodesic_defaults_follow_ee():
    assert Geometry.Polygon([[0, 0], [1, 0], [1, 1]]).geodesic
    assert Geometry.Rectangle([0, 0, 1, 1]).geodesic
    assert Geometry.LineString([[0, 0], [1, 1]]).geodesic
    assert Geometry.MultiLineString([[[0, 0], [1, 1]]]).geodesic
    assert Geometry.MultiPolygon([[[[0, 0], [1, 0], [1, 1]]]]).geodesic
    assert not Geometry.BBox(0, 0, 1, 1).geodesic
    assert not Geometry.Rectangle([0, 0, 1, 1], geodesic=False).geodesic
    # Projected coordinates are planar by default.
    assert not Geometry.Polygon([[0, 0], [10, 0], [10, 10]], "EPSG:32615").geodesic


def test_rectangle_forms():
    flat = Geometry.Rectangle([1, 2, 3, 4]).shape
    corners = Geometry.Rectangle([[1, 2], [3, 4]]).shape
    numbers = Geometry.Rectangle(1, 2, 3, 4).shape
    assert flat.equals(corners) and flat.equals(numbers)
    assert flat.bounds == (1, 2, 3, 4)
    with pytest.raises(GeometryError, match="4 numbers"):
        Geometry.Rectangle([1, 2, 3])
    with pytest.raises(GeometryError, match="min <= max"):
        Geometry.Rectangle([3, 2, 1, 4])


def test_polygon_one_ring_or_rings_with_holes():
    shell = [[0, 0], [10, 0], [10, 10], [0, 10]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6]]
    assert Geometry.Polygon(shell).shape.area == 100
    assert Geometry.Polygon([shell, hole], geodesic=False).shape.area == 96


def test_bbox_is_planar_and_refuses_antimeridian_crossing_with_a_fix():
    box = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    assert box.shape.bounds == (-90.496353, 34.851971, -90.495749, 34.852197)
    with pytest.raises(GeometryError, match="split it"):
        Geometry.BBox(170, 0, -170, 10)


def test_geodesic_edges_follow_the_great_circle():
    # A long edge along the 60th parallel: the great circle bulges poleward.
    shape, crs = read_geometry(Geometry.Rectangle([0, 50, 40, 60]))
    assert crs == EPSG4326
    coords = shapely.get_coordinates(shape)
    top = coords[(coords[:, 0] > 19) & (coords[:, 0] < 21)]
    assert top[:, 1].max() > 61.5  # the top edge midpoint is 1.5 degrees north of 60
    # Every densified vertex lies on the WGS84 geodesic between the corners.
    geod = pyproj.Geod(ellps="WGS84")
    on_edge = coords[coords[:, 1] > 60.0001]
    az, _, dist = geod.inv(
        np.full(len(on_edge), 40.0), np.full(len(on_edge), 60.0), on_edge[:, 0], on_edge[:, 1]
    )
    _, _, total = geod.inv(40, 60, 0, 60)
    az0, _, _ = geod.inv(40, 60, 0, 60)
    assert np.allclose(az, az0, atol=1e-6)
    assert (dist < total).all()
    # Planar BBox is left alone.
    assert len(shapely.get_coordinates(read_geometry(Geometry.BBox(0, 50, 40, 60))[0])) == 5


@pytest.mark.parametrize(
    "obj",
    [
        shapely.box(1, 2, 3, 4),
        {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 4], [1, 2]]]},
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 4]]]},
        },
        "POLYGON ((1 2, 3 2, 3 4, 1 4, 1 2))",
        json.dumps({"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 4]]]}),
        Geometry.BBox(1, 2, 3, 4),
    ],
    ids=["shapely", "geojson", "feature", "wkt", "geojson-text", "ee"],
)
def test_every_single_geometry_input_reads_the_same(obj):
    shape, crs = read_geometry(obj)
    assert shape.equals(shapely.box(1, 2, 3, 4))
    assert crs == EPSG4326


def test_geo_interface_objects_are_read():
    class Thing:
        __geo_interface__: ClassVar = {"type": "Point", "coordinates": (5.0, 6.0)}

    shape, _ = read_geometry(Thing())
    assert shape.equals(shapely.Point(5, 6))


def test_feature_collection_and_list_are_collections_of_parts():
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}},
        ],
    }
    shape, _ = read_geometry(fc)
    assert shape.geom_type == "GeometryCollection" and len(shape.geoms) == 2
    shape, _ = read_geometry([shapely.Point(0, 0), Geometry.Point(1, 1)])
    assert len(shape.geoms) == 2


def test_geoseries_brings_its_crs_and_geometry_crs_overrides():
    gs = gpd.GeoSeries([shapely.Point(500_000, 4_000_000)], crs="EPSG:32615")
    _, crs = read_geometry(gs)
    assert crs == CRS.from_epsg(32615)
    _, crs = read_geometry(gpd.GeoDataFrame(geometry=gs))
    assert crs == CRS.from_epsg(32615)
    _, crs = read_geometry(shapely.Point(0, 0), geometry_crs="EPSG:3857")
    assert crs == CRS.from_epsg(3857)
    with pytest.raises(CRSError, match="geometry_crs"):
        read_geometry(shapely.Point(0, 0), geometry_crs="not a crs")


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (shapely.Polygon(), "empty"),
        ({"type": "FeatureCollection", "features": []}, "empty"),
        (shapely.Point(float("nan"), 1), "non-finite"),
        (shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]), "invalid: Self-intersection"),
        (42, "cannot read a geometry from int"),
        ("POLYGON ((1 2, 3", "neither WKT nor GeoJSON"),
        ({"type": "Blob"}, "not a GeoJSON geometry"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
    ],
)
def test_bad_geometries_are_refused_clearly(obj, match):
    with pytest.raises(GeometryError, match=match):
        read_geometry(obj)


def test_invalid_geometry_error_says_how_to_repair():
    with pytest.raises(GeometryError, match="make_valid"):
        read_geometry(shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]))


def test_touching_and_overlapping_parts_of_a_multipolygon_are_a_union_not_an_error():
    touching = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)])
    overlapping = shapely.MultiPolygon([shapely.box(0, 0, 2, 1), shapely.box(1, 0, 3, 1)])
    assert not touching.is_valid and not overlapping.is_valid  # GEOS's view
    for shape in (touching, overlapping):
        assert read_geometry(shape)[0] is shape
    with pytest.raises(GeometryError, match="Self-intersection"):
        bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
        read_geometry(shapely.MultiPolygon([shapely.box(5, 5, 6, 6), bowtie]))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Geometry.Polygon([[0, 0], [1, 0]]), "Polygon needs rings of at least 3"),
        (lambda: Geometry.LineString([[0, 0]]), "LineString needs at least 2 points"),
        (lambda: Geometry.MultiLineString([[[0, 0]]]), "MultiLineString needs at least 2"),
        (lambda: Geometry.Point([1, 2, 3]), r"Point coordinates must be \[x, y\]"),
    ],
)
def test_constructors_refuse_too_few_points_clearly(make, match):
    with pytest.raises(GeometryError, match=match):
        make()


# --- one flattening of multi-parts, one longitude-jump test ------------------------------------


def test_flat_parts_flattens_nested_collections_in_order_and_drops_empty_parts() -> None:
    from xr_getregion.geometry import flat_parts

    a, b = shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)
    nested = shapely.GeometryCollection(
        [shapely.MultiPolygon([a, b]), shapely.Point(5, 5), shapely.LineString()]
    )
    parts, owner = flat_parts(np.array([shapely.Point(9, 9), nested], dtype=object))
    assert [p.wkt for p in parts] == ["POINT (9 9)", a.wkt, b.wkt, "POINT (5 5)"]
    assert owner.tolist() == [0, 1, 1, 1]
    single, where = flat_parts(a)
    assert [p.wkt for p in single] == [a.wkt] and where.tolist() == [0]


def test_long_edges_are_jumps_of_more_than_half_a_turn_within_one_line() -> None:
    from xr_getregion.geometry import long_edges

    lon = np.array([179.5, -179.5, -179.0, 10.0, -170.5])
    line = np.array([0, 0, 0, 1, 1])
    # 179.5 -> -179.5 and 10 -> -170.5 jump; -179 -> 10 does too, but between two lines.
    assert long_edges(lon, line).tolist() == [True, False, False, True]
    assert long_edges(lon).tolist() == [True, False, True, True]
