"""Scale-out: 10,000 points and 1,000 fields, one feature at a time vs all at once, eager,
lazy, threaded and on a real ``distributed.LocalCluster`` with worker processes."""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

import xr_getregion

distributed = pytest.importorskip("distributed")

KEY = ["feature", "id", "latitude", "longitude"]


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def cube_numpy():
    return xr_getregion.sample_cube(chunks=None)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(11)
    # Inside the cube's UTM extent, handed over as lon/lat as users have them.
    x = rng.uniform(705_000, 735_000, 10_000)
    y = rng.uniform(3_838_010, 3_863_010, 10_000)
    lon, lat = Transformer.from_crs(32615, 4326, always_xy=True).transform(x, y)
    return gpd.GeoDataFrame(
        {"plot": [f"p{i:05d}" for i in range(10_000)]},
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )


@pytest.fixture(scope="module")
def fields():
    """1,000 rotated rectangular fields of 60-240 m in UTM, some overlapping."""
    rng = np.random.default_rng(12)
    cx = rng.uniform(706_000, 734_000, 1000)
    cy = rng.uniform(3_839_000, 3_862_000, 1000)
    shapes = []
    for x, y, w, h, a in zip(
        cx,
        cy,
        rng.uniform(60, 240, 1000),
        rng.uniform(60, 240, 1000),
        rng.uniform(0, 90, 1000),
        strict=True,
    ):
        box = shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        shapes.append(shapely.affinity.rotate(box, a, origin="centroid"))
    return gpd.GeoDataFrame(
        {"crop": rng.choice(["corn", "soy", "rice"], 1000)}, geometry=shapes, crs="EPSG:32615"
    )


def one_at_a_time(cube, features, **kwargs):
    frames = []
    for fid, geometry in features.geometry.items():
        alone = cube.ee.get_region(geometry, geometry_crs=features.crs, **kwargs)
        alone.insert(0, "feature", fid)
        frames.append(alone)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def expected_points(cube_numpy, points):
    return one_at_a_time(cube_numpy, points)


@pytest.fixture(scope="module")
def expected_fields(cube_numpy, fields):
    return one_at_a_time(cube_numpy, fields, scale=30, max_values=None)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_points_equal_one_at_a_time_and_an_independent_numpy_read(
    cube_numpy, points, expected_points
):
    got = xr_getregion.sample_cube().ee.get_region(points)
    pd.testing.assert_frame_equal(got, expected_points)
    assert len(got) == 10_000 * 5
    # Independently: the UTM pixel under each point, read with numpy.
    x, y = Transformer.from_crs(4326, 32615, always_xy=True).transform(
        points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    )
    ix = np.floor((np.asarray(x) - 705_000) / 30).astype(int)
    iy = np.floor((3_863_010 - np.asarray(y)) / 30).astype(int)
    b4 = cube_numpy.sel(band="B4").values[:, iy, ix]  # (images, points)
    first_image = got[got["id"] == "LC08_023036_20200709"].set_index("feature").sort_index()
    np.testing.assert_array_equal(first_image["B4"].to_numpy(), b4[0])


def test_fields_equal_one_at_a_time(fields, expected_fields):
    got = xr_getregion.sample_cube().ee.get_region(fields, scale=30, max_values=None)
    pd.testing.assert_frame_equal(got, expected_fields)
    assert got["feature"].nunique() > 900


def test_lazy_threaded_equals_eager(points, fields, expected_points, expected_fields):
    cube = xr_getregion.sample_cube()
    with dask.config.set(scheduler="threads"):
        lazy_points = cube.ee.get_region(points, lazy=True).compute()
        lazy_fields = cube.ee.get_region(fields, scale=30, max_values=None, lazy=True).compute()
    pd.testing.assert_frame_equal(ordered(lazy_points), ordered(expected_points))
    pd.testing.assert_frame_equal(ordered(lazy_fields), ordered(expected_fields))


def test_local_cluster_gives_the_same_tables_row_for_row(
    client, points, fields, expected_points, expected_fields
):
    cube = xr_getregion.sample_cube()
    lazy = cube.ee.get_region(points, properties=["plot"], lazy=True)
    on_cluster = client.compute(lazy).result()
    with dask.config.set(scheduler="threads"):
        threaded = lazy.compute(scheduler="threads")
    pd.testing.assert_frame_equal(on_cluster, threaded)
    assert (on_cluster["plot"] == on_cluster["feature"].map(points["plot"])).all()
    # The eager path's one dask.compute runs on the active client too.
    eager = cube.ee.get_region(fields, scale=30, max_values=None)
    pd.testing.assert_frame_equal(eager, expected_fields)
    assert len(client.cluster.workers) == 2


def test_parquet_written_by_the_cluster(client, tmp_path, fields, expected_fields):
    cube = xr_getregion.sample_cube()
    path = cube.ee.to_parquet(fields, tmp_path / "fields.parquet", scale=30, max_values=None)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(ordered(back), ordered(expected_fields), check_dtype=False)
