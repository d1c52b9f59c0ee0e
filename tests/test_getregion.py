"""getRegion and get_region end to end, read as the EE reference page reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Transformer

import xr_getregion
from tests.helpers import CHUNKINGS, chunked, make_cube
from xr_getregion import Geometry, GetRegionWarning

S30 = 0.00026949458523585647
ROI = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
POINTS = Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]])


@pytest.fixture(scope="module")
def col():
    return xr_getregion.sample_cube().sel(band=["B2", "B3", "B4"])


@pytest.fixture(scope="module")
def col_numpy():
    return xr_getregion.sample_cube(chunks=None).sel(band=["B2", "B3", "B4"])


# --- the reference page -------------------------------------------------------------------


def test_reference_bbox_gives_11_rows_with_two_exact_pixel_centres(col):
    table = col.ee.getRegion(ROI, scale=30)
    assert table[0] == ["id", "longitude", "latitude", "time", "B2", "B3", "B4"]
    assert len(table) == 11  # 5 images x 2 pixels + header
    centres = {(row[1], row[2]) for row in table[1:]}
    assert centres == {
        (-90.49614697490799, 34.85198299374928),
        (-90.49587748032275, 34.85198299374928),
    }
    assert [row[0] for row in table[1::2]] == [
        "LC08_023036_20200709",
        "LC08_023036_20200725",
        "LC08_023036_20200810",
        "LC08_023036_20200826",
        "LC08_023036_20200911",
    ]
    assert table[1][3] == 1594303347000


def test_reference_multipoint_gives_one_pixel_per_point(col):
    table = col.ee.getRegion(POINTS, scale=30)
    assert len(table) == 11
    for lon, lat in [(-90.49, 34.85), (-90.48, 34.84)]:
        centre = ((np.floor(lon / S30) + 0.5) * S30, (np.floor(lat / S30) + 0.5) * S30)
        assert sum((r[1], r[2]) == centre for r in table[1:]) == 5


def test_rows_are_image_major_then_raster_order(col):
    table = col.ee.getRegion(POINTS, scale=30)
    # Raster order of EE's grid (positive y step): the southern point's row comes first.
    assert [r[2] for r in table[1:3]] == sorted(r[2] for r in table[1:3])
    assert [r[0] for r in table[1:]] == sorted(r[0] for r in table[1:])


def test_values_are_python_types_and_masked_values_are_none(col):
    table = col.ee.getRegion(ROI, scale=30)
    for row in table[1:]:
        assert type(row[0]) is str and type(row[1]) is float and type(row[3]) is int
        assert all(v is None or type(v) is float for v in row[4:])
    cloudy = [r for r in table[1:] if r[0] == "LC08_023036_20200810"]
    assert all(v is None for r in cloudy for v in r[4:])
    clear = [r for r in table[1:] if r[0] != "LC08_023036_20200810"]
    assert all(0.05 <= v <= 0.4 for r in clear for v in r[4:])


# --- values ---------------------------------------------------------------------------------


def test_native_grid_returns_the_cube_pixels_untouched(cube):
    poly = shapely.box(500_000 + 30 * 3, 4_000_000 - 30 * 5, 500_000 + 30 * 5, 4_000_000 - 30 * 2)
    table = cube.ee.getRegion(poly, crs="native", geometry_crs="EPSG:32615")
    # Rows 2..4 by cols 3..4: 6 pixels x 3 images.
    assert len(table) == 1 + 6 * 3
    values = cube.values
    for row in table[1:]:
        image = int(row[0])
        x, y = Transformer.from_crs(4326, 32615, always_xy=True).transform(row[1], row[2])
        ix, iy = int((x - 500_000) // 30), int((4_000_000 - y) // 30)
        assert row[4] == values[image, 0, iy, ix] and row[5] == values[image, 1, iy, ix]


def test_reprojection_to_the_ee_grid_samples_the_nearest_source_pixel(col_numpy):
    """Independent check: pyproj + numpy over every EE-grid centre in the polygon's bbox."""
    poly = Geometry.Polygon(
        [[-90.60, 34.75], [-90.585, 34.752], [-90.58, 34.765], [-90.598, 34.762]], geodesic=False
    )
    table = col_numpy.ee.getRegion(poly, scale=30)
    got = {(r[0], r[1], r[2]): r[4:] for r in table[1:]}
    # Expected pixel set: EE-grid centres inside the polygon, each tested with shapely.
    minx, miny, maxx, maxy = poly.shape.bounds
    cols = np.arange(np.floor(minx / S30), np.floor(maxx / S30) + 1)
    rows = np.arange(np.floor(miny / S30), np.floor(maxy / S30) + 1)
    cc, rr = np.meshgrid(cols, rows)
    lon, lat = (cc.ravel() + 0.5) * S30, (rr.ravel() + 0.5) * S30
    inside = np.array(
        [poly.shape.intersects(shapely.Point(x, y)) for x, y in zip(lon, lat, strict=True)]
    )
    lon, lat = lon[inside], lat[inside]
    assert len(got) == 5 * inside.sum() > 500
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32615", always_xy=True).transform(lon, lat)
    ix = np.floor((np.asarray(x) - 705_000) / 30).astype(int)
    iy = np.floor((3_863_010 - np.asarray(y)) / 30).astype(int)
    values = col_numpy.values
    for t, image_id in enumerate(col_numpy.id.values):
        for k in range(len(lon)):
            expected = values[t, :, iy[k], ix[k]]
            row = got[(image_id, lon[k], lat[k])]
            assert [None if np.isnan(e) else float(e) for e in expected] == row


def test_point_outside_the_cube_gives_no_row_not_the_edge_pixel(cube):
    just_outside = shapely.Point(500_000 - 0.001, 4_000_000 - 45)
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        table = cube.ee.getRegion(just_outside, crs="native", geometry_crs="EPSG:32615")
    assert table == [["id", "longitude", "latitude", "time", "a", "b"]]
    on_edge = shapely.Point(500_000, 4_000_000 - 45)
    assert len(cube.ee.getRegion(on_edge, crs="native", geometry_crs="EPSG:32615")) == 4


def test_nothing_covered_is_the_header_alone(col):
    far = Geometry.BBox(10, 10, 10.1, 10.1)
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        assert col.ee.getRegion(far, scale=30) == [
            ["id", "longitude", "latitude", "time", "B2", "B3", "B4"]
        ]
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        df = col.ee.get_region(far, scale=30)
    assert len(df) == 0 and list(df.columns) == [
        "id",
        "longitude",
        "latitude",
        "time",
        "B2",
        "B3",
        "B4",
    ]


def test_integer_bands_give_int_and_nodata_gives_none():
    cube = make_cube(dtype=np.int16).assign_attrs(_FillValue=np.int16(601))
    point = shapely.Point(500_000 + 30 * 1.5, 4_000_000 - 30 * 2.5)  # (x=1, y=2): 2*300+1
    table = cube.ee.getRegion(point, crs="native", geometry_crs="EPSG:32615")
    assert table[1][4] is None  # 601 is the fill value
    assert table[1][5] == 100_601 % 2**16 - 2**16 if 100_601 > 32767 else table[1][5] == 100_601
    assert type(table[2][4]) is int


def test_get_region_dataframe_types():
    cube = make_cube(dtype=np.int32).assign_attrs(nodata=1)
    poly = shapely.box(500_000, 4_000_000 - 60, 500_000 + 60, 4_000_000)
    df = cube.ee.get_region(poly, geometry_crs="EPSG:32615")
    assert list(df.columns) == ["id", "longitude", "latitude", "time", "a", "b"]
    assert len(df) == 4 * 3
    assert str(df["time"].dtype) == "datetime64[ms, UTC]"
    assert df["time"].iloc[0] == pd.Timestamp("2021-01-01", tz="UTC")
    # One small code per row, the categories the ids in collection order.
    assert df["id"].dtype == "category" and df["id"].cat.codes.dtype == np.int8
    assert df["id"].cat.categories.tolist() == ["0", "1", "2"]
    assert df["id"].tolist() == ["0"] * 4 + ["1"] * 4 + ["2"] * 4
    assert df["a"].dtype == "Int32" and df["a"].isna().sum() == 1  # value 1 at (0, 0, 0, 1)
    assert df["longitude"].dtype == np.float64


def test_get_region_float_bands_keep_dtype_with_nan(col):
    df = col.ee.get_region(ROI, scale=30)
    assert df["B2"].dtype == np.float32
    assert df["B2"].isna().sum() == 2


def test_get_region_default_is_the_native_grid_and_scale_matches_getregion(col):
    table = col.ee.getRegion(ROI, scale=30)
    df = col.ee.get_region(ROI, scale=30)
    assert df["longitude"].tolist() == [r[1] for r in table[1:]]
    assert df["B3"].tolist() == pytest.approx(
        [np.nan if r[5] is None else r[5] for r in table[1:]], nan_ok=True
    )
    native = col.ee.get_region(POINTS)
    # On the cube's own UTM grid: one pixel per point, centres on the UTM lattice.
    assert len(native) == 2 * 5
    x, y = Transformer.from_crs(4326, 32615, always_xy=True).transform(
        native["longitude"].to_numpy(), native["latitude"].to_numpy()
    )
    assert np.allclose((np.asarray(x) - 705_015 + 15) % 30 - 15, 0, atol=1e-6)
    assert np.allclose((3_862_995 - np.asarray(y) + 15) % 30 - 15, 0, atol=1e-6)


def test_ee_default_grid_warns_and_uses_one_degree_pixels():
    cube = make_cube(crs=None, x0=-91.0, y0=36.0, res=0.5, ny=8, nx=8).rename(y="lat", x="lon")
    with pytest.warns(GetRegionWarning, match="scale="):
        table = cube.ee.getRegion(shapely.Point(-89.3, 33.7))
    assert [(r[1], r[2]) for r in table[1:]] == [(-89.5, 33.5)] * 3


def test_crs_and_crs_transform_grids_work_end_to_end(cube):
    poly = shapely.box(500_030, 3_999_700, 500_200, 3_999_900)
    t = [60, 0, 500_000, 0, -60, 4_000_000]
    table = cube.ee.getRegion(poly, crs="EPSG:32615", crsTransform=t, geometry_crs="EPSG:32615")
    # 60 m pixels with centres inside the box: cols 1..2 (x = 500090, 500150; the centre at
    # 500030 lies on the box's western edge, which GDAL's rule leaves out), rows 2..4, as
    # rasterio.features.rasterize burns them.
    centres = {(r[1], r[2]) for r in table[1:]}
    assert len(centres) == 2 * 3
    scaled = cube.ee.getRegion(poly, scale=60, crs="EPSG:32615", geometry_crs="EPSG:32615")
    assert len(scaled) > 1


def test_dataset_cube_gives_the_same_table_as_the_dataarray(cube):
    poly = shapely.box(500_040, 3_999_600, 500_500, 3_999_950)
    a = cube.ee.getRegion(poly, crs="native", geometry_crs="EPSG:32615")
    b = cube.to_dataset("band").ee.getRegion(poly, crs="native", geometry_crs="EPSG:32615")
    assert a == b


def test_lines_are_extracted_on_the_ee_grid(col):
    line = Geometry.LineString([[-90.50, 34.85], [-90.49, 34.853]], geodesic=False)
    table = col.ee.getRegion(line, scale=30)
    # A 0.01 x 0.003 degree line crosses about 37 + 11 EE pixels.
    assert 40 <= (len(table) - 1) // 5 <= 50


def test_geodataframe_feature_collection_is_the_union(col):
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(geometry=[ROI.shape, ROI.shape], crs="EPSG:4326")
    assert col.ee.getRegion(gdf, scale=30) == col.ee.getRegion(ROI, scale=30)


# --- the same answer everywhere -------------------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKINGS[1:], ids=str)
def test_same_table_for_numpy_and_every_dask_chunking(cube, chunks):
    poly = Geometry.Polygon(
        [[500_020, 3_999_420], [500_870, 3_999_990], [500_700, 3_999_500]], "EPSG:32615"
    )
    points = shapely.MultiPoint([(500_010, 3_999_995), (500_889, 3_999_401)])
    for geometry, kwargs in [
        (poly, {"crs": "native"}),
        (points, {"crs": "native", "geometry_crs": "EPSG:32615"}),
        (poly, {"scale": 20, "crs": "EPSG:32615"}),
    ]:
        expected = cube.ee.getRegion(geometry, **kwargs)
        assert len(expected) > 1
        assert chunked(cube, chunks).ee.getRegion(geometry, **kwargs) == expected


@pytest.mark.parametrize("chunks", [(1, 1, 128, 128), (5, 7, 300, 1000), (2, 3, 97, 333)], ids=str)
def test_sample_cube_same_table_for_numpy_and_dask(col_numpy, chunks):
    expected = col_numpy.ee.getRegion(ROI, scale=30)
    lazy = xr_getregion.sample_cube(chunks=chunks).sel(band=["B2", "B3", "B4"])
    assert lazy.ee.getRegion(ROI, scale=30) == expected
    assert (
        xr_getregion.sample_cube(chunks=chunks)
        .ee.get_region(POINTS)
        .equals(xr_getregion.sample_cube(chunks=None).ee.get_region(POINTS))
    )


def test_lazily_loaded_file_cube_is_read_without_dask(tmp_path, cube):
    path = tmp_path / "cube.zarr"
    cube.to_dataset("band").to_zarr(path)
    poly = shapely.box(500_040, 3_999_600, 500_500, 3_999_950)
    expected = cube.to_dataset("band").ee.getRegion(poly, crs="native", geometry_crs="EPSG:32615")
    with xr.open_dataset(path, engine="zarr", chunks=None) as ds:
        assert not ds["a"].chunks  # lazily indexed backend array, no dask
        assert ds.ee.getRegion(poly, crs="native", geometry_crs="EPSG:32615") == expected


def test_points_on_ee_grid_lines_follow_ees_floor_of_x_over_scale(col_numpy):
    # Lon/lat exactly on 30 m grid lines of EE's grid (k * s), negative longitudes included.
    ks = np.arange(-335_850, -335_800, 7)
    lats = 129_300 * S30
    for k in ks:
        table = col_numpy.ee.getRegion(shapely.Point(k * S30, lats), scale=30)
        col = np.floor((k * S30) / S30)
        row = np.floor(lats / S30)
        assert {(r[1], r[2]) for r in table[1:]} == {((col + 0.5) * S30, (row + 0.5) * S30)}


def test_a_polar_cube_on_a_lon_lat_grid_gives_the_rows_up_to_its_pole():
    # A 10 x 10 km polar stereographic cube around the north pole, on 2**-7 degree pixels:
    # the rows between its edges' highest latitude (89.955) and the pole were missing.
    cube = make_cube(10, 10, 1, ["a"], crs="EPSG:3413", x0=-5000.0, y0=5000.0, res=1000.0)
    scale = xr_getregion.METRES_PER_DEGREE * 2.0**-7  # exactly 2**-7 degree pixels
    table = cube.ee.getRegion(shapely.box(-60, 89.9, -50, 90), scale)
    latitudes = sorted({row[2] for row in table[1:]})
    assert latitudes[-1] == 90 - 2.0**-8  # the centre of the row at the pole
    assert latitudes == [90 - 2.0**-8 * (2 * k + 1) for k in range(len(latitudes))][::-1]
    assert len(latitudes) == 6  # 89.957 .. 89.996: all rows of the box inside the cube


def test_images_sharing_an_id_share_a_category():
    cube = make_cube().assign_coords(id=("time", ["x", "y", "x"]))
    poly = shapely.box(500_000, 4_000_000 - 30, 500_000 + 30, 4_000_000)
    df = cube.ee.get_region(poly, geometry_crs="EPSG:32615")
    assert df["id"].cat.categories.tolist() == ["x", "y"]
    assert df["id"].tolist() == ["x", "y", "x"]
    assert df.groupby("id", observed=True).size().tolist() == [2, 1]


@pytest.mark.parametrize(("n", "codes"), [(126, np.int8), (127, np.int16), (40_000, np.int32)])
def test_id_codes_are_the_smallest_integers_that_hold_every_image(n, codes):
    from xr_getregion.table import TableSpec, pixel_columns

    ids = tuple(f"img{i:05d}" for i in range(n))
    columns = pixel_columns(TableSpec(ids, (0,) * n, ()), np.zeros(2), np.zeros(2))
    assert columns["id"].codes.dtype == codes
    assert columns["id"].categories.tolist() == list(ids)
    assert columns["id"][[0, 1, 2 * n - 1]].tolist() == ["img00000", "img00000", ids[-1]]
