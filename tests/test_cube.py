"""Reading cubes as collections (docs/semantics.md section 1), from metadata alone."""

from __future__ import annotations

import re
import warnings

import cftime
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr
from pyproj import CRS

from tests.helpers import make_cube, raise_if_dask_computes
from xr_getregion import (
    CRSError,
    CubeError,
    EmptyCollectionError,
    Geometry,
    MissingCRSError,
    get_region,
    getRegion,
)
from xr_getregion.cube import read_cube


def test_dataarray_time_band_y_x_in_any_order(cube):
    for order in [
        ("time", "band", "y", "x"),
        ("x", "band", "time", "y"),
        ("y", "x", "band", "time"),
    ]:
        info = read_cube(cube.transpose(*order))
        assert info.image_dim == "time"
        assert info.band_names == ["a", "b"]
        assert info.grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
        assert info.grid.shape == (20, 30)


def test_reading_a_dask_cube_computes_nothing(cube):
    lazy = cube.chunk({"time": 1, "y": 5})
    with raise_if_dask_computes():
        info = read_cube(lazy)
    assert info.n_images == 3


def test_ids_from_system_index_then_id_then_positions(cube):
    assert read_cube(cube).ids == ("0", "1", "2")
    with_id = cube.assign_coords(id=("time", ["s1", "s2", "s3"]))
    assert read_cube(with_id).ids == ("s1", "s2", "s3")
    both = with_id.assign_coords({"system:index": ("time", ["e1", "e2", "e3"])})
    assert read_cube(both).ids == ("e1", "e2", "e3")


def test_time_start_from_time_coord_in_ms_utc_or_system_time_start(cube):
    info = read_cube(cube)
    assert info.times_ms == (1609459200000, 1610879400000, 1612224001500)
    explicit = cube.assign_coords({"system:time_start": ("time", [1, 2, 3])})
    assert read_cube(explicit).times_ms == (1, 2, 3)


def test_no_time_dim_is_one_image_keeping_a_scalar_time(cube):
    one = cube.isel(time=1)
    info = read_cube(one)
    assert info.image_dim is None and info.n_images == 1
    assert info.times_ms == (1610879400000,)
    assert read_cube(one.drop_vars("time")).times_ms == (None,)


def test_band_names_without_band_dim_and_without_name(cube):
    single = cube.isel(band=0, drop=True)
    assert read_cube(single).band_names == ["v"]
    assert read_cube(single.rename(None)).band_names == ["b0"]
    unnamed = cube.drop_vars("band")
    assert read_cube(unnamed).band_names == ["b0", "b1"]
    numeric = cube.assign_coords(band=[1, 2])
    assert read_cube(numeric).band_names == ["1", "2"]


def test_dataset_variables_are_bands_and_others_are_ignored(cube):
    ds = cube.to_dataset("band")
    ds["time_bnds"] = ("time", np.arange(3))
    info = read_cube(ds)
    assert info.band_names == ["a", "b"]
    assert info.image_dim == "time"


def test_dataset_bands_with_different_dims_are_refused_by_name(cube):
    ds = cube.to_dataset("band")
    ds["c"] = ds["a"].isel(time=0, drop=True)
    with pytest.raises(CubeError, match=r"'c' has \['y', 'x'\].*drop_vars\('c'\)"):
        read_cube(ds)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c.isel(time=slice(0, 0)),
        lambda c: c.isel(band=slice(0, 0)),
        lambda c: c.to_dataset("band").drop_vars(["a", "b"]),
    ],
    ids=["no-images", "no-bands", "empty-dataset"],
)
def test_empty_collection_has_ees_message(cube, make):
    with pytest.raises(
        EmptyCollectionError, match=r"^ImageCollection.getRegion: No bands in collection.$"
    ):
        read_cube(make(cube))


def test_crs_conventions_are_all_read_and_compared_with_pyproj():
    base = make_cube(crs=None)
    assert read_cube(base.rio.write_crs("EPSG:32615")).grid.crs == CRS.from_epsg(32615)
    assert read_cube(base.assign_attrs(crs="EPSG:32615")).grid.crs == CRS.from_epsg(32615)
    # stackstac's 'epsg' coordinate comes with the transform attribute that tells labels
    # corners or centres (here centres); without it the cube is refused (see below).
    centres = {"transform": (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)}
    stac = base.assign_attrs(centres)
    assert read_cube(stac.assign_coords(epsg=32615)).grid.crs == CRS.from_epsg(32615)
    per_image = stac.assign_coords(epsg=("time", [32615, 32615, 32615]))
    assert read_cube(per_image).grid.crs == CRS.from_epsg(32615)
    # Same CRS written as WKT and as an EPSG code: equal for pyproj, so no conflict.
    wkt = base.rio.write_crs("EPSG:32615").assign_attrs(crs=CRS.from_epsg(32615).to_wkt())
    assert read_cube(wkt).grid.crs == CRS.from_epsg(32615)


def test_conflicting_crs_conventions_are_refused():
    cube = make_cube().assign_coords(epsg=32616)
    with pytest.raises(CubeError, match="disagree"):
        read_cube(cube)
    mixed = make_cube(crs=None).assign_coords(epsg=("time", [32615, 32616, 32615]))
    with pytest.raises(CubeError, match="several CRSs"):
        read_cube(mixed)


def test_missing_crs_says_how_to_set_one():
    with pytest.raises(MissingCRSError, match=r"rio\.write_crs"):
        read_cube(make_cube(crs=None))


def test_lat_lon_dims_mean_epsg4326_without_writing_it():
    cube = make_cube(crs=None, x0=-91, y0=35, res=0.01).rename(y="lat", x="lon")
    info = read_cube(cube)
    assert info.grid.crs == CRS.from_epsg(4326)
    assert "spatial_ref" not in cube.coords


def test_south_up_grid_has_positive_y_step():
    info = read_cube(make_cube(south_up=True))
    assert info.grid.transform[4] == 30.0
    assert info.grid.transform[5] == 4_000_000.0


def test_no_spatial_dims_or_too_many_dims_are_refused(cube):
    with pytest.raises(CubeError, match="no spatial dims"):
        read_cube(cube.rename(x="easting"))
    extra = cube.expand_dims(member=2)
    with pytest.raises(CubeError, match="non-spatial dims"):
        read_cube(extra)
    with pytest.raises(CubeError, match="DataArray or Dataset"):
        read_cube(np.zeros((2, 2)))


def test_irregular_coordinates_are_refused(cube):
    x = cube.x.values.copy()
    x[5] += 7
    with pytest.raises(CubeError, match="not regular"):
        read_cube(cube.assign_coords(x=x))


def test_one_pixel_wide_cube_uses_the_written_transform(cube):
    one = cube.isel(x=[4]).rio.write_transform(cube.rio.transform())
    info = read_cube(one)
    assert info.grid.transform[0] == 30.0
    with pytest.raises(CubeError, match="write_transform"):
        read_cube(
            xr.DataArray(
                np.zeros((1, 1)), dims=("y", "x"), coords={"y": [0.0], "x": [0.0]}
            ).rio.write_crs(4326)
        )


def test_nodata_attributes_are_read(cube):
    # Every declared value, as a number of the band's dtype.
    ints = cube.astype(np.int16).assign_attrs(_FillValue=-9999, missing_value=[0, -9999])
    nodata = read_cube(ints).bands[0].nodata
    assert nodata == (-9999, 0) and all(type(v) is np.int16 for v in nodata)
    assert read_cube(cube.assign_attrs(nodata="0")).bands[1].nodata == (0.0,)
    assert read_cube(cube).bands[0].nodata == ()


def test_a_cf_grid_mapping_coordinate_named_crs_is_read_from_its_attributes():
    cube = make_cube(crs=None).rio.write_crs("EPSG:32615", grid_mapping_name="crs")
    assert int(cube.coords["crs"].values) == 0  # a dummy value, the CRS is in the attributes
    assert read_cube(cube).grid.crs == CRS.from_epsg(32615)


def test_a_cf_grid_mapping_given_as_parameters_only_is_read_with_pyproj(tmp_path):
    # A valid CF file may describe its projection by parameters alone, with no crs_wkt.
    params = {
        "grid_mapping_name": "transverse_mercator",
        "scale_factor_at_central_meridian": 0.9996,
        "longitude_of_central_meridian": -93.0,
        "latitude_of_projection_origin": 0.0,
        "false_easting": 500000.0,
        "false_northing": 0.0,
        "semi_major_axis": 6378137.0,
        "inverse_flattening": 298.257223563,
    }
    ds = make_cube(crs=None).to_dataset(dim="band")
    ds = ds.assign_coords(utm=xr.DataArray(0, attrs=params))
    for name in ds.data_vars:
        ds[name].attrs["grid_mapping"] = "utm"
    path = tmp_path / "cf.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        crs = read_cube(opened).grid.crs
    assert crs == CRS.from_cf(params)
    # The same projection as UTM 15N: a point maps to the same metres (to the millimetre).
    here = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(-92.5, 35.0)
    utm = pyproj.Transformer.from_crs("EPSG:4326", 32615, always_xy=True).transform(-92.5, 35.0)
    np.testing.assert_allclose(here, utm, atol=1e-3)
    # Parameters pyproj cannot read: a CRSError naming the variable and the fixes.
    bad = (
        make_cube(crs=None)
        .to_dataset(dim="band")
        .assign_coords(utm=xr.DataArray(0, attrs={"grid_mapping_name": "no_such_projection"}))
    )
    for name in bad.data_vars:
        bad[name].attrs["grid_mapping"] = "utm"
    with pytest.raises(CRSError, match=r"grid_mapping variable 'utm'.*crs_wkt.*rio\.write_crs"):
        read_cube(bad)


def test_regular_float32_coordinates_are_regular():
    lon = (np.arange(7200) * 0.05 - 179.975).astype(np.float32)
    lat = (89.975 - np.arange(40) * 0.05).astype(np.float32)
    cube = xr.DataArray(
        np.zeros((40, 7200), np.float32), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    a, _, _, _, e, _ = read_cube(cube).grid.transform
    # Within float32 precision of the stored coordinates.
    assert a == pytest.approx(0.05, rel=1e-5) and e == pytest.approx(-0.05, rel=1e-5)


def test_stac_item_crs_coordinates_do_not_override_the_cubes_own():
    # stackstac reprojecting items to one grid keeps each item's proj:epsg (its source CRS)
    # next to the cube's own 'epsg': the cube's wins; proj:epsg alone still counts.
    cube = make_cube(4, 5, 3).assign_coords({"proj:epsg": ("time", [4326, 32616, 32615])})
    assert read_cube(cube).grid.crs == CRS.from_epsg(32615)
    # Without a grid mapping these look like stackstac output: the transform says centres.
    centres = {"transform": (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)}
    bare = make_cube(4, 5, 3, crs=None).assign_coords(
        {"epsg": 32615, "proj:epsg": ("time", [32616, 32616, 32616])}
    )
    assert read_cube(bare.assign_attrs(centres)).grid.crs == CRS.from_epsg(32615)
    items_only = make_cube(4, 5, 3, crs=None).assign_coords({"proj:epsg": 32615})
    assert read_cube(items_only.assign_attrs(centres)).grid.crs == CRS.from_epsg(32615)


def test_stackstac_cube_that_lost_its_transform_is_refused_with_both_statements():
    # stackstac labels corners by default and says so only in attrs['transform']; once it is
    # gone (attrs cleared for Zarr, arithmetic on older xarray) the labels could be either.
    corners = make_cube(4, 5, 3, crs=None).assign_coords(
        x=500_000.0 + 30 * np.arange(5), y=4_000_000.0 - 30 * np.arange(4), epsg=32615
    )
    lost = corners.rename("stackstac-4f2a")
    with pytest.raises(CubeError) as info:
        read_cube(lost)
    message = str(info.value)
    assert "its name 'stackstac-4f2a', its 'epsg' coordinate" in message
    assert (
        "for corner labels cube.attrs['transform'] = (30.0, 0.0, 500000.0, 0.0, -30.0, "
        "4000000.0); for centre labels cube.attrs['transform'] = (30.0, 0.0, 499985.0, 0.0, "
        "-30.0, 4000015.0)"
    ) in message
    # Either statement is read as stated: corners put the centres half a pixel in.
    stated = lost.assign_attrs(transform=(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0))
    assert read_cube(stated).grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
    centres = lost.assign_attrs(transform=(30.0, 0.0, 499_985.0, 0.0, -30.0, 4_000_015.0))
    assert read_cube(centres).grid.transform == (30.0, 0.0, 499_985.0, 0.0, -30.0, 4_000_015.0)


def test_stackstac_marks_are_its_name_epsg_and_stac_coordinates_without_a_grid_mapping(cube):
    plain = make_cube(4, 5, 3, crs=None)
    for marked, mark in [
        (plain.rename("stackstac-0").rio.write_crs(32615), "its name 'stackstac-0'"),
        (plain.assign_coords(epsg=32615).to_dataset(dim="band"), "its 'epsg' coordinate"),
        (plain.assign_coords({"proj:epsg": 32615}), "its STAC coordinates ['proj:epsg']"),
    ]:
        holder = "ds" if isinstance(marked, xr.Dataset) else "cube"
        pattern = rf"\({re.escape(mark)}\).*{holder}\.attrs\['transform'\]"
        with pytest.raises(CubeError, match=pattern):
            read_cube(marked)
    # STAC coordinates on a cube with a rioxarray grid mapping (centre labels) are read.
    stac = cube.assign_coords({"proj:epsg": ("time", [32615] * 3)})
    assert read_cube(stac).grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)


def test_one_pixel_wide_stackstac_cube_gets_the_statement_in_words():
    one = make_cube(4, 1, 3, crs=None).assign_coords(epsg=32615)
    with pytest.raises(CubeError, match=r"\(xres, 0\.0, left, 0\.0, -yres, top\)"):
        read_cube(one)


# --- times: every representation as exact UTC milliseconds (issue 12, items 3 and 4) -------


def _times(cube, coords):
    return read_cube(cube.isel(time=slice(0, 2)).assign_coords(coords)).times_ms


def test_timezone_aware_times_are_their_utc_instants(cube):
    chicago = pd.DatetimeIndex(["2020-07-09 08:02:27", "1960-01-01"], tz="America/Chicago")
    # 08:02:27 CDT is 13:02:27 UTC; 1960-01-01 00:00 CST is 06:00 UTC.
    expected = (1594299747000, -315597600000)
    assert _times(cube, {"time": chicago}) == expected
    assert _times(cube, {"time": ("time", np.array(list(chicago), dtype=object))}) == expected
    mixed = [
        pd.Timestamp("2020-07-09 18:32:27", tz="Asia/Kolkata"),
        pd.Timestamp("1960-01-01 18:45", tz="Pacific/Chatham"),
    ]
    assert _times(cube, {"time": ("time", np.array(mixed, dtype=object))}) == expected
    assert _times(cube, {"time": chicago.tz_convert("UTC").as_unit("s")}) == expected


def test_periods_are_their_start_instants(cube):
    assert _times(cube, {"time": pd.period_range("1969-12", periods=2, freq="M")}) == (
        -2678400000,
        0,
    )
    weeks = pd.period_range("2020-01-01", periods=2, freq="W")  # Monday 2019-12-30 starts it
    assert _times(cube, {"time": weeks}) == (1577664000000, 1578268800000)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            np.array(["2040-02-29", "1969-12-31"], dtype="datetime64[D]"),
            (2214086400000, -86400000),
        ),
        (np.array(["1901-12-13T20:45:52", "NaT"], dtype="datetime64[s]"), (-2147483648000, None)),
        (np.array([-1, 1500], dtype="datetime64[us]"), (-1, 1)),  # floored, not truncated
        (np.array([-999_999, 2_000_001], dtype="datetime64[ns]"), (-1, 2)),
    ],
)
def test_datetime64_of_every_unit_gives_floored_milliseconds(cube, values, expected):
    assert _times(cube, {"time": values}) == expected


def test_a_date_beyond_int64_milliseconds_is_refused(cube):
    far = np.array(["300000000", "2000"], dtype="datetime64[Y]")
    with pytest.raises(
        CubeError, match=r"'time' coordinate holds 300000000-01-01T00:00:00 .*int64 milli"
    ):
        _times(cube, {"time": far})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([1594303347000.0, np.nan]), (1594303347000, None)),
        (np.array([2**53, -1], dtype=np.int64), (2**53, -1)),
        (np.array([1594303347000, None], dtype=object), (1594303347000, None)),
        (pd.DatetimeIndex(["2020-07-09", "NaT"], tz="America/Chicago"), (1594270800000, None)),
        (
            np.array(["2020-07-09T05:00:00.0019", "NaT"], dtype="datetime64[us]"),
            (1594270800001, None),
        ),
    ],
)
def test_system_time_start_of_numbers_or_datetimes(cube, values, expected):
    assert _times(cube, {"system:time_start": ("time", values)}) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([0.0, np.inf]), r"holds inf \(image 1\), not a finite number"),
        (np.array([np.nan, -np.inf]), r"holds -inf \(image 1\), not a finite number"),
        (np.array([1594303347.25, 0.0]), r"holds 1594303347.25 \(image 0\), not whole milli"),
        (np.array([1e300, 0.0]), r"holds 1e\+300 \(image 0\), beyond int64"),
        (np.array([2**64 - 1, 0], dtype=np.uint64), r"holds 18446744073709551615 \(image 0\)"),
        (np.array(["2020-07-09", "x"]), r"holds '2020-07-09' \(image 0\), not a time"),
        (np.array([True, False]), r"holds True \(image 0\), not a time"),
    ],
)
def test_bad_system_time_start_is_a_cube_error_naming_value_and_fix(cube, values, message):
    with pytest.raises(CubeError, match=message) as err:
        _times(cube, {"system:time_start": ("time", values)})
    assert "'system:time_start' coordinate" in str(err.value)
    assert "cube.drop_vars('system:time_start')" in str(err.value)


def _cftimes(calendar, *dates):
    return np.array([cftime.datetime(*d, calendar=calendar) for d in dates], dtype=object)


@pytest.mark.parametrize(
    "calendar",
    [
        "noleap",
        "365_day",
        "all_leap",
        "366_day",
        "julian",
        "proleptic_gregorian",
        "360_day",
        "standard",
    ],
)
def test_cftime_dates_that_exist_map_to_the_same_fields_without_a_warning(cube, calendar):
    dates = _cftimes(calendar, (2020, 2, 28, 12, 30, 0, 1999), (2300, 12, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xarray's calendar warning would fail the test
        times = _times(cube, {"time": dates})
        table = getRegion(
            cube.isel(time=slice(0, 2)).assign_coords(time=dates),
            Geometry.Point(*_centre(cube)),
            crs="native",
        )
    assert times == (1582893000001, 10445155200000)
    assert [row[3] for row in table[1:]] == [1582893000001, 10445155200000]


@pytest.mark.parametrize(
    ("calendar", "date", "shown"),
    [
        ("360_day", (2001, 2, 30), "2001-02-30 00:00:00"),
        ("360_day", (2000, 2, 30), "2000-02-30 00:00:00"),
        ("all_leap", (2001, 2, 29), "2001-02-29 00:00:00"),
        ("julian", (1900, 2, 29), "1900-02-29 00:00:00"),
    ],
)
def test_a_date_the_real_calendar_lacks_names_convert_calendar(cube, calendar, date, shown):
    dates = _cftimes(calendar, (2001, 1, 1), date)
    with pytest.raises(CubeError) as err:
        _times(cube, {"time": dates})
    assert str(err.value) == (
        f"the 'time' coordinate holds {shown} in the {calendar!r} calendar (image 1), a date "
        "that does not exist in the standard calendar Earth Engine's times (milliseconds since "
        "1970-01-01 UTC) count in. Convert the cube first: "
        'cube.convert_calendar("standard", align_on="date") drops such dates, '
        'align_on="year" moves every date to keep them all.'
    )


def test_the_named_calendar_fix_works_and_names_a_non_time_dim(cube):
    days = cube.isel(time=slice(0, 2)).assign_coords(
        # The subclass xarray's decoders give: its convert_calendar cannot compare a plain
        # cftime.datetime(..., calendar="360_day") with its reform date.
        time=[cftime.Datetime360Day(2001, 2, 28), cftime.Datetime360Day(2001, 2, 30)]
    )
    fixed = days.convert_calendar("standard", align_on="date")
    assert read_cube(fixed).times_ms == (983318400000,)
    renamed = days.rename(time="t")
    with pytest.raises(
        CubeError, match=r'convert_calendar\("standard", align_on="date", dim="t"\)'
    ):
        read_cube(renamed)
    assert read_cube(renamed.convert_calendar("standard", align_on="date", dim="t")).n_images == 1


def test_get_region_time_column_is_the_utc_instant(cube):
    kolkata = pd.DatetimeIndex(["2021-01-01 05:30", "2021-01-17 16:00"], tz="Asia/Kolkata")
    frame = get_region(
        cube.isel(time=slice(0, 2)).assign_coords(time=kolkata), Geometry.Point(*_centre(cube))
    )
    assert frame["time"].tolist() == [
        pd.Timestamp("2021-01-01", tz="UTC"),
        pd.Timestamp("2021-01-17 10:30", tz="UTC"),
    ]


def _centre(cube):
    """Longitude, latitude of the cube's first pixel centre."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(cube.rio.crs, "EPSG:4326", always_xy=True)
    return to_lonlat.transform(float(cube.x[0]), float(cube.y[0]))
