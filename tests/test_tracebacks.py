"""Inputs that used to end in a dependency's traceback: each gives a correct table or a clear
GetRegionError naming the value and the fix.

Big-endian bands must give the little-endian cube's table, value for value; the others are
refused before anything is computed. The CLI reads a store of one data variable (what
``cube.to_dataset(name=...).to_zarr(...)`` writes) as that variable.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

import xr_getregion
from tests.helpers import make_cube, raise_if_dask_computes
from xr_getregion import ArgumentError, CubeError, Geometry, GeometryError
from xr_getregion.cli import main

UTM = "EPSG:32615"
# Columns 1..4, rows 2..5 of make_cube's grid (16 pixels), centres strictly inside.
FIELD = shapely.box(500_000 + 31, 4_000_000 - 30 * 6 + 1, 500_000 + 30 * 5 - 1, 4_000_000 - 61)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["id", "latitude", "longitude"]).reset_index(drop=True)


# --- big-endian bands ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [">i2", ">f4", ">u2", ">f8"])
@pytest.mark.parametrize("chunks", [None, {"time": 1, "band": 1, "y": 3, "x": 4}])
@pytest.mark.parametrize("nodata", [None, 601])
def test_big_endian_bands_give_the_native_cube_s_table(dtype, chunks, nodata, tmp_path):
    native = make_cube(dtype=np.dtype(dtype).newbyteorder("="))
    if nodata is not None:
        native = native.assign_attrs(nodata=nodata)
    swapped = native.astype(dtype)
    assert swapped.dtype.byteorder == ">"
    if chunks is not None:
        native, swapped = native.chunk(chunks), swapped.chunk(chunks)
    args = (FIELD,)
    kw = {"geometry_crs": UTM}
    want = native.ee.getRegion(*args, crs="native", **kw)
    assert len(want) == 1 + 3 * 16 and (nodata is None or None in [r[4] for r in want])
    assert swapped.ee.getRegion(*args, crs="native", **kw) == want
    eager = native.ee.get_region(*args, **kw)
    pd.testing.assert_frame_equal(swapped.ee.get_region(*args, **kw), eager)
    lazy = swapped.ee.get_region(*args, lazy=True, **kw).compute()
    pd.testing.assert_frame_equal(_sorted(lazy), _sorted(eager))
    path = xr_getregion.to_parquet(swapped, *args, tmp_path / "t.parquet", **kw)
    back = pd.read_parquet(path)
    assert back["a"].dtype == eager["a"].dtype
    pd.testing.assert_frame_equal(
        _sorted(back)[["longitude", "latitude", "a", "b"]],
        _sorted(eager)[["longitude", "latitude", "a", "b"]],
    )


# --- complex bands ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_bands_are_refused_before_any_compute_with_the_fix(dtype):
    cube = make_cube().astype(dtype).chunk({"x": 5})
    for call in (
        lambda: cube.ee.getRegion(FIELD, crs="native", geometry_crs=UTM),
        lambda: cube.ee.get_region(FIELD, geometry_crs=UTM, lazy=True),
        lambda: cube.to_dataset("band").ee.get_region(FIELD, geometry_crs=UTM),
    ):
        with raise_if_dask_computes(), pytest.raises(CubeError) as info:
            call()
        text = str(info.value)
        assert "'a'" in text and np.dtype(dtype).name in text
        assert "np.abs(cube)" in text and "cube.real" in text and "cube.imag" in text


# --- an output path holding a wildcard ----------------------------------------------------------


@pytest.mark.parametrize("name", ["out*.parquet", "out*.csv", "o*t/t.parquet"])
def test_an_output_path_with_a_star_is_an_argument_error(name, tmp_path):
    target = tmp_path / name
    with pytest.raises(ArgumentError) as info:
        xr_getregion.to_parquet(make_cube(), FIELD, target, geometry_crs=UTM)
    assert repr(str(target)) in str(info.value) and "'*'" in str(info.value)
    assert "rename" in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing created, not even the parent


# --- a cube with no pixels along a spatial dim --------------------------------------------------


@pytest.mark.parametrize(
    ("select", "dim"),
    [({"x": slice(0, 0)}, "x"), ({"y": slice(5, 5)}, "y")],
    ids=["0-wide", "0-high"],
)
def test_a_cube_0_pixels_wide_is_a_cube_error_naming_the_dim(select, dim):
    cube = make_cube().isel(select)
    with pytest.raises(CubeError) as info:
        cube.ee.getRegion(FIELD, crs="native", geometry_crs=UTM)
    text = str(info.value)
    assert f"{dim!r}" in text and "0 pixels" in text and "cube.sizes" in text
    assert "sortby" in text  # a slice given in the wrong order is the usual cause
    with pytest.raises(CubeError, match=f"0 pixels along {dim!r}"):
        cube.chunk().ee.get_region(FIELD, geometry_crs=UTM, lazy=True)


def test_a_cube_0_pixels_wide_from_a_reversed_slice_names_the_cause():
    cube = make_cube()  # y descends: slice(low, high) selects nothing
    empty = cube.sel(y=slice(3_999_500, 3_999_900))
    assert empty.sizes["y"] == 0
    with pytest.raises(CubeError, match=r"0 pixels along 'y'.*slice"):
        empty.ee.get_region(FIELD, geometry_crs=UTM)


# --- geometries that are not geometries ---------------------------------------------------------


@pytest.mark.parametrize(
    "collection",
    [
        {"type": "FeatureCollection", "features": ["a", "b"]},
        {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": shapely.geometry.mapping(FIELD)}, 7],
        },
    ],
    ids=["strings", "second-a-number"],
)
def test_a_feature_collection_of_non_features_names_the_position(collection):
    bad = next(k for k, f in enumerate(collection["features"]) if not isinstance(f, dict))
    value = collection["features"][bad]
    cube = make_cube()
    for call in (
        lambda: cube.ee.get_region(collection, geometry_crs=UTM),
        lambda: cube.ee.getRegion(collection, crs="native", geometry_crs=UTM),
    ):
        with pytest.raises(GeometryError) as info:
            call()
        text = str(info.value)
        assert f"feature {bad}" in text and repr(value) in text and "GeoJSON Feature" in text


@pytest.mark.parametrize(
    ("coords", "bad"),
    [(["a", 1, 2, 3], "'a'"), ([0, 1, None, 3], "None"), ([[0, "b"], [2, 3]], "'b'")],
    ids=["xmin-text", "xmax-none", "corner-text"],
)
def test_a_rectangle_with_a_coordinate_that_is_not_a_number_is_a_geometry_error(coords, bad):
    with pytest.raises(GeometryError) as info:
        Geometry.Rectangle(coords)
    text = str(info.value)
    assert bad in text and "Rectangle" in text and "number" in text


# --- the CLI on a store of one data variable ----------------------------------------------------


def _features(tmp_path) -> str:
    gdf = gpd.GeoDataFrame(
        {"name": ["f1", "f2"]},
        geometry=[FIELD, shapely.Point(500_000 + 300, 4_000_000 - 200)],
        crs=UTM,
    )
    path = tmp_path / "f.geojson"
    path.write_text(gdf.to_json())
    return str(path)


def test_cli_reads_a_store_of_one_variable_with_a_band_dim(tmp_path, capsys):
    cube = make_cube(dtype=np.int16).assign_attrs(nodata=601)
    store = tmp_path / "cube.zarr"
    cube.to_dataset(name="reflectance").to_zarr(store)
    geometry = _features(tmp_path)
    out = tmp_path / "t.parquet"
    code = main(["extract", str(store), "--geometry", geometry, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    got = pd.read_parquet(out)
    want = cube.ee.get_region(gpd.read_file(geometry))
    assert len(want) == 3 * 17 and want["a"].isna().sum() == 1
    key = ["feature", "id", "latitude", "longitude"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    for column in ["feature", "longitude", "latitude", "a", "b"]:
        pd.testing.assert_series_equal(got[column], want[column], check_dtype=False)
    assert got["a"].dtype == "Int16" and (got["id"].astype(str) == want["id"].astype(str)).all()


def test_cli_names_the_variables_and_the_option_when_several_have_a_band_dim(tmp_path, capsys):
    cube = make_cube()
    store = tmp_path / "cube.zarr"
    xr.Dataset({"reflectance": cube, "quality": cube}).to_zarr(store)
    out = tmp_path / "t.parquet"
    args = ["extract", str(store), "--geometry", _features(tmp_path), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'reflectance'" in err and "'quality'" in err and "--variable" in err
    assert "ds[" not in err and err.count("\n") == 1
    assert main([*args, "--variable", "quality"]) == 0
    assert len(pd.read_parquet(out)) == 3 * 17


def test_cli_refuses_an_output_path_with_a_star(tmp_path, capsys):
    store = tmp_path / "cube.zarr"
    make_cube().to_dataset(name="reflectance").to_zarr(store)
    out = tmp_path / "t*.parquet"
    assert main(["extract", str(store), "--geometry", _features(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert repr(str(out)) in err and "'*'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr", "f.geojson"]


def test_cli_geojson_of_strings_is_one_line(tmp_path, capsys):
    store = tmp_path / "cube.zarr"
    make_cube().to_dataset(name="reflectance").to_zarr(store)
    features = tmp_path / "f.geojson"
    features.write_text(json.dumps({"type": "FeatureCollection", "features": ["a", "b"]}))
    code = main(
        ["extract", str(store), "--geometry", str(features), "--out", str(tmp_path / "t.parquet")]
    )
    assert code == 2 and capsys.readouterr().err.count("\n") == 1
