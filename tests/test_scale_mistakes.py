"""A scale in degrees by mistake (``scale=0.00027`` for 30 m) is refused at once, naming it.

On a 100 m box, ``scale=0.00027`` makes 1.4e11 working pixels: counting them batch by batch
used to run for hours, and ``scale=1e-9`` raised ``MemoryError``. The refusal must come from
arithmetic on the region's extent, within a second or two, with or without ``max_values``,
and before any chunk is read.
"""

from __future__ import annotations

import time

import geopandas as gpd
import pytest
import shapely

import xr_getregion
from tests.helpers import make_cube, raise_if_dask_computes
from xr_getregion import Geometry, TooManyValuesError
from xr_getregion.cli import main

M = 111319.49079327357
LON, LAT = -90.49, 34.85
# 100 m of EE's default grid on each side: at scale=1, 100 x 100 pixels.
BOX = Geometry.BBox(LON, LAT, LON + 100 / M, LAT + 100 / M)
SECONDS = 5.0  # generous: the refusal takes well under a second


@pytest.fixture(scope="module")
def col():
    return xr_getregion.sample_cube()


def refused(call) -> tuple[str, float]:
    start = time.perf_counter()
    with raise_if_dask_computes(), pytest.raises(TooManyValuesError) as err:
        call()
    return str(err.value), time.perf_counter() - start


@pytest.mark.parametrize("max_values", [1_048_576, None, 10**15], ids=["default", "none", "huge"])
@pytest.mark.parametrize("how", ["getRegion", "get_region", "lazy", "plan"])
def test_scale_in_degrees_is_refused_at_once_naming_the_mistake(col, max_values, how):
    calls = {
        "getRegion": lambda: col.ee.getRegion(BOX, scale=0.00027, max_values=max_values),
        "get_region": lambda: col.ee.get_region(BOX, scale=0.00027, max_values=max_values),
        "lazy": lambda: col.ee.get_region(BOX, scale=0.00027, max_values=max_values, lazy=True),
        "plan": lambda: col.ee.plan(BOX, scale=0.00027, max_values=max_values),
    }
    message, seconds = refused(calls[how])
    assert seconds < SECONDS
    assert "degrees" in message and "metres" in message
    assert "scale=30" in message  # 0.00027 degrees is about 30 m: the fix, named


@pytest.mark.parametrize("max_values", [1_048_576, None])
def test_a_scale_of_a_nanometre_is_refused_at_once_not_a_memory_error(col, max_values):
    message, seconds = refused(lambda: col.ee.getRegion(BOX, scale=1e-9, max_values=max_values))
    assert seconds < SECONDS
    assert "scale=1e-09" in message and "metres" in message and "degrees" in message
    # The cube's own pixel size is offered as a scale that works.
    assert "30 m" in message


def test_a_small_but_real_scale_still_works(col):
    plan = col.ee.plan(BOX, scale=1)
    assert plan.n_pixels == 100 * 100
    table = col.sel(band=["B2"]).ee.getRegion(BOX, scale=1)
    assert len(table) - 1 == 100 * 100 * 5


def test_counting_a_large_resampled_region_stops_once_past_the_limit(col):
    # The whole cube at 3 m: about 8e7 working pixels, within what a plan may hold, far over
    # the limit. Counting stops past the limit instead of testing every pixel (tens of s).
    x = [float(col.x.min()), float(col.x.max())]
    y = [float(col.y.min()), float(col.y.max())]
    whole = shapely.box(x[0], y[0], x[1], y[1])
    message, seconds = refused(lambda: col.ee.getRegion(whole, scale=3, geometry_crs="EPSG:32615"))
    assert seconds < SECONDS
    assert message.startswith("ImageCollection.getRegion: Too many values: at least ")
    assert "x 7 bands x 5 images > 1048576" in message
    start = time.perf_counter()
    plan = col.ee.plan(whole, scale=3, geometry_crs="EPSG:32615", max_values=1000)
    assert time.perf_counter() - start < SECONDS
    assert not plan.complete and plan.n_values > 1000


def test_a_torn_polar_polygon_at_a_degree_scale_is_refused_at_once():
    # A polar stereographic cube around the south pole, a polygon around the pole: its pixels
    # on a lon/lat grid are found by testing centres, which must be bounded too.
    cube = make_cube(30, 30, 1, ["a"], crs="EPSG:3031", x0=-150_000, y0=150_000, res=10_000)
    polygon = shapely.box(-50_000, -50_000, 50_000, 50_000)
    for max_values in (1_048_576, None):
        message, seconds = refused(
            lambda mv=max_values: cube.ee.getRegion(
                polygon, scale=0.0001, geometry_crs="EPSG:3031", max_values=mv
            )
        )
        assert seconds < SECONDS and "degrees" in message
    # At a real scale, it works.
    assert len(cube.ee.getRegion(polygon, scale=5000, geometry_crs="EPSG:3031")) > 1


def test_a_huge_region_on_the_cubes_own_grid_without_a_limit_is_refused_not_a_memory_error():
    import dask.array as da

    n = 100_000  # 10 billion pixels, counted from runs, never listed
    data = da.zeros((1, 1, n, n), chunks=(1, 1, 10_000, 10_000), dtype="uint8")
    cube = make_cube(n, n, 1, ["b"], data=data)
    whole = shapely.box(500_000, 4_000_000 - 30 * n, 500_000 + 30 * n, 4_000_000)
    message, seconds = refused(
        lambda: cube.ee.get_region(whole, geometry_crs="EPSG:32615", max_values=None)
    )
    assert seconds < SECONDS
    assert "1e+10 pixels of the working grid (30 m pixels)" in message
    assert "split the region" in message and "degrees" not in message


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    cube = xr_getregion.sample_cube().isel(x=slice(700, 760), y=slice(0, 60))
    cube = cube.sel(band=["B2"]).chunk({"time": 1, "band": 1, "y": 30, "x": 30})
    cube.to_dataset("band").to_zarr(root / "cube.zarr")
    lon = float(cube.x[10])  # a box inside the cube, 100 m wide, given in UTM
    lat = float(cube.y[10])
    box = shapely.box(lon, lat - 100, lon + 100, lat)
    gpd.GeoDataFrame(geometry=[box], crs="EPSG:32615").to_crs(4326).to_file(
        root / "box.geojson", driver="GeoJSON"
    )
    return root


@pytest.mark.parametrize("max_values", ["none", "1000"])
def test_cli_scale_in_degrees_exits_2_at_once(files, capsys, max_values):
    out = files / f"x{max_values}.csv"
    start = time.perf_counter()
    code = main(
        [
            "extract",
            str(files / "cube.zarr"),
            "--geometry",
            str(files / "box.geojson"),
            "--out",
            str(out),
            "--scale",
            "0.00027",
            "--max-values",
            max_values,
        ]
    )
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and seconds < SECONDS
    assert len(err.strip().splitlines()) == 1 and "degrees" in err
