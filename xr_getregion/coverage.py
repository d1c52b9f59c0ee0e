"""Which pixels of a grid a geometry covers (docs/semantics.md section 4).

Everything here works in the grid's *pixel space*: the geometry is transformed once so that
pixel ``(col, row)`` is the unit square ``[col, col+1) x [row, row+1)``. Then

- a point covers the pixel containing it (``floor``, so a point on a grid line belongs to the
  pixel that starts there);
- a polygon covers every pixel whose centre lies inside it (holes respected); a centre exactly
  on the boundary follows GDAL's rasterizer (``all_touched=False``) to the rounding (see
  :func:`_polygon_runs`), so this package, rioxarray ``clip``, rasterstats and geocube agree
  on every polygon, ties included;
- a line covers every pixel its open segments pass through, plus the pixels of its vertices;
- a multi-part geometry or a collection covers the union of its parts' pixels, each once.

Work is bounded by a window (the cube's footprint on the grid). Polygons are filled by a
scanline that yields runs of pixels per row, so covered pixels are *counted* from the runs
(for the value limit) before any is listed; lines are walked crossing by crossing. The cost
grows with the geometry's outline and the covered pixels, never with the whole grid.

A geometry in another CRS has edges straight there and curved in the grid's pixel space:
they are followed by chords within :data:`CURVE_TOLERANCE` pixel of the curves
(:func:`follow_curves`). One exception keeps a table exact where an outline cannot: a
polygon in a projected CRS that goes around a pole or across the antimeridian has no
faithful outline on a lon/lat grid (there the pole is a whole row, and the outline jumps a
turn at 180), and near a pole (one spanning over a degree of longitude) a lon/lat pixel is
far wider in degrees than in metres, so a thousandth of a pixel across a nearly flat edge
is hundreds of pixels along it. Their pixels are found by testing the centres they can reach
in their own CRS: a test per pixel of their lon/lat bounds.

On EE's lon/lat working grids (``scale`` or ``crsTransform`` given, no ``crs`` or a
geographic one) each place has the pixel of its longitude in [-180, 180), as in EE: the
columns are those of [-180, 180), and the last one's centre may lie a little past 180 (a turn
is no whole number of pixels). The cube's own grid keeps the cube's labelling (0..360).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import shapely
from pyproj import CRS

from xr_getregion.errors import GeometryError, TooManyValuesError
from xr_getregion.geometry import (
    EPSG4326,
    TURN,
    GeometryType,
    edge_lines,
    flat_parts,
    is_line,
    long_edges,
)
from xr_getregion.grid import METRES_PER_DEGREE, Grid, Window, transformer

__all__ = [
    "CURVE_TOLERANCE",
    "MAX_WORK",
    "Runs",
    "Window",
    "covered_pixels",
    "covered_runs",
    "covered_runs_many",
    "expand_runs",
    "follow_curves",
    "grid_too_fine",
    "poles_inside",
    "reaches_window",
    "to_pixel_space",
    "to_pixel_space_many",
    "window_of",
    "work_of",
]


#: An edge straight in a geometry's own CRS is a curve in another CRS's pixel space. It is
#: followed there by chords that stray from that curve by at most this many pixels (measured
#: at a quarter, half and three quarters of each chord), so a pixel centre, or a pixel's
#: corner for a line, can fall on the wrong side of a reprojected edge only when it lies
#: closer to it than this (docs/semantics.md section 4).
CURVE_TOLERANCE = 1e-3
_STRAY_AT = np.array([0.25, 0.5, 0.75])
# A chord is not split below this share of its geometry's extent: where a projection tears
# (a line through a pole), no chord follows the jump, and splitting must stop somewhere.
_SHORTEST_CHORD = 1e-12
_FOLLOW_ROUNDS = 60
# A chord's stray shrinks with the square of its length: one round splits a chord straying
# by s into ceil(sqrt(s / CURVE_TOLERANCE)) pieces, at most this many.
_MOST_PIECES = 4096
# More vertices than this in one geometry's followed outline is refused: no cube's pixels
# need it, and memory would (a geometry drawn in the wrong CRS, across a projection's edge).
_MOST_VERTICES = 1_000_000


def _project(xy: np.ndarray, src: CRS, grid: Grid, *, wrap: bool = False) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    if src != grid.crs:
        x, y = transformer(src, grid.crs).transform(x, y)
    if wrap:
        # Points on an EE lon/lat grid: their pixel is that of the longitude in [-180, 180).
        x = _minus_180_to_180(np.asarray(x, dtype=float))
    px, py = grid.to_pixel(np.asarray(x), np.asarray(y))
    return np.column_stack([px, py])


def _minus_180_to_180(lon: np.ndarray) -> np.ndarray:
    """Longitudes in [-180, 180). A turn added or taken away is exact for |lon| <= 540 (the
    difference of two doubles within a factor of two of each other), so a place labelled past
    180 gets the very pixel of its label in [-180, 180)."""
    with np.errstate(invalid="ignore"):
        out = np.where(lon >= 180.0, lon - TURN, np.where(lon < -180.0, lon + TURN, lon))
        far = (out >= 180.0) | (out < -180.0)
    if far.any():
        out[far] = np.mod(out[far] + 180.0, TURN) - 180.0
    return out


def _ee_columns(grid: Grid) -> tuple[int, int] | None:
    """The columns ``[k0, k1)`` of an EE lon/lat working grid (geographic, axis-aligned,
    unbounded: ``scale`` or ``crsTransform`` given): those of longitudes in [-180, 180),
    where EE's grid holds every place once. ``None`` for other grids (the cube's own grid
    keeps the cube's labelling, 0..360 included).
    """
    if grid.shape is not None or not (grid.crs.is_geographic and grid.axis_aligned):
        return None
    ends, _ = grid.to_pixel(np.array([-180.0, np.nextafter(180.0, 0.0)]), np.zeros(2))
    k = np.floor(ends)
    return int(k.min()), int(k.max()) + 1


def to_pixel_space(shape: shapely.Geometry, crs: CRS, grid: Grid) -> shapely.Geometry:
    """Transform one geometry into ``grid``'s pixel space; see :func:`to_pixel_space_many`."""
    return to_pixel_space_many(np.array([shape], dtype=object), crs, grid)[0]


def to_pixel_space_many(
    shapes: np.ndarray, crs: CRS, grid: Grid, window: Window | None = None
) -> np.ndarray:
    """Transform an array of geometries (in ``crs``) into ``grid``'s pixel space at once.

    When the CRS changes, edges are split first (:func:`follow_curves`), so an edge straight
    in ``crs`` is followed as the curve it is in the grid's pixel space. Points that cannot
    be projected (outside the CRS's domain) become NaN and cover nothing; lines and polygons
    that cannot are an error.

    Given the ``window`` the pixels will be looked for in, lines and polygons are first
    clipped (in their own CRS, so exactly) to the window's area: a part far away, where the
    grid's projection tears (the back of a transverse Mercator), cannot fold onto the cube.
    On a geographic grid, geometries are also moved by whole turns of 360 degrees to where
    the window is, so a cube labelled 0..360 (or 179..181) and a geometry labelled -180..180
    meet. On EE's lon/lat working grids (:func:`_ee_columns`) that is EE's own turn,
    longitudes in [-180, 180): points take the pixel of their longitude there, lines are
    cut at 180, and polygons near it are copied a turn over (:func:`_ee_longitudes`).

    On a geographic grid, with a ``window``, a projected line whose lon/lat image jumps
    across the antimeridian is read with continuous longitudes, and a projected polygon
    around a pole, across the antimeridian or (on an axis-aligned grid) over a degree wide
    in longitude is replaced by boxes of the window pixels whose centre it holds, found
    exactly by :func:`_centre_test`.

    Raises
    ------
    GeometryError
        A line or polygon cannot be projected, or tears on a rotated lon/lat grid.
    """
    shapes = np.asarray(shapes, dtype=object)
    differs = crs != grid.crs
    if differs and window is not None:
        shapes = _clip_to_window(shapes, crs, grid, window)
    # A projected geometry around a pole or across the antimeridian tears on a lon/lat grid:
    # its outline there jumps a whole turn, and around a pole it does not even close.
    tearing = differs and window is not None and grid.crs.is_geographic and not crs.is_geographic
    torn = _around_a_pole(shapes, crs, grid) if tearing else np.zeros(len(shapes), bool)
    clipped = shapes
    has_edges = shapely.get_dimensions(shapes) > 0
    if differs and has_edges.any():
        shapes = follow_curves(shapes, crs, grid, exact=torn)
    ee = window is not None and grid.shape is None and grid.crs.is_geographic
    points = shapely.get_dimensions(shapes) == 0
    out = np.empty(len(shapes), dtype=object)
    out[~points] = shapely.transform(shapes[~points], lambda xy: _project(xy, crs, grid))
    out[points] = shapely.transform(shapes[points], lambda xy: _project(xy, crs, grid, wrap=ee))
    if tearing:
        torn |= _jumps_a_turn(out, grid)
        if grid.axis_aligned:
            torn |= _wide(out, grid)
    if differs and has_edges.any():
        coords = shapely.get_coordinates(out[has_edges & ~torn])
        if not np.isfinite(coords).all():
            raise GeometryError(
                f"the geometry cannot be projected from {crs.to_string()} to the working grid's "
                f"CRS {grid.crs.to_string()}: part of it lies outside that CRS's domain. "
                "Clip it to the area of the cube or choose another crs=."
            )
    exact: dict[int, shapely.Geometry] = {}
    if torn.any() and window is not None:
        out, exact = _mend_torn(clipped, out, torn, crs, grid, window)
    if ee and window is not None and grid.axis_aligned:
        out = _ee_longitudes(out, grid, window)
    elif window is not None and grid.crs.is_geographic and grid.axis_aligned:
        out = _wrap_longitudes(out, grid, window)
    for k, boxes in exact.items():
        # Already in the window's turn of longitudes: added after the wrapping.
        out[k] = shapely.GeometryCollection([out[k], boxes])
    return out


def _stray(start: np.ndarray, end: np.ndarray, crs: CRS, grid: Grid) -> np.ndarray:
    """For each edge from ``start`` to ``end`` (``(n, 2)`` coordinates in ``crs``, straight
    there), how far its image in ``grid``'s pixel space strays from the chord joining the
    images of its ends, in pixels, measured at :data:`_STRAY_AT`. NaN where a point cannot be
    projected (outside the CRS's domain; the caller refuses or drops those)."""
    t = np.concatenate([[0.0, 1.0], _STRAY_AT])
    xy = start[None] + t[:, None, None] * (end - start)[None]
    x, y = transformer(crs, grid.crs).transform(xy[..., 0].ravel(), xy[..., 1].ravel())
    x = np.asarray(x, dtype=float).reshape(len(t), -1)
    y = np.asarray(y, dtype=float).reshape(len(t), -1)
    if grid.crs.is_geographic:
        # Longitudes read continuously from the edge's start: an edge across the antimeridian
        # is a short curve, not a chord across the world (the tearing is handled apart).
        with np.errstate(invalid="ignore"):
            x = x[0] + np.mod(x - x[0] + TURN / 2, TURN) - TURN / 2
    col, row = grid.to_pixel(x, y)
    p = np.stack([col, row], axis=-1)
    a, b, samples = p[0], p[1], p[2:]
    ab = b - a
    with np.errstate(invalid="ignore", divide="ignore"):
        along = np.einsum("kni,ni->kn", samples - a, ab) / np.einsum("ni,ni->n", ab, ab)
        along = np.clip(np.nan_to_num(along, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
        off = samples - a - along[..., None] * ab
        return np.hypot(off[..., 0], off[..., 1]).max(axis=0)


def _split_chords(xy: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """The vertices ``xy`` with edge ``i`` split into ``pieces[i]`` equal parts (in the
    coordinates given); every original vertex is kept exactly."""
    edge = np.repeat(np.arange(len(pieces)), pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    t = (np.arange(len(edge)) - first) / pieces[edge]
    out = xy[edge] + t[:, None] * (xy[edge + 1] - xy[edge])
    return np.concatenate([out, xy[-1:]])


def _follow_line(xy: np.ndarray, shortest: float, crs: CRS, grid: Grid) -> np.ndarray:
    """The vertices of one line or ring, edges split until every chord strays from its
    curve by at most :data:`CURVE_TOLERANCE` pixels (see :func:`follow_curves`)."""
    for _ in range(_FOLLOW_ROUNDS):
        if len(xy) < 2:
            return xy
        stray = _stray(xy[:-1], xy[1:], crs, grid)
        length = np.hypot(*(xy[1:] - xy[:-1]).T)
        with np.errstate(invalid="ignore"):
            bad = (stray > CURVE_TOLERANCE) & (length > shortest)
        if not bad.any():
            return xy
        pieces = np.ones(len(stray), np.int64)
        pieces[bad] = np.clip(np.ceil(np.sqrt(stray[bad] / CURVE_TOLERANCE)), 2, _MOST_PIECES)
        if pieces.sum() > _MOST_VERTICES:
            raise _too_bent(crs, grid)
        xy = _split_chords(xy, pieces)
    return xy


def _too_bent(crs: CRS, grid: Grid) -> GeometryError | TooManyValuesError:
    """The refusal of edges that would take more than :data:`_MOST_VERTICES` chords: a
    ``TooManyValuesError`` when the pixels are under a metre (a scale in degrees, as the
    other refusals of too fine a grid), else a ``GeometryError``."""
    error = TooManyValuesError if _degrees_hint(grid) else GeometryError
    return error(
        f"the geometry's edges, straight in {crs.to_string()}, bend so much over the pixels "
        f"of the working grid (in {grid.crs.to_string()}) that following them to "
        f"{CURVE_TOLERANCE} pixel would take over {_MOST_VERTICES:,} vertices. "
        + _degrees_hint(grid)
        + "Clip the geometry to the area of the cube, pass it in the grid's CRS, or pass a "
        "coarser scale=."
    )


def _follow_shape(
    shape: shapely.Geometry, crs: CRS, grid: Grid, polygons: bool = True
) -> shapely.Geometry:
    """``shape`` (in ``crs``) with the edges of its lines and rings split (see
    :func:`follow_curves`), rebuilt part by part; its polygons left as they are unless
    ``polygons``."""
    xmin, ymin, xmax, ymax = shape.bounds
    shortest = _SHORTEST_CHORD * max(math.hypot(xmax - xmin, ymax - ymin), 1e-300)

    def follow(line: shapely.Geometry) -> np.ndarray:
        return _follow_line(shapely.get_coordinates(line), shortest, crs, grid)

    def rebuild(g: shapely.Geometry) -> shapely.Geometry:
        kind = shapely.get_type_id(g)
        if g.is_empty or kind in (GeometryType.POINT, GeometryType.MULTIPOINT):
            return g
        if kind == GeometryType.LINESTRING:
            return shapely.LineString(follow(g))
        if kind == GeometryType.LINEARRING:
            return shapely.LinearRing(follow(g))
        if kind == GeometryType.POLYGON:
            if not polygons:
                return g
            return shapely.Polygon(follow(g.exterior), [follow(r) for r in g.interiors])
        return type(g)([rebuild(part) for part in g.geoms])

    return rebuild(shape)


def follow_curves(
    shapes: np.ndarray, crs: CRS, grid: Grid, exact: np.ndarray | None = None
) -> np.ndarray:
    """``shapes`` (in ``crs``) with their edges split, still in ``crs``, so that in
    ``grid``'s pixel space the chords joining the projected vertices stray from the curves
    the straight edges become by at most :data:`CURVE_TOLERANCE` pixels. The polygons of
    the shapes marked ``exact`` are left: their centres are tested in ``crs`` instead
    (around a pole no outline on a lon/lat grid exists to follow).

    Each edge is measured at a quarter, half and three quarters of its length and split
    into equal parts, ``ceil(sqrt(stray / tolerance))`` of them (the stray of a chord of a
    smooth curve shrinks with the square of its length), until every chord is within the
    tolerance. Shapes already within it (every small field, every edge in a CRS close to the
    grid's) are returned as they are, found for all shapes at once. Chords that cannot be
    measured (a point outside the grid CRS's domain) are left; the caller refuses them.

    Written by hand: ``shapely.segmentize`` splits every edge of a shape to one length, and
    pyproj's densifying helpers split by count or length in the source CRS, none by the
    stray in the target's pixels, which is what decides a pixel near an edge.
    """
    # Lines are followed in every shape; rings of the exact shapes' polygons are not.
    lines, owner = edge_lines(shapes, None if exact is None else ~exact)
    if len(lines) == 0:
        return shapes
    xy, line = shapely.get_coordinates(lines, return_index=True)
    same = line[1:] == line[:-1]
    stray = _stray(xy[:-1][same], xy[1:][same], crs, grid)
    with np.errstate(invalid="ignore"):
        bad = stray > CURVE_TOLERANCE
    if not bad.any():
        return shapes
    # The chords a first round alone would make, counted before any is: a scale in degrees
    # by mistake makes pixels so small that they would be billions.
    if np.ceil(np.sqrt(stray[bad] / CURVE_TOLERANCE)).sum() > _MOST_VERTICES:
        raise _too_bent(crs, grid)
    out = shapes.copy()
    for k in np.unique(owner[line[:-1][same][bad]]):
        out[k] = _follow_shape(shapes[k], crs, grid, polygons=exact is None or not exact[k])
    return out


def _poles(lonlat: CRS, crs: CRS) -> list[tuple[float, shapely.Point]]:
    """The poles (latitude, and the point in ``crs``) that ``crs`` can hold, found from the
    geographic CRS ``lonlat``."""
    x, y = transformer(lonlat, crs).transform([0.0, 0.0], [90.0, -90.0])
    return [
        (lat, shapely.Point(px, py))
        for lat, px, py in zip((90.0, -90.0), x, y, strict=True)
        if math.isfinite(px) and math.isfinite(py)
    ]


def _around_a_pole(shapes: np.ndarray, crs: CRS, grid: Grid) -> np.ndarray:
    """Which shapes have a polygon whose shell holds a pole (on its boundary too): on a
    lon/lat grid that is a whole line, which no projected outline can follow."""
    out = np.zeros(len(shapes), bool)
    polygonal = shapely.get_dimensions(shapes) == 2
    if not polygonal.any():
        return out
    bounds = shapely.bounds(shapes)
    for _, pole in _poles(grid.crs, crs):
        with np.errstate(invalid="ignore"):
            near = polygonal & (bounds[:, 0] <= pole.x) & (pole.x <= bounds[:, 2])
            near &= (bounds[:, 1] <= pole.y) & (pole.y <= bounds[:, 3])
        for k in np.flatnonzero(near & ~out):
            out[k] = any(
                shapely.get_type_id(g) == GeometryType.POLYGON
                and shapely.Polygon(g.exterior).covers(pole)
                for g in flat_parts(shapes[k])[0]
            )
    return out


def _jumps_a_turn(out: np.ndarray, grid: Grid) -> np.ndarray:
    """Which pixel-space shapes (of a lon/lat grid) have a line or a polygon ring with an
    edge spanning more than 180 degrees of longitude: edges followed from another CRS
    (:func:`follow_curves`) bend by a thousandth of a pixel at most, so that edge is a jump
    across the antimeridian."""
    torn = np.zeros(len(out), bool)
    lines, owner = edge_lines(out)
    if len(lines) == 0:
        return torn
    xy, line = shapely.get_coordinates(lines, return_index=True)
    lon, _ = grid.to_crs(xy[:, 0], xy[:, 1])
    jump = long_edges(lon, line)
    torn[owner[line[1:][jump]]] = True
    return torn


#: A projected polygon whose lon/lat image spans more longitude than this (any polygon near
#: a pole does) lies where pixels are slivers (see :func:`_wide`): its pixels are found
#: exactly, by :func:`_centre_test`.
_WIDE_DEGREES = 1.0


def _wide(out: np.ndarray, grid: Grid) -> np.ndarray:
    """Which pixel-space shapes (of an axis-aligned lon/lat grid, projected from a projected
    CRS) hold a polygon spanning more than :data:`_WIDE_DEGREES` of longitude.

    Near a pole a lon/lat pixel is a sliver: 300 m of latitude tall, a few micrometres of
    longitude wide at 100 m from the pole. An edge there spans thousands of columns over a
    fraction of a row, so the chords' stray of :data:`CURVE_TOLERANCE` pixel across it moves
    its crossing of a row of centres by hundreds of pixels along it (the thorough profile of
    ``tests/test_reference_ee_grid.py`` found 52 centres, 4 to 9 cm outside a 50 m box beside
    the pole, taken). Such polygons are tested centre by centre in their own CRS instead,
    exactly; with chords of 1/64 of their extent, before, 5 of 300 random polygons near a
    pole took or lost a pixel.
    """
    near = np.zeros(len(out), bool)
    polygonal = np.flatnonzero(shapely.get_dimensions(out) == 2)
    if len(polygonal) == 0:
        return near
    step = abs(grid.transform[0])
    bounds = shapely.bounds(out[polygonal])
    with np.errstate(invalid="ignore"):
        candidates = polygonal[(bounds[:, 2] - bounds[:, 0]) * step > _WIDE_DEGREES]
    for k in candidates:
        near[k] = any(
            shapely.get_type_id(g) == GeometryType.POLYGON
            and np.ptp(shapely.get_coordinates(g)[:, 0]) * step > _WIDE_DEGREES
            for g in flat_parts(out[k])[0]
        )
    return near


def _mend_torn(
    clipped: np.ndarray,
    out: np.ndarray,
    torn: np.ndarray,
    crs: CRS,
    grid: Grid,
    window: Window,
) -> tuple[np.ndarray, dict[int, shapely.Geometry]]:
    """For the ``torn`` shapes: their lines in pixel space with continuous longitudes (a line
    has no inside: :func:`_wrap_longitudes` then moves it to the window), and their polygons
    covered exactly, as boxes of pixel runs (:func:`_centre_test`), returned apart.

    Raises
    ------
    GeometryError
        The grid is rotated or sheared: turns of longitude are no shift of its columns.
    """
    if not grid.axis_aligned:
        raise GeometryError(
            f"the geometry (in {crs.to_string()}) goes around a pole or across the "
            "antimeridian, where its outline cannot be followed on a rotated or sheared "
            "lon/lat working grid. Pass it in lon/lat, or use crs= the cube's CRS."
        )
    turn = TURN / abs(grid.transform[0])
    out = out.copy()
    exact = {}
    for k in np.flatnonzero(torn):
        parts, _ = flat_parts(clipped[k])
        polygons = list(parts[shapely.get_type_id(parts) == GeometryType.POLYGON])
        if polygons:
            exact[int(k)] = _centre_test(polygons, crs, grid, window)
        rest = []
        for g in flat_parts(out[k])[0]:
            if is_line(g):
                xy = shapely.get_coordinates(g)
                xy[:, 0] = np.unwrap(xy[:, 0], period=turn)
                rest.append(shapely.LineString(xy))
            elif shapely.get_type_id(g) != GeometryType.POLYGON:
                rest.append(g)
        out[k] = shapely.GeometryCollection(rest)
    return out, exact


# _centre_test looks this share of the polygon's reach (plus two pixels) beyond it: its
# outline is a chain of chords of curves.
_REACH_MARGIN = 0.01
# _window_bounds widens the window's box by this share of its extent (plus a relative
# epsilon of its coordinates): the outline is a chain of chords of curves.
_WINDOW_MARGIN = 0.02
_COORD_EPS = 1e-9
# _cut_lines allows this many ulps at the seam: a copy moved a turn west lands on it give
# or take the rounding of the move.
_SEAM_ULPS = 64

# Pixel centres tested per step by _centre_test: bounds its memory to some tens of MB.
_CENTRES_PER_STEP = 1 << 20
# _centre_test's outline is densified to this fraction of its extent to find its reach.
_REACH_SEGMENTS = 1024


def _centre_test(
    polygons: list[shapely.Polygon], crs: CRS, grid: Grid, window: Window
) -> shapely.Geometry:
    """The window pixels of an axis-aligned lon/lat grid whose centre lies inside one of
    ``polygons`` (in projected ``crs``), as pixel-space boxes, one per run of a row.

    Exact: the centres are transformed into ``crs`` and tested there, so the polygons'
    lon/lat outline (torn) is never needed. Only the rows and columns the polygons can
    reach are tested: from their outline, densified finely, with a margin.
    """
    col0, row0, col1, row1 = window
    a, _, _, _, e, f = grid.transform
    to_grid, to_crs = transformer(crs, grid.crs), transformer(grid.crs, crs)
    poles = _poles(grid.crs, crs)
    boxes = []
    for polygon in polygons:
        shapely.prepare(polygon)
        xmin, ymin, xmax, ymax = polygon.bounds
        outline = shapely.segmentize(
            polygon.exterior, max(math.hypot(xmax - xmin, ymax - ymin) / _REACH_SEGMENTS, 1e-9)
        )
        lon, lat = (np.asarray(v) for v in to_grid.transform(*shapely.get_coordinates(outline).T))
        ok = np.isfinite(lon) & np.isfinite(lat)
        lon, lat = lon[ok], lat[ok]
        held = [p_lat for p_lat, pole in poles if shapely.Polygon(polygon.exterior).covers(pole)]
        lat_lo = min([lat.min(), *held]) if len(lat) else -90.0
        lat_hi = max([lat.max(), *held]) if len(lat) else 90.0
        # Whole longitudes around a pole; else the shorter of the spans read in -180..180 and
        # in 0..360 (the polygon crosses at most one of their seams when under half a turn).
        west, width = _longitude_span(lon) if not held and len(lon) else (0.0, TURN)
        margin = _REACH_MARGIN * (lat_hi - lat_lo) + 2 * abs(e)
        lon_margin = _REACH_MARGIN * width + 2 * abs(a)
        # The centres to test, counted by arithmetic before any is listed: a scale in
        # degrees by mistake makes billions of them.
        n_rows = min(row1 - row0, (lat_hi - lat_lo + 2 * margin) / abs(e) + 2)
        n_cols = float(col1 - col0)
        if width + 2 * lon_margin < TURN:
            n_cols = min(n_cols, (width + 2 * lon_margin) / abs(a) + 2)
        if n_rows * n_cols > MAX_WORK:
            raise grid_too_fine(n_rows * n_cols, grid)
        # Only the rows within reach are listed (the window's may be many more).
        ends = sorted(((lat_lo - margin - f) / e - 0.5, (lat_hi + margin - f) / e - 0.5))
        rows = np.arange(max(row0, math.floor(ends[0])), min(row1, math.ceil(ends[1]) + 1))
        _, lat_c = grid.centres(0, rows)
        rows = rows[(lat_c >= lat_lo - margin) & (lat_c <= lat_hi + margin)]
        cols = np.arange(col0, col1)
        lon_c, _ = grid.centres(cols, 0)
        margin = lon_margin
        if width + 2 * margin < TURN:
            cols = cols[np.mod(lon_c - (west - margin), TURN) <= width + 2 * margin]
        if len(rows) == 0 or len(cols) == 0:
            continue
        lon_c, _ = grid.centres(cols, 0)
        step = max(1, _CENTRES_PER_STEP // len(cols))
        for i in range(0, len(rows), step):
            rr = rows[i : i + step]
            _, lat_r = grid.centres(0, rr)
            x, y = to_crs.transform(np.tile(lon_c, len(rr)), np.repeat(lat_r, len(cols)))
            r, k = np.nonzero(shapely.contains_xy(polygon, x, y).reshape(len(rr), len(cols)))
            if len(r) == 0:
                continue
            row, col = rr[r], cols[k]
            # Runs: consecutive columns of one row.
            start = np.ones(len(row), bool)
            start[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1] + 1)
            first = np.flatnonzero(start)
            last = np.append(first[1:], len(row)) - 1
            # A box holding a run's centres and no others (its row's middle half).
            boxes.extend(
                shapely.box(col[first], row[first] + 0.25, col[last] + 1, row[first] + 0.75)
            )
    return shapely.GeometryCollection(boxes)


def _longitude_span(lon: np.ndarray) -> tuple[float, float]:
    """``(west, width)`` of the longitudes ``lon``, read in -180..180 or in 0..360, whichever
    is narrower; a whole turn when both exceed half of one."""
    best = (0.0, TURN)
    for values in (np.mod(lon + 180.0, TURN) - 180.0, np.mod(lon, TURN)):
        width = float(values.max() - values.min())
        if width < best[1]:
            best = (float(values.min()), width)
    return best if best[1] <= 180.0 else (0.0, TURN)


def _window_bounds(grid: Grid, window: Window, crs: CRS) -> list[tuple[float, ...]] | None:
    """Boxes in ``crs`` that together hold the window's area (a margin added), or None when
    its outline cannot be mapped there faithfully (outside the CRS's domain, around a pole).

    In a geographic ``crs`` the box is repeated a turn east and west: a geometry may label
    the same place with longitudes 360 degrees apart.
    """
    x, y = transformer(grid.crs, crs).transform(*grid.outline(*window))
    x, y = np.asarray(x), np.asarray(y)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    if crs.is_geographic:
        x = np.unwrap(x, period=TURN)
        if np.ptp(x) > 180:  # around a pole, or most of the world: no faithful box
            return None
    # The outline is a chain of chords of curves: a margin keeps the whole area inside.
    mx = _WINDOW_MARGIN * np.ptp(x) + _COORD_EPS * np.abs(x).max()
    my = _WINDOW_MARGIN * np.ptp(y) + _COORD_EPS * np.abs(y).max()
    box = (x.min() - mx, y.min() - my, x.max() + mx, y.max() + my)
    if not crs.is_geographic:
        return [box]
    return [(box[0] + k, box[1], box[2] + k, box[3]) for k in (-TURN, 0.0, TURN)]


def reaches_window(shapes: np.ndarray, crs: CRS, grid: Grid, window: Window) -> np.ndarray:
    """Which ``shapes`` (in ``crs``) reach the area of ``window`` of ``grid``, tested in their
    own CRS, where a projection cannot fold them onto it. True where it cannot be told: the
    window has no faithful outline in ``crs`` (around a pole, outside the CRS's domain)."""
    boxes = _window_bounds(grid, window, crs)
    if boxes is None:
        return np.ones(len(shapes), bool)
    area = shapely.MultiPolygon([shapely.box(*b) for b in boxes])
    with np.errstate(invalid="ignore"):
        return np.asarray(shapely.intersects(area, shapes), bool)


def _clip_to_window(shapes: np.ndarray, crs: CRS, grid: Grid, window: Window) -> np.ndarray:
    """Lines and polygons clipped to the window's area in their own CRS (see
    :func:`to_pixel_space_many`); points, which cannot tear, and shapes inside it are kept."""
    boxes = _window_bounds(grid, window, crs)
    if boxes is None:
        return shapes
    edged = np.flatnonzero(shapely.get_dimensions(shapes) > 0)
    if len(edged) == 0:
        return shapes
    bounds = shapely.bounds(shapes[edged])
    inside = np.zeros(len(edged), bool)
    for b in boxes:
        inside |= (
            (b[0] <= bounds[:, 0])
            & (b[1] <= bounds[:, 1])
            & (bounds[:, 2] <= b[2])
            & (bounds[:, 3] <= b[3])
        )
    out = shapes.copy()
    for k, (x0, y0, x1, y1) in zip(edged[~inside], bounds[~inside], strict=True):
        near = [b for b in boxes if x0 <= b[2] and b[0] <= x1 and y0 <= b[3] and b[1] <= y1]
        parts = [shapely.clip_by_rect(shapes[k], *b) for b in near]
        # Centres inside the window are inside a part exactly when inside the shape.
        out[k] = parts[0] if len(parts) == 1 else shapely.GeometryCollection(parts)
    return out


def _wrap_longitudes(shapes: np.ndarray, grid: Grid, window: Window) -> np.ndarray:
    """Move pixel-space geometries of a geographic grid by whole turns into one turn starting
    at the window's west edge, so each place on Earth is covered once, at the window's
    longitudes. Points move vertex by vertex; lines and polygons are copied a whole number
    of turns east or west, each copy that meets the window kept whole. Cutting them at the
    turn's edge would round the cut's new vertices and move a line through a pixel corner
    (coverage is limited to the window, and :func:`window_of` keeps that within one turn)."""
    col0, _, col1, _ = window
    turn = TURN / abs(grid.transform[0])
    bounds = shapely.bounds(shapes)
    with np.errstate(invalid="ignore"):
        outside = (bounds[:, 0] < col0) | (bounds[:, 2] >= col0 + turn)
    if not outside.any():
        return shapes
    out = shapes.copy()
    points = outside & (shapely.get_dimensions(shapes) == 0)
    if points.any():  # all at once: 100,000 point features are one array operation
        out[points] = shapely.transform(
            shapes[points],
            lambda xy: np.column_stack([col0 + np.mod(xy[:, 0] - col0, turn), xy[:, 1]]),
        )
    for k in np.flatnonzero(outside & ~points):
        g = shapes[k]
        x0, x1 = bounds[k, 0], bounds[k, 2]
        first = math.floor((col0 - x1) / turn)
        last = math.ceil((min(col1, col0 + turn) - x0) / turn)
        pieces = []
        for n in range(first, last + 1):
            shift = n * turn
            if x0 + shift <= col1 and col0 <= x1 + shift:
                pieces.append(shapely.transform(g, lambda xy, s=shift: xy + np.array([s, 0.0])))
        out[k] = shapely.GeometryCollection(pieces)
    return out


def _ee_longitudes(shapes: np.ndarray, grid: Grid, window: Window) -> np.ndarray:
    """Lines and polygons in the pixel space of an EE lon/lat grid, copied by whole turns to
    wherever they meet the window (within the grid's columns of [-180, 180)); points are
    already there (:func:`_project`).

    A polygon's copies are kept whole: each pixel is then covered when its centre, as a
    place, is inside the polygon, even the last column's centre a little past 180. A line's
    copies are cut at longitudes -180 and 180: the last column reaches past 180 (a turn is no
    whole number of pixels) over places whose pixel is the first column, as a point's is.
    """
    col0, _, col1, _ = window
    a, _, c, _, _, _ = grid.transform
    turn = TURN / a
    seam = sorted(((-180.0 - c) / a, (180.0 - c) / a))
    bounds = shapely.bounds(shapes)
    with np.errstate(invalid="ignore"):
        edged = shapely.get_dimensions(shapes) > 0
        # Within a pixel of the seam, a polygon may hold the centre of a column at the other
        # end of the turn (the first column's centre may lie west of -180).
        outside = edged & ((bounds[:, 0] < seam[0] + 1) | (bounds[:, 2] > seam[1] - 1))
    if not outside.any():
        return shapes
    out = shapes.copy()
    for k in np.flatnonzero(outside):
        x0, x1 = bounds[k, 0], bounds[k, 2]
        lo, hi = sorted(((col0 - x1) / turn, (col1 - x0) / turn))
        pieces = []
        for n in range(math.floor(lo), math.ceil(hi) + 1):
            shift = n * turn
            if not (x0 + shift <= col1 and col0 <= x1 + shift):
                continue
            moved = shapely.transform(shapes[k], lambda xy, s=shift: xy + np.array([s, 0.0]))
            pieces.extend(_cut_lines(moved, seam))
        out[k] = shapely.GeometryCollection(pieces)
    return out


def _cut_lines(shape: shapely.Geometry, seam: list[float]) -> list[shapely.Geometry]:
    """The parts of ``shape``, its lines cut to the pixel columns of longitudes in
    [-180, 180): ``seam[0] <= x < seam[1]`` (a few ulps allowed at ``seam[0]``, where a
    copy moved a turn west lands on it give or take the rounding of the move)."""
    out = []
    tol = _SEAM_ULPS * np.spacing(max(1.0, abs(seam[0])))
    for g in flat_parts(shape)[0]:
        if not is_line(g):
            out.append(g)
            continue
        xmin, _, xmax, _ = g.bounds
        if xmin >= seam[0] and xmax < seam[1]:
            out.append(g)
            continue
        clipped = shapely.clip_by_rect(g, seam[0] - tol, -1e300, seam[1], 1e300)
        for piece in flat_parts(clipped)[0]:
            xy = shapely.get_coordinates(piece)
            if shapely.get_type_id(piece) == GeometryType.POINT:
                if xy[0, 0] < seam[1]:
                    out.append(piece)
                continue
            # Longitude 180 is -180: a segment along it belongs to the first column.
            keep = (xy[:-1, 0] < seam[1]) | (xy[1:, 0] < seam[1])
            out.extend(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1)[keep]))
    return out


def window_of(cube_grid: Grid, grid: Grid) -> Window:
    """The bounding window, in ``grid`` pixels, of the cube grid's footprint (with a margin)."""
    if cube_grid.same_pixels(grid) and cube_grid.shape is not None:
        rows, cols = cube_grid.shape
        turn = _one_turn(grid)
        if turn is not None:
            # A lon/lat cube wider than a turn (0..360 with both ends, a cyclic column) holds
            # places twice: only its first turn of columns gives rows, as below.
            cols = min(cols, turn)
        return Window(0, 0, cols, rows)
    rows, cols = cube_grid.shape or (1, 1)
    x, y = cube_grid.outline(0, 0, cols, rows)
    if cube_grid.crs != grid.crs:
        x, y = transformer(cube_grid.crs, grid.crs).transform(x, y)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    columns = _ee_columns(grid)
    if columns is not None:
        return _ee_window(x, y, cube_grid, grid, columns)
    ok = np.isfinite(x)
    if grid.shape is None and grid.crs.is_geographic:
        # EE's rotated lon/lat grids too give each place the pixel of its longitude in
        # [-180, 180): a footprint across 180 lies in two places of pixel space, and the
        # window holds both and the seam between the outline's samples.
        x = _minus_180_to_180(x)
        jump = np.flatnonzero(long_edges(x))
        lat = np.concatenate([y[jump], y[jump + 1]])
        x = np.concatenate([x, np.full(len(lat), -180.0), np.full(len(lat), 180.0)])
        y = np.concatenate([y, lat, lat])
    elif cube_grid.crs != grid.crs and grid.crs.is_geographic and ok.any():
        # A projected cube across the antimeridian has an outline whose longitudes jump from
        # 180 to -180: read continuously (past 180), its window is the cube's longitudes
        # rather than the rest of the world, and the columns near 180 between the outline's
        # samples are not missed. An outline around a pole does not close so: it keeps
        # -180..180 (its window is a whole turn).
        unwrapped = np.unwrap(x[ok], period=TURN)
        if abs(unwrapped[-1] - unwrapped[0]) < 180:
            x[ok] = unwrapped + (TURN if unwrapped.min() < -180 else 0.0)
    # A pole inside the footprint is no point of its outline, and on a geographic grid it is
    # a whole line (latitude +-90 at every longitude): without it, the rows between the
    # outline's highest latitude and the pole, and the longitudes between the outline's
    # samples and the antimeridian, would be missed.
    for pole in poles_inside(cube_grid):
        if grid.crs.is_geographic:
            x, y = np.append(x, [-180.0, 180.0]), np.append(y, [pole, pole])
        else:
            px, py = transformer(EPSG4326, grid.crs).transform(0.0, pole)
            x, y = np.append(x, px), np.append(y, py)
    px, py = grid.to_pixel(x, y)
    ok = np.isfinite(px) & np.isfinite(py)
    if not ok.any():
        return Window(0, 0, 0, 0)
    # A pixel of margin: the footprint's edges are densified chords of curves.
    col0, col1 = math.floor(px[ok].min()) - 1, math.floor(px[ok].max()) + 2
    turn = _one_turn(grid)
    if turn is not None and col1 - col0 > turn:
        # At most one turn of longitude: in a wider window a place would have two pixels,
        # hence two rows (a cube around the world, or around a pole).
        col0 = math.floor(px[ok].min())
        col1 = col0 + turn
    return Window(col0, math.floor(py[ok].min()) - 1, col1, math.floor(py[ok].max()) + 2)


def _ee_window(
    lon: np.ndarray, lat: np.ndarray, cube_grid: Grid, grid: Grid, columns: tuple[int, int]
) -> Window:
    """The window of a cube's outline (``lon``, ``lat``) on an EE lon/lat grid: within the
    grid's columns of [-180, 180), all of them when the footprint reaches 180 degrees (across
    it, or around a pole), so a footprint across 180 keeps its pixels at both ends."""
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return Window(0, 0, 0, 0)
    # Read continuously, an outline across 180 leaves [-180, 180); a geographic cube's
    # outline labelled past 180 (179..181, 0..360) already does.
    lon = np.unwrap(lon[ok], period=TURN)
    poles = poles_inside(cube_grid)
    # A pole inside the footprint is no point of its outline but a whole row of the grid.
    _, py = grid.to_pixel(np.zeros(ok.sum() + len(poles)), np.append(lat[ok], poles))
    px, _ = grid.to_pixel(lon, np.zeros(len(lon)))
    # A pixel of margin: the footprint's edges are densified chords of curves.
    col0, col1 = math.floor(px.min()) - 1, math.floor(px.max()) + 2
    k0, k1 = columns
    if poles or lon.min() < -180.0 or lon.max() >= 180.0 or col0 < k0 or col1 > k1:
        col0, col1 = k0, k1
    return Window(col0, math.floor(py.min()) - 1, col1, math.floor(py.max()) + 2)


def _one_turn(grid: Grid) -> int | None:
    """The most columns a window of an axis-aligned lon/lat grid may have (None for other
    grids): a turn of 360 degrees, to the nearest column, so no place has two pixels."""
    if not (grid.crs.is_geographic and grid.axis_aligned):
        return None
    return math.ceil(TURN / abs(grid.transform[0]) - 0.5)


def poles_inside(cube_grid: Grid) -> list[float]:
    """The latitudes (90, -90) of the poles inside a projected cube grid's extent.

    A geographic grid's outline already reaches the pole it holds (as its edge), so only
    projected grids (a polar stereographic cube) can hold one inside.
    """
    if cube_grid.crs.is_geographic or cube_grid.shape is None:
        return []
    rows, cols = cube_grid.shape
    poles = _poles(EPSG4326, cube_grid.crs)
    x, y = (np.array([p.x for _, p in poles]), np.array([p.y for _, p in poles]))
    px, py = cube_grid.to_pixel(x, y)
    inside = (px >= 0) & (px <= cols) & (py >= 0) & (py <= rows)
    return [lat for (lat, _), hit in zip(poles, inside.tolist(), strict=True) if hit]


#: The most work a plan takes on: working-grid pixels over the region (within the cube's
#: bounds) plus the crossings of the region's outline with pixel rows and columns. A plan
#: holds some 50 bytes per pixel, so 2**30 pixels are already about 50 GB, and testing them
#: takes an hour: past it, the scale is wrong (degrees given as metres) or the region is to
#: be split. Refused with or without ``max_values``, before any pixel is listed.
MAX_WORK = 1 << 30


def work_of(shapes: np.ndarray, window: Window) -> float:
    """The pixels and crossings that covering pixel-space ``shapes`` in ``window`` goes
    through: their area and outline length (``|dx| + |dy|`` per edge) clipped to the window,
    and one per point. Arithmetic on outlines, so it costs what they do whatever the grid.
    """
    shapes = np.asarray(shapes, dtype=object)
    edged = shapely.get_dimensions(shapes) > 0
    work = float(shapely.get_num_coordinates(shapes[~edged]).sum())
    if not edged.any():
        return work
    col0, row0, col1, row1 = window
    with np.errstate(invalid="ignore"):
        bounds = shapely.bounds(shapes[edged])
        width = np.clip(bounds[:, 2], col0, col1) - np.clip(bounds[:, 0], col0, col1)
        height = np.clip(bounds[:, 3], row0, row1) - np.clip(bounds[:, 1], row0, row1)
    # The clipped bounding boxes hold every pixel the shapes can cover, and an edge crosses
    # at most their rows and columns: when that is small enough, no need to look closer.
    edges = shapely.get_num_coordinates(shapes[edged])
    quick = np.nansum((width + 1) * (height + 1) + (width + height + 2) * edges)
    if work + quick <= MAX_WORK:
        return work + float(quick)
    with np.errstate(invalid="ignore"):
        clipped = shapely.clip_by_rect(shapes[edged], col0, row0, col1, row1)
    work += float(np.nansum(shapely.area(clipped)))
    lines, _ = edge_lines(clipped)
    xy, line = shapely.get_coordinates(lines, return_index=True)
    same = line[1:] == line[:-1]
    return work + float(np.nansum(np.abs(np.diff(xy, axis=0))[same]))


def grid_too_fine(work: float, grid: Grid, native: Grid | None = None) -> TooManyValuesError:
    """The refusal of a region spanning ``work`` (> :data:`MAX_WORK`) pixels of ``grid``,
    naming the likely mistake, a scale in degrees, and the scale meant."""
    size = _pixel_metres(grid)
    text = (
        f"the region spans about {work:.3g} pixels of the working grid ({size:.3g} m pixels) "
        f"within the cube's bounds, more than the {MAX_WORK:,} a plan can hold (with or "
        "without max_values). "
    ) + _degrees_hint(grid)
    if native is not None and native.shape is not None:
        own = _pixel_metres(native)
        text += f"The cube's own pixels are about {own:.3g} m. "
    return TooManyValuesError(
        text + "If the scale is right, split the region or pass a coarser scale=."
    )


def _degrees_hint(grid: Grid) -> str:
    """The likely mistake behind pixels under a metre, a scale in degrees, and the scale
    meant; empty for coarser pixels."""
    size = _pixel_metres(grid)
    if size >= 1:
        return ""
    text = f"scale= is in metres, not degrees: scale={size:g} makes {size:g} m pixels. "
    if size * METRES_PER_DEGREE >= 1:
        metres = size * METRES_PER_DEGREE
        text += (
            f"If you meant {size:g} degrees, that is about {metres:.4g} m: pass "
            f"scale={max(1, round(metres))}. "
        )
    return text


def _pixel_metres(grid: Grid) -> float:
    """The side of a square of ``grid``'s pixel area, in metres (EE's metres per degree for
    a geographic CRS)."""
    a, b, _, d, e, _ = grid.transform
    side = math.sqrt(abs(a * e - b * d))
    if grid.crs.is_geographic:
        return side * METRES_PER_DEGREE
    axis = grid.crs.axis_info[0] if grid.crs.axis_info else None
    return side * (axis.unit_conversion_factor if axis else 1.0)


class Runs(NamedTuple):
    """Covered pixels as runs: row ``row[i]``, columns ``c0[i] <= col < c1[i]``.

    Runs are disjoint and sorted in raster order (row, then column), so their pixels, listed
    run by run, are in raster order too.
    """

    row: np.ndarray
    c0: np.ndarray
    c1: np.ndarray

    @property
    def n_pixels(self) -> int:
        return int((self.c1 - self.c0).sum())

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """All pixels ``(cols, rows)``, in raster order."""
        cols, rows = expand_runs(self.row, self.c0, self.c1)
        return cols, rows


def expand_runs(
    row: np.ndarray, c0: np.ndarray, c1: np.ndarray, *tags: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The pixels ``(cols, rows)`` of runs, then each per-run tag (a feature) per pixel."""
    lengths = c1 - c0
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = np.repeat(c0, lengths) + (np.arange(lengths.sum()) - offsets)
    rows = np.repeat(row, lengths)
    return (cols.astype(np.int64), rows.astype(np.int64), *(np.repeat(t, lengths) for t in tags))


_NO_RUNS = Runs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))


def covered_runs(shape: shapely.Geometry, window: Window, mirrored: bool = False) -> Runs:
    """The pixels a pixel-space geometry covers inside ``window``, as merged runs.

    Parameters
    ----------
    shape
        A geometry already in pixel space (see :func:`to_pixel_space`).
    window
        ``(col0, row0, col1, row1)``, half-open: only pixels inside it are returned.
    mirrored
        Whether the pixel space is a mirror image of the grid's CRS (``Grid.mirrored``, as
        on every north-up grid): GDAL's tie rule for horizontal edges depends on it.
    """
    found: list[Runs] = []
    for part in flat_parts(shape)[0]:
        kind = shapely.get_type_id(part)
        if kind == GeometryType.POINT:
            found.append(_single_pixel_runs(_point_pixels(part)))
        elif is_line(part):
            found.append(_single_pixel_runs(_line_pixels(part, window)))
        elif kind == GeometryType.POLYGON:
            found.append(_polygon_runs(part, window, mirrored))
    if not found:
        return _NO_RUNS
    row = np.concatenate([r.row for r in found])
    c0 = np.concatenate([r.c0 for r in found])
    c1 = np.concatenate([r.c1 for r in found])
    col0, row0, col1, row1 = window
    keep = (row >= row0) & (row < row1)
    row, c0, c1 = row[keep], np.maximum(c0[keep], col0), np.minimum(c1[keep], col1)
    keep = c1 > c0
    return _merge(Runs(row[keep], c0[keep], c1[keep]))


def covered_pixels(
    shape: shapely.Geometry, window: Window, mirrored: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels ``(cols, rows)`` a pixel-space geometry covers in ``window``, raster order."""
    return covered_runs(shape, window, mirrored).pixels()


def covered_runs_many(
    shapes: np.ndarray, window: Window, mirrored: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of each pixel-space geometry in ``shapes``, tagged with its position.

    Returns ``row, c0, c1, feature``: grouped by feature (in order), each feature's runs in
    raster order. Point features are handled in bulk, so 100,000 points cost a few arrays.
    """
    shapes = np.asarray(shapes, dtype=object)
    is_point = shapely.get_type_id(shapes) == GeometryType.POINT
    xy = shapely.get_coordinates(shapes[is_point])  # one coordinate per point
    cols = np.floor(xy[:, 0])
    rows = np.floor(xy[:, 1])
    col0, row0, col1, row1 = window
    with np.errstate(invalid="ignore"):
        ok = (cols >= col0) & (cols < col1) & (rows >= row0) & (rows < row1)
    parts = [
        (
            rows[ok].astype(np.int64),
            cols[ok].astype(np.int64),
            cols[ok].astype(np.int64) + 1,
            np.flatnonzero(is_point)[ok],
        )
    ]
    for k in np.flatnonzero(~is_point):
        runs = covered_runs(shapes[k], window, mirrored)
        parts.append((runs.row, runs.c0, runs.c1, np.full(len(runs.row), k)))
    row, c0, c1, feature = (np.concatenate(a) for a in zip(*parts, strict=True))
    order = np.argsort(feature, kind="stable")
    return row[order], c0[order], c1[order], feature[order]


def _merge(runs: Runs) -> Runs:
    """Sort runs in raster order and merge the overlapping or adjacent ones."""
    if len(runs.row) == 0:
        return _NO_RUNS
    row, c0, c1 = (np.asarray(a, np.int64) for a in runs)
    # One key space for (row, column) keeps the merge vectorised: runs of a row never reach
    # into the next row's key range.
    shift = c0.min()
    span = int(c1.max() - shift) + 1
    k0 = row * span + (c0 - shift)
    k1 = row * span + (c1 - shift)
    order = np.lexsort((k1, k0))
    k0, k1 = k0[order], k1[order]
    reach = np.maximum.accumulate(k1)
    new = np.ones(len(k0), bool)
    new[1:] = k0[1:] > reach[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(k0)) - 1
    m0, m1 = k0[starts], reach[ends]
    out_row = m0 // span
    return Runs(out_row, m0 - out_row * span + shift, m1 - out_row * span + shift)


def _single_pixel_runs(pixels: np.ndarray) -> Runs:
    return Runs(pixels[:, 1], pixels[:, 0], pixels[:, 0] + 1)


def _pixels(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.column_stack([cols.astype(np.int64), rows.astype(np.int64)])


def _point_pixels(point: shapely.Geometry) -> np.ndarray:
    xy = shapely.get_coordinates(point)
    xy = xy[np.isfinite(xy).all(axis=1)]
    return _pixels(np.floor(xy[:, 0]), np.floor(xy[:, 1]))


def _line_pixels(line: shapely.Geometry, window: Window) -> np.ndarray:
    xy = shapely.get_coordinates(line)
    # Only the part inside the window (plus a pixel) can yield pixels we keep (a caller's
    # plain 4-tuple is read as a Window). The segments are cut there by parameter, not by
    # clipping the line: a clipped line gets rounded new vertices, which tilt it by an ulp,
    # so that a line through a pixel corner no longer is.
    return _segment_pixels(xy[:-1], xy[1:], Window(*window).grown(1))


def _clip_parameters(p0: np.ndarray, p1: np.ndarray, rect: Window) -> tuple[np.ndarray, np.ndarray]:
    """For segments ``p0[i] -> p1[i]``, the parameters ``t0 <= t <= t1`` of their part inside
    ``rect`` (Liang-Barsky; ``t0 > t1`` for a segment that misses it)."""
    t0, t1 = np.zeros(len(p0)), np.ones(len(p0))
    for axis, (lo, hi) in enumerate(((rect.col0, rect.col1), (rect.row0, rect.row1))):
        a, d = p0[:, axis], p1[:, axis] - p0[:, axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_lo, t_hi = (lo - a) / d, (hi - a) / d
        enter = np.where(d > 0, t_lo, np.where(d < 0, t_hi, -np.inf))
        leave = np.where(d > 0, t_hi, np.where(d < 0, t_lo, np.inf))
        # A segment along this axis's lines is inside only if its coordinate is.
        leave = np.where((d == 0) & ((a < lo) | (a > hi)), -np.inf, leave)
        t0, t1 = np.maximum(t0, enter), np.minimum(t1, leave)
    return t0, t1


def _at(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at parameters ``t`` of segments ``p0 -> p1``; the endpoints themselves, exactly,
    at ``t == 0`` and ``t == 1``."""
    pts = p0 + t[:, None] * (p1 - p0)
    pts = np.where((t == 0)[:, None], p0, pts)
    return np.where((t == 1)[:, None], p1, pts)


def _crossings(
    a: np.ndarray, b: np.ndarray, t0: np.ndarray, t1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For segments from ``a`` to ``b`` (one axis), the parameters t in ``[t0, t1]`` where
    they cross an integer grid line, with the index of the segment each belongs to."""
    ends = np.column_stack([a + t0 * (b - a), a + t1 * (b - a)])
    ends = np.where(np.column_stack([t0 == 0, t1 == 1]), np.column_stack([a, b]), ends)
    lo = np.ceil(ends.min(axis=1))
    hi = np.floor(ends.max(axis=1))
    count = np.where(a != b, np.maximum(hi - lo + 1, 0), 0).astype(np.int64)
    seg = np.repeat(np.arange(len(a)), count)
    offsets = np.cumsum(count) - count
    k = lo[seg] + (np.arange(count.sum()) - offsets[seg])
    t = (k - a[seg]) / (b[seg] - a[seg])
    keep = (t >= t0[seg]) & (t <= t1[seg])  # the cut ends are rounded: no crossing beyond
    return t[keep], seg[keep]


def _segment_pixels(p0: np.ndarray, p1: np.ndarray, rect: Window) -> np.ndarray:
    """Pixels crossed by the segments ``p0[i] -> p1[i]`` inside ``rect``: the cell of the
    midpoint of every piece between consecutive grid-line crossings, and the cells of the
    endpoints (of the cut ends too, which lie on ``rect``'s edge, outside the window)."""
    t0, t1 = _clip_parameters(p0, p1, rect)
    hit = t0 <= t1
    p0, p1, t0, t1 = p0[hit], p1[hit], t0[hit], t1[hit]
    n = len(p0)
    tx, sx = _crossings(p0[:, 0], p1[:, 0], t0, t1)
    ty, sy = _crossings(p0[:, 1], p1[:, 1], t0, t1)
    t = np.concatenate([t0, t1, tx, ty])
    seg = np.concatenate([np.arange(n), np.arange(n), sx, sy])
    order = np.lexsort((t, seg))
    t, seg = t[order], seg[order]
    same = (seg[1:] == seg[:-1]) & (t[1:] > t[:-1])
    tm = (t[1:][same] + t[:-1][same]) / 2
    sm = seg[1:][same]
    mid = p0[sm] + tm[:, None] * (p1[sm] - p0[sm])
    pts = np.concatenate([mid, _at(p0, p1, t0), _at(p0, p1, t1)])
    return _pixels(np.floor(pts[:, 0]), np.floor(pts[:, 1]))


def _polygon_runs(poly: shapely.Geometry, window: Window, mirrored: bool = False) -> Runs:
    """Scanline fill on pixel centres: the runs of centres inside ``poly`` (holes respected).

    The rule is GDAL's rasterizer's (``GDALdllImageFilledPolygon``, what
    ``rasterio.features.rasterize`` with ``all_touched=False``, rioxarray ``clip``,
    rasterstats and geocube use), reproduced to the rounding so every tie falls the same way:
    row ``r``'s centre line ``y = r + 0.5`` crosses an edge when ``ylo <= y < yhi``, at
    ``x = (y - ylo) * (x_hi - x_lo) / (yhi - ylo) + x_lo`` (``x_lo``, ``x_hi`` the x of the
    edge's lower and upper end); crossings sorted and paired (even-odd), a pair covers
    columns ``floor(x_in + 0.5) <= c < floor(x_out + 0.5)``, i.e. centres with
    ``x_in < c + 0.5 <= x_out``. Horizontal edges cross nothing, but GDAL burns a horizontal
    edge lying exactly on a row's centre line when it runs towards lower columns in the ring
    order GDAL sees, which is every ring (holes too) clockwise *in the CRS*: so on a
    ``mirrored`` pixel space (every north-up grid) the centres on the southern edge of an
    exterior ring or of a hole count too, columns ``x_lo < c + 0.5 <= x_hi``. (Found by
    comparing with ``rasterio.features.rasterize``, GDAL 3.10, under every ring orientation;
    ``tests/test_reference_gdal.py`` holds the comparison.)

    Cost: the crossings (rows times edges crossing them), never the polygon's pixel count.
    We write the fill rather than call GDAL because the value limit needs the count of
    covered pixels of regions far too large to rasterize, and runs give it cheaply.
    """
    _, row0, _, row1 = window
    horizontal = _horizontal_edge_runs(poly, window, mirrored)
    rings = [poly.exterior, *poly.interiors]
    starts, stops = [], []
    for ring in rings:
        xy = shapely.get_coordinates(ring)
        starts.append(xy[:-1])
        stops.append(xy[1:])
    p0, p1 = np.concatenate(starts), np.concatenate(stops)
    sloped = p0[:, 1] != p1[:, 1]
    p0, p1 = p0[sloped], p1[sloped]
    ylo = np.minimum(p0[:, 1], p1[:, 1])
    yhi = np.maximum(p0[:, 1], p1[:, 1])
    # Rows r with ylo <= r + 0.5 < yhi (compared as GDAL does, with r + 0.5), in the window.
    r_first, r_stop = np.ceil(ylo - 0.5), np.ceil(yhi - 0.5)
    # ``v - 0.5`` can round onto an integer for large or negative ``v``: settle the bounds
    # with the comparison itself.
    r_first += (r_first + 0.5 < ylo).astype(float) - (r_first - 0.5 >= ylo).astype(float)
    r_stop += (r_stop + 0.5 < yhi).astype(float) - (r_stop - 0.5 >= yhi).astype(float)
    r_first = np.maximum(r_first, row0)
    r_stop = np.minimum(r_stop, row1)
    count = np.maximum(r_stop - r_first, 0).astype(np.int64)
    if count.sum() == 0:
        return horizontal
    edge = np.repeat(np.arange(len(p0)), count)
    offsets = np.repeat(np.cumsum(count) - count, count)
    row = r_first[edge] + (np.arange(count.sum()) - offsets)
    y = row + 0.5
    a, b = p0[edge], p1[edge]
    # The lower and the upper end of each edge, as GDAL orders them before it interpolates.
    up = a[:, 1] < b[:, 1]
    lo = np.where(up[:, None], a, b)
    hi = np.where(up[:, None], b, a)
    x = (y - lo[:, 1]) * (hi[:, 0] - lo[:, 0]) / (hi[:, 1] - lo[:, 1]) + lo[:, 0]
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # Each row has an even number of crossings: pair them up as (in, out).
    x_in, x_out, row = x[0::2], x[1::2], row[0::2]
    c0 = np.floor(x_in + 0.5).astype(np.int64)
    c1 = np.floor(x_out + 0.5).astype(np.int64)
    keep = c1 > c0
    crossed = Runs(row[keep].astype(np.int64), c0[keep], c1[keep])
    if len(horizontal.row) == 0:
        return crossed
    return Runs(*(np.concatenate(pair) for pair in zip(crossed, horizontal, strict=True)))


def _horizontal_edge_runs(poly: shapely.Geometry, window: Window, mirrored: bool) -> Runs:
    """The runs GDAL burns for horizontal edges on a row's centre line (see
    :func:`_polygon_runs`); they may overlap the crossings' runs."""
    _, row0, _, row1 = window
    # Every ring clockwise in the CRS is counter-clockwise in a mirrored pixel space.
    xy = []
    for ring in (poly.exterior, *poly.interiors):
        coords = shapely.get_coordinates(ring)
        xy.append(coords if ring.is_ccw == mirrored else coords[::-1])
    p0 = np.concatenate([c[:-1] for c in xy])
    p1 = np.concatenate([c[1:] for c in xy])
    y = p0[:, 1]
    row = np.floor(y)
    on_centre = (p1[:, 1] == y) & (row + 0.5 == y) & (p0[:, 0] > p1[:, 0])
    on_centre &= (row >= row0) & (row < row1)
    if not on_centre.any():
        return _NO_RUNS
    c0 = np.floor(p1[on_centre, 0] + 0.5).astype(np.int64)
    c1 = np.floor(p0[on_centre, 0] + 0.5).astype(np.int64)
    keep = c1 > c0
    return Runs(row[on_centre][keep].astype(np.int64), c0[keep], c1[keep])
