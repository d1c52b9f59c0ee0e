"""EE's value limit, decided from coordinates before any chunk is read.

See docs/semantics.md section 7.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import xr_getregion
from tests.helpers import counting_dask, cube_values, make_cube, raise_if_dask_computes
from xr_getregion import ArgumentError, Geometry, TooManyValuesError

UTM = "EPSG:32615"


def counted_cube(ny: int, nx: int, nt: int = 2, nb: int = 2, chunks=(1, 1, 128, 128)):
    data, source = counting_dask(cube_values(nt, nb, ny, nx), chunks)
    return make_cube(ny, nx, nt, [f"b{i}" for i in range(nb)], data=data), source


def whole(cube):
    x, y = cube.x.values, cube.y.values
    return shapely.box(x.min() - 15, y.min() - 15, x.max() + 15, y.max() + 15)


def test_over_the_limit_is_refused_with_ees_message_before_any_read():
    cube, source = counted_cube(512, 513)  # 262,656 pixels x 2 bands x 2 images
    with raise_if_dask_computes(max_computes=0), pytest.raises(TooManyValuesError) as info:
        cube.ee.getRegion(whole(cube), crs="native", geometry_crs=UTM)
    assert str(info.value).startswith(
        "ImageCollection.getRegion: Too many values: 262656 points x 2 bands x 2 images > 1048576."
    )
    assert "max_values=" in str(info.value) and "scale=" in str(info.value)
    assert source.reads == []
    assert isinstance(info.value, ValueError)


def test_exactly_the_limit_is_allowed_and_computes_once():
    cube, source = counted_cube(512, 512)  # 262,144 x 2 x 2 = 1,048,576
    with raise_if_dask_computes(max_computes=1):
        df = cube.ee.get_region(whole(cube), geometry_crs=UTM)
    assert len(df) * 2 == 1_048_576
    assert len(source.reads) == 2 * 2 * 4 * 4  # every chunk once: the polygon covers them all
    assert df["b1"].to_numpy().reshape(2, 512, 512)[1, 7, 9] == 1_100_000 + 7 * 300 + 9


def test_the_sample_cube_refuses_a_large_region_without_computing():
    col = xr_getregion.sample_cube().sel(band=["B2", "B3", "B4", "B5"])
    big = Geometry.Rectangle([-90.69, 34.72, -90.50, 34.84])
    with (
        raise_if_dask_computes(),
        pytest.raises(TooManyValuesError, match=r"x 4 bands x 5 images > 1048576\."),
    ):
        col.ee.getRegion(big, scale=30)


def test_the_count_is_the_row_count():
    cube = make_cube()
    poly = Geometry.Polygon([[500_020, 3_999_420], [500_870, 3_999_990], [500_700, 3_999_500]], UTM)
    plan = cube.ee.plan(poly, crs="native")
    table = cube.ee.getRegion(poly, crs="native")
    assert plan.n_values == (len(table) - 1) * 2
    with pytest.raises(TooManyValuesError, match=f"> {plan.n_values - 1}\\."):
        cube.ee.getRegion(poly, crs="native", max_values=plan.n_values - 1)
    assert cube.ee.getRegion(poly, crs="native", max_values=plan.n_values) == table


def test_max_values_none_lifts_the_limit():
    cube, _ = counted_cube(512, 513, chunks=(2, 2, 513, 513))
    df = cube.ee.get_region(whole(cube), geometry_crs=UTM, max_values=None)
    assert len(df) == 2 * 262_656


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_bad_max_values_is_refused(bad):
    with pytest.raises(ArgumentError, match="max_values must be a positive integer"):
        make_cube().ee.getRegion(
            shapely.Point(500_010, 3_999_990), crs="native", geometry_crs=UTM, max_values=bad
        )


def test_a_huge_region_is_refused_from_its_runs_in_little_memory():
    import tracemalloc

    import dask.array as da

    n = 100_000  # a 100,000 x 100,000 pixel cube: 10 billion pixels, never materialised
    data = da.zeros((1, 1, n, n), chunks=(1, 1, 10_000, 10_000), dtype=np.uint8)
    cube = make_cube(n, n, 1, ["b"], data=data)
    tracemalloc.start()
    with (
        raise_if_dask_computes(),
        pytest.raises(TooManyValuesError, match=r"^\S+ Too many values: 10000000000 points"),
    ):
        cube.ee.get_region(whole(cube), geometry_crs=UTM)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20  # runs per row, not pixels
    plan = cube.ee.plan(whole(cube), crs="native", geometry_crs=UTM, max_values=1000)
    assert plan.n_pixels == 10**10 and not plan.complete and len(plan.cols) == 0
