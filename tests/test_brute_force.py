"""Property tests: ``getRegion`` equals the brute force of ``tests/brute.py``, row for row.

Each example draws a small cube (EPSG:4326, UTM 15N EPSG:32615, or polar stereographic
EPSG:3413 / EPSG:3031 around a pole; north-up or south-up; float with NaNs or int with a
nodata value), a working grid in every mode of docs/semantics.md section 3, a geometry and a
chunking (numpy or dask), and compares the real table with the brute force's exactly.

Geometries are drawn in the working grid's *pixel space* on a quarter-pixel lattice, so they
put points on grid lines and pixel corners, edges through pixel centres and lines along grid
lines and through corners: every tie the rules of section 4 have to settle. The lattice is
then mapped to the grid's CRS by its affine transform. Grids here are chosen so that this map
is exact both ways (integer metres, power-of-two degrees, EE's scale ``METRES_PER_DEGREE *
2**-k``), which the test checks, so the package sees the very ties drawn. Where it is not
exact (EE's ``scale=30`` in degrees) or the geometry is given in another CRS, polygon and
line vertices are moved off the lattice by an irrational-looking offset: their pixel-space
coordinates then carry rounding, and a centre within an ulp of an edge would make the float
arithmetic of any implementation, not the rules, decide.

Besides the test over everything, three narrower ones: polar stereographic cubes around their
pole on lon/lat grids (the pole is a whole row of such a grid, on none of the cube's edges),
EE's 1-degree default grid (which warns), and the pixel-space rules alone (``covered_pixels``
against the brute force's cells: cheap, so many more examples).

Run many more examples with ``HYPOTHESIS_PROFILE=thorough`` (see ``conftest.py``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import shapely
import xarray as xr
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st
from pyproj import CRS

from tests.brute import BruteGrid, brute_get_region, covered_cells, cube_grid, working_grid
from tests.helpers import chunked, make_cube, raise_if_dask_computes
from xr_getregion import GetRegionWarning
from xr_getregion.coverage import covered_pixels
from xr_getregion.grid import METRES_PER_DEGREE

Q = 4  # lattice: quarter pixels
# Off-lattice offset (in pixels) for vertices whose pixel coordinates cannot be exact.
OFF_LATTICE = (0.0314159265, 0.0271828182)
NODATA = -9999

# Where cubes are: a reference lon/lat, the CRSs of cubes and grids there, cube resolutions
# per CRS, and working-grid pixel sizes comparable to the cube's: metres for projected CRSs,
# k for EE's exact 2**-k degree pixels, and inexact metre scales for degrees (EE's own use).


@dataclass(frozen=True)
class Site:
    lonlat: tuple[float, float]
    crss: tuple[str, ...]
    cube_res: dict[str, tuple[float, ...]]
    metres: tuple[float, ...]
    degree_k: tuple[int, ...]
    inexact_scales: tuple[float, ...]


SITES = {
    "arkansas": Site(
        (-92.3, 34.6),
        ("EPSG:4326", "EPSG:32615", "EPSG:3413"),
        {"EPSG:4326": (2.0**-12, 2.0**-11), "EPSG:32615": (30.0, 60.0), "EPSG:3413": (32.0, 64.0)},
        (20.0, 30.0, 45.0, 60.0),
        (11, 12, 13),
        (30.0, 45.0),
    ),
    # Polar cubes have pixels a few times the grids': their pole can be rows deep inside.
    "north pole": Site(
        (-45.0, 90.0),
        ("EPSG:4326", "EPSG:3413"),
        {"EPSG:4326": (2.0**-6,), "EPSG:3413": (1000.0, 2000.0)},
        (500.0, 1000.0, 1500.0),
        (7, 8, 9),
        (300.0, 1000.0),
    ),
    "south pole": Site(
        (0.0, -90.0),
        ("EPSG:4326", "EPSG:3031"),
        {"EPSG:4326": (2.0**-6,), "EPSG:3031": (1000.0, 2000.0)},
        (500.0, 1000.0),
        (7, 8, 9),
        (300.0, 1000.0),
    ),
}


def to_crs(crs: str, x: Any, y: Any, src: str = "EPSG:4326") -> tuple[np.ndarray, np.ndarray]:
    t = pyproj.Transformer.from_crs(src, crs, always_xy=True)
    x, y = t.transform(x, y)
    return np.asarray(x, float), np.asarray(y, float)


def snap(value: float, step: float) -> float:
    return round(value / step) * step


# --- cubes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    site: Site
    cube: xr.DataArray
    scale: float | None
    crs: Any
    crs_transform: list[float] | None
    grid_exact: bool


def cube_data(nt: int, nb: int, ny: int, nx: int, integer: bool) -> np.ndarray:
    """Values that encode their position (as conftest's cube_values), some of them masked."""
    t, b, y, x = np.meshgrid(
        np.arange(nt), np.arange(nb), np.arange(ny), np.arange(nx), indexing="ij"
    )
    values = (t * 1_000_000 + b * 100_000 + y * 300 + x).astype(np.float64)
    values[(7 * y + 3 * x + t + b) % 5 == 0] = np.nan if not integer else NODATA
    return values.astype(np.int32 if integer else np.float32)


@st.composite
def cubes(draw: st.DrawFn, site: Site, crs: str, around: bool = False) -> xr.DataArray:
    """A small cube near the site's reference point (strictly ``around`` it if asked)."""
    ny, nx = draw(st.integers(2, 10)), draw(st.integers(2, 10))
    nt, nb = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    res = draw(st.sampled_from(site.cube_res[crs]))
    south_up = draw(st.booleans())
    integer = draw(st.booleans())
    # The reference point (a pole for the polar sites) falls inside the cube, on its edge or
    # a little outside: its lower-left corner is (kx, ky) pixels west and south of it.
    if around:
        kx, ky = draw(st.integers(1, nx - 1)), draw(st.integers(1, ny - 1))
    else:
        kx, ky = draw(st.integers(-2, nx + 2)), draw(st.integers(-2, ny + 2))
    rx, ry = to_crs(crs, *site.lonlat)
    x0 = snap(float(rx), res) - kx * res
    bottom = snap(float(ry), res) - ky * res
    if crs == "EPSG:4326":
        bottom = min(max(bottom, -90.0), 90.0 - ny * res)  # latitudes within [-90, 90]
    # make_cube's y0 is the top edge (north-up) or the bottom edge (south-up).
    y0 = bottom if south_up else bottom + ny * res
    cube = make_cube(
        ny,
        nx,
        nt,
        ["a", "b"][:nb],
        crs=crs,
        x0=x0,
        y0=y0,
        res=res,
        south_up=south_up,
        data=cube_data(nt, nb, ny, nx, integer),
    )
    if integer:
        cube.attrs["_FillValue"] = NODATA
    return cube


# --- working grids ----------------------------------------------------------------------------


def _transform_near(draw: st.DrawFn, crs: str, site: Site, cube: xr.DataArray) -> list[float]:
    """An exact transform in ``crs`` whose origin is near the cube: integer metres or
    power-of-two degrees, maybe flipped, maybe rotated by 45 degrees."""
    if crs == "EPSG:4326":
        s = 2.0 ** -draw(st.sampled_from(site.degree_k))
    else:
        s = draw(st.sampled_from(site.metres))
    g = cube_grid(cube)
    cx, cy = to_crs(crs, g.transform[2], g.transform[5], src=g.crs)
    c = s * (round(float(cx) / s) + draw(st.integers(0, Q - 1)) / Q)
    f = s * (round(float(cy) / s) + draw(st.integers(0, Q - 1)) / Q)
    if draw(st.booleans()):
        return [s, -s, c, s, s, f]  # rotated 45 degrees, pixels s * sqrt(2) wide
    a = s if draw(st.booleans()) else -s
    e = -s if draw(st.booleans()) else s
    return [a, 0.0, c, 0.0, e, f]


MODES = ("native", "scale", "crs+scale", "crs+transform", "transform")


@st.composite
def cases(
    draw: st.DrawFn,
    sites: tuple[str, ...] = tuple(sorted(SITES)),
    cube_crss: tuple[str, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    grid_crss: tuple[str, ...] | None = None,
    around: bool = False,
) -> Case:
    """A cube and a working grid, in any mode but EE's 1-degree default.

    ``cube_crss`` and ``grid_crss`` narrow the CRSs of the sites; ``modes`` the grid modes;
    ``around`` puts the site's reference point (a pole) strictly inside the cube.
    """
    site = SITES[draw(st.sampled_from(sites))]
    cube_crs = draw(st.sampled_from([c for c in site.crss if c in (cube_crss or site.crss)]))
    cube = draw(cubes(site, cube_crs, around))
    mode = draw(st.sampled_from(modes))
    if mode == "native":
        return Case(site, cube, None, "native", None, True)
    if mode in ("scale", "transform"):
        crs = "EPSG:4326"
    else:
        crs = draw(st.sampled_from([c for c in site.crss if c in (grid_crss or site.crss)]))
    passed_crs = None if mode in ("scale", "transform") else crs
    if mode.endswith("transform"):
        return Case(site, cube, None, passed_crs, _transform_near(draw, crs, site, cube), True)
    if crs != "EPSG:4326":
        return Case(site, cube, draw(st.sampled_from(site.metres)), passed_crs, None, True)
    if draw(st.booleans()):
        # METRES_PER_DEGREE * 2**-k metres: EE's scale conversion gives exactly 2**-k degrees.
        k = draw(st.sampled_from(site.degree_k))
        return Case(site, cube, METRES_PER_DEGREE * 2.0**-k, passed_crs, None, True)
    return Case(site, cube, draw(st.sampled_from(site.inexact_scales)), passed_crs, None, False)


# --- geometries, in pixel space around (0, 0) --------------------------------------------------

R = 10  # geometries span about 2R pixels around their anchor


def lattice(r: int = R) -> st.SearchStrategy[float]:
    return st.integers(-Q * r, Q * r).map(lambda m: m / Q)


def lattice_points(r: int = R) -> st.SearchStrategy[tuple[float, float]]:
    return st.tuples(lattice(r), lattice(r))


@st.composite
def boxes(draw: st.DrawFn) -> shapely.Polygon:
    x0, y0 = draw(lattice_points())
    w, h = draw(st.integers(1, Q * R)) / Q, draw(st.integers(1, Q * R)) / Q
    return shapely.box(x0, y0, x0 + w, y0 + h)


triangles = (
    st.tuples(lattice_points(), lattice_points(), lattice_points())
    .map(shapely.Polygon)
    .filter(lambda p: p.area > 0)
)


@st.composite
def stars(draw: st.DrawFn) -> shapely.Polygon:
    """A concave (star-shaped) polygon: lattice points in order of angle around their mean."""
    pts = np.array(draw(st.lists(lattice_points(), min_size=4, max_size=8, unique=True)))
    centre = pts.mean(axis=0)
    angle = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    poly = shapely.Polygon(pts[np.argsort(angle, kind="stable")])
    assume(poly.is_valid and poly.area > 0)
    return poly


@st.composite
def slivers(draw: st.DrawFn) -> shapely.Polygon:
    """A thin parallelogram, a quarter pixel wide across x or y, at any slope."""
    x0, y0 = draw(lattice_points())
    dx, dy = draw(lattice_points())
    assume(dx != 0 or dy != 0)
    w = (1 / Q, 0.0) if draw(st.booleans()) else (0.0, 1 / Q)
    poly = shapely.Polygon(
        [(x0, y0), (x0 + w[0], y0 + w[1]), (x0 + w[0] + dx, y0 + w[1] + dy), (x0 + dx, y0 + dy)]
    )
    assume(poly.is_valid and poly.area > 0)
    return poly


@st.composite
def notched(draw: st.DrawFn) -> shapely.Geometry:
    """A box minus a box: L, U and frame shapes (a hole when the second is inside)."""
    shape = draw(boxes()).difference(draw(boxes()))
    assume(not shape.is_empty)
    return shape


@st.composite
def holed(draw: st.DrawFn) -> shapely.Polygon:
    """A box or star with one or two triangular holes."""
    shell = draw(st.one_of(boxes(), stars()))
    holes = draw(st.lists(triangles, min_size=1, max_size=2))
    poly = shapely.Polygon(shell.exterior, [h.exterior for h in holes])
    assume(poly.is_valid)
    return poly


polygons = st.one_of(boxes(), triangles, stars(), slivers(), notched(), holed())

polylines = (
    st.lists(lattice_points(), min_size=2, max_size=5)
    .map(shapely.LineString)
    .filter(lambda line: line.length > 0)
)


@st.composite
def grid_line_segments(draw: st.DrawFn) -> shapely.LineString:
    """A line along a grid line (x or y an integer), possibly with a bend along another."""
    k = draw(st.integers(-R, R))
    a, b = draw(lattice()), draw(lattice())
    assume(a != b)
    pts = [(k, a), (k, b)] if draw(st.booleans()) else [(a, k), (b, k)]
    return shapely.LineString(pts)


@st.composite
def corner_lines(draw: st.DrawFn) -> shapely.LineString:
    """A straight line through pixel corners, from an integer point along (p, q) both ways,
    often far past the cube (where the package cuts it to the window)."""
    i, j = draw(st.integers(-R, R)), draw(st.integers(-R, R))
    p, q = draw(st.integers(-4, 4)), draw(st.integers(-4, 4))
    assume(p != 0 or q != 0)
    s, t = draw(st.integers(0, Q * 10)) / Q, draw(st.integers(1, Q * 10)) / Q
    return shapely.LineString([(i - s * p, j - s * q), (i + t * p, j + t * q)])


lines = st.one_of(polylines, grid_line_segments(), corner_lines())
points = st.one_of(
    lattice_points().map(shapely.Point),
    st.tuples(st.integers(-R, R), st.integers(-R, R)).map(shapely.Point),  # pixel corners
    st.lists(lattice_points(), min_size=1, max_size=6).map(shapely.MultiPoint),
)


def _flat(shapes: list[shapely.Geometry], kind: type) -> list[shapely.Geometry]:
    out = []
    for s in shapes:
        out.extend(s.geoms if hasattr(s, "geoms") else [s])
    return [s for s in out if isinstance(s, kind)]


multi = st.one_of(
    st.lists(polygons, min_size=2, max_size=3).map(
        lambda ps: shapely.MultiPolygon(_flat(ps, shapely.Polygon))
    ),
    st.lists(lines, min_size=2, max_size=3).map(shapely.MultiLineString),
    st.lists(st.one_of(points, lines, polygons), min_size=2, max_size=3).map(
        shapely.GeometryCollection
    ),
)
geometries = st.one_of(points, lines, polygons, multi)


def forward(transform: tuple[float, ...], xy: np.ndarray) -> np.ndarray:
    """Pixel space to the grid's CRS: the affine itself."""
    a, b, c, d, e, f = transform
    return np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f])


def pole_inside(cube: xr.DataArray) -> float | None:
    """The latitude of a pole strictly inside a projected cube, if any."""
    source = cube_grid(cube)
    if source.crs.is_geographic:
        return None
    for lat in (90.0, -90.0):
        x, y = to_crs(source.crs, 0.0, lat)
        px, py = source.to_pixel(x, y)
        rows, cols = source.shape  # type: ignore[misc]
        if 0 < float(px) < cols and 0 < float(py) < rows:
            return lat
    return None


def anchor_of(draw: st.DrawFn, cube: xr.DataArray, grid: BruteGrid) -> tuple[int, int]:
    """A working pixel near a random point of the cube (where rows are likely).

    On a lon/lat grid, a pole inside the cube is a row of pixels at every longitude: then
    the anchor is often a point of that row, at any longitude and often next to the
    antimeridian, which the cube's outline samples least.
    """
    lat = pole_inside(cube)
    if grid.crs.is_geographic and lat is not None and draw(st.booleans()):
        lon = draw(
            st.one_of(
                st.integers(-180 * Q, 180 * Q).map(lambda m: m / Q),
                st.integers(-24, 24).map(lambda k: math.copysign(180, k) - k / 8),
            )
        )
        step = float(np.hypot(grid.transform[3], grid.transform[4]))
        x, y = np.array([lon]), np.array([lat - math.copysign(step, lat) * draw(st.integers(0, 8))])
    else:
        source = cube_grid(cube)
        iy = draw(st.integers(0, cube.sizes["y"] - 1)) + draw(st.integers(0, Q - 1)) / Q
        ix = draw(st.integers(0, cube.sizes["x"] - 1)) + draw(st.integers(0, Q - 1)) / Q
        x, y = source.centre(np.array([ix]), np.array([iy]))  # centre: + 1/2 pixel
        x, y = to_crs(grid.crs, x, y, src=source.crs)
    px, py = grid.to_pixel(x, y)
    assume(np.isfinite(px).all() and np.isfinite(py).all())
    return math.floor(px[0]), math.floor(py[0])


@st.composite
def regions(
    draw: st.DrawFn, case: Case, shapes: st.SearchStrategy[shapely.Geometry] = geometries
) -> tuple[shapely.Geometry, str]:
    """A geometry near the case's cube, in the working grid's CRS or in another, and its CRS."""
    grid = working_grid(case.cube, case.scale, case.crs, case.crs_transform)
    col, row = anchor_of(draw, case.cube, grid)
    pixel_shape = draw(shapes)
    grid_crs = grid.crs.to_string()
    others = [c for c in case.site.crss if CRS.from_user_input(c) != grid.crs]
    # Mostly in the grid's CRS, where the lattice's ties reach the package intact.
    geometry_crs = draw(st.sampled_from(others)) if draw(st.integers(0, 2)) == 0 else grid_crs
    exact = case.grid_exact and geometry_crs == grid_crs
    if not exact:
        pixel_shape = off_lattice(pixel_shape)
    pixel_shape = shapely.transform(pixel_shape, lambda xy: xy + np.array([col, row]))
    world = shapely.transform(pixel_shape, lambda xy: forward(grid.transform, xy))
    if grid.crs.is_geographic:
        # Across the antimeridian the unbounded EE grid has pixels with lon > 180: the same
        # places as lon - 360 but other pixels, a question of its own. Not drawn here: the
        # pixels the brute force looks at (a pixel around the bounds) stay within +-180.
        a, b = grid.transform[:2]
        margin = 2 * (abs(a) + abs(b))
        lon = shapely.get_coordinates(world)[:, 0]
        assume(-180 < lon.min() - margin and lon.max() + margin < 180)
    if exact:
        # The test's premise: the lattice survives the round trip through the CRS exactly.
        xy = shapely.get_coordinates(world)
        back = np.column_stack(grid.to_pixel(xy[:, 0], xy[:, 1]))
        assert np.array_equal(back, shapely.get_coordinates(pixel_shape)), grid
    if geometry_crs != grid_crs:
        to_geometry_crs = pyproj.Transformer.from_crs(grid.crs, geometry_crs, always_xy=True)
        world = shapely.transform(
            world, lambda xy: np.column_stack(to_geometry_crs.transform(xy[:, 0], xy[:, 1]))
        )
        # Near a pole a shape can tear in another CRS; the package refuses invalid parts, and
        # lon/lat edges that jump half the world (the antimeridian's ambiguity).
        xy = shapely.get_coordinates(world)
        assume(np.isfinite(xy).all())
        assume(all(part.is_valid for part in _parts(world)))
        assume(not CRS.from_user_input(geometry_crs).is_geographic or np.ptp(xy[:, 0]) < 180)
    if CRS.from_user_input(geometry_crs).is_geographic:
        # A latitude past a pole is no place on Earth: refused, as test_geometry_crs_mistakes
        # checks, so not drawn here.
        assume(np.abs(shapely.get_coordinates(world)[:, 1]).max() <= 90)
    return world, geometry_crs


def _parts(shape: shapely.Geometry) -> list[shapely.Geometry]:
    if hasattr(shape, "geoms"):
        return [p for g in shape.geoms for p in _parts(g)]
    return [shape]


def off_lattice(shape: shapely.Geometry) -> shapely.Geometry:
    """Move line and polygon vertices off the lattice (see the module docstring). Points stay:
    their pixel is a floor of the same arithmetic on both sides, whatever the rounding."""
    if isinstance(shape, shapely.Point | shapely.MultiPoint):
        return shape
    if type(shape) is shapely.GeometryCollection:
        return shapely.GeometryCollection([off_lattice(g) for g in shape.geoms])
    return shapely.transform(shape, lambda xy: xy + OFF_LATTICE)


# --- the comparison ---------------------------------------------------------------------------


def chunkings(cube: xr.DataArray) -> st.SearchStrategy[tuple[int, ...] | None]:
    return st.one_of(st.none(), st.tuples(*(st.integers(1, n) for n in cube.shape)))


def assert_same_table(
    got: list[list[Any]],
    expected: list[list[Any]],
    open_rows: set[tuple[float, float]] = frozenset(),
) -> None:
    """The same table, row for row, once the rows of pixels the contract leaves open (within
    its tolerance of a reprojected edge) are taken out of both; the table may hold only
    rows the brute force holds."""
    if open_rows:
        kept = [r for r in got[1:] if (r[1], r[2]) in open_rows]
        assert all(r in expected for r in kept), kept
        got = [got[0], *(r for r in got[1:] if (r[1], r[2]) not in open_rows)]
        expected = [expected[0], *(r for r in expected[1:] if (r[1], r[2]) not in open_rows)]
    assert got[0] == expected[0]
    assert len(got) == len(expected), (len(got) - 1, len(expected) - 1)
    for g, e in zip(got[1:], expected[1:], strict=True):
        # Exact: the same pyproj operation on the same doubles gives the same bits.
        assert g == e, (g, e)
        assert [type(v) for v in g] == [type(v) for v in e], (g, e)


def check(case: Case, geometry: shapely.Geometry, geometry_crs: str, chunks: Any) -> None:
    note(f"cube {case.cube.rio.crs} {dict(case.cube.sizes)} {cube_grid(case.cube).transform}")
    note(f"scale={case.scale!r} crs={case.crs!r} crsTransform={case.crs_transform!r}")
    note(f"geometry_crs={geometry_crs} geometry={geometry.wkt}")
    note(f"chunks={chunks}")
    args = (geometry, case.scale, case.crs, case.crs_transform)
    expected, open_rows = brute_get_region(case.cube, *args, geometry_crs=geometry_crs)
    lazy = chunked(case.cube, chunks)
    default = case.scale is None and case.crs is None and case.crs_transform is None

    with raise_if_dask_computes(0), warnings.catch_warnings(record=True) as planning:
        warnings.simplefilter("always", GetRegionWarning)
        plan = lazy.ee.plan(*args, geometry_crs=geometry_crs)  # planning reads no chunk
    with raise_if_dask_computes(1), warnings.catch_warnings(record=True) as getting:
        warnings.simplefilter("always", GetRegionWarning)
        # The brute force samples the nearest native pixel at every scale: pyramids off
        # (their block values are checked against their own reference in test_pyramids.py).
        got = lazy.ee.getRegion(*args, geometry_crs=geometry_crs, max_values=None, pyramiding=None)
    assert_same_table(got, expected, open_rows)
    if open_rows:
        event("a pixel within the tolerance of a reprojected edge")
    for caught in (planning, getting):
        # EE's 1-degree default grid warns; so does a geometry that misses the cube, and
        # then it has no row.
        messages = [str(w.message) for w in caught if issubclass(w.category, GetRegionWarning)]
        missed = [m for m in messages if "misses the cube" in m]
        assert len(messages) == int(default) + len(missed) and len(missed) <= 1, messages
        assert not missed or len(got) == 1, missed
        if missed:
            event("the geometry misses the cube")
    # Shown by --hypothesis-show-statistics: what the examples exercised.
    mode = "native" if case.crs == "native" else f"scale={case.scale is not None}"
    event(f"grid {mode}, crs={case.crs}, transform={case.crs_transform is not None}")
    event(f"cube {case.cube.rio.crs}, geometry {geometry_crs}")
    event(f"{geometry.geom_type}: {'rows' if len(got) > 1 else 'no rows'}")
    event("numpy" if chunks is None else "dask")
    # The count the limit is checked against is the table's, before anything is read.
    assert (len(got) - 1) * case.cube.sizes["band"] == plan.n_values


@given(data=st.data())
def test_getregion_equals_the_brute_force(data: st.DataObject) -> None:
    case = data.draw(cases(), "case")
    geometry, geometry_crs = data.draw(regions(case), "region")
    chunks = data.draw(chunkings(case.cube), "chunks")
    check(case, geometry, geometry_crs, chunks)


@settings(max_examples=max(settings().max_examples // 2, 10))
@given(data=st.data())
def test_polar_cubes_on_lon_lat_grids_equal_the_brute_force(data: st.DataObject) -> None:
    # A polar stereographic cube around its pole, on a lon/lat grid: the pole is a whole row
    # of the grid inside the cube's footprint but on none of its edges.
    case = data.draw(
        cases(
            ("north pole", "south pole"),
            ("EPSG:3413", "EPSG:3031"),
            ("scale", "crs+scale", "transform"),
            ("EPSG:4326",),
            around=True,
        ),
        "case",
    )
    geometry, geometry_crs = data.draw(regions(case), "region")
    chunks = data.draw(chunkings(case.cube), "chunks")
    check(case, geometry, geometry_crs, chunks)


@st.composite
def default_cases(draw: st.DrawFn) -> Case:
    """EE's default grid (1-degree pixels, centres at x.5): a 4326 cube of 1/8-degree pixels
    around (-92.5, 34.5) that holds such a centre when it spans it."""
    ny, nx = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    res = 0.125
    south_up = draw(st.booleans())
    x0 = -93.0 + draw(st.integers(-4, 8)) * res
    bottom = 34.0 + draw(st.integers(-4, 8)) * res
    y0 = bottom if south_up else bottom + ny * res
    cube = make_cube(
        ny,
        nx,
        draw(st.integers(1, 2)),
        ["a", "b"][: draw(st.integers(1, 2))],
        crs="EPSG:4326",
        x0=x0,
        y0=y0,
        res=res,
        south_up=south_up,
    )
    return Case(SITES["arkansas"], cube, None, None, None, True)


@settings(max_examples=max(settings().max_examples // 4, 10))
@given(data=st.data())
def test_default_one_degree_grid_equals_the_brute_force(data: st.DataObject) -> None:
    case = data.draw(default_cases(), "case")
    small = st.one_of(points, lines, polygons, multi).map(
        lambda g: shapely.affinity.scale(g, 0.25, 0.25, origin=(0, 0))
    )
    geometry, geometry_crs = data.draw(regions(case, small), "region")
    chunks = data.draw(chunkings(case.cube), "chunks")
    check(case, geometry, geometry_crs, chunks)


@settings(max_examples=settings().max_examples * 4)
@given(
    shape=geometries,
    window=st.tuples(st.integers(-R, 0), st.integers(-R, 0), st.integers(1, R), st.integers(1, R)),
)
def test_pixel_space_coverage_equals_the_brute_force(shape, window):
    # The rules of section 4 alone, in pixel space, many more examples for their cost: every
    # lattice tie reaches the package exactly, and lines run far past the window.
    col0, row0, col1, row1 = window
    cols, rows = covered_pixels(shape, window)
    expected = sorted(
        ((c, r) for c, r in covered_cells(shape) if col0 <= c < col1 and row0 <= r < row1),
        key=lambda cell: (cell[1], cell[0]),
    )
    assert list(zip(cols.tolist(), rows.tolist(), strict=True)) == expected
