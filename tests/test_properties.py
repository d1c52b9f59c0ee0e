"""Property tests: any dask chunking gives the numpy table; the row count is the planned count."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_cube
from xr_getregion import GetRegionWarning

UTM = "EPSG:32615"
CUBE = make_cube(20, 30, 3, ["a", "b"])

xs = st.floats(500_000 - 100, 500_000 + 30 * 30 + 100, allow_nan=False)
ys = st.floats(4_000_000 - 20 * 30 - 100, 4_000_000 + 100, allow_nan=False)
triangles = (
    st.tuples(xs, ys, xs, ys, xs, ys)
    .map(lambda c: shapely.Polygon([(c[0], c[1]), (c[2], c[3]), (c[4], c[5])]))
    .filter(lambda p: p.is_valid and p.area > 1.0)
)
multipoints = st.lists(st.tuples(xs, ys), min_size=1, max_size=20).map(shapely.MultiPoint)
chunkings = st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 20), st.integers(1, 30))


@contextmanager
def misses_are_empty() -> Iterator[list[Any]]:
    """Let a geometry that misses the cube warn (it may: the examples reach past the cube),
    and check afterwards that only it did, once per call, with no row in the table."""
    tables: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GetRegionWarning)
        yield tables
    messages = [str(w.message) for w in caught if issubclass(w.category, GetRegionWarning)]
    assert all("misses the cube" in m for m in messages), messages
    if messages:
        assert all(len(t) == (1 if isinstance(t, list) else 0) for t in tables)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry=st.one_of(triangles, multipoints), chunks=chunkings)
def test_any_chunking_gives_the_numpy_table_and_the_planned_count(geometry, chunks):
    with misses_are_empty() as tables:
        expected = CUBE.ee.getRegion(geometry, crs="native", geometry_crs=UTM)
        lazy = CUBE.chunk(dict(zip(CUBE.dims, chunks, strict=True)))
        tables.append(expected)
        assert lazy.ee.getRegion(geometry, crs="native", geometry_crs=UTM) == expected
        plan = lazy.ee.plan(geometry, crs="native", geometry_crs=UTM)
    assert plan.n_values == (len(expected) - 1) * 2


@settings(max_examples=25, deadline=None)
@given(geometry=triangles, scale=st.sampled_from([10.0, 30.0, 45.0]))
def test_resampled_grids_give_the_same_table_eager_and_lazy(geometry, scale):
    with misses_are_empty() as tables:
        expected = CUBE.ee.get_region(geometry, scale, UTM, geometry_crs=UTM)
        lazy = CUBE.chunk({"time": 1, "band": 1, "y": 7, "x": 11})
        got = lazy.ee.get_region(geometry, scale, UTM, geometry_crs=UTM, lazy=True).compute()
        tables.extend([expected, got])
    key = ["id", "latitude", "longitude"]
    assert (
        got.sort_values(key)
        .reset_index(drop=True)
        .equals(expected.sort_values(key).reset_index(drop=True))
    )
