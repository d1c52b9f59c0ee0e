"""Independent reference: the pixels a polygon covers, as GDAL's rasterizer finds them.

Nothing here comes from the package or from ``tests/brute.py``: the expected pixel set is
``rasterio.features.rasterize`` (GDAL's ``GDALRasterizeGeometries``, ``all_touched=False``,
what rioxarray ``clip``, rasterstats and geocube use) of the polygon on the grid's own affine
transform, and the package's answer is read off its table. Each cube pixel holds its own
number (``row * ncols + col``), so a table's values *are* the source pixels it took; on a
working grid the table's longitudes and latitudes give the working pixels back exactly.

Polygons are drawn with their vertices on multiples of half a pixel, so their edges run
through pixel centres and their vertices sit on centres: slopes 0, +-1, +-2, +-1/2 and others,
holes, multi-polygons whose parts share an edge, and both ring orientations and any starting
vertex. The grids are chosen so that the map between CRS coordinates and pixels is exact in
binary (whole metres on a 30 m grid, powers of two in degrees), so GDAL and the package see the
very same ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import shapely
import xarray as xr
from affine import Affine
from hypothesis import assume, given
from hypothesis import strategies as st
from rasterio.features import rasterize

import xr_getregion  # also registers .ee

# The cube: UTM 15N, 30 m pixels, 40 x 40, north-up, origin on whole metres.
NX = NY = 40
RES = 30.0
X0, Y0 = 500_010.0, 4_000_020.0  # the top-left corner
CUBE_TRANSFORM = Affine(RES, 0.0, X0, 0.0, -RES, Y0)
# The same place stored south-up (y ascending): GDAL's tie rule differs with the handedness.
SOUTH_UP = Affine(RES, 0.0, X0, 0.0, RES, Y0 - NY * RES)
METRES_PER_DEGREE = 111319.49079327357  # EE's constant, typed here, not imported


def _cube(crs: str, transform: Affine, nx: int = NX, ny: int = NY) -> xr.DataArray:
    """One image, one band: each pixel holds ``row * nx + col`` (int32); centre coords."""
    values = (np.arange(ny)[:, None] * nx + np.arange(nx)[None, :]).astype(np.int32)
    xs = transform.c + transform.a * (np.arange(nx) + 0.5)
    ys = transform.f + transform.e * (np.arange(ny) + 0.5)
    cube = xr.DataArray(
        values[None, None],
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(["2021-06-01"], dtype="datetime64[ms]"),
            "band": ["px"],
            "y": ys,
            "x": xs,
        },
    )
    return cube.rio.write_crs(crs)


def _gdal_pixels(polygon: shapely.Geometry, transform: Affine, shape: tuple[int, int]) -> set:
    burned = rasterize(
        [(polygon, 1)], out_shape=shape, transform=transform, all_touched=False, dtype="uint8"
    )
    rows, cols = np.nonzero(burned)
    return set(zip(cols.tolist(), rows.tolist(), strict=True))


# -- polygons on the half-pixel lattice, in pixel units ----------------------------------------

SLOPES = [(1, 1), (1, -1), (2, 1), (2, -1), (1, 2), (1, -2)]  # (dy, dx) steps


@st.composite
def lattice_polygons(draw: st.DrawFn, n: int = NX) -> shapely.Geometry:
    """A valid polygon with vertices on multiples of half a pixel inside ``[1, n - 1]``."""
    half = st.integers(min_value=2, max_value=2 * n - 2).map(lambda v: v / 2)
    kind = draw(
        st.sampled_from(
            ["triangle", "quad", "box", "diamond", "parallelogram", "holed", "two_boxes"]
        )
    )
    if kind in ("triangle", "quad"):
        n = 3 if kind == "triangle" else 4
        pts = [(draw(half), draw(half)) for _ in range(n)]
        poly = shapely.Polygon(pts)
    elif kind == "box":
        x0, x1 = sorted((draw(half), draw(half)))
        y0, y1 = sorted((draw(half), draw(half)))
        poly = shapely.box(x0, y0, x1, y1)
    elif kind == "diamond":
        cx, cy = draw(half), draw(half)
        r = draw(st.integers(1, 16)) / 2
        poly = shapely.Polygon([(cx - r, cy), (cx, cy - r), (cx + r, cy), (cx, cy + r)])
    elif kind == "parallelogram":
        dy, dx = draw(st.sampled_from(SLOPES))
        x0, y0 = draw(half), draw(half)
        w = draw(st.integers(1, 20)) / 2
        k = draw(st.integers(1, 8)) / 2
        poly = shapely.Polygon(
            [(x0, y0), (x0 + w, y0), (x0 + w + k * dx, y0 + k * dy), (x0 + k * dx, y0 + k * dy)]
        )
    elif kind == "holed":
        x0, y0 = draw(half), draw(half)
        w, h = draw(st.integers(6, 24)) / 2, draw(st.integers(6, 24)) / 2
        hx, hy = x0 + draw(st.integers(1, 3)) / 2, y0 + draw(st.integers(1, 3)) / 2
        hole = shapely.Polygon(
            [(hx, hy), (hx + 1.5, hy), (hx + 1.5, hy + 1.0), (hx + 0.5, hy + 2.0)]
        )
        poly = shapely.Polygon(
            shapely.box(x0, y0, x0 + w, y0 + h).exterior.coords, [hole.exterior.coords]
        )
    else:  # two boxes sharing an edge
        x0, x1, x2 = sorted((draw(half), draw(half), draw(half)))
        y0, y1 = sorted((draw(half), draw(half)))
        poly = shapely.MultiPolygon([shapely.box(x0, y0, x1, y1), shapely.box(x1, y0, x2, y1)])
    assume(not poly.is_empty and poly.is_valid and poly.area > 0)
    assume(shapely.box(1, 1, n - 1, n - 1).contains(poly))
    # Either orientation, any starting vertex.
    if draw(st.booleans()):
        poly = shapely.reverse(poly)
    shift = draw(st.integers(0, 5))
    return _rotate_start(poly, shift)


def _rotate_start(poly: shapely.Geometry, shift: int) -> shapely.Geometry:
    def ring(coords: np.ndarray) -> np.ndarray:
        open_ring = coords[:-1]
        k = shift % len(open_ring)
        rolled = np.roll(open_ring, -k, axis=0)
        return np.vstack([rolled, rolled[:1]])

    parts = []
    for p in shapely.get_parts(poly):
        shell = ring(np.asarray(p.exterior.coords))
        holes = [ring(np.asarray(h.coords)) for h in p.interiors]
        parts.append(shapely.Polygon(shell, holes))
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _to_crs(poly: shapely.Geometry, transform: Affine) -> shapely.Geometry:
    """Pixel units to CRS coordinates by the affine (exact for these grids)."""
    return shapely.transform(poly, lambda xy: np.column_stack(transform * (xy[:, 0], xy[:, 1])))


# -- the cube's own grid -------------------------------------------------------------------------


@given(poly=lattice_polygons(), transform=st.sampled_from([CUBE_TRANSFORM, SOUTH_UP]))
def test_native_grid_pixels_equal_gdal(poly: shapely.Geometry, transform: Affine) -> None:
    """On the cube's own grid the table's source pixels are exactly GDAL's burned pixels."""
    cube = _cube("EPSG:32615", transform)
    geom = _to_crs(poly, transform)
    expected = _gdal_pixels(geom, transform, (NY, NX))
    df = cube.ee.get_region(geom, geometry_crs="EPSG:32615", max_values=None)
    ids = df["px"].to_numpy()
    got = {(int(v) % NX, int(v) // NX) for v in ids}
    assert len(ids) == len(got)  # each pixel once
    assert got == expected


# -- a working grid of another size and origin (crs + crsTransform) ------------------------------

# 60 m working pixels whose corners sit on the cube's pixel centres: every working centre
# lies on a cube pixel corner, every half-working-pixel vertex on a working centre or edge.
WORK_TRANSFORM = Affine(60.0, 0.0, X0 + 15.0, 0.0, -60.0, Y0 - 15.0)
NW = NX // 2 - 1
WORK_SOUTH_UP = Affine(60.0, 0.0, X0 + 15.0, 0.0, 60.0, Y0 - 15.0 - NW * 60.0)


@given(poly=lattice_polygons(NW), t=st.sampled_from([WORK_TRANSFORM, WORK_SOUTH_UP]))
def test_working_grid_pixels_equal_gdal(poly: shapely.Geometry, t: Affine) -> None:
    """With ``crs`` + ``crsTransform``, the working pixels are GDAL's burned pixels of that
    grid, and each takes the cube pixel holding its centre."""
    cube = _cube("EPSG:32615", CUBE_TRANSFORM)
    geom = _to_crs(poly, t)
    expected = _gdal_pixels(geom, t, (NW, NW))
    # 60 m on a 30 m cube is pyramid level 1; this checks the nearest pixel: pyramids off.
    table = cube.ee.getRegion(
        geom,
        crs="EPSG:32615",
        crsTransform=[t.a, t.b, t.c, t.d, t.e, t.f],
        geometry_crs="EPSG:32615",
        max_values=None,
        pyramiding=None,
    )
    rows = table[1:]
    # The cube pixel of each working centre, by plain affine arithmetic on the reference side.
    want_ids = set()
    for col, row in expected:
        x, y = t * (col + 0.5, row + 0.5)
        c, r = ~CUBE_TRANSFORM * (x, y)
        want_ids.add(int(np.floor(r)) * NX + int(np.floor(c)))
    got_ids = [r[4] for r in rows]
    assert len(got_ids) == len(set(got_ids))
    assert set(got_ids) == want_ids


def test_working_grid_is_exact_for_the_lattice() -> None:
    """The grids above map half-pixel lattice points to CRS coordinates and back exactly."""
    for t in (CUBE_TRANSFORM, SOUTH_UP, WORK_TRANSFORM, WORK_SOUTH_UP):
        u = np.arange(0, 80) / 2
        x, y = t * (u, u)
        back = ~t * (x, y)
        np.testing.assert_array_equal(back[0], u)
        np.testing.assert_array_equal(back[1], u)


# -- EE's lon/lat grid (scale only) --------------------------------------------------------------

# A scale whose EE pixel is 2**-10 degrees exactly, on a lon/lat cube of 2**-8 degree pixels.
SCALE = METRES_PER_DEGREE / 1024
S = 1 / 1024
GEO_TRANSFORM = Affine(4 * S, 0.0, -90.5, 0.0, -4 * S, 35.0)


@given(poly=lattice_polygons(4 * NX))
def test_ee_scale_grid_pixels_equal_gdal(poly: shapely.Geometry) -> None:
    """With ``scale`` alone (EE's lon/lat grid, origin (0, 0), positive y step), the working
    pixels are GDAL's burned pixels of that grid."""
    cube = _cube("EPSG:4326", GEO_TRANSFORM)
    # EE's working grid: x = S*col, y = S*row (positive y step), origin (0, 0). A window of
    # it over the cube: columns from -90.5 / S, rows from (35 - 40 * 4 * S) / S.
    col0 = round(-90.5 / S)
    row0 = round((35.0 - NY * 4 * S) / S)
    window = Affine(S, 0.0, col0 * S, 0.0, S, row0 * S)
    # Half-working-pixel lattice, inside the cube (which spans 160 x 160 working pixels).
    geom = _to_crs(poly, window)
    expected = _gdal_pixels(geom, window, (4 * NY, 4 * NX))
    table = xr_getregion.getRegion(cube, geom, scale=SCALE, max_values=None)
    got = {
        (int(np.floor(lon / S)) - col0, int(np.floor(lat / S)) - row0)
        for lon, lat in ((r[1], r[2]) for r in table[1:])
    }
    assert len(table) - 1 == len(got)
    assert got == expected


# -- the cases the trust issue names, pinned -----------------------------------------------------


@pytest.mark.parametrize("transform", [CUBE_TRANSFORM, SOUTH_UP], ids=["north-up", "south-up"])
def test_a_centre_on_a_holes_corner_follows_gdal(transform: Affine) -> None:
    # Found by the thorough profile: a centre at the corner where a hole's edge facing the
    # higher rows meets its edge facing the higher columns. GDAL burns no such centre.
    hole = [(1.25, 1.5), (1.5, 1.5), (1.5, 1.75), (1.25, 1.75)]
    poly = shapely.Polygon([(1, 1), (1.75, 1), (1.75, 2), (1, 2)], [hole])
    cube = _cube("EPSG:32615", transform)
    geom = _to_crs(poly, transform)
    expected = _gdal_pixels(geom, transform, (NY, NX))
    df = cube.ee.get_region(geom, geometry_crs="EPSG:32615")
    assert {(int(v) % NX, int(v) // NX) for v in df["px"]} == expected


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    "coords",
    [
        [(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)],  # square, edges through centres
        [(1.5, 1.5), (5.5, 1.5), (1.5, 5.5)],  # triangle, diagonal through centres
        [(3.5, 0.5), (6.5, 3.5), (3.5, 6.5), (0.5, 3.5)],  # diamond, vertices on centres
    ],
)
def test_named_ties_equal_gdal(coords: list[tuple[float, float]], reverse: bool) -> None:
    poly = shapely.Polygon(coords[::-1] if reverse else coords)
    cube = _cube("EPSG:32615", CUBE_TRANSFORM)
    geom = _to_crs(poly, CUBE_TRANSFORM)
    expected = _gdal_pixels(geom, CUBE_TRANSFORM, (NY, NX))
    df = cube.ee.get_region(geom, geometry_crs="EPSG:32615")  # the cube's own grid
    got = {(int(v) % NX, int(v) // NX) for v in df["px"]}
    assert got == expected
