"""EE's collection methods on ``.ee``: filterDate, filterBounds, select, sort, first, size."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

import xr_getregion
from tests.helpers import make_cube, raise_if_dask_computes
from xr_getregion import ArgumentError, CubeError, EmptyCollectionError, Geometry

UTM = "EPSG:32615"
# make_cube's images: 2021-01-01T00:00, 2021-01-17T10:30, 2021-02-02T00:00:01.5 (UTC).
T0, T1, T2 = 1609459200000, 1610879400000, 1612224001500


def objects(values: list) -> np.ndarray:
    """A 1-D object array of lists, as stackstac stores list-valued STAC properties."""
    out = np.empty(len(values), dtype=object)
    out[:] = [list(v) for v in values]
    return out


def ids(obj) -> list[str]:
    return [str(i) for i in obj["time"].values.astype("datetime64[ms]").astype(np.int64)]


# --- filterDate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "kept"),
    [
        ("2021-01-01", "2021-02-01", [T0, T1]),
        ("2021-01-01", "2021-01-17T10:30", [T0]),  # half-open: the end is excluded
        ("2021-01-17T10:30", None, [T1]),  # no end: exactly that millisecond
        (dt.date(2021, 1, 2), dt.datetime(2022, 1, 1), [T1, T2]),
        (np.datetime64("2021-01-17T10:30"), pd.Timestamp("2021-02-02T00:00:01.5"), [T1]),
        (pd.Timestamp("2021-01-17T11:30", tz="Europe/Paris"), T2 + 1, [T1, T2]),  # zones count
        (T2, T2 + 1, [T2]),
        ("2030-01-01", "2031-01-01", []),
    ],
)
def test_filter_date_is_half_open_and_takes_every_date_type(start, end, kept):
    got = make_cube().ee.filterDate(start, end)
    assert ids(got) == [str(t) for t in kept]


@pytest.mark.parametrize("zone", ["UTC", "America/Chicago", "Asia/Kolkata", "Pacific/Chatham"])
def test_filter_date_and_sort_on_timezone_aware_times(zone):
    # The same three instants as make_cube's, held in a zone: they used to read as no time,
    # so filterDate kept nothing.
    aware = pd.DatetimeIndex(np.array([T2, T0, T1], dtype="datetime64[ms]"), tz="UTC")
    cube = make_cube().assign_coords(time=aware.tz_convert(zone))
    kept = cube.ee.filterDate("2021-01-01", "2021-02-01")
    assert ids(kept.assign_coords(time=kept.indexes["time"].tz_convert(None))) == [
        str(T0),
        str(T1),
    ]
    assert kept.ee.size() == 2
    ordered = cube.ee.sort("system:time_start")
    assert list(ordered.coords["system:index"].values) == ["1", "2", "0"]


def test_filter_date_to_nothing_then_get_region_says_the_collection_is_empty():
    empty = make_cube().ee.filterDate("2030-01-01", "2031-01-01")
    assert empty.ee.size() == 0
    with pytest.raises(EmptyCollectionError, match="No bands in collection"):
        empty.ee.getRegion(shapely.Point(500_015, 3_999_985), crs="native", geometry_crs=UTM)


def test_images_without_a_time_never_match_a_date_filter():
    cube = make_cube()
    cube = cube.assign_coords({"system:time_start": ("time", [T0, np.nan, T2])})
    assert cube.ee.filterDate("2000-01-01", "2100-01-01").sizes["time"] == 2


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2021-02-01", "2021-01-01", "before start"),
        ("not a date", None, "not a date"),
        (True, None, "not a date"),
    ],
)
def test_filter_date_refuses_bad_dates(start, end, message):
    with pytest.raises(ArgumentError, match=message):
        make_cube().ee.filterDate(start, end)


def test_collection_filters_need_a_time_dim():
    with pytest.raises(CubeError, match="expand_dims"):
        make_cube().isel(time=0).ee.filterDate("2021-01-01", "2022-01-01")


# --- filterBounds -----------------------------------------------------------------------------


def test_filter_bounds_without_footprints_uses_the_cube_extent():
    cube = make_cube()  # x 500000..500900, y 3999400..4000000 in UTM 15N
    inside = cube.ee.filterBounds(shapely.Point(500_100, 3_999_900), geometry_crs=UTM)
    assert inside.sizes["time"] == 3
    outside = cube.ee.filterBounds(shapely.Point(400_000, 3_999_900), geometry_crs=UTM)
    assert outside.sizes["time"] == 0
    # A geometry in lon/lat (the default CRS) is projected first.
    to_lon_lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    assert (
        cube.ee.filterBounds(Geometry.Point(*to_lon_lat.transform(500_100, 3_999_900))).sizes[
            "time"
        ]
        == 3
    )
    assert (
        cube.ee.filterBounds(Geometry.Point(*to_lon_lat.transform(501_000, 3_999_900))).sizes[
            "time"
        ]
        == 0
    )


def test_filter_bounds_uses_each_images_proj_bbox():
    cube = make_cube().assign_coords(
        {
            "proj:bbox": (
                "time",
                objects(
                    [
                        (500_000, 3_999_400, 500_450, 4_000_000),  # west half
                        (500_450, 3_999_400, 500_900, 4_000_000),  # east half
                        (500_000, 3_999_400, 500_900, 4_000_000),  # all
                    ]
                ),
            )
        }
    )
    west = cube.ee.filterBounds(shapely.Point(500_100, 3_999_900), geometry_crs=UTM)
    east = cube.ee.filterBounds(shapely.Point(500_800, 3_999_900), geometry_crs=UTM)
    assert ids(west) == [str(T0), str(T2)]
    assert ids(east) == [str(T1), str(T2)]


def test_filter_bounds_uses_each_images_proj_geometry():
    tri = shapely.Polygon([(500_000, 3_999_400), (500_900, 3_999_400), (500_000, 4_000_000)])
    full = shapely.box(500_000, 3_999_400, 500_900, 4_000_000)
    footprints = [shapely.geometry.mapping(g) for g in (tri, full, tri)]
    cube = make_cube().assign_coords({"proj:geometry": ("time", footprints)})
    corner = shapely.Point(500_850, 3_999_950)  # in the box, not in the triangle
    assert ids(cube.ee.filterBounds(corner, geometry_crs=UTM)) == [str(T1)]


def test_a_bad_footprint_coordinate_is_named():
    cube = make_cube().assign_coords({"proj:bbox": ("time", objects([(1, 2, 3)] * 3))})
    with pytest.raises(CubeError, match=r"proj:bbox"):
        cube.ee.filterBounds(shapely.Point(500_100, 3_999_900), geometry_crs=UTM)


# --- select -----------------------------------------------------------------------------------

BANDS = ["B1", "B2", "B3", "B4", "B10", "B11", "QA_PIXEL"]


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (("B1",), ["B1"]),  # a whole-name match: not B10, not B11
        (("B[2-4]",), ["B2", "B3", "B4"]),
        (("B1.*",), ["B1", "B10", "B11"]),
        (("B4", "B3", "B2"), ["B4", "B3", "B2"]),  # the selectors' order
        ((["B4", "B3"],), ["B4", "B3"]),  # one list
        ((0, 6), ["B1", "QA_PIXEL"]),  # positions
        (("B1[01]", "QA.*"), ["B10", "B11", "QA_PIXEL"]),
    ],
)
def test_select_matches_whole_names_in_order(selectors, expected):
    cube = make_cube(4, 5, 2, BANDS)
    assert cube.ee.select(*selectors).ee.bandNames() == expected
    assert cube.to_dataset("band").ee.select(*selectors).ee.bandNames() == expected


def test_select_renames_like_ee():
    cube = make_cube(4, 5, 2, BANDS)
    two_lists = cube.ee.select(["B4", "B3", "B2"], ["red", "green", "blue"])
    assert two_lists.ee.bandNames() == ["red", "green", "blue"]
    np.testing.assert_array_equal(two_lists.sel(band="red"), cube.sel(band="B4"))
    keyword = cube.to_dataset("band").ee.select("B[2-3]", names=["g", "r"])
    assert keyword.ee.bandNames() == ["g", "r"]
    np.testing.assert_array_equal(keyword["r"], cube.sel(band="B3"))


def test_select_on_a_single_band_array():
    cube = make_cube(4, 5, 2, ["a"]).isel(band=0, drop=True).rename("ndvi")
    assert cube.ee.select("ndvi").ee.bandNames() == ["ndvi"]
    assert cube.ee.select("ndvi", names=["x"]).ee.bandNames() == ["x"]


@pytest.mark.parametrize(
    ("selectors", "names", "message"),
    [
        (("B5",), None, r"pattern 'B5' did not match any band.*B10"),
        (("B1", "B.*"), None, "selected twice"),
        (("B[",), None, "not a regular expression"),
        ((1.5,), None, "neither"),
        (("B1", "B2"), ["x"], "2 bands selected"),
        (("B1", "B2"), ["x", "x"], "repeat"),
        ((), None, "at least one"),
    ],
)
def test_select_refuses_clearly(selectors, names, message):
    with pytest.raises(ArgumentError, match=message):
        make_cube(4, 5, 2, BANDS).ee.select(*selectors, names=names)


# --- sort, first, size, bandNames --------------------------------------------------------------


def test_sort_by_time_id_and_any_property_with_missing_last():
    cube = make_cube(4, 5, 3).assign_coords(
        {"id": ("time", ["c", "a", "b"]), "eo:cloud_cover": ("time", [12.0, np.nan, 3.0])}
    )
    assert list(cube.ee.sort("system:time_start", False)["id"].values) == ["b", "a", "c"]
    assert list(cube.ee.sort("system:index")["id"].values) == ["a", "b", "c"]
    assert list(cube.ee.sort("eo:cloud_cover")["id"].values) == ["b", "c", "a"]
    assert list(cube.ee.sort("eo:cloud_cover", False)["id"].values) == ["c", "b", "a"]
    with pytest.raises(ArgumentError, match=r"no property 'cloud'.*eo:cloud_cover"):
        cube.ee.sort("cloud")


def test_sort_is_stable():
    cube = make_cube(4, 5, 3).assign_coords(
        {"id": ("time", ["x", "y", "z"]), "k": ("time", [1, 0, 1])}
    )
    assert list(cube.ee.sort("k")["id"].values) == ["y", "x", "z"]


def test_first_is_one_image_that_keeps_its_id_and_time():
    cube = make_cube(4, 5, 3).assign_coords({"id": ("time", ["c", "a", "b"])})
    image = cube.ee.first()
    assert "time" not in image.dims and image.ee.size() == 1
    rows = image.ee.getRegion(shapely.Point(500_015, 3_999_985), crs="native", geometry_crs=UTM)
    assert [r[0] for r in rows[1:]] == ["c"] and rows[1][3] == T0
    with pytest.raises(EmptyCollectionError):
        cube.isel(time=[]).ee.first()


def test_size_and_band_names():
    cube = make_cube(4, 5, 3, ["x", "y"])
    assert cube.ee.size() == 3 and cube.ee.bandNames() == ["x", "y"]
    assert cube.isel(time=0).ee.size() == 1


def test_collection_methods_never_compute():
    cube = make_cube(20, 30, 3, BANDS).chunk({"time": 1, "band": 1})
    with raise_if_dask_computes():
        out = (
            cube.ee.filterBounds(shapely.Point(500_100, 3_999_900), geometry_crs=UTM)
            .ee.filterDate("2021-01-01", "2021-02-01")
            .ee.select("B[1-3]", names=["a", "b", "c"])
            .ee.sort("system:time_start", False)
        )
        out.ee.first(), out.ee.size(), out.ee.bandNames()


def test_the_reference_page_script_runs_on_the_sample_cube():
    # The EE page's Python sample, with ee.ImageCollection(...) replaced by the sample cube
    # and each collection call reached through .ee; geemap display calls left out.
    ee = xr_getregion
    col = (
        ee.sample_cube()
        .ee.filterBounds(ee.Geometry.Point(-90.70, 34.71))
        .ee.filterDate("2020-07-01", "2020-10-01")
        .ee.select("B[2-4]")
    )
    roi = ee.Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    first = col.ee.first()
    assert first.ee.bandNames() == ["B2", "B3", "B4"]
    pixel_info_bbox = col.ee.getRegion(geometry=roi, scale=30)
    assert len(pixel_info_bbox) == 11
    assert pixel_info_bbox[0] == ["id", "longitude", "latitude", "time", "B2", "B3", "B4"]
    points = ee.Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]])
    pixel_info_points = col.ee.getRegion(geometry=points, scale=30)
    assert len(pixel_info_points) == 11


# --- review fixes: ids, empty collections, footprints in their own CRS, odd inputs ---------------


def test_filtering_and_sorting_keep_positional_ids():
    cube = make_cube()  # no id coordinate: the images are '0', '1', '2'
    kept = cube.ee.filterDate("2021-01-10", "2021-03-01")
    rows = kept.ee.getRegion(shapely.Point(500_015, 3_999_985), crs="native", geometry_crs=UTM)
    assert [r[0] for r in rows[1:]] == ["1", "2"]
    desc = cube.ee.sort("system:time_start", False)
    rows = desc.ee.getRegion(shapely.Point(500_015, 3_999_985), crs="native", geometry_crs=UTM)
    assert [(r[0], r[3]) for r in rows[1:]] == [("2", T2), ("1", T1), ("0", T0)]


def test_first_keeps_the_time_whatever_the_time_dim_is_called():
    image = make_cube().rename(time="date").ee.first()
    rows = image.ee.getRegion(shapely.Point(500_015, 3_999_985), crs="native", geometry_crs=UTM)
    assert [(r[0], r[3]) for r in rows[1:]] == [("0", T0)]


def test_an_empty_collection_filters_sorts_and_selects_like_ees():
    empty = make_cube(4, 5, 3, BANDS).ee.filterDate("2030-01-01", "2031-01-01")
    again = empty.ee.filterDate("2020-01-01", "2040-01-01").ee.sort("system:index")
    again = again.ee.filterBounds(shapely.Point(500_015, 3_999_985), geometry_crs=UTM)
    assert again.ee.size() == 0
    assert again.ee.select("B[1-2]").ee.bandNames() == ["B1", "B2"]
    with pytest.raises(EmptyCollectionError, match="first: the collection has no images"):
        again.ee.first()


def test_filter_bounds_reads_footprints_in_their_own_crs():
    # Footprints as STAC gives them: in each item's proj:epsg (here the first in UTM 15N,
    # the second in lon/lat degrees around the cube's east half).
    to_lon_lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    west, south = to_lon_lat.transform(500_450, 3_999_400)
    east, north = to_lon_lat.transform(500_900, 4_000_000)
    cube = make_cube(20, 30, 2).assign_coords(
        {
            "proj:bbox": (
                "time",
                objects([(500_000, 3_999_400, 500_450, 4_000_000), (west, south, east, north)]),
            ),
            "proj:epsg": ("time", [32615, 4326]),
        }
    )
    assert ids(cube.ee.filterBounds(shapely.Point(500_100, 3_999_900), geometry_crs=UTM)) == [
        str(T0)
    ]
    assert ids(cube.ee.filterBounds(shapely.Point(500_800, 3_999_900), geometry_crs=UTM)) == [
        str(T1)
    ]


def test_filter_bounds_reads_the_geometry_as_getregion_does():
    # A geometry reaching far past the cube's projection is clipped to the cube's area first.
    cube = make_cube()
    big = Geometry.BBox(-179, -80, 0, 80)
    assert len(cube.ee.getRegion(big, crs="native")) > 1
    assert cube.ee.filterBounds(big).ee.size() == 3


def test_select_without_a_band_coordinate_keeps_each_bands_name():
    cube = make_cube().drop_vars("band")  # bands named b0, b1 by position
    swapped = cube.ee.select("b1", "b0")
    assert swapped.ee.bandNames() == ["b1", "b0"]
    np.testing.assert_array_equal(swapped.isel(band=0), cube.isel(band=1))


def test_select_on_a_dataset_keeps_its_other_variables():
    ds = make_cube(4, 5, 2, BANDS).to_dataset("band")
    ds["time_bnds"] = ("time", [0, 1])
    out = ds.ee.select("B1")
    assert list(out.data_vars) == ["B1", "time_bnds"]
    with pytest.raises(ArgumentError, match=r"new names \['time_bnds'\] are already"):
        ds.ee.select(["B1"], ["time_bnds"])


def test_filter_date_reads_float_milliseconds_and_sort_refuses_unorderable_values():
    assert ids(make_cube().ee.filterDate(float(T0), float(T2) + 1.0)) == [
        str(T0),
        str(T1),
        str(T2),
    ]
    with pytest.raises(ArgumentError, match="not a date"):
        make_cube().ee.filterDate(float("nan"))
    mixed = np.array([1, "x", None], dtype=object)
    with pytest.raises(ArgumentError, match="cannot be ordered"):
        make_cube().assign_coords(k=("time", mixed)).ee.sort("k")
