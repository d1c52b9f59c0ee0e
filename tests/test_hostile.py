"""Hostile and odd inputs: each gives a clear GetRegionError or a documented, correct table.

One test (or parametrised case) per input of issue 6; the names read as the input and what
the user gets. Cubes come from ``conftest.make_cube``: pixel ``(t, b, y, x)`` holds
``t*1e6 + b*1e5 + y*300 + x``, so a value says which source pixel was read.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from tests.helpers import make_cube
from xr_getregion import (
    ArgumentError,
    CubeError,
    Geometry,
    GeometryError,
    GetRegionError,
    GetRegionWarning,
)
from xr_getregion.cube import read_cube

UTM = "EPSG:32615"
HEADER = ["id", "longitude", "latitude", "time", "a", "b"]
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def utm_point(col: float, row: float) -> shapely.Point:
    """A point at fractional pixel position (col, row) of the default make_cube grid."""
    return shapely.Point(500_000 + 30 * col, 4_000_000 - 30 * row)


def native(cube: xr.DataArray, geometry, **kwargs) -> list[list]:
    return cube.ee.getRegion(geometry, crs="native", **kwargs)


def values(table: list[list], band: int = 4) -> list:
    return [row[band] for row in table[1:]]


def source_col(value: float) -> int:
    """The x index of the source pixel a make_cube value was read from."""
    return int(value % 100_000 % 300)


# --- 1. empty and invalid polygons ------------------------------------------------------------


@pytest.mark.parametrize(
    "empty",
    [
        shapely.Polygon(),
        "POLYGON EMPTY",
        {"type": "Polygon", "coordinates": []},
        shapely.MultiPolygon(),
    ],
    ids=["shapely", "wkt", "geojson", "multipolygon"],
)
def test_empty_polygon_is_refused_as_empty(cube, empty):
    with pytest.raises(GeometryError, match="the geometry is empty: it covers no pixel"):
        native(cube, empty)


def test_empty_ee_polygon_is_refused_by_its_constructor():
    with pytest.raises(GeometryError, match="Polygon needs at least one ring"):
        Geometry.Polygon([])


@pytest.mark.parametrize(
    "bowtie",
    [
        shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]),
        Geometry.Polygon([[0, 0], [2, 2], [2, 0], [0, 2]]),
        {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]},
    ],
    ids=["shapely", "ee-geodesic", "geojson"],
)
def test_self_intersecting_bowtie_polygon_is_refused_with_the_repair(cube, bowtie):
    with pytest.raises(GeometryError, match=r"invalid: Self-intersection.*make_valid"):
        native(cube, bowtie)


def test_bowtie_among_features_is_refused_naming_the_feature(cube):
    features = [
        shapely.box(-93, 36, -92.9, 36.1),
        shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]),
    ]
    with pytest.raises(GeometryError, match="feature 1: the geometry is invalid"):
        cube.ee.get_region(features)


# --- 2. NaN and inf coordinates ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: shapely.Point(float("nan"), 36.1),
        lambda: shapely.Polygon([(-93, 36), (float("inf"), 36), (-93, 36.1)]),
        lambda: {"type": "Point", "coordinates": [float("nan"), 36.1]},
        lambda: shapely.MultiPoint([(-93, 36.1), (-93, float("-inf"))]),
        lambda: Geometry.Point(float("nan"), 36.1),
        # The geodesic polygon used to die in the densifier: "cannot convert float NaN to int".
        lambda: Geometry.Polygon([[-93, 36], [float("inf"), 36], [-93, 36.1]]),
        lambda: Geometry.Rectangle([float("nan"), 36, -92.9, 36.1]),
        lambda: Geometry.BBox(-93, 36, float("nan"), 36.1),
    ],
    ids=[
        "shapely-point",
        "shapely-polygon",
        "geojson",
        "multipoint",
        "ee-point",
        "ee-polygon",
        "ee-rectangle",
        "ee-bbox",
    ],
)
def test_nan_or_inf_coordinate_is_refused_naming_the_vertex(cube, make):
    with pytest.raises(GeometryError, match=r"non-finite coordinate \(.*(nan|inf).*Remove or fix"):
        native(cube, make())


def test_nan_coordinate_among_features_is_refused_naming_the_feature(cube):
    with pytest.raises(GeometryError, match="feature 1: the geometry has a non-finite"):
        cube.ee.get_region([shapely.Point(-93, 36.1), shapely.Point(float("nan"), 0)])


# --- 3. geometries far outside the cube --------------------------------------------------------


@pytest.mark.parametrize(
    "far",
    [
        Geometry.BBox(10, 10, 10.1, 10.1),
        shapely.Point(120, 89),
        # The antipode of the UTM 15N cube: straight through the back of the transverse
        # Mercator, this box used to fold onto the cube and return 600 pixels of it.
        shapely.box(80, -10, 100, 10),
        shapely.LineString([(80, -10), (100, 10)]),
    ],
    ids=["bbox", "point", "antipodal-box", "antipodal-line"],
)
@pytest.mark.parametrize("grid", [{"crs": "native"}, {"scale": 30}], ids=["native", "scale30"])
def test_geometry_far_outside_the_cube_gives_the_header_alone(cube, far, grid):
    # The header alone, as in EE, and a warning: a miss is almost always a mistake.
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        assert cube.ee.getRegion(far, **grid) == [HEADER]
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        df = cube.ee.get_region(far, **grid)
    assert len(df) == 0 and list(df.columns) == HEADER


def test_a_huge_polygon_around_the_cube_covers_exactly_the_cube(cube):
    # A whole-world box reaches the back of the projection too; only the cube's pixels count.
    table = native(cube, shapely.box(-180, -90, 180, 90))
    assert len(table) - 1 == 20 * 30 * 3


# --- 4. geometries crossing the antimeridian --------------------------------------------------

GEO = {"crs": "EPSG:4326", "x0": 179.0, "y0": 1.0, "res": 0.5, "ny": 4, "nx": 4}


@pytest.mark.parametrize(
    "crossing",
    [
        shapely.Polygon([(179.5, -0.5), (-179.5, -0.5), (-179.5, 0.5), (179.5, 0.5)]),
        {"type": "Polygon", "coordinates": [[[179.5, -1], [-179.5, -1], [-179.5, 1], [179.5, -1]]]},
        shapely.LineString([(179.5, 0), (-179.5, 0)]),
    ],
    ids=["planar-polygon", "geojson", "line"],
)
def test_planar_polygon_jumping_across_the_antimeridian_is_refused_with_the_fixes(crossing):
    cube = make_cube(**GEO)
    with pytest.raises(GeometryError, match="crosses the antimeridian") as err:
        native(cube, crossing)
    message = str(err.value)
    assert "179.5" in message and "Split it at the antimeridian" in message
    assert "geometry_crs=" in message and "past 180" in message
    assert "add a vertex mid-edge if you mean the long way" in message


def test_antimeridian_feature_is_refused_naming_the_feature():
    cube = make_cube(**GEO)
    crossing = shapely.LineString([(179.5, 0), (-179.5, 0)])
    with pytest.raises(GeometryError, match="feature 'x': the geometry crosses the antimeridian"):
        cube.ee.get_region(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": "x",
                        "properties": {},
                        "geometry": crossing.__geo_interface__,
                    }
                ],
            }
        )


def test_bbox_west_of_east_across_the_antimeridian_is_refused_with_the_split():
    with pytest.raises(GeometryError, match="crossing the antimeridian") as err:
        Geometry.BBox(179, -1, -179, 1)
    assert "Geometry.BBox(179, -1, 180, 1), Geometry.BBox(-180, -1, -179, 1)" in str(err.value)
    assert "Geometry.BBox(179, -1, 181, 1)" in str(err.value)


@pytest.mark.parametrize(
    "fixed",
    [
        [Geometry.BBox(179.6, -1, 180, 1), Geometry.BBox(-180, -1, -179.6, 1)],
        shapely.MultiPolygon([shapely.box(179.6, -1, 180, 1), shapely.box(-180, -1, -179.6, 1)]),
        Geometry.BBox(179.6, -1, 180.4, 1),
        # Geodesic edges take the short way, so EE's polygon across the antimeridian is not
        # ambiguous: it is read with its longitudes made continuous (179.6..180.4).
        Geometry.Polygon([[179.6, -1], [-179.6, -1], [-179.6, 1], [179.6, 1]]),
    ],
    ids=["split-list", "split-multipolygon", "past-180", "geodesic-polygon"],
)
@pytest.mark.parametrize("x0", [179.0, -181.0], ids=["cube-179..181", "cube--181..-179"])
def test_the_suggested_antimeridian_fixes_cover_both_sides(fixed, x0):
    cube = make_cube(**{**GEO, "x0": x0})
    table = native(cube, fixed)
    # Columns 1 and 2 (centres x0+0.75, x0+1.25) of the 4 rows, in each of 3 images.
    assert len(table) - 1 == 8 * 3
    assert sorted({source_col(r[4]) for r in table[1:]}) == [1, 2]


@pytest.mark.parametrize(
    "form",
    [
        shapely.MultiPolygon([shapely.box(179.6, -1, 180, 1), shapely.box(-180, -1, -179.6, 1)]),
        shapely.box(179.6, -1, 180.4, 1),
        Geometry.Polygon([[179.6, -1], [-179.6, -1], [-179.6, 1], [179.6, 1]], geodesic=False),
    ],
    ids=["split", "past-180", "ee-planar-written-past-180"],
)
@pytest.mark.parametrize("grid", [{"crs": "native"}, {"scale": 5000}], ids=["native", "scale"])
def test_antimeridian_forms_give_the_same_rows_on_a_projected_cube(form, grid):
    # A UTM zone 60 cube straddling the antimeridian (lon 178.8 .. -179.4).
    cube = make_cube(crs="EPSG:32660", x0=700_000, y0=100_000, res=1000, ny=200, nx=200, nt=1)
    if isinstance(form, Geometry):
        with pytest.raises(GeometryError, match="crosses the antimeridian"):
            cube.ee.getRegion(form, **grid)
        form = Geometry.Polygon([[179.6, -1], [180.4, -1], [180.4, 1], [179.6, 1]], geodesic=False)
    reference = shapely.MultiPolygon(
        [shapely.box(179.6, -1, 180, 1), shapely.box(-180, -1, -179.6, 1)]
    )
    table = cube.ee.getRegion(form, **grid)
    assert len(table) > 500 and table == cube.ee.getRegion(reference, **grid)


@pytest.mark.parametrize(
    ("bbox", "x0", "nx", "ends"),
    [
        ((-170, -5, 170, 5), -180.0, 360, (-169.5, 169.5)),  # centres -179.5..179.5
        # centres 0..360; the centre on the western edge is out, on the eastern in (GDAL's rule)
        ((10, -5, 350, 5), -0.5, 361, (11.0, 350.0)),
    ],
    ids=["minus-170-to-170", "10-to-350"],
)
def test_bbox_wider_than_half_the_world_is_the_planar_box_not_a_crossing(bbox, x0, nx, ends):
    # EE's BBox is planar: a 340-degree box means 340 degrees. Its edges were once read as
    # jumps across the antimeridian and refused.
    box = Geometry.BBox(*bbox)
    assert box.shape.equals(shapely.box(*bbox))
    cube = make_cube(10, nx, 1, ["v"], crs="EPSG:4326", x0=x0, y0=5.0, res=1.0)
    table = native(cube, box)
    lons = sorted({row[1] for row in table[1:]})
    assert len(lons) == 340 and (lons[0], lons[-1]) == ends
    assert len(table) - 1 == 340 * 10


def test_whole_world_box_edges_along_the_antimeridian_and_poles_are_not_a_crossing():
    cube = make_cube(**GEO)
    assert len(native(cube, shapely.box(-180, -90, 180, 90))) - 1 == 16 * 3


# --- 5. a geographic cube across the antimeridian ----------------------------------------------


def test_cube_with_longitudes_179_to_181_is_read_as_one_regular_grid():
    grid = read_cube(make_cube(**GEO)).grid
    assert grid.transform == (0.5, 0.0, 179.0, 0.0, -0.5, 1.0)


def test_cube_with_longitudes_wrapped_to_minus_180_is_read_as_the_same_grid():
    cube = make_cube(**GEO)
    wrapped = cube.assign_coords(x=[179.25, 179.75, -179.75, -179.25])
    assert read_cube(wrapped).grid.transform == read_cube(cube).grid.transform
    point = shapely.Point(-179.25, -0.75)  # col 3, row 3
    assert values(native(wrapped, point)) == [903.0, 1000903.0, 2000903.0]
    assert native(wrapped, point) == native(cube, point)


@pytest.mark.parametrize("grid", [{"crs": "native"}, {"scale": 30}], ids=["native", "scale30"])
def test_geometry_in_minus_180_to_180_finds_cube_pixels_labelled_past_180(grid):
    cube = make_cube(**GEO)
    table = cube.ee.getRegion(shapely.Point(-179.25, -0.75), **grid)
    assert values(table) == [903.0, 1000903.0, 2000903.0]
    if "scale" in grid:
        # EE's grid labels longitudes in [-180, 180): EE's centre, (floor(lon / s) + 0.5) * s.
        s = 30 / 111319.49079327357
        assert table[1][1] == (math.floor(-179.25 / s) + 0.5) * s == -179.24987670897355
    else:
        # The cube's own grid keeps the cube's labelling: past 180 here.
        assert table[1][1] == 180.75


def test_0_to_360_cube_finds_a_point_at_minus_90():
    cube = make_cube(crs=None, ny=180, nx=360, nt=1, x0=0.0, y0=90.0, res=1.0)
    cube = cube.rename(y="lat", x="lon")
    point = shapely.Point(-90.5, 10.5)  # lon 269.5: col 269, row 79
    assert values(native(cube, point)) == [79 * 300 + 269]
    assert values(cube.ee.getRegion(point, scale=1000)) == [79 * 300 + 269]
    utm = cube.ee.getRegion(point, crs="EPSG:32615", scale=1000)
    assert values(utm) == [79 * 300 + 269]
    # A box across lon 0 takes the pixels on both ends of the cube, once each.
    across = native(cube, shapely.box(-2, 10, 2, 11))
    assert sorted(r[4] - 79 * 300 for r in across[1:]) == [0, 1, 358, 359]


def test_0_to_360_cube_with_both_ends_gives_each_place_once_on_its_own_grid():
    # Centres 0..360: the last column is the first one again (a cyclic column). On the cube's
    # own grid both once gave a row, so a place had two.
    cube = make_cube(10, 361, 1, ["v"], crs="EPSG:4326", x0=-0.5, y0=5.0, res=1.0)
    across = native(cube, shapely.box(-1, -4, 1, 4))
    # Centres -1 (= 359) and 1 lie on the box's edges: GDAL's rule takes the eastern one.
    assert sorted({row[1] for row in across[1:]}) == [0.0, 1.0]
    assert len(across) - 1 == 2 * 8
    world = shapely.box(-180, -4, 180, 4)
    table = native(cube, world)
    assert len(table) - 1 == 360 * 8
    assert len({(row[1] % 360, row[2]) for row in table[1:]}) == 360 * 8
    # 1 band, 1 image: the value count is the row count.
    assert cube.ee.plan(world, crs="native").n_values == len(table) - 1


# --- 6. non-monotonic and irregular coordinates ------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda x: x[[1, 0, *range(2, 30)]], r"'x' coordinate is not monotonic.*sortby\('x'\)"),
        (lambda x: np.r_[x[:1], x[:29]], r"'x' coordinate repeats.*drop_duplicates\('x'\)"),
        (lambda x: x + np.r_[0, 7, np.zeros(28)], r"'x' coordinate is not regular.*rio.reproject"),
        (lambda x: np.r_[x[:5], np.nan, x[6:]], r"'x' coordinate has a non-finite value nan"),
    ],
    ids=["non-monotonic", "duplicate", "irregular", "nan"],
)
def test_bad_x_coordinate_is_refused_naming_the_dim_and_the_fix(cube, edit, match):
    with pytest.raises(CubeError, match=match):
        native(cube.assign_coords(x=edit(cube.x.values)), utm_point(1, 1), geometry_crs=UTM)


def test_non_monotonic_y_coordinate_is_refused_naming_y(cube):
    y = cube.y.values[[0, 2, 1, *range(3, 20)]]
    with pytest.raises(CubeError, match=r"'y' coordinate is not monotonic.*sortby\('y'\)"):
        read_cube(cube.assign_coords(y=y))


def test_descending_x_is_monotonic_and_reads_the_right_pixels(cube):
    flipped = cube.isel(x=slice(None, None, -1))
    assert native(flipped, utm_point(1.5, 2.5), geometry_crs=UTM) == native(
        cube, utm_point(1.5, 2.5), geometry_crs=UTM
    )


# --- 7. a single-pixel cube ---------------------------------------------------------------


def test_single_pixel_cube_takes_its_size_from_the_written_transform(cube):
    one = cube.isel(x=[1], y=[2]).rio.write_transform(Affine(30, 0, 500_030, 0, -30, 3_999_940))
    assert read_cube(one).grid.transform == (30.0, 0.0, 500_030.0, 0.0, -30.0, 3_999_940.0)
    assert values(native(one, utm_point(1.9, 2.1), geometry_crs=UTM)) == [
        601.0,
        1000601.0,
        2000601.0,
    ]
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        assert native(one, utm_point(2.1, 2.1), geometry_crs=UTM) == [HEADER]


def test_single_pixel_cube_takes_its_size_from_a_stackstac_transform_attribute(cube):
    one = cube.isel(x=[1], y=[2]).assign_attrs(transform=Affine(30, 0, 500_000, 0, -30, 4_000_000))
    assert read_cube(one).grid.transform == (30.0, 0.0, 500_030.0, 0.0, -30.0, 3_999_940.0)


def test_single_pixel_cube_without_a_transform_is_refused_naming_write_transform(cube):
    with pytest.raises(CubeError, match=r"one pixel wide along 'x'.*rio.write_transform"):
        read_cube(cube.isel(x=[1], y=[2]))


# --- 8. duplicate times ---------------------------------------------------------------------


def test_images_with_equal_times_each_give_their_rows_with_their_ids(cube):
    same = cube.assign_coords(
        time=np.repeat(cube.time.values[:1], 3), id=("time", ["s1", "s2", "s3"])
    )
    table = native(same, utm_point(1.5, 2.5), geometry_crs=UTM)
    assert [(r[0], r[3], r[4]) for r in table[1:]] == [
        ("s1", 1609459200000, 601.0),
        ("s2", 1609459200000, 1000601.0),
        ("s3", 1609459200000, 2000601.0),
    ]
    df = same.ee.get_region(utm_point(1.5, 2.5), geometry_crs=UTM)
    assert df["id"].tolist() == ["s1", "s2", "s3"] and df["time"].nunique() == 1


# --- 9. integer bands with a nodata value ------------------------------------------------------


@pytest.mark.parametrize(
    "declare",
    [
        lambda c: c.assign_attrs(_FillValue=np.int16(601)),
        lambda c: c.assign_attrs(nodata=601),
        lambda c: c.rio.write_nodata(601),
        lambda c: c.rio.write_nodata(601, encoded=True),  # in .encoding, not .attrs
    ],
    ids=["_FillValue", "nodata-attr", "rio-nodata", "rio-nodata-encoded"],
)
def test_integer_nodata_is_none_in_getregion_and_na_in_a_nullable_int_column(declare):
    cube = declare(make_cube(dtype=np.int16))
    point = utm_point(1.5, 2.5)  # value 601 in band a of image 0
    table = native(cube, point, geometry_crs=UTM)
    wrapped = np.array([1000601, 2000601]).astype(np.int16).tolist()  # int16 overflow
    assert [r[4] for r in table[1:]] == [None, *wrapped]
    assert all(type(r[5]) is int for r in table[1:])
    df = cube.ee.get_region(point, geometry_crs=UTM)
    assert df["a"].dtype == "Int16" and df["b"].dtype == "Int16"
    assert df["a"].iloc[0] is pd.NA and df["a"].isna().tolist() == [True, False, False]


def test_float_nodata_in_encoding_is_not_applied_again():
    # xarray already decoded an encoded float fill value to NaN; a decoded value equal to
    # the raw fill value is real data.
    cube = make_cube().rio.write_nodata(601.0, encoded=True)
    assert values(native(cube, utm_point(1.5, 2.5), geometry_crs=UTM))[0] == 601.0


# --- 10. band names that are not strings --------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "names"),
    [((1, 2), ["1", "2"]), ((1.5, 2.0), ["1.5", "2.0"]), ((b"B4", b"B5"), ["B4", "B5"])],
    ids=["ints", "floats", "bytes"],
)
def test_non_string_band_labels_become_string_names(labels, names):
    table = native(make_cube(bands=labels), utm_point(1.5, 2.5), geometry_crs=UTM)
    assert table[0][4:] == names
    df = make_cube(bands=labels).ee.get_region(utm_point(1.5, 2.5), geometry_crs=UTM)
    assert list(df.columns[4:]) == names


@pytest.mark.parametrize("labels", [(1, 1), (1, "1")], ids=["same-int", "int-and-string"])
def test_band_labels_equal_as_strings_are_refused_with_the_rename(labels):
    with pytest.raises(CubeError, match=r"band names must be unique.*\['1'\].*assign_coords"):
        read_cube(make_cube(bands=labels))


# --- 11. a polygon with 100,000 vertices ---------------------------------------------------------


def test_polygon_with_100000_vertices_is_exact_and_takes_well_under_a_second_or_two():
    cube = make_cube(ny=200, nx=200, nt=2)
    lon0, lat0 = TO_LONLAT.transform(503_000, 3_997_000)
    angle = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    radius = 0.02 * (1 + 0.1 * np.sin(50 * angle))
    ring = np.column_stack([lon0 + radius * np.cos(angle), lat0 + 0.8 * radius * np.sin(angle)])
    polygon = shapely.Polygon(ring)
    assert shapely.get_num_coordinates(polygon) == 100_001
    start = time.perf_counter()
    table = native(cube, polygon)
    elapsed = time.perf_counter() - start
    # Measured 0.09 s (0.36 s as a geodesic Geometry.Polygon); the bound leaves room for a
    # loaded CI machine.
    assert elapsed < 5, f"{elapsed:.2f} s"
    # Exact: the pixels whose centre (in lon/lat, where the edges are straight) is inside.
    x, y = np.meshgrid(500_015 + 30 * np.arange(200), 3_999_985 - 30 * np.arange(200))
    lon, lat = TO_LONLAT.transform(x.ravel(), y.ravel())
    inside = shapely.contains_xy(polygon, lon, lat)
    assert 10_000 < inside.sum() == (len(table) - 1) / 2
    expected = sorted(np.flatnonzero(inside).tolist())
    got = sorted(int(r[4] // 300) * 200 + int(r[4] % 300) for r in table[1:] if r[0] == "0")
    assert got == expected


# --- 12. max_values of 0 or below ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, -1_048_576])
@pytest.mark.parametrize("call", ["getRegion", "get_region", "plan"])
def test_max_values_zero_or_negative_is_an_argument_error(cube, bad, call):
    kwargs = {"geometry_crs": UTM, "max_values": bad}
    if call != "get_region":  # its default is already the native grid
        kwargs["crs"] = "native"
    with pytest.raises(ArgumentError, match=f"max_values must be a positive integer.*got {bad}"):
        getattr(cube.ee, call)(utm_point(1, 1), **kwargs)


# --- 13. a crsTransform with shear or rotation ----------------------------------------------------


def test_sheared_crs_transform_is_supported_and_matches_a_hand_computed_pixel(cube):
    # x = 30*col + 10*row + 500000, y = -30*row + 4000000. The point (500045, 3999925) is at
    # row 2.5 and col (45 - 25) / 30 = 0.67: pixel (0, 2), whose centre (0.5, 2.5) is at
    # x = 15 + 25 + 500000 = 500040, y = 3999925: source pixel x = 1, y = 2, value 601.
    table = cube.ee.getRegion(
        shapely.Point(500_045, 3_999_925),
        crs=UTM,
        crsTransform=[30, 10, 500_000, 0, -30, 4_000_000],
        geometry_crs=UTM,
    )
    lon, lat = TO_LONLAT.transform(500_040, 3_999_925)
    assert [r[1:3] for r in table[1:]] == [[lon, lat]] * 3
    assert values(table) == [601.0, 1000601.0, 2000601.0]


def test_rotated_crs_transform_covers_the_pixel_centres_inside_a_polygon(cube):
    # A grid rotated 30 degrees; the polygon is the image of pixel-space box (1.2..2.8,
    # 0.2..1.8), which holds exactly the centres of pixels cols 1-2, rows 0-1.
    cos, sin = np.cos(np.pi / 6) * 30, np.sin(np.pi / 6) * 30
    t = [cos, -sin, 500_100.0, -sin, -cos, 3_999_800.0]

    def to_crs(col: float, row: float) -> tuple[float, float]:
        return t[0] * col + t[1] * row + t[2], t[3] * col + t[4] * row + t[5]

    polygon = shapely.Polygon(
        [to_crs(1.2, 0.2), to_crs(2.8, 0.2), to_crs(2.8, 1.8), to_crs(1.2, 1.8)]
    )
    table = cube.ee.getRegion(polygon, crs=UTM, crsTransform=t, geometry_crs=UTM)
    centres = [to_crs(c + 0.5, r + 0.5) for r, c in [(0, 1), (0, 2), (1, 1), (1, 2)]]
    lon, lat = TO_LONLAT.transform(*np.array(centres).T)
    image0 = [r for r in table[1:] if r[0] == "0"]
    assert [r[1:3] for r in image0] == [[a, b] for a, b in zip(lon, lat, strict=True)]
    # Each value is the source pixel containing the centre (nearest neighbour).
    for (x, y), row in zip(centres, image0, strict=True):
        col, line = int((x - 500_000) // 30), int((4_000_000 - y) // 30)
        assert row[4] == line * 300 + col


# --- 14. stackstac cubes: top-left or centre coordinates ---------------------------------------


def stackstac_like(xy_coords: str, nine: bool = True) -> xr.DataArray:
    """The make_cube() cube as stackstac builds it: x/y label pixel corners ('topleft', its
    default) or centres, attrs carry the Affine transform and 'crs', coords 'epsg' and 'id'."""
    base = make_cube(crs=None)
    half = 15.0 if xy_coords == "center" else 0.0
    transform = Affine(30, 0, 500_000, 0, -30, 4_000_000)
    return base.assign_coords(
        x=500_000 + 30 * np.arange(30) + half,
        y=4_000_000 - 30 * np.arange(20) - half,
        epsg=32615,
        id=("time", ["LC08_a", "LC08_b", "LC08_c"]),
    ).assign_attrs(
        crs="epsg:32615",
        transform=transform if nine else tuple(transform)[:6],
        resolution=30.0,
    )


@pytest.mark.parametrize("nine", [True, False], ids=["affine-9", "tuple-6"])
@pytest.mark.parametrize("xy_coords", ["topleft", "center"])
def test_stackstac_cube_reads_the_same_grid_with_corner_or_centre_coordinates(xy_coords, nine):
    grid = read_cube(stackstac_like(xy_coords, nine)).grid
    assert grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c,
        lambda c: c.isel(x=slice(5, None), y=slice(3, None)),  # attrs kept, coords shifted
        lambda c: c.sortby("y"),  # labels stay on the same (top) corners
        lambda c: c.chunk({"time": 1, "x": 7}),
    ],
    ids=["as-built", "sliced", "y-ascending", "dask"],
)
@pytest.mark.parametrize("xy_coords", ["topleft", "center"])
def test_stackstac_cube_gives_the_table_of_the_centre_labelled_cube(xy_coords, edit):
    reference = make_cube().assign_coords(id=("time", ["LC08_a", "LC08_b", "LC08_c"]))
    region = shapely.box(500_130, 3_999_800, 500_260, 3_999_900)  # pixels x 4-8, y 4-6
    expected = native(edit(reference), region, geometry_crs=UTM)
    got = native(edit(stackstac_like(xy_coords)), region, geometry_crs=UTM)
    assert len(expected) - 1 >= 3 * 3 and got == expected


def test_stackstac_coordinates_off_by_a_fraction_of_a_pixel_are_refused():
    shifted = stackstac_like("topleft")
    shifted = shifted.assign_coords(x=shifted.x + 7.0)
    with pytest.raises(CubeError, match=r"neither a pixel corner nor a pixel centre.*stale"):
        read_cube(shifted)


def test_stackstac_transform_attribute_after_coarsen_is_refused_as_stale():
    coarse = stackstac_like("center").coarsen(x=2, y=2).mean(keep_attrs=True)
    with pytest.raises(CubeError, match=r"transform attribute.*stale.*del cube.attrs"):
        read_cube(coarse)


def test_rotated_transform_attribute_is_refused():
    rotated = stackstac_like("topleft").assign_attrs(transform=(30, 5, 500_000, 0, -30, 4e6))
    with pytest.raises(CubeError, match=r"rotated or sheared.*rio.reproject"):
        read_cube(rotated)


def stackstac_dataset(bands: dict[str, xr.DataArray], assign: bool) -> xr.Dataset:
    """A Dataset of stackstac bands as users build one, attributes kept on the variables."""
    if assign:
        (first, array), *rest = bands.items()
        return array.to_dataset(name=first).assign(dict(rest))
    return xr.Dataset(bands)


@pytest.mark.parametrize("assign", [False, True], ids=["Dataset", "to_dataset-assign"])
def test_dataset_of_stackstac_topleft_bands_reads_the_transform_of_its_variables(assign):
    # xr.Dataset({...}) and to_dataset().assign() keep attrs['transform'] on the variables
    # only: the Dataset was once read with centre labels, half a pixel off.
    topleft = stackstac_like("topleft")
    bands = {b: topleft.sel(band=b, drop=True) for b in ("a", "b")}
    ds = stackstac_dataset(bands, assign)
    assert "transform" not in ds.attrs
    point = utm_point(1.5, 1.5)  # pixel x 1, y 1
    table = native(ds, point, geometry_crs=UTM)
    assert table[1][4:] == [301.0, 100301.0]
    assert table == native(topleft, point, geometry_crs=UTM)


@pytest.mark.parametrize("assign", [False, True], ids=["Dataset", "to_dataset-assign"])
def test_dataset_bands_with_different_transform_attributes_are_refused(assign):
    topleft = stackstac_like("topleft")
    moved = (30.0, 0.0, 500_015.0, 0.0, -30.0, 4_000_000.0)  # b's labels would be centres
    bands = {
        "a": topleft.sel(band="a", drop=True),
        "b": topleft.sel(band="b", drop=True).assign_attrs(transform=moved),
    }
    with pytest.raises(CubeError, match=r"transform attributes disagree.*del ds\['b'\]"):
        read_cube(stackstac_dataset(bands, assign))


def test_every_refusal_here_is_a_getregion_error():
    # One hierarchy: a caller catching GetRegionError catches all of the above.
    for error in (ArgumentError, CubeError, GeometryError):
        assert issubclass(error, GetRegionError) and issubclass(error, ValueError)
