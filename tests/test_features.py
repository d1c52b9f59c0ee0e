"""Many features at once: each extracted on its own, with a ``feature`` column."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from tests.helpers import chunked, make_cube, raise_if_dask_computes
from xr_getregion import ArgumentError, GeometryError, TooManyValuesError

UTM = "EPSG:32615"


def field(col0, row0, col1, row1):
    return shapely.box(
        500_000 + 30 * col0 + 1,
        4_000_000 - 30 * row1 + 1,
        500_000 + 30 * col1 - 1,
        4_000_000 - 30 * row0 - 1,
    )


@pytest.fixture
def fields():
    return gpd.GeoDataFrame(
        {"name": ["north", "overlap", "dot"], "crop": ["corn", "soy", "rice"]},
        geometry=[field(1, 1, 5, 4), field(3, 2, 8, 6), shapely.Point(500_400, 3_999_500)],
        index=pd.Index([10, 20, 30], name="fid"),
        crs=UTM,
    )


def test_each_feature_equals_its_own_extraction(cube, fields):
    df = cube.ee.get_region(fields, properties=["crop"])
    assert list(df.columns[:3]) == ["feature", "crop", "id"]
    assert df["feature"].unique().tolist() == [10, 20, 30]
    for fid, row in fields.iterrows():
        alone = cube.ee.get_region(row.geometry, geometry_crs=UTM)
        part = df[df["feature"] == fid].drop(columns=["feature", "crop"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone)
        assert (df.loc[df["feature"] == fid, "crop"] == row.crop).all()


def test_a_pixel_covered_by_two_features_appears_once_for_each(cube, fields):
    df = cube.ee.get_region(fields)
    # Pixel (col 4, row 3) lies in 'north' and in 'overlap'.
    lon, lat = df.loc[df["feature"] == 10, ["longitude", "latitude"]].iloc[-1]
    hits = df[(df["longitude"] == lon) & (df["latitude"] == lat)]
    assert sorted(hits["feature"].unique().tolist()) == [10, 20]
    assert len(df) == (12 + 20 + 1) * 3


def test_id_column_and_other_inputs(cube, fields):
    by_name = cube.ee.get_region(fields, id_column="name")
    assert by_name["feature"].unique().tolist() == ["north", "overlap", "dot"]
    as_list = cube.ee.get_region(list(fields.geometry), geometry_crs=UTM)
    assert as_list["feature"].unique().tolist() == [0, 1, 2]
    series = cube.ee.get_region(fields.geometry)
    assert series["feature"].unique().tolist() == [10, 20, 30]
    repeated = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": "a", "properties": {}, "geometry": g.__geo_interface__}
            for g in fields.geometry
        ],
    }
    with pytest.raises(GeometryError, match=r"repeated: \['a'\]"):
        cube.ee.get_region(repeated, geometry_crs=UTM)


def test_feature_collection_ids_and_properties(cube, fields):
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": fid, "properties": {"k": k}, "geometry": g.__geo_interface__}
            for fid, k, g in zip(["a", "b"], [1, 2], fields.geometry, strict=False)
        ],
    }
    df = cube.ee.get_region(fc, geometry_crs=UTM, properties=["k"])
    assert df.groupby("feature")["k"].first().to_dict() == {"a": 1, "b": 2}


def test_same_features_table_for_numpy_and_dask(cube, fields):
    expected = cube.ee.get_region(fields, scale=20, crs=UTM)
    for chunks in [(1, 1, 3, 4), (3, 2, 20, 30)]:
        lazy = chunked(cube, chunks)
        with raise_if_dask_computes(max_computes=1):
            got = lazy.ee.get_region(fields, scale=20, crs=UTM)
        pd.testing.assert_frame_equal(got, expected)


def test_limit_counts_every_features_values(cube, fields):
    n = (12 + 20 + 1) * 2 * 3
    with raise_if_dask_computes(), pytest.raises(TooManyValuesError, match=f"> {n - 1}\\."):
        chunked(cube, (1, 1, 5, 5)).ee.get_region(fields, max_values=n - 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"id_column": "nope"}, ArgumentError, "id_column='nope' is not a column"),
        ({"properties": ["crop", "x"]}, ArgumentError, r"properties \['x'\]"),
        ({"id_column": "crop_dup"}, GeometryError, "must be unique"),
    ],
)
def test_bad_feature_arguments_are_named(cube, fields, kwargs, error, match):
    fields["crop_dup"] = ["x", "x", "y"]
    with pytest.raises(error, match=match):
        cube.ee.get_region(fields, **kwargs)


def test_a_bad_feature_is_named_by_its_id(cube, fields):
    fields.loc[20, "geometry"] = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    with pytest.raises(GeometryError, match="feature 20: the geometry is invalid"):
        cube.ee.get_region(fields)


def test_feature_arguments_on_one_region_are_refused(cube):
    with pytest.raises(ArgumentError, match="several features"):
        cube.ee.get_region(field(1, 1, 2, 2), geometry_crs=UTM, id_column="x")


def test_getregion_keeps_ees_meaning_one_region_the_union(cube, fields):
    table = cube.ee.getRegion(fields, crs="native")
    pixels = {(r[1], r[2]) for r in table[1:]}
    assert len(pixels) == 12 + 20 + 1 - 4  # the overlap counted once
    assert np.isin(len(table) - 1, [len(pixels) * 3])


def test_many_points_match_one_at_a_time():
    cube = make_cube(60, 80, 2)
    rng = np.random.default_rng(7)
    xs = rng.uniform(500_000, 500_000 + 80 * 30, 300)
    ys = rng.uniform(4_000_000 - 60 * 30, 4_000_000, 300)
    points = gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs=UTM)
    df = chunked(cube, (1, 1, 16, 16)).ee.get_region(points)
    assert len(df) == 300 * 2
    for k in rng.choice(300, 15, replace=False):
        alone = cube.ee.get_region(points.iloc[k], geometry_crs=UTM)
        part = df[df["feature"] == k].drop(columns="feature").reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone)


def test_plan_counts_features_apart_and_getregion_takes_their_union(cube, fields):
    with raise_if_dask_computes():
        apart = cube.ee.plan(fields, crs="native")
    rows = len(cube.ee.get_region(fields))
    assert apart.n_pixels * cube.sizes["time"] == rows
    # EE's getRegion takes a FeatureCollection as one region: overlapping pixels once.
    union = cube.ee.plan(shapely.union_all(fields.geometry), crs="native", geometry_crs=UTM)
    assert len(cube.ee.getRegion(fields, crs="native")) - 1 == union.n_pixels * 3
    assert union.n_pixels < apart.n_pixels
