"""Geometries whose numbers cannot be longitude/latitude, and geometries that miss the cube.

Both used to give the header alone, silently: UTM metres read as degrees, a latitude of 95,
latitude and longitude swapped. Numbers outside what longitude/latitude can be are refused
naming ``geometry_crs=``; a geometry that is lon/lat but misses the cube still gives the
header (as Earth Engine does), with a warning that names both extents in lon/lat. The
expected extents here come from pyproj transforming the cube's corners, not from the package.
"""

from __future__ import annotations

import json
import re
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

import xr_getregion
from tests.helpers import raise_if_dask_computes
from xr_getregion import Geometry, GeometryError, GetRegionWarning
from xr_getregion.cli import main

UTM = "EPSG:32615"
M = 111319.49079327357
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


@pytest.fixture(scope="module")
def col():
    return xr_getregion.sample_cube().sel(band=["B2", "B3"])


def header(col) -> list[str]:
    return ["id", "longitude", "latitude", "time", *map(str, col.band.values)]


# --- numbers that cannot be longitude/latitude ------------------------------------------------


@pytest.mark.parametrize(
    ("geometry", "named"),
    [
        (shapely.Point(720_000, 3_850_000), "3850000.0"),  # UTM metres, no geometry_crs
        (shapely.Point(10, 95), "95.0"),  # a latitude past the pole
        (shapely.Point(34.85, -90.49), "-90.49"),  # latitude and longitude swapped
        (shapely.Point(720.5, 34.85), "720.5"),  # longitude more than a turn past 180
        ("POINT (720000 3850000)", "3850000.0"),  # WKT
        ({"type": "Point", "coordinates": [720_000, 3_850_000]}, "3850000.0"),  # GeoJSON
    ],
    ids=["utm-metres", "lat-95", "swapped", "lon-720", "wkt", "geojson"],
)
@pytest.mark.parametrize("call", ["getRegion", "get_region", "plan"])
def test_numbers_that_cannot_be_lonlat_are_refused_naming_geometry_crs(col, geometry, named, call):
    with raise_if_dask_computes(), pytest.raises(GeometryError) as err:
        getattr(col.ee, call)(geometry, scale=30)
    message = str(err.value)
    assert "geometry_crs=" in message
    assert named in message
    assert "cannot be longitude/latitude" in message


def test_a_utm_polygon_gets_the_range_message_not_the_antimeridian_one(col):
    box = shapely.box(720_000, 3_850_000, 721_000, 3_851_000)
    with pytest.raises(GeometryError) as err:
        col.ee.getRegion(box, scale=30)
    message = str(err.value)
    assert "antimeridian" not in message
    assert "geometry_crs=" in message and "3850000.0" in message


def test_the_same_numbers_with_their_crs_give_rows(col):
    box = shapely.box(720_000, 3_850_000, 720_100, 3_850_100)
    table = col.ee.getRegion(box, scale=30, geometry_crs=UTM)
    assert len(table) > 1
    # A geographic geometry_crs does not make metres into degrees.
    with pytest.raises(GeometryError, match="geometry_crs="):
        col.ee.getRegion(box, scale=30, geometry_crs="EPSG:4269")


def test_ee_constructors_with_metres_are_refused_not_a_nan_valueerror(col):
    # Geodesic by default: densifying metres as degrees used to raise a bare ValueError.
    with pytest.raises(GeometryError, match="geometry_crs=") as err:
        col.ee.getRegion(
            Geometry.Polygon([[720_000, 3_850_000], [721_000, 3_850_000], [721_000, 3_851_000]]),
            scale=30,
        )
    assert "proj" in str(err.value)
    with pytest.raises(GeometryError, match="geometry_crs="):
        col.ee.getRegion(Geometry.Rectangle([720_000, 3_850_000, 721_000, 3_851_000]), scale=30)


def test_geometry_crs_overrides_an_ee_constructors_default_crs(col):
    coords = [720_000, 3_850_000, 720_300, 3_850_200]
    given = col.ee.getRegion(Geometry.Rectangle(coords), scale=30, geometry_crs=UTM)
    built = col.ee.getRegion(Geometry.Rectangle(coords, UTM), scale=30)
    assert given == built and len(built) > 1


@pytest.mark.parametrize("lon", [-540.0, 540.0, 269.51, -90.49 - 360])
def test_longitudes_within_a_turn_and_a_half_are_read(col, lon):
    # Longitudes past 180 are accepted (EE accepts them, and boxes across the antimeridian
    # are written so): up to 540, one more turn past either labelling, -180..180 or 0..360.
    point = shapely.Point(lon, 34.85)
    if np.mod(lon + 90.49 + 180, 360) - 180 == pytest.approx(0):
        # The same place as -90.49: the same rows.
        assert col.ee.getRegion(point, scale=30) == col.ee.getRegion(
            shapely.Point(-90.49, 34.85), scale=30
        )
    else:
        with pytest.warns(GetRegionWarning, match="misses the cube"):
            assert col.ee.getRegion(point, scale=30) == [header(col)]


@pytest.mark.parametrize("lon", [-540.001, 540.001, 629.51])
def test_longitudes_past_540_are_refused(col, lon):
    with pytest.raises(GeometryError, match="geometry_crs=") as err:
        col.ee.getRegion(shapely.Point(lon, 34.85), scale=30)
    assert repr(lon) in str(err.value)


def test_latitude_exactly_90_is_read(col):
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        assert col.ee.getRegion(shapely.Point(0, 90), scale=30) == [header(col)]


# --- feature tables ----------------------------------------------------------------------------


def metre_boxes() -> list[shapely.Polygon]:
    return [
        shapely.box(720_000 + 500 * i, 3_850_000, 720_100 + 500 * i, 3_850_100) for i in range(3)
    ]


def test_a_geodataframe_without_crs_holding_metres_is_refused_naming_the_feature(col):
    gdf = gpd.GeoDataFrame({"name": ["a", "b", "c"]}, geometry=metre_boxes(), crs=None)
    with raise_if_dask_computes(), pytest.raises(GeometryError) as err:
        col.ee.get_region(gdf, scale=30)
    message = str(err.value)
    assert "geometry_crs=" in message and "set_crs" in message
    assert "3 of 3 features" in message and "position 0" in message
    assert "3850000.0" in message and "antimeridian" not in message
    # With its CRS, the same table gives rows.
    assert len(col.ee.get_region(gdf.set_crs(UTM), scale=30)) > 0
    assert len(col.ee.get_region(gdf, scale=30, geometry_crs=UTM)) > 0


def test_one_bad_feature_among_good_ones_is_named_by_id_and_position(col):
    shapes = [shapely.Point(-90.49, 34.85), shapely.Point(-90.48, 34.84), shapely.Point(10, 95)]
    gdf = gpd.GeoDataFrame(geometry=shapes, index=["p", "q", "r"], crs="EPSG:4326")
    with pytest.raises(GeometryError) as err:
        col.ee.get_region(gdf, scale=30)
    message = str(err.value)
    assert "feature 'r' (position 2)" in message and "1 of 3 features" in message
    assert "95.0" in message
    # A plain list of geometries: the position.
    with pytest.raises(GeometryError, match=r"feature 2 \(position 2\)"):
        col.ee.get_region(shapes, scale=30)
    # A list of EE constructors: their position, too.
    ee_shapes = [Geometry.Point(-90.49, 34.85), Geometry.Point(10, 95)]
    with pytest.raises(GeometryError, match="feature 1") as err:
        col.ee.get_region(ee_shapes, scale=30)
    assert "geometry_crs=" in str(err.value)


def test_a_geojson_feature_collection_in_metres_is_refused(col):
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "f1",
                "properties": {},
                "geometry": shapely.geometry.mapping(box),
            }
            for box in metre_boxes()[:1]
        ],
    }
    with pytest.raises(GeometryError, match=r"feature 'f1' \(position 0\)"):
        col.ee.get_region(fc, scale=30)
    with pytest.raises(GeometryError, match="geometry_crs="):
        col.ee.getRegion(fc, scale=30)  # one region: the union


# --- geometries that miss the cube ---------------------------------------------------------


def cube_lonlat_bounds(cube) -> tuple[float, float, float, float]:
    """The sample cube's corners in lon/lat, by pyproj (an extent of 30 km: its edges are
    straight in lon/lat to well under 1e-3 degrees)."""
    x = [float(cube.x.min()) - 15, float(cube.x.max()) + 15]
    y = [float(cube.y.min()) - 15, float(cube.y.max()) + 15]
    lon, lat = TO_LONLAT.transform([x[0], x[0], x[1], x[1]], [y[0], y[1], y[0], y[1]])
    return min(lon), min(lat), max(lon), max(lat)


def spans(message: str, who: str) -> tuple[float, ...]:
    num = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
    found = re.search(who + f" spans? longitude {num} to {num}, latitude {num} to {num}", message)
    assert found, message
    w, e, s, n = map(float, found.groups())
    return w, s, e, n


@pytest.mark.parametrize("grid", [{"scale": 30}, {"crs": "native"}], ids=["scale30", "native"])
def test_a_geometry_missing_the_cube_gives_the_header_and_a_warning_naming_both_extents(col, grid):
    far = Geometry.BBox(10.0, 50.0, 10.5, 50.25)
    with pytest.warns(GetRegionWarning) as record:
        table = col.ee.getRegion(far, **grid)
    assert table == [header(col)]
    assert len(record) == 1
    message = str(record[0].message)
    assert "misses the cube" in message and "EPSG:4326" in message
    assert spans(message, "geometry") == pytest.approx((10.0, 50.0, 10.5, 50.25), abs=1e-6)
    assert spans(message, "the cube") == pytest.approx(cube_lonlat_bounds(col), abs=2e-3)
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        df = col.ee.get_region(far, **grid)
    assert len(df) == 0 and list(df.columns) == header(col)


def test_a_utm_geometry_missing_the_cube_names_its_lonlat_extent(col):
    # A box in UTM 15N metres, 100 km west of the cube: bounds reported in lon/lat.
    box = shapely.box(600_000, 3_850_000, 601_000, 3_851_000)
    with pytest.warns(GetRegionWarning, match="misses the cube") as record:
        assert col.ee.getRegion(box, scale=30, geometry_crs=UTM) == [header(col)]
    lon, lat = TO_LONLAT.transform([600_000, 601_000], [3_850_000, 3_851_000])
    w, s, e, n = spans(str(record[0].message), "geometry")
    assert (w, s, e, n) == pytest.approx((min(lon), min(lat), max(lon), max(lat)), abs=1e-3)


def test_a_geometry_inside_the_cube_covering_no_centre_gives_the_header_without_warning(col):
    # A 1 m box inside one 30 m pixel, away from its centre: an empty table, no warning
    # (pytest turns GetRegionWarning into an error here).
    x0, y0 = float(col.x[10]) + 3, float(col.y[10]) + 3
    tiny = shapely.box(x0, y0, x0 + 1, y0 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GetRegionWarning)
        assert col.ee.getRegion(tiny, crs="native", geometry_crs=UTM) == [header(col)]


def test_features_missing_the_cube_warn_once_with_how_many(col):
    shapes = [shapely.Point(-90.49, 34.85), shapely.Point(10, 50), shapely.Point(11, 51)]
    with pytest.warns(GetRegionWarning) as record:
        df = col.ee.get_region(shapes, scale=30)
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 of 3 features miss the cube" in message
    w, s, e, n = spans(message, "they")
    assert (w, s, e, n) == pytest.approx((10, 50, 11, 51))
    assert df["feature"].unique().tolist() == [0]
    # All of them: still one warning.
    with pytest.warns(GetRegionWarning) as record:
        df = col.ee.get_region(shapes[1:], scale=30)
    assert len(record) == 1 and "2 of 2 features miss the cube" in str(record[0].message)
    assert len(df) == 0


def test_many_far_point_features_warn_once(col):
    rng = np.random.default_rng(0)
    points = gpd.GeoDataFrame(
        geometry=gpd.points_from_xy(rng.uniform(0, 20, 5000), rng.uniform(40, 60, 5000)),
        crs="EPSG:4326",
    )
    with pytest.warns(GetRegionWarning) as record:
        df = col.ee.get_region(points, scale=30)
    assert len(record) == 1 and "5000 of 5000 features" in str(record[0].message)
    assert len(df) == 0


def test_a_far_point_on_a_small_native_cube_warns(cube):
    with pytest.warns(GetRegionWarning, match="misses the cube"):
        assert cube.ee.getRegion(shapely.Point(120, 89), crs="native") == [
            ["id", "longitude", "latitude", "time", "a", "b"]
        ]


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("geometry_crs")
    cube = xr_getregion.sample_cube().isel(x=slice(700, 760), y=slice(0, 60))
    cube = cube.sel(band=["B2", "B3"]).chunk({"time": 1, "band": 1, "y": 30, "x": 30})
    cube.to_dataset("band").to_zarr(root / "cube.zarr")
    x0, y0 = float(cube.x[5]), float(cube.y[5])
    metres = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "a"},
                "geometry": shapely.geometry.mapping(shapely.box(x0, y0 - 200, x0 + 200, y0)),
            }
        ],
    }
    (root / "metres.geojson").write_text(json.dumps(metres))
    far = gpd.GeoDataFrame({"name": ["a"]}, geometry=[shapely.box(10, 50, 10.1, 50.1)], crs=4326)
    far.to_file(root / "far.geojson", driver="GeoJSON")
    return root


def extract(files, features: str, out, *flags: str) -> int:
    """The CLI's ``extract`` of the test cube over ``features``, written to ``out``."""
    command = ["extract", str(files / "cube.zarr"), "--geometry", str(files / features)]
    return main([*command, "--out", str(out), *flags])


def test_cli_metres_in_a_geojson_exit_2_with_one_line(files, capsys):
    out = files / "metres.csv"
    code = extract(files, "metres.geojson", out)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1
    assert "geometry-crs" in err and "cannot be longitude/latitude" in err


def test_cli_geometry_crs_option_reads_the_metres(files, capsys):
    out = files / "metres_utm.csv"
    code = extract(files, "metres.geojson", out, "--geometry-crs", UTM)
    assert code == 0, capsys.readouterr().err
    assert len(pd.read_csv(out)) > 0


def test_cli_features_missing_the_cube_print_a_warning_and_write_the_header(files, capsys):
    out = files / "far.csv"
    code = extract(files, "far.geojson", out)
    captured = capsys.readouterr()
    assert code == 0
    warning = [line for line in captured.err.splitlines() if "miss the cube" in line]
    assert len(warning) == 1 and warning[0].startswith("xr-getregion: warning:")
    assert "1 of 1 features" in warning[0]
    assert len(pd.read_csv(out)) == 0
