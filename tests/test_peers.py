"""Cross-checks against the tools users reach for otherwise, where the semantics agree
(the cube's own grid): the same pixels and the same values, or the test fails."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr

from tests.helpers import make_cube

exactextract = pytest.importorskip("exactextract")
xvec = pytest.importorskip("xvec")

UTM = "EPSG:32615"
NY, NX = 60, 80


@pytest.fixture(scope="module")
def cube():
    return make_cube(NY, NX, 3, ["a", "b"])


def random_polygons(n: int, seed: int) -> list[shapely.Polygon]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cx = rng.uniform(500_000, 500_000 + NX * 30)
        cy = rng.uniform(4_000_000 - NY * 30, 4_000_000)
        k = rng.integers(3, 12)
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(20, 600, k)
        poly = shapely.Polygon(
            np.column_stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)])
        )
        if poly.is_valid and poly.area > 0:
            out.append(poly)
    return out


def our_pixels(cube, geometry):
    plan = cube.ee.plan(geometry, crs="native", geometry_crs=UTM)
    return set(zip(plan.rows.tolist(), plan.cols.tolist(), strict=True)), plan


@pytest.mark.parametrize("seed", range(4))
def test_polygon_pixels_and_values_equal_rioxarray_clip(cube, seed):
    for poly in random_polygons(15, seed):
        ours, plan = our_pixels(cube, poly)
        try:
            clipped = cube.rio.clip([poly], crs=UTM, all_touched=False, drop=False)
        except Exception as exc:  # rioxarray refuses polygons that burn no pixel
            assert "No data found in bounds" in str(exc)
            assert ours == set()
            continue
        mask = clipped.isel(time=0, band=0).notnull().values
        theirs = set(zip(*np.nonzero(mask), strict=True))
        assert ours == theirs, poly.wkt
        table = cube.ee.get_region(poly, geometry_crs=UTM)
        expected = cube.values[:, 1][:, plan.rows, plan.cols].reshape(-1)
        np.testing.assert_array_equal(table["b"].to_numpy(), expected)


@pytest.mark.parametrize("seed", range(3))
def test_polygon_pixels_equal_exactextract_cells_with_centre_inside(cube, seed):
    polys = random_polygons(20, 100 + seed)
    gdf = gpd.GeoDataFrame(geometry=polys, crs=UTM)
    image = cube.isel(time=0, band=0)
    cells = exactextract.exact_extract(
        image, gdf, ["center_x", "center_y", "values"], output="pandas"
    )
    for poly, (_, row) in zip(polys, cells.iterrows(), strict=True):
        cx, cy = np.asarray(row["center_x"]), np.asarray(row["center_y"])
        inside = shapely.contains_xy(poly, cx, cy)
        cols = np.floor((cx[inside] - 500_000) / 30).astype(int)
        rows = np.floor((4_000_000 - cy[inside]) / 30).astype(int)
        ours, _ = our_pixels(cube, poly)
        assert ours == set(zip(rows.tolist(), cols.tolist(), strict=True)), poly.wkt
        values = np.asarray(row["values"])[inside]
        np.testing.assert_array_equal(np.sort(values), np.sort(image.values[rows, cols]))


def test_points_equal_sel_nearest_and_xvec(cube):
    rng = np.random.default_rng(9)
    # Inside the cube, off pixel edges (where "nearest" and "containing" agree).
    xs = 500_000 + 30 * (rng.integers(0, NX, 500) + rng.uniform(0.01, 0.99, 500))
    ys = 4_000_000 - 30 * (rng.integers(0, NY, 500) + rng.uniform(0.01, 0.99, 500))
    points = gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs=UTM)
    ours = cube.ee.get_region(points).sort_values(["feature", "time"])
    nearest = cube.sel(x=xr.DataArray(xs, dims="p"), y=xr.DataArray(ys, dims="p"), method="nearest")
    expected = nearest.sel(band="a").transpose("p", "time").values.reshape(-1)
    np.testing.assert_array_equal(ours["a"].to_numpy(), expected)
    extracted = cube.xvec.extract_points(points.values, x_coords="x", y_coords="y", crs=UTM)
    from_xvec = extracted.sel(band="b").transpose("geometry", "time").values.reshape(-1)
    np.testing.assert_array_equal(ours["b"].to_numpy(), from_xvec)
