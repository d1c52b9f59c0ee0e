"""The lazy table, Parquet/CSV output: same rows, only covered chunks, nothing half-written."""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from dask._task_spec import Alias, DataNode
from dask.optimization import cull

import xr_getregion
from tests.helpers import chunked, counting_dask, cube_values, make_cube, raise_if_dask_computes
from xr_getregion import ArgumentError, Geometry, GetRegionWarning, TooManyValuesError

UTM = "EPSG:32615"
KEY = ["id", "latitude", "longitude"]


def ordered(df: pd.DataFrame, key=KEY) -> pd.DataFrame:
    return df.sort_values(key, kind="stable").reset_index(drop=True)


def field(col0, row0, col1, row1):
    return shapely.box(
        500_000 + 30 * col0 + 1,
        4_000_000 - 30 * row1 + 1,
        500_000 + 30 * col1 - 1,
        4_000_000 - 30 * row0 - 1,
    )


@pytest.mark.parametrize("chunks", [None, (1, 1, 7, 11), (3, 2, 20, 30), (2, 1, 4, 9)], ids=str)
def test_lazy_table_has_the_eager_rows_and_schema(cube, chunks):
    poly = Geometry.Polygon([[500_020, 3_999_420], [500_870, 3_999_990], [500_700, 3_999_500]], UTM)
    eager = cube.ee.get_region(poly)
    with raise_if_dask_computes():
        lazy = chunked(cube, chunks).ee.get_region(poly, lazy=True)
    assert isinstance(lazy, dd.DataFrame)
    pd.testing.assert_series_equal(lazy.dtypes, eager.dtypes)
    pd.testing.assert_frame_equal(ordered(lazy.compute()), ordered(eager))


def test_lazy_features_table_equals_the_eager_one(cube):
    fields = gpd.GeoDataFrame(
        {"crop": ["corn", "soy"]}, geometry=[field(1, 1, 5, 4), field(3, 2, 8, 6)], crs=UTM
    )
    eager = cube.ee.get_region(fields, properties=["crop"])
    lazy = chunked(cube, (1, 1, 3, 4)).ee.get_region(fields, properties=["crop"], lazy=True)
    got = lazy.compute()
    assert list(got.columns) == list(eager.columns)
    key = ["feature", *KEY]
    pd.testing.assert_frame_equal(ordered(got, key), ordered(eager, key))


def test_lazy_limit_is_checked_before_anything_runs():
    cube = chunked(make_cube(), (1, 1, 5, 5))
    with raise_if_dask_computes(), pytest.raises(TooManyValuesError):
        cube.ee.get_region(field(0, 0, 30, 20), geometry_crs=UTM, lazy=True, max_values=100)


def test_200_chunk_cube_small_polygon_builds_and_reads_only_its_chunks():
    data, source = counting_dask(cube_values(2, 2, 100, 100), (1, 1, 10, 10))  # 400 chunks
    cube = make_cube(100, 100, 2, ["b0", "b1"], data=data)
    poly = field(18, 26, 23, 30)  # 5 x 4 pixels across chunk columns 1 and 2 of chunk row 2
    lazy = cube.ee.get_region(poly, geometry_crs=UTM, lazy=True)
    assert lazy.npartitions == 2
    # The graph a scheduler runs: culled from the table's partitions.
    graph, _ = cull(dict(lazy.__dask_graph__()), list(lazy.__dask_keys__()))
    takes = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("getregion-take")]
    assert len(takes) == 2 * 2 * 2  # 2 chunks x 2 images x 2 bands
    # Each read runs with its take as one task (dask's array fusion): one task per covered
    # chunk of the cube's 400, and one per partition; the rest are names for them.
    runnable = [k for k, v in graph.items() if not isinstance(v, Alias | DataNode)]
    assert len(runnable) == 2 * 2 * 2 + 2
    assert not any(isinstance(k, tuple) and k[0] == data.name for k in graph)
    assert len(graph) < 30
    df = lazy.compute()
    assert len(df) == 20 * 2
    assert len(source.reads) == 2 * 2 * 2
    # Each chunk's bounding window of the polygon's pixels, not the whole chunk.
    assert source.windows() == {(26, 30, 18, 20), (26, 30, 20, 23)}


def test_scattered_points_group_by_chunk_and_read_each_chunk_once():
    data, source = counting_dask(cube_values(1, 3, 200, 200), (1, 3, 50, 50))
    cube = make_cube(200, 200, 1, ["a", "b", "c"], data=data)
    rng = np.random.default_rng(3)
    xs = rng.uniform(500_000, 500_000 + 30 * 200, 2000)
    ys = rng.uniform(4_000_000 - 30 * 200, 4_000_000, 2000)
    points = gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs=UTM)
    lazy = cube.ee.get_region(points, lazy=True)
    assert lazy.npartitions == 16
    df = lazy.compute()
    assert len(df) == 2000 and len(source.reads) == 16  # 16 chunks, all bands in each
    ix = np.floor((xs - 500_000) / 30).astype(int)
    iy = np.floor((4_000_000 - ys) / 30).astype(int)
    got = df.set_index("feature").sort_index()
    assert (got["c"].to_numpy() == 200_000 + iy * 300 + ix).all()


def test_a_lazy_table_of_nothing_has_the_schema():
    cube = make_cube()
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        lazy = cube.ee.get_region(Geometry.Point(10, 10), lazy=True)
    assert len(lazy.compute()) == 0 and "a" in lazy.columns


def test_to_parquet_round_trips_with_types(tmp_path, cube):
    fields = gpd.GeoDataFrame(
        {"crop": ["corn", "soy"]}, geometry=[field(1, 1, 5, 4), field(3, 2, 8, 6)], crs=UTM
    )
    ints = make_cube(dtype=np.int16).assign_attrs(_FillValue=np.int16(601))
    path = xr_getregion.to_parquet(
        chunked(ints, (1, 1, 5, 5)), fields, tmp_path / "out.parquet", properties=["crop"]
    )
    back = pd.read_parquet(path)
    eager = ints.ee.get_region(fields, properties=["crop"])
    key = ["feature", *KEY]
    assert back["a"].dtype == "Int16" and str(back["time"].dtype) == "datetime64[ms, UTC]"
    pd.testing.assert_frame_equal(ordered(back, key), ordered(eager, key), check_dtype=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_to_csv_and_the_accessor(tmp_path, cube):
    poly = field(2, 2, 9, 7)
    path = cube.ee.to_parquet(poly, tmp_path / "out.csv", geometry_crs=UTM)
    back = pd.read_csv(path)
    assert len(back) == 7 * 5 * 3 and list(back.columns[:4]) == [
        "id",
        "longitude",
        "latitude",
        "time",
    ]


def test_existing_output_is_kept_unless_overwrite(tmp_path, cube):
    poly = field(2, 2, 9, 7)
    path = tmp_path / "out.parquet"
    cube.ee.to_parquet(poly, path, geometry_crs=UTM)
    with pytest.raises(ArgumentError, match="exists"):
        cube.ee.to_parquet(poly, path, geometry_crs=UTM)
    cube.ee.to_parquet(field(2, 2, 4, 4), path, geometry_crs=UTM, overwrite=True)
    assert len(pd.read_parquet(path)) == 2 * 2 * 3
    with pytest.raises(ArgumentError, match=r"\.parquet or \.csv"):
        cube.ee.to_parquet(poly, tmp_path / "out.txt", geometry_crs=UTM)


def _explode(block):
    raise OSError("disk vanished")


def test_a_failed_job_leaves_no_output(tmp_path):
    good = da.zeros((2, 1, 20, 30), chunks=(1, 1, 10, 10), dtype=np.float32)
    bad = good.map_blocks(lambda b: b if b.shape[0] == 0 else _explode(b), dtype=np.float32)
    cube = make_cube(20, 30, 2, ["a"], data=bad)
    for name in ("out.parquet", "out.csv"):
        with pytest.raises(OSError, match="disk vanished"):
            cube.ee.to_parquet(field(0, 0, 30, 20), tmp_path / name, geometry_crs=UTM)
    assert list(tmp_path.iterdir()) == []


def test_threaded_scheduler_lazy_table_is_identical(cube):
    lazy = chunked(cube, (1, 1, 6, 6)).ee.get_region(
        field(1, 1, 25, 18), geometry_crs=UTM, lazy=True
    )
    sync = lazy.compute(scheduler="sync")
    with dask.config.set(scheduler="threads"):
        threaded = lazy.compute()
    pd.testing.assert_frame_equal(sync, threaded)


# --- regressions from review ------------------------------------------------------------------


def test_two_lazy_tables_over_the_same_pixels_keep_their_own_rows(cube):
    pts = [shapely.Point(500_000 + 30 * i + 5, 3_999_990 - 30 * i) for i in range(5)]
    a = gpd.GeoDataFrame({"name": list("abcde")}, geometry=pts, crs=UTM)
    b = gpd.GeoDataFrame({"name": list("VWXYZ")}, geometry=pts, crs=UTM, index=range(10, 15))
    ta = cube.ee.get_region(a, properties=["name"], lazy=True)
    tb = cube.ee.get_region(b, properties=["name"], lazy=True)
    ra, rb = dask.compute(ta, tb)
    assert set(ra["name"]) == set("abcde") and set(rb["name"]) == set("VWXYZ")
    assert sorted(dd.concat([ta, tb]).compute()["feature"].unique()) == [
        0,
        1,
        2,
        3,
        4,
        *range(10, 15),
    ]


def test_a_numpy_cube_puts_only_each_partitions_values_in_the_graph():
    import pickle

    cube = make_cube(400, 500, 4)  # 6.4 MB in memory
    lazy = cube.ee.get_region(field(3, 3, 6, 6), geometry_crs=UTM, lazy=True)
    sizes = [len(pickle.dumps(task)) for task in dict(lazy.__dask_graph__()).values()]
    assert max(sizes) < 20_000
    pd.testing.assert_frame_equal(
        ordered(lazy.compute()), ordered(cube.ee.get_region(field(3, 3, 6, 6), geometry_crs=UTM))
    )


def test_dataset_variables_chunked_differently_read_only_their_covered_chunks():
    data_a, reads_a = counting_dask(cube_values(1, 1, 40, 40), (1, 1, 10, 10))
    data_b, reads_b = counting_dask(cube_values(1, 1, 40, 40), (1, 1, 7, 13))
    a = make_cube(40, 40, 1, ["a"], data=data_a).isel(band=0, drop=True)
    b = make_cube(40, 40, 1, ["b"], data=data_b).isel(band=0, drop=True)
    cube = xr.Dataset({"a": a, "b": b})
    poly = field(0, 0, 1, 2)  # pixels (row 0, col 0) and (row 1, col 0): chunk (0, 0) of both
    df = cube.ee.get_region(poly, geometry_crs=UTM, lazy=True).compute()
    assert len(df) == 2
    assert {(k[2].start, k[3].start) for k in reads_b.reads} == {(0, 0)}
    assert {(k[2].start, k[3].start) for k in reads_a.reads} == {(0, 0)}
    assert (df["b"].to_numpy() == [0, 300]).all()


def test_properties_clashing_with_table_columns_are_refused(cube):
    g = gpd.GeoDataFrame(
        {"id": ["p1"], "a": [7], "feature": [1]}, geometry=[field(1, 1, 2, 2)], crs=UTM
    )
    for name in ("id", "a", "feature"):
        with pytest.raises(ArgumentError, match=f"properties \\['{name}'\\] clash"):
            cube.ee.get_region(g, properties=[name])


def test_object_properties_and_mixed_ids_get_concrete_dtypes_and_write_to_parquet(tmp_path, cube):
    g = gpd.GeoDataFrame(
        {"irrigated": [True, None], "note": ["x", 3]},
        geometry=[field(1, 1, 2, 2), field(4, 4, 5, 5)],
        index=pd.Index(["field-A", 1], dtype=object),
        crs=UTM,
    )
    eager = cube.ee.get_region(g, properties=["irrigated", "note"])
    assert eager["irrigated"].dtype == "boolean" and eager["note"].dtype == "string"
    assert eager["feature"].dtype == "string"
    path = cube.ee.to_parquet(g, tmp_path / "o.parquet", properties=["irrigated", "note"])
    back = pd.read_parquet(path)
    assert sorted(back["feature"].unique()) == ["1", "field-A"]


def test_an_empty_lazy_table_has_the_same_schema_as_a_full_one(cube):
    g_in = gpd.GeoDataFrame({"flag": [True]}, geometry=[field(1, 1, 2, 2)], index=["f1"], crs=UTM)
    g_out = gpd.GeoDataFrame(
        {"flag": [True]}, geometry=[shapely.Point(0, 0)], index=["f1"], crs=UTM
    )
    full = cube.ee.get_region(g_in, properties=["flag"], lazy=True)
    with pytest.warns(GetRegionWarning, match="1 of 1 features miss the cube"):
        empty = cube.ee.get_region(g_out, properties=["flag"], lazy=True)
    pd.testing.assert_series_equal(full.dtypes, empty.dtypes)
    pd.testing.assert_series_equal(
        empty.dtypes, cube.ee.get_region(g_in, properties=["flag"]).dtypes
    )


def test_many_partitions_of_a_long_named_array_keep_their_own_pixels():
    """dask's fusion renames a fused read+take after every name in it, cut to 115 characters
    and a 16-bit hash: partitions told apart only by their names' ends would share keys."""
    values = cube_values(2, 2, 100, 100)
    data = da.from_array(values, chunks=(1, 1, 5, 5), name="v" * 90)  # 400 spatial chunks
    cube = make_cube(100, 100, 2, ["b0", "b1"], data=data)
    poly = field(0, 0, 100, 100)
    lazy = cube.ee.get_region(poly, geometry_crs=UTM, lazy=True)
    assert lazy.npartitions == 400
    graph = dict(lazy.__dask_graph__())
    reads = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("getregion-take")]
    targets = {graph[k].target if isinstance(graph[k], Alias) else k for k in reads}
    assert len(targets) == len(reads) == 400 * 2 * 2  # one task for each, none shared
    eager = cube.ee.get_region(poly, geometry_crs=UTM)
    key = ["time", "latitude", "longitude"]
    pd.testing.assert_frame_equal(
        lazy.compute().sort_values(key, ignore_index=True),
        eager.sort_values(key, ignore_index=True),
    )


def test_many_partitions_reading_windows_of_a_long_named_array_keep_their_own_pixels():
    """The same guard for window reads: each partition reads a small window of its chunk,
    its window task and its take fused under a cut name, and still gets its own pixels."""
    values = cube_values(2, 2, 100, 100)
    data = da.from_array(values, chunks=(1, 1, 10, 10), name="v" * 90)  # 100 spatial chunks
    cube = make_cube(100, 100, 2, ["b0", "b1"], data=data)
    # A 2 x 3 block in each chunk, at a place that moves from chunk to chunk.
    boxes = [
        field(10 * c + c % 7, 10 * r + r % 5, 10 * c + c % 7 + 3, 10 * r + r % 5 + 2)
        for r in range(10)
        for c in range(10)
    ]
    region = shapely.MultiPolygon(boxes)
    lazy = cube.ee.get_region(region, geometry_crs=UTM, lazy=True)
    assert lazy.npartitions == 100
    got = lazy.compute()
    assert len(got) == 100 * 6 * 2
    # Against the same cube held in numpy, read by xarray's own indexing.
    truth = make_cube(100, 100, 2, ["b0", "b1"], data=values).ee.get_region(
        region, geometry_crs=UTM
    )
    key = ["time", "latitude", "longitude"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True), truth.sort_values(key, ignore_index=True)
    )
