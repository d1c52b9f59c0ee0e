"""Every declared missing value masks, through every way of reading a table.

A cube may declare missing values in several attributes at once (``_FillValue``,
``missing_value`` as a scalar or a vector, ``nodata``, rioxarray's ``fill_value`` and
``nodatavals``), in ``attrs`` (an encoded cube) or ``encoding`` (a decoded one), as numbers or
as strings. Each case below states the values that must be masked as a plain set; the
expected table is built from the cube's raw values and that set alone, not from the
package's reading of the attributes. Each is checked through ``getRegion``, ``get_region``,
``get_region(lazy=True)`` and ``to_parquet`` read back with pandas, numpy- and dask-backed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

import xr_getregion
from tests.helpers import make_cube, raise_if_dask_computes
from xr_getregion import CubeError

UTM = "EPSG:32615"
NY, NX = 3, 4
# Every pixel of the NY x NX cube: its centres lie strictly inside (no edge ties).
EVERYTHING = shapely.box(500_000 + 1, 4_000_000 - 30 * NY + 1, 500_000 + 30 * NX - 1, 4_000_000 - 1)
# The values planted in the cube, pixel (y, x) of band 0 / band 1 of image 0 / 1.
PLANTED = [-9999, -1, 0, 7, 255, 600]


def planted_cube(dtype: Any, bands: tuple[str, ...] = ("a", "b")) -> xr.DataArray:
    """A (2, len(bands), NY, NX) cube of small distinct values with each of PLANTED in both
    bands of both images (at different pixels), so masking the wrong value shows."""
    nt, nb = 2, len(bands)
    values = (np.arange(nt * nb * NY * NX).reshape(nt, nb, NY, NX) + 10).astype(float)
    flat = values.reshape(nt, nb, -1)
    for t in range(nt):
        for b in range(nb):
            for k, v in enumerate(PLANTED):
                flat[t, b, (k + 3 * t + b) % (NY * NX)] = v
    if np.dtype(dtype).kind == "u":
        values = np.where(values < 0, 3, values)
    return make_cube(NY, NX, nt, bands, dtype=dtype, data=values.astype(dtype))


def expected_columns(cube: xr.DataArray, masked: dict[str, set]) -> dict[str, list]:
    """Each band's column in getRegion's row order (image, then raster order), ``None`` where
    the raw value is NaN or in the band's ``masked`` set."""
    raw = np.asarray(cube.transpose("time", "band", "y", "x").values)
    out = {}
    for b, name in enumerate(cube["band"].values.tolist()):
        column = []
        for value in raw[:, b].reshape(-1).tolist():
            nan = isinstance(value, float) and math.isnan(value)
            column.append(None if nan or value in masked[name] else value)
        out[name] = column
    return out


def frame_column(column: list, dtype: np.dtype, nullable: bool) -> pd.Series:
    if dtype.kind == "f":
        return pd.Series([np.nan if v is None else v for v in column], dtype=dtype)
    if nullable:
        return pd.Series(pd.array(column, dtype=str(dtype).capitalize().replace("Ui", "UI")))
    return pd.Series(column, dtype=dtype)


def check_every_path(
    cube: xr.DataArray | xr.Dataset, expected: dict[str, list], nullable: bool, tmp_path: Any
) -> None:
    """getRegion, get_region, the lazy table and to_parquet all give ``expected``."""
    table = cube.ee.getRegion(EVERYTHING, crs="native", geometry_crs=UTM)
    names = table[0][4:]
    assert names == list(expected)
    for i, name in enumerate(names, start=4):
        got = [row[i] for row in table[1:]]
        assert got == expected[name], name
        assert {type(v) for v in got} - {type(None)} <= {int, float}
    bands = {name: (cube[name] if isinstance(cube, xr.Dataset) else cube).dtype for name in names}
    frames = {
        "get_region": cube.ee.get_region(EVERYTHING, geometry_crs=UTM),
        "lazy": cube.ee.get_region(EVERYTHING, geometry_crs=UTM, lazy=True).compute(),
        "parquet": pd.read_parquet(
            xr_getregion.to_parquet(cube, EVERYTHING, tmp_path / "t.parquet", geometry_crs=UTM)
        ),
    }
    # The lazy table's rows follow chunks: put every frame in getRegion's row order.
    position = {(str(r[0]), r[1], r[2]): k for k, r in enumerate(table[1:])}
    for how, frame in frames.items():
        keys = zip(frame["id"].astype(str), frame["longitude"], frame["latitude"], strict=True)
        frame = frame.iloc[np.argsort([position[k] for k in keys])]
        assert len(frame) == len(table) - 1
        for name in names:
            want = frame_column(expected[name], np.dtype(bands[name]).newbyteorder("="), nullable)
            pd.testing.assert_series_equal(
                frame[name].reset_index(drop=True), want, check_names=False, obj=f"{how} {name}"
            )


def _attrs(**attrs: Any) -> Callable[[xr.DataArray], xr.DataArray]:
    return lambda c: c.assign_attrs(**attrs)


def _encoding(**encoding: Any) -> Callable[[xr.DataArray], xr.DataArray]:
    def declare(c: xr.DataArray) -> xr.DataArray:
        c = c.copy()
        c.encoding.update(encoding)
        return c

    return declare


def _both(*steps: Callable[[xr.DataArray], xr.DataArray]) -> Callable[[xr.DataArray], xr.DataArray]:
    def declare(c: xr.DataArray) -> xr.DataArray:
        for step in steps:
            c = step(c)
        return c

    return declare


ALL = {-9999, -1, 0, 7, 255, 600}
# (dtype, declare, masked in band a, masked in band b, nullable integer columns)
CASES = {
    "FillValue-and-nodata": (
        np.int16,
        _attrs(_FillValue=np.int16(-9999), nodata=0),
        {-9999, 0},
        {-9999, 0},
        True,
    ),
    "missing_value-vector": (
        np.int16,
        _attrs(missing_value=np.array([-9999, -1], np.int16)),
        {-9999, -1},
        {-9999, -1},
        True,
    ),
    "missing_value-list": (
        np.int32,
        _attrs(missing_value=[-9999, 7]),
        {-9999, 7},
        {-9999, 7},
        True,
    ),
    "all-three": (
        np.int16,
        _attrs(_FillValue=-9999, missing_value=[-1, 0], nodata=7),
        {-9999, -1, 0, 7},
        {-9999, -1, 0, 7},
        True,
    ),
    "nodata-string": (np.int16, _attrs(nodata="-9999"), {-9999}, {-9999}, True),
    "nodata-bytes": (np.int16, _attrs(nodata=b" 600 "), {600}, {600}, True),
    "nodata-float-on-int": (np.int16, _attrs(nodata=-9999.0), {-9999}, {-9999}, True),
    "nodata-string-float-on-int": (np.int16, _attrs(nodata="7.0"), {7}, {7}, True),
    "FillValue-NaN-and-nodata": (
        np.float32,
        _attrs(_FillValue=np.nan, nodata=-9999),
        {-9999.0},
        {-9999.0},
        False,
    ),
    "float-missing_value-vector-strings": (
        np.float64,
        _attrs(missing_value=["-1", "600"]),
        {-1.0, 600.0},
        {-1.0, 600.0},
        False,
    ),
    "encoding-int": (
        np.int16,
        _encoding(_FillValue=np.int16(-9999), missing_value=np.int16(-1)),
        {-9999, -1},
        {-9999, -1},
        True,
    ),
    "attrs-and-encoding-int": (
        np.int16,
        _both(_attrs(nodata=0), _encoding(_FillValue=-9999)),
        {-9999, 0},
        {-9999, 0},
        True,
    ),
    "rio-nodata-and-missing_value": (
        np.int16,
        _both(lambda c: c.rio.write_nodata(-9999), _attrs(missing_value=255)),
        {-9999, 255},
        {-9999, 255},
        True,
    ),
    "rio-encoded-nodata-and-nodata": (
        np.int16,
        _both(lambda c: c.rio.write_nodata(-9999, encoded=True), _attrs(nodata=600)),
        {-9999, 600},
        {-9999, 600},
        True,
    ),
    "rio-fill_value": (np.int16, _attrs(fill_value=7), {7}, {7}, True),
    # open_rasterio's per-band nodata: band a's value is not missing in band b.
    "nodatavals-per-band": (np.int16, _attrs(nodatavals=(-9999.0, 0.0)), {-9999}, {0}, True),
    "uint8-255": (np.uint8, _attrs(_FillValue=np.uint8(255), nodata=0), {0, 255}, {0, 255}, True),
    # Out of the band's range, or not a whole number on an integer band: no value of the band
    # can equal it, so it masks nothing (the other declared values still do).
    "out-of-range-on-int16": (np.int16, _attrs(nodata=1e10, missing_value=-1), {-1}, {-1}, True),
    "negative-on-uint8": (np.uint8, _attrs(nodata=-9999, missing_value=7), {7}, {7}, True),
    "only-out-of-range": (np.int16, _attrs(nodata=40000), set(), set(), False),
    "fraction-on-int": (np.int16, _attrs(nodata=-1.5, _FillValue=0), {0}, {0}, True),
    # A float64 declaration of a float32 band means the float32 value the band stores.
    "float32-from-float64": (
        np.float32,
        _attrs(nodata=float(np.float32(600.0))),
        {600.0},
        {600.0},
        False,
    ),
}


@pytest.mark.parametrize("backend", ["numpy", "dask"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_declared_missing_value_masks_in_every_table(case, backend, tmp_path):
    dtype, declare, in_a, in_b, nullable = CASES[case]
    cube = planted_cube(dtype)
    expected = expected_columns(cube, {"a": in_a, "b": in_b})
    declared = declare(cube)
    if backend == "dask":
        declared = declared.chunk({"time": 1, "band": 1, "y": 2, "x": 3})
    assert sum(v is None for v in expected["a"]) >= len(in_a)  # the test plants each value
    check_every_path(declared, expected, nullable, tmp_path)


def test_float_band_with_a_fractional_missing_value_masks_the_stored_float32():
    cube = planted_cube(np.float32).copy()
    cube[0, 0, 0, 1] = np.float32(0.1)
    table = cube.assign_attrs(nodata=0.1).ee.getRegion(EVERYTHING, crs="native", geometry_crs=UTM)
    assert table[2][4] is None and table[1][4] == -9999.0


@pytest.mark.parametrize("backend", ["numpy", "dask"])
def test_dataset_bands_each_mask_their_own_declared_values(backend, tmp_path):
    cube = planted_cube(np.int16)
    ds = xr.Dataset(
        {
            "a": cube.sel(band="a", drop=True).assign_attrs(_FillValue=-9999, nodata="600"),
            "b": cube.sel(band="b", drop=True).assign_attrs(missing_value=np.array([0, 7])),
        }
    )
    if backend == "dask":
        ds = ds.chunk({"time": 1, "y": 2, "x": 3})
    expected = expected_columns(cube, {"a": {-9999, 600}, "b": {0, 7}})
    check_every_path(ds, expected, True, tmp_path)


@pytest.mark.parametrize(
    ("declare", "attribute", "value"),
    [
        (_attrs(nodata="abc"), "nodata", "'abc'"),
        (_attrs(missing_value=[-9999, "n/a"]), "missing_value", "'n/a'"),
        (_attrs(_FillValue={"v": 1}), "_FillValue", "{'v': 1}"),
        (_encoding(_FillValue="none"), "_FillValue", "'none'"),
    ],
    ids=["nodata-abc", "vector-with-text", "dict", "encoding-text"],
)
def test_a_missing_value_that_is_not_a_number_is_a_cube_error(declare, attribute, value):
    cube = declare(planted_cube(np.int16)).chunk({"x": 2})
    with raise_if_dask_computes(), pytest.raises(CubeError) as info:
        cube.ee.getRegion(EVERYTHING, crs="native", geometry_crs=UTM)
    text = str(info.value)
    assert "'a'" in text and f"[{attribute!r}]" in text and value in text
    assert "is not a number" in text and "del cube." in text


def test_dataset_band_with_a_bad_missing_value_is_named():
    cube = planted_cube(np.int16)
    ds = xr.Dataset(
        {
            "a": cube.sel(band="a", drop=True),
            "b": cube.sel(band="b", drop=True).assign_attrs(nodata="missing"),
        }
    )
    with pytest.raises(CubeError, match=r"band 'b'.*attrs\['nodata'\].*'missing'"):
        ds.ee.get_region(EVERYTHING, geometry_crs=UTM)


# --- files: encoded and decoded, Zarr and NetCDF ----------------------------------------------


def _write_store(tmp_path: Any, kind: str) -> tuple[Any, xr.DataArray]:
    """A one-band int16 store whose raw values hold -9999 (the _FillValue) and -1 (a nodata
    attribute): the cube written, and the path."""
    cube = planted_cube(np.int16, bands=("a",)).sel(band="a", drop=True)
    var = cube.rename("a").assign_attrs(nodata=-1)
    var.encoding = {"_FillValue": np.int16(-9999), "dtype": "int16"}
    ds = var.to_dataset()
    if kind == "zarr":
        path = tmp_path / "cube.zarr"
        ds.to_zarr(path, zarr_format=2, consolidated=True)
    else:
        path = tmp_path / "cube.nc"
        ds.to_netcdf(path, engine="h5netcdf")
    return path, cube


def _open(path: Any, kind: str, **kwargs: Any) -> xr.Dataset:
    if kind == "zarr":
        return xr.open_zarr(path, decode_coords="all", **kwargs)
    return xr.open_dataset(path, engine="h5netcdf", chunks={}, decode_coords="all", **kwargs)


@pytest.mark.parametrize("kind", ["zarr", "netcdf"])
def test_an_encoded_store_masks_its_raw_fill_value_and_its_nodata(kind, tmp_path):
    path, cube = _write_store(tmp_path, kind)
    raw = _open(path, kind, mask_and_scale=False)
    assert raw["a"].dtype == np.int16 and raw["a"].attrs["_FillValue"] == -9999
    expected = expected_columns(cube.expand_dims(band=["a"], axis=1), {"a": {-9999, -1}})
    check_every_path(raw, expected, True, tmp_path)


@pytest.mark.parametrize("kind", ["zarr", "netcdf"])
def test_a_decoded_store_masks_the_same_pixels(kind, tmp_path):
    path, cube = _write_store(tmp_path, kind)
    decoded = _open(path, kind)
    assert decoded["a"].dtype.kind == "f" and decoded["a"].encoding["_FillValue"] == -9999
    expected = expected_columns(
        cube.astype(decoded["a"].dtype).expand_dims(band=["a"], axis=1), {"a": {-9999.0, -1.0}}
    )
    check_every_path(decoded, expected, False, tmp_path)


# xarray says it decodes all of a vector missing_value to NaN: what the test checks.
@pytest.mark.filterwarnings("ignore:variable 'a' has multiple fill values")
def test_a_netcdf_vector_missing_value_masks_every_value_encoded_and_decoded(tmp_path):
    import h5netcdf

    cube = planted_cube(np.int16, bands=("a",)).sel(band="a", drop=True)
    path = tmp_path / "vector.nc"
    cube.rename("a").to_dataset().drop_vars("spatial_ref").to_netcdf(path, engine="h5netcdf")
    # xarray refuses to write a vector missing_value itself; h5netcdf writes the attribute.
    with h5netcdf.File(path, "a") as f:
        f.variables["a"].attrs["missing_value"] = np.array([-9999, 255, 7], np.int16)
    banded = cube.expand_dims(band=["a"], axis=1)
    for k, (decode, chunks) in enumerate([(False, None), (False, {}), (True, None), (True, {})]):
        opened = xr.open_dataset(path, engine="h5netcdf", chunks=chunks, mask_and_scale=decode)
        opened = opened.rio.write_crs(UTM)
        if decode:  # xarray masked them itself: float32 with NaN
            expected = expected_columns(banded.astype(np.float32), {"a": {-9999.0, 255.0, 7.0}})
        else:
            assert list(np.asarray(opened["a"].attrs["missing_value"])) == [-9999, 255, 7]
            expected = expected_columns(banded, {"a": {-9999, 255, 7}})
        assert sum(v is None for v in expected["a"]) == 6
        check_every_path(opened, expected, not decode, tmp_path / str(k))
