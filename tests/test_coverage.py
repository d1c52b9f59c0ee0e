"""Which pixels a geometry covers, in pixel space (docs/semantics.md section 4)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from tests.brute import brute_get_region
from tests.helpers import make_cube
from tests.test_brute_force import assert_same_table
from xr_getregion import Geometry
from xr_getregion.coverage import (
    CURVE_TOLERANCE,
    covered_pixels,
    covered_runs,
    follow_curves,
    to_pixel_space,
    window_of,
)
from xr_getregion.geometry import read_geometry
from xr_getregion.grid import Grid, working_grid

BIG = (-(10**7), -(10**7), 10**7, 10**7)


def pixels(shape, window=BIG):
    cols, rows = covered_pixels(shape, window)
    return list(zip(cols.tolist(), rows.tolist(), strict=True))


def brute_force_centres(poly, window):
    """Every pixel centre of the window tested one by one with shapely: obviously right."""
    col0, row0, col1, row1 = window
    out = []
    for row in range(row0, row1):
        for col in range(col0, col1):
            if poly.intersects(shapely.Point(col + 0.5, row + 0.5)):
                out.append((col, row))
    return out


def test_point_takes_the_containing_pixel_even_on_grid_lines_and_negative():
    assert pixels(shapely.Point(2.3, 5.9)) == [(2, 5)]
    assert pixels(shapely.Point(2.0, 5.0)) == [(2, 5)]  # a grid corner starts pixel (2, 5)
    assert pixels(shapely.Point(-0.5, -3.0)) == [(-1, -3)]
    assert pixels(shapely.Point(-1e-12, 0)) == [(-1, 0)]


def test_two_points_in_one_pixel_give_it_once_in_raster_order():
    shape = shapely.MultiPoint([(5.5, 1.2), (0.1, 3.3), (5.9, 1.8), (2.2, 1.1)])
    assert pixels(shape) == [(2, 1), (5, 1), (0, 3)]


def test_polygon_takes_pixels_whose_centre_is_inside():
    # Spans pixels 0..3 in x but holds the centres 1.5 and 2.5 only.
    assert pixels(shapely.box(0.9, 0.4, 3.1, 0.6)) == [(1, 0), (2, 0)]
    # Touches six pixels, contains two centres: the reference page's BBox situation.
    assert pixels(shapely.box(0.2, 0.3, 2.0, 0.8)) == [(0, 0), (1, 0)]


def test_polygon_containing_no_centre_covers_nothing():
    assert pixels(shapely.box(0.6, 0.6, 1.4, 1.4)) == []


def test_polygon_holes_are_respected():
    shell = shapely.box(0, 0, 6, 6)
    hole = shapely.box(2, 2, 4, 4)
    poly = shapely.Polygon(shell.exterior, [hole.exterior])
    got = pixels(poly)
    assert len(got) == 36 - 4
    assert (2, 2) not in got and (3, 3) not in got
    assert got == brute_force_centres(poly, (0, 0, 6, 6))


def test_centre_on_the_boundary_follows_gdal():
    # Centres (0.5, 0.5) and (1.5, 0.5) lie on the left and right edges: GDAL burns the right.
    assert pixels(shapely.box(0.5, 0.5, 1.5, 0.7)) == [(1, 0)]
    # A row's centre line on the bottom edge (lower row) counts, on the top edge it does not...
    assert pixels(shapely.box(0.2, 0.5, 0.8, 1.5)) == [(0, 0)]
    # ...except where pixel space mirrors the CRS (north-up grids): GDAL then also burns the
    # centres on the horizontal edge at the higher row (the southern one), in either ring
    # orientation, holes too.
    for box in (shapely.box(0.2, 0.5, 0.8, 1.5), shapely.box(0.2, 0.5, 0.8, 1.5, ccw=False)):
        cols, rows = covered_pixels(box, BIG, mirrored=True)
        assert list(zip(cols.tolist(), rows.tolist(), strict=True)) == [(0, 0), (0, 1)]
    # tests/test_reference_gdal.py checks all of this against GDAL itself.


def test_polygons_sharing_an_edge_through_centres_share_no_pixel():
    left = shapely.box(0, 0, 3.5, 4)
    right = shapely.box(3.5, 0, 7, 4)
    a, b = set(pixels(left)), set(pixels(right))
    assert not a & b
    assert a | b == set(pixels(shapely.box(0, 0, 7, 4)))
    tri1 = shapely.Polygon([(0.5, 0.5), (6.5, 0.5), (0.5, 6.5)])
    tri2 = shapely.Polygon([(6.5, 0.5), (6.5, 6.5), (0.5, 6.5)])
    assert not set(pixels(tri1)) & set(pixels(tri2))
    assert set(pixels(tri1)) | set(pixels(tri2)) == set(pixels(shapely.box(0.5, 0.5, 6.5, 6.5)))


def test_runs_count_without_listing_pixels():
    runs = covered_runs(shapely.box(-1e6, -1e6, 1e6, 1e6), (-50_000, -50_000, 50_000, 50_000))
    assert len(runs.row) == 100_000
    assert runs.n_pixels == 10**10  # counted from 100,000 runs, no pixel array built


def test_overlapping_parts_merge_into_one_run_per_row():
    shape = shapely.MultiPolygon([shapely.box(0, 0, 5, 1), shapely.box(3, 0, 9, 1)])
    runs = covered_runs(shape, BIG)
    assert runs.row.tolist() == [0] and (runs.c0[0], runs.c1[0]) == (0, 9)


def test_large_irregular_polygon_matches_brute_force_strip_by_strip():
    rng = np.random.default_rng(1)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(60, 140, 40)
    poly = shapely.Polygon(
        np.column_stack([150 + radii * np.cos(angles), 150 + radii * np.sin(angles)])
    )
    window = (0, 0, 300, 300)
    assert pixels(poly, window) == brute_force_centres(poly, window)


def test_thin_diagonal_polygon_matches_brute_force():
    poly = shapely.Polygon([(0, 0), (0.6, 0), (400.6, 300), (400, 300)])
    window = (-1, -1, 402, 302)
    got = pixels(poly, window)
    assert got == brute_force_centres(poly, window)
    assert 0 < len(got) < 2000


def test_polygon_is_clipped_to_the_window():
    got = pixels(shapely.box(-100, -100, 100, 100), (0, 0, 3, 2))
    assert got == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def test_line_takes_every_pixel_it_passes_through():
    # Diagonal through interior cells: the supercover without corner-only touches.
    assert pixels(shapely.LineString([(0.5, 0.5), (2.5, 1.5)])) == [(0, 0), (1, 0), (1, 1), (2, 1)]
    # Vertical line inside a column.
    assert pixels(shapely.LineString([(3.2, 0.1), (3.2, 2.9)])) == [(3, 0), (3, 1), (3, 2)]


def test_line_along_a_grid_line_takes_the_pixels_that_start_there():
    assert pixels(shapely.LineString([(2.0, 0.5), (2.0, 2.5)])) == [(2, 0), (2, 1), (2, 2)]


def test_line_through_a_corner_exactly_skips_the_corner_only_neighbours():
    got = pixels(shapely.LineString([(0.5, 0.5), (2.5, 2.5)]))
    assert got == [(0, 0), (1, 1), (2, 2)]


def test_line_matches_dense_sampling():
    line = shapely.LineString([(0.3, 0.7), (17.9, 5.2), (9.1, 13.4)])
    t = np.linspace(0, 1, 200_001)
    xy = np.concatenate(
        [
            np.column_stack([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])])
            for a, b in zip(line.coords[:-1], line.coords[1:], strict=True)
        ]
    )
    expected = sorted({(int(x), int(y)) for x, y in np.floor(xy)}, key=lambda p: (p[1], p[0]))
    assert pixels(line) == expected


def test_line_through_a_corner_past_the_window_keeps_its_exact_pixels():
    # The line runs along (-1, 3) through the corners (-1, 3) and (-2, 6) and far past the
    # window. Cutting it to the window used to round a new end vertex (x = -5/3), tilting it
    # by an ulp: it then crossed pixel (-1, 3) for a tiny length at the corner.
    line = shapely.LineString([(0, 0), (-3.5, 10.5)])
    window = (-3, 0, 1, 4)
    expected = [(-1, 0), (0, 0), (-1, 1), (-1, 2), (-2, 3)]
    assert pixels(line, window) == expected
    assert [p for p in pixels(line) if -3 <= p[0] < 1 and 0 <= p[1] < 4] == expected


def test_line_ending_on_the_window_edge_keeps_its_vertex_pixel():
    line = shapely.LineString([(0, 0.5), (-7.25, 0.5)])
    assert pixels(line, (0, 0, 3, 3)) == [(0, 0)]


def test_multipart_and_collections_are_the_union_each_pixel_once():
    shape = shapely.GeometryCollection(
        [
            shapely.Point(0.5, 0.5),
            shapely.box(0, 0, 2, 1),
            shapely.LineString([(1.5, 0.5), (1.5, 1.5)]),
        ]
    )
    assert pixels(shape) == [(0, 0), (1, 0), (1, 1)]


def test_ee_bbox_on_the_30m_grid_covers_exactly_two_pixels():
    shape, crs = read_geometry(Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197))
    grid = working_grid(None, scale=30)
    got = pixels(to_pixel_space(shape, crs, grid))
    assert len(got) == 2
    x, y = grid.centres(*np.array(got).T)
    assert x.tolist() == [-90.49614697490799, -90.49587748032275]
    assert y.tolist() == [34.85198299374928, 34.85198299374928]


def test_window_of_a_utm_cube_on_the_ee_grid_contains_its_footprint():
    cube_grid = Grid((30.0, 0, 700_000.0, 0, -30.0, 3_860_000.0), CRS.from_epsg(32615), (100, 200))
    grid = working_grid(None, scale=30)
    col0, row0, col1, row1 = window_of(cube_grid, grid)
    # The four corners of the cube land inside the window.
    from pyproj import Transformer

    t = Transformer.from_crs(32615, 4326, always_xy=True)
    lon, lat = t.transform(
        [700_000, 706_000, 700_000, 706_000], [3_860_000, 3_860_000, 3_857_000, 3_857_000]
    )
    px, py = grid.to_pixel(np.array(lon), np.array(lat))
    assert (px >= col0).all() and (px < col1).all() and (py >= row0).all() and (py < row1).all()
    # And the window is not much bigger than the footprint.
    assert (col1 - col0) < 250 and (row1 - row0) < 130


@pytest.mark.parametrize(("epsg", "lat"), [(3413, 90.0), (3031, -90.0)])
def test_window_of_a_polar_cube_on_a_lon_lat_grid_reaches_its_pole(epsg, lat):
    # The pole is inside the cube but on none of its edges; on a lon/lat grid it is a whole
    # row. The window once stopped at the edges' highest latitude, 5 km short of the pole.
    cube_grid = Grid((1000.0, 0, -5000.0, 0, -1000.0, 5000.0), CRS.from_epsg(epsg), (10, 10))
    step = 2.0**-7
    grid = Grid((step, 0, 0, 0, step, 0), CRS.from_epsg(4326))
    col0, row0, col1, row1 = window_of(cube_grid, grid)
    pole_row = lat / step  # the row starting (north) or ending (south) at the pole
    assert row0 <= pole_row - 1 and pole_row <= row1
    assert col0 <= -180 / step and 180 / step <= col1


@pytest.mark.parametrize("geodesic", [True, False])
def test_projected_geometry_edges_stay_straight_in_their_own_crs(geodesic):
    # A long planar lon/lat edge is densified before projecting, so its middle follows the
    # parallel (planar) or the great circle (geodesic), not the straight UTM chord.
    rect = Geometry.Rectangle([-93.5, 34.0, -90.5, 34.001], geodesic=geodesic)
    shape, crs = read_geometry(rect)
    grid = Grid((30.0, 0, 0.0, 0, -30.0, 4_000_000.0), CRS.from_epsg(32615))
    pixel_shape = to_pixel_space(shape, crs, grid)
    assert len(shapely.get_coordinates(pixel_shape)) > 20


# --- projected geometries that tear on a lon/lat grid (around a pole, across 180) -------------


def inside(table: list[list], shape: shapely.Geometry, crs: str) -> list[list]:
    """The rows of ``table`` whose pixel centre lies inside ``shape`` (in ``crs``)."""
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        [r[1] for r in table[1:]], [r[2] for r in table[1:]]
    )
    keep = shapely.contains_xy(shape, np.asarray(x), np.asarray(y))
    return [table[0], *(row for row, k in zip(table[1:], keep, strict=True) if k)]


def polar_shapes(sign: float) -> dict[str, shapely.Geometry]:
    big = shapely.box(-29_999, -29_999, 29_999, 29_999)
    return {
        "box": big,
        "annulus": big.difference(shapely.box(-9_999, -9_999, 9_999, 9_999)),  # hole at the pole
        "quadrant": shapely.Polygon([(0, 0), (29_999, 0), (0, sign * 29_999)]),  # pole as vertex
    }


@pytest.mark.parametrize("kind", ["box", "annulus", "quadrant"])
@pytest.mark.parametrize(("epsg", "cap"), [(3413, (89, 90)), (3031, (-90, -89))])
def test_projected_polygon_around_a_pole_covers_exactly_its_centres_on_a_lon_lat_grid(
    epsg, cap, kind
):
    # On a lon/lat grid the pole is a whole row and the polygon's outline does not close: it
    # once gave an empty table. Its rows must be those of a lon/lat cap over the whole cube
    # whose centre is inside it, tested in the polygon's own CRS.
    cube = make_cube(60, 60, 1, ["v"], crs=f"EPSG:{epsg}", x0=-30_000, y0=30_000, res=1000.0)
    shape = polar_shapes(-1.0 if epsg == 3031 else 1.0)[kind]
    reference = cube.ee.getRegion(shapely.box(-180, cap[0], 180, cap[1]), scale=10_000)
    assert len(reference) - 1 > 13_000  # the whole cube
    table = cube.ee.getRegion(shape, scale=10_000, geometry_crs=f"EPSG:{epsg}")
    expected = inside(reference, shape, f"EPSG:{epsg}")
    assert table == expected
    assert len(expected) - 1 > {"box": 13_000, "annulus": 9_000, "quadrant": 2_000}[kind]


def antimeridian_cube():
    """A 60 km EPSG:3413 cube centred on longitude 180, latitude 80."""
    x, y = Transformer.from_crs(4326, 3413, always_xy=True).transform(180.0, 80.0)
    x0, y0 = round(x / 1000) * 1000 - 30_000, round(y / 1000) * 1000 + 30_000
    return make_cube(60, 60, 1, ["v"], crs="EPSG:3413", x0=x0, y0=y0, res=1000.0), x0, y0


def test_lon_lat_window_of_a_projected_cube_across_the_antimeridian_misses_no_column():
    # The cube's outline jumps from 180 to -180 on a lon/lat grid: its window was once the
    # rest of the world, missing the columns near 180 between the outline's samples.
    cube, x0, y0 = antimeridian_cube()
    table = cube.ee.getRegion(shapely.box(170, 70, 190, 89), scale=1000)
    step = 1000 / 111319.49079327357
    cols = np.round(np.array([r[1] for r in table[1:]]) / step - 0.5).astype(int)
    rows = np.round(np.array([r[2] for r in table[1:]]) / step - 0.5).astype(int)
    # Every pixel of EE's grid (the columns of longitudes in [-180, 180)), near 180, whose
    # centre is inside the cube.
    turn = np.arange(math.floor(-180 / step), math.floor(np.nextafter(180, 0) / step) + 1)
    near = turn[np.abs(np.mod((turn + 0.5) * step, 360) - 180) < 5]
    cc, rr = (a.ravel() for a in np.meshgrid(near, np.arange(8800, 9000)))
    x, y = Transformer.from_crs(4326, 3413, always_xy=True).transform(
        (cc + 0.5) * step, (rr + 0.5) * step
    )
    hit = (x >= x0) & (x < x0 + 60_000) & (y <= y0) & (y > y0 - 60_000)
    expected = set(zip(cc[hit].tolist(), rr[hit].tolist(), strict=True))
    assert len(table) - 1 == len(expected) > 20_000
    assert set(zip(cols.tolist(), rows.tolist(), strict=True)) == expected


def test_projected_polygon_across_the_antimeridian_covers_exactly_its_centres():
    # Its lon/lat outline jumps a whole turn at 180: it once covered a third of its pixels.
    cube, x0, y0 = antimeridian_cube()
    shape = shapely.box(x0 + 5_000, y0 - 55_000, x0 + 55_000, y0 - 5_000)
    reference = cube.ee.getRegion(shapely.box(170, 70, 190, 89), scale=1000)
    table = cube.ee.getRegion(shape, scale=1000, geometry_crs="EPSG:3413")
    expected = inside(reference, shape, "EPSG:3413")
    assert len(expected) - 1 > 14_000 and table == expected


def test_projected_line_across_the_antimeridian_is_followed_continuously():
    # Its lon/lat image once jumped a whole turn at 180, taking every pixel along the way.
    cube, x0, y0 = antimeridian_cube()
    line = shapely.LineString([(x0 + 5_000, y0 - 55_000), (x0 + 55_000, y0 - 5_000)])
    # The same line as coverage.py sees it: densified in EPSG:3413, then in lon/lat written
    # with continuous longitudes (past -180).
    dense = shapely.get_coordinates(shapely.segmentize(line, line.length / 64))
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(*dense.T)
    lonlat = shapely.LineString(np.column_stack([np.unwrap(lon, period=360.0), lat]))
    lons = np.asarray(lonlat.xy[0])
    assert np.ptp(lons) < 5 and (np.abs(lons) > 180).any()  # continuous, across 180
    table = cube.ee.getRegion(line, scale=1000, geometry_crs="EPSG:3413")
    assert 300 < len(table) - 1 < 500
    assert table == cube.ee.getRegion(lonlat, scale=1000)


def test_rotated_lon_lat_grid_finds_a_point_of_a_polar_cube_across_180():
    # Found by the thorough profile: the cube (EPSG:3413, 1-3.6 km from the pole) spans lon
    # 135..180 and -180..-135. Its window was read with continuous longitudes (past 180), which
    # on a rotated grid is no shift of columns: the point's pixel, at lon -165.96, was outside.
    cube = make_cube(2, 2, 1, ["a"], crs="EPSG:3413", x0=-3000.0, y0=2000.0, res=1000.0)
    transform = [0.0078125, -0.0078125, -168.6875, 0.0078125, 0.0078125, 89.96875]
    point = shapely.Point(-3628.6194081511303, 2176.928847009779)
    table = cube.ee.getRegion(
        point, crs="EPSG:4326", crsTransform=transform, geometry_crs="EPSG:3413"
    )
    assert table[1:] == [["0", -165.9609375, 89.96875, 1609459200000, 0.0]]


def test_a_polygon_clipped_to_the_window_follows_its_curved_edges():
    # Found by the thorough profile: a lon/lat polygon near the pole on an EPSG:3413 grid,
    # clipped to the cube's window, was followed by other chords (1/64 of its extent) than
    # the whole polygon, and a centre near an edge changed sides with the window. Edges now
    # follow their curves to CURVE_TOLERANCE pixel, clipped or not: the table is the brute
    # force's, which tests each centre in lon/lat against the straight edges. The centre at
    # (-107.5256, 89.8699) lies closer to an edge than the tolerance: either answer is right.
    cube = make_cube(8, 6, 1, ["a"], crs="EPSG:3413", x0=-16000.0, y0=-2000.0, res=2000.0)
    polygon = shapely.Polygon(
        [
            (-117.30290307087735, 89.81862015934851),
            (-102.06037520035581, 89.89860002274244),
            (-101.33753463419605, 89.90052892985635),
            (-139.95265846683841, 89.9168982179727),
        ]
    )
    expected, open_rows = brute_get_region(cube, polygon, 1000.0, "EPSG:3413")
    assert open_rows == {(-107.52556837372288, 89.86994050177456)}
    table = cube.ee.getRegion(polygon, 1000.0, "EPSG:3413")
    assert_same_table(table, expected, open_rows)
    assert len(expected) - 1 == 28


@pytest.mark.parametrize(
    ("shape", "grid_crs", "transform"),
    [
        # A lon/lat line and polygon near the north pole on a 1 km polar stereographic grid.
        (
            shapely.LineString([(15.1546, 89.8799), (15.4527, 89.7291), (120.0, 89.5)]),
            "EPSG:3413",
            (1000.0, 0.0, 0.0, 0.0, -1000.0, 0.0),
        ),
        (
            shapely.Polygon([(-170.0, 80.0), (-10.0, 80.0), (100.0, 85.0), (-170.0, 80.0)]),
            "EPSG:3413",
            (5000.0, 0.0, 0.0, 0.0, -5000.0, 0.0),
        ),
        # A parallel across UTM zone 15 on 30 m pixels: bent by some metres in UTM.
        (
            shapely.LineString([(-96.0, 40.0), (-90.0, 40.0)]),
            "EPSG:32615",
            (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_500_000.0),
        ),
    ],
)
def test_reprojected_edges_are_followed_to_the_tolerance(shape, grid_crs, transform):
    # The contract (docs/semantics.md section 4): in pixel space, the chords stray from the
    # curves the straight edges become by at most CURVE_TOLERANCE pixels. Checked without
    # the package's own measure: each original edge is sampled at 2,000 points in lon/lat,
    # projected by pyproj, and its distance to the followed outline taken by shapely.
    grid = Grid(transform, CRS.from_user_input(grid_crs))
    followed = follow_curves(np.array([shape]), CRS.from_epsg(4326), grid)[0]
    to_grid = Transformer.from_crs("EPSG:4326", grid_crs, always_xy=True)

    def pixels(xy):
        x, y = to_grid.transform(xy[:, 0], xy[:, 1])
        return np.column_stack(grid.to_pixel(x, y))

    outline = shapely.transform(
        followed.boundary if followed.geom_type == "Polygon" else followed, pixels
    )
    xy = shapely.get_coordinates(shape.exterior if shape.geom_type == "Polygon" else shape)
    t = np.linspace(0.0, 1.0, 2000)[:, None]
    worst = 0.0
    for p, q in itertools.pairwise(xy):
        samples = pixels(p + t * (q - p))
        worst = max(worst, shapely.distance(outline, shapely.points(samples)).max())
    assert worst <= CURVE_TOLERANCE * 1.05
    # Not more chords than it takes: the followed outline is within a few times the count
    # that a chord of the tolerance's stray everywhere would need.
    assert len(shapely.get_coordinates(followed)) < 200_000


def test_edges_that_stay_straight_are_not_split():
    # A 100 m field in lon/lat on a 30 m UTM grid strays by far less than the tolerance:
    # it is returned as it is (a 100,000-field job pays for no vertices it does not need).
    field = shapely.box(-92.001, 34.7, -92.0, 34.701)
    grid = Grid((30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0), CRS.from_epsg(32615))
    shapes = np.array([field, shapely.Point(-92.0, 34.7)])
    out = follow_curves(shapes, CRS.from_epsg(4326), grid)
    assert out[0] is field and out[1] is shapes[1]
