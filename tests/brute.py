"""A brute-force ``getRegion``: slow, simple and obviously correct, to check the real one.

It follows ``docs/semantics.md`` sections 3 to 6 literally and shares no code with
``xr_getregion`` (only the constants ``METRES_PER_DEGREE`` and ``CURVE_TOLERANCE``, which are
part of the contract):

1. the working grid is built from the arguments by the table of section 3;
2. a geometry in the grid's CRS is brought into the grid's *pixel space*, where pixel
   ``(col, row)`` is the half-open unit square ``[col, col+1) x [row, row+1)``, and
   **every** pixel of a window around its bounds is tested, one predicate per pixel
   (shapely), with the rules of section 4 written out plainly;
3. a geometry in another CRS keeps its own: every pixel around it is taken there (its centre
   for polygons, its square for lines) and tested against the geometry's straight edges,
   which no chord then approximates; pixels within the contract's tolerance of an edge are
   reported as open (either answer is right);
4. each covered pixel's centre is transformed with pyproj into the cube's CRS, its source
   pixel found by plain arithmetic, and centres outside the cube dropped (section 5);
5. values are read with plain numpy indexing and the rows laid out as EE's list of lists.

No runs, no scanlines, no windows from footprints, no chunk logic: the cost is a shapely
predicate per pixel of the geometry's bounding box, fine for the small cases of the tests.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyproj
import shapely
import xarray as xr
from pyproj import CRS

from xr_getregion.grid import METRES_PER_DEGREE

__all__ = ["Brute", "BruteGrid", "brute_get_region", "covered_cells", "cube_grid", "working_grid"]

EPSG4326 = CRS.from_epsg(4326)

# A centre exactly on a polygon's boundary counts when the interior lies on its side facing
# lower columns or higher rows (GDAL's rasterizer, as coverage.py states it: ``x_in < centre
# <= x_out`` along a row, and a row counts an edge when ``ylo <= centre < yhi``). That is the
# limit of the strict interior test at the centre nudged by (-NUDGE_COL, +NUDGE_ROW) with
# 0 < NUDGE_ROW << NUDGE_COL: the row nudge only picks which edges the row crosses (half-open
# in y), the column nudge then puts a centre lying on a crossing inside when the interior is
# to its left. The nudges must be far below the distance from a centre to any edge not
# through it (above 1e-4 pixel for the tests' small lattice geometries), NUDGE_ROW times an
# edge's |dx/dy| below NUDGE_COL (slopes below 1000 here), and both above the ulp of the pixel
# coordinates (about 1e-10 at a million pixels from the origin). tests/test_reference_gdal.py
# checks the rule itself against GDAL.
NUDGE_COL = 1e-6
NUDGE_ROW = 1e-9

# A geometry in another CRS than the grid's (docs/semantics.md section 4): its edges are
# straight in its own CRS, so in pixel space they are curves, and the package follows them by
# chords within CURVE_TOLERANCE pixels. This brute force never draws a chord: it takes each
# candidate pixel centre (polygons) or pixel square (lines, its outline densified to a
# negligible error) back into the geometry's CRS and tests it there, exactly. A pixel whose
# answer changes when its centre moves, or its square grows or shrinks, by AMBIGUOUS pixels is
# returned apart, as one either answer may give: within the tolerance of the curve, the
# contract leaves it open. The number is the contract's, read here, not the package's code.
from xr_getregion.coverage import CURVE_TOLERANCE  # noqa: E402

AMBIGUOUS = 2 * CURVE_TOLERANCE
# Points along each side of a pixel square taken back into the geometry's CRS: over a
# pixel, the curve that side becomes strays from these chords by far less than AMBIGUOUS.
SQUARE_SIDE_POINTS = 16


@dataclass(frozen=True)
class BruteGrid:
    """A row-major affine ``(a, b, c, d, e, f)`` in ``crs``: ``x = a*col + b*row + c``,
    ``y = d*col + e*row + f``; ``shape`` ``(rows, cols)`` for a cube's own grid."""

    transform: tuple[float, float, float, float, float, float]
    crs: CRS
    shape: tuple[int, int] | None = None

    def centre(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of the centres of pixels ``(cols, rows)``."""
        a, b, c, d, e, f = self.transform
        u = np.asarray(cols, float) + 0.5
        v = np.asarray(rows, float) + 0.5
        return a * u + b * v + c, d * u + e * v + f

    def at(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of fractional pixel coordinates ``(u, v)``: the forward affine."""
        a, b, c, d, e, f = self.transform
        u = np.asarray(u, float)
        v = np.asarray(v, float)
        return a * u + b * v + c, d * u + e * v + f

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel coordinates of CRS coordinates: the inverse affine.

        docs/semantics.md section 4 gives ``col = (x - c) / a``, ``row = (y - f) / e`` for an
        axis-aligned grid; a rotated one is inverted by Cramer's rule.
        """
        a, b, c, d, e, f = self.transform
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if b == 0 and d == 0:
            return (x - c) / a, (y - f) / e
        det = a * e - b * d
        return (e * (x - c) - b * (y - f)) / det, (a * (y - f) - d * (x - c)) / det


def _regular_axis(values: np.ndarray) -> tuple[float, float]:
    """(first centre, step) of a regular coordinate: centres are ``first + step * i``."""
    values = np.asarray(values, float)
    return float(values[0]), float((values[-1] - values[0]) / (len(values) - 1))


def cube_grid(cube: xr.DataArray) -> BruteGrid:
    """The cube's own grid from its coordinates (pixel centres; y may run either way)."""
    x0, dx = _regular_axis(cube["x"].values)
    y0, dy = _regular_axis(cube["y"].values)
    crs = CRS.from_user_input(cube.rio.crs)
    return BruteGrid((dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2), crs, cube.shape[-2:])


def working_grid(
    cube: xr.DataArray, scale: float | None, crs: Any, crs_transform: Any
) -> BruteGrid:
    """The grid of docs/semantics.md section 3, from ``getRegion``'s arguments."""
    if isinstance(crs, str) and crs == "native":
        if scale is None and crs_transform is None:
            return cube_grid(cube)
        crs = None
    target = EPSG4326 if crs is None else CRS.from_user_input(crs)
    if crs_transform is not None:
        a, b, c, d, e, f = (float(v) for v in crs_transform)
        return BruteGrid((a, b, c, d, e, f), target)
    if scale is not None:
        if target.is_geographic:
            step = scale / METRES_PER_DEGREE
        else:
            # The tests' projected CRSs are all in metres.
            assert target.axis_info[0].unit_name == "metre", target
            step = float(scale)
        return BruteGrid((step, 0.0, 0.0, 0.0, step, 0.0), target)
    return BruteGrid((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), target)


def _parts(geometry: shapely.Geometry) -> list[shapely.Geometry]:
    """The simple parts (points, lines, polygons) of a possibly nested multi-part geometry."""
    if hasattr(geometry, "geoms"):  # Multi* and GeometryCollection
        return [p for g in geometry.geoms for p in _parts(g)]
    return [] if geometry.is_empty else [geometry]


def pixel_space(geometry: shapely.Geometry, geometry_crs: CRS, grid: BruteGrid) -> shapely.Geometry:
    """The geometry in ``grid``'s pixel space, vertex by vertex (exact for a geometry in the
    grid's CRS, and for points in any CRS)."""
    if geometry_crs != grid.crs:
        to_grid = pyproj.Transformer.from_crs(geometry_crs, grid.crs, always_xy=True)

        def project(xy: np.ndarray) -> np.ndarray:
            x, y = to_grid.transform(xy[:, 0], xy[:, 1])
            return np.column_stack(grid.to_pixel(x, y))

    else:

        def project(xy: np.ndarray) -> np.ndarray:
            return np.column_stack(grid.to_pixel(xy[:, 0], xy[:, 1]))

    return shapely.transform(geometry, project)


def _window(geometry: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel ``(cols, rows)`` of the geometry's bounds, with a pixel to spare."""
    xmin, ymin, xmax, ymax = geometry.bounds
    cols = np.arange(math.floor(xmin) - 1, math.floor(xmax) + 2)
    rows = np.arange(math.floor(ymin) - 1, math.floor(ymax) + 2)
    cc, rr = np.meshgrid(cols, rows)
    return cc.ravel(), rr.ravel()


def _polygon_cells(polygon: shapely.Polygon, mirrored: bool = False) -> set[tuple[int, int]]:
    """Pixels whose centre is inside (holes respected), boundary ties by GDAL's rule.

    Besides the half-open rule, GDAL burns the centres on every ring's *southern* horizontal
    edge (in the CRS), holes' included: the edge with the ring's own area on its north side.
    In pixel space that side is the higher rows, or the lower rows on a ``mirrored`` grid
    (rows running south): the limit of the test "inside the ring" nudged by -NUDGE_COL and by
    NUDGE_ROW towards that side, for centres on a horizontal edge of that ring.
    """
    cols, rows = _window(polygon)
    cx, cy = cols + 0.5, rows + 0.5
    inside = shapely.contains_xy(polygon, cx, cy)
    on_boundary = shapely.intersects_xy(polygon.boundary, cx, cy)
    nudged_inside = shapely.contains_xy(polygon, cx - NUDGE_COL, cy + NUDGE_ROW)
    covered = inside | (on_boundary & nudged_inside)
    north = -NUDGE_ROW if mirrored else NUDGE_ROW
    for ring in (polygon.exterior, *polygon.interiors):
        flat = [
            shapely.LineString([p, q]) for p, q in itertools.pairwise(ring.coords) if p[1] == q[1]
        ]
        if flat:
            on_flat = shapely.intersects_xy(shapely.MultiLineString(flat), cx, cy)
            own_side = shapely.contains_xy(shapely.Polygon(ring), cx - NUDGE_COL, cy + north)
            covered |= on_flat & own_side
    return set(zip(cols[covered].tolist(), rows[covered].tolist(), strict=True))


def _point_cell(x: float, y: float) -> tuple[int, int]:
    """The pixel containing a point: a point on a grid line starts the pixel there."""
    return math.floor(x), math.floor(y)


def _line_cells(line: shapely.LineString) -> set[tuple[int, int]]:
    """The pixels of a line's vertices, and those its segments pass through.

    A segment passes through pixel ``(col, row)`` when it shares a piece of positive length
    with the half-open square ``[col, col+1) x [row, row+1)``: its intersection with the
    closed square has positive length and does not lie on the square's right edge
    (``x == col + 1``) or top edge (``y == row + 1``), which belong to the next pixels.
    """
    xy = shapely.get_coordinates(line)
    cells = {_point_cell(x, y) for x, y in xy}
    for p, q in itertools.pairwise(xy):
        if (p == q).all():
            continue
        segment = shapely.LineString([p, q])
        cols, rows = _window(segment)
        boxes = shapely.box(cols, rows, cols + 1, rows + 1)
        hit = shapely.intersects(segment, boxes)
        for col, row, piece in zip(
            cols[hit].tolist(),
            rows[hit].tolist(),
            shapely.intersection(segment, boxes[hit]),
            strict=True,
        ):
            if piece.length == 0:
                continue  # a corner or an edge touched at one point only
            px, py = shapely.get_coordinates(piece).T
            if (px == col + 1).all() or (py == row + 1).all():
                continue  # along the right or top edge: that belongs to the next pixel
            cells.add((col, row))
    return cells


def covered_cells(pixel_geometry: shapely.Geometry, mirrored: bool = False) -> set[tuple[int, int]]:
    """All pixels a pixel-space geometry covers: the union over its parts
    (docs/semantics.md section 4). ``mirrored``: the grid's ``a*e - b*d < 0``."""
    cells: set[tuple[int, int]] = set()
    for part in _parts(pixel_geometry):
        if isinstance(part, shapely.Point):
            x, y = part.x, part.y
            if math.isfinite(x) and math.isfinite(y):
                cells.add(_point_cell(x, y))
        elif isinstance(part, shapely.LineString):  # LinearRing is a LineString too
            cells |= _line_cells(part)
        elif isinstance(part, shapely.Polygon):
            cells |= _polygon_cells(part, mirrored)
        else:
            raise TypeError(f"unexpected geometry part {part.geom_type}")
    return cells


def _reach(
    part: shapely.Geometry, geometry_crs: CRS, grid: BruteGrid
) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel a part in another CRS may cover: those of the pixel-space bounds of its
    outline, split very finely in its own CRS, widened by a tenth and two pixels; and, when
    it holds a pole, up to that pole's row (on a lon/lat grid the pole is a whole row)."""
    xmin, ymin, xmax, ymax = part.bounds
    extent = math.hypot(xmax - xmin, ymax - ymin)
    fine = shapely.segmentize(part, extent / 4096) if extent > 0 else part
    pixels = pixel_space(fine, geometry_crs, grid)
    xy = shapely.get_coordinates(pixels)
    xy = xy[np.isfinite(xy).all(axis=1)]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    if isinstance(part, shapely.Polygon):
        to_crs = pyproj.Transformer.from_crs(EPSG4326, geometry_crs, always_xy=True)
        for lat in (90.0, -90.0):
            px, py = to_crs.transform(0.0, lat)
            if math.isfinite(px) and shapely.Polygon(part.exterior).covers(shapely.Point(px, py)):
                to_grid = pyproj.Transformer.from_crs(EPSG4326, grid.crs, always_xy=True)
                u, v = grid.to_pixel(
                    *to_grid.transform(np.array([-180.0, 180.0]), np.array([lat, lat]))
                )
                x0, x1 = min(x0, *u), max(x1, *u)
                y0, y1 = min(y0, *v), max(y1, *v)
    mx, my = 0.1 * (x1 - x0) + 2, 0.1 * (y1 - y0) + 2
    cols, rows = _window(shapely.box(x0 - mx, y0 - my, x1 + mx, y1 + my))
    if grid.crs.is_geographic:
        # A centre past a pole is no place: such a pixel is in no cube.
        _, lat = grid.centre(cols, rows)
        cols, rows = cols[np.abs(lat) <= 90], rows[np.abs(lat) <= 90]
    return cols, rows


def _back(
    u: np.ndarray, v: np.ndarray, grid: BruteGrid, geometry_crs: CRS
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of ``grid`` taken into ``geometry_crs`` (on a lon/lat grid, a
    latitude past a pole is that pole: a pixel square reaching past it ends there)."""
    to_crs = pyproj.Transformer.from_crs(grid.crs, geometry_crs, always_xy=True)
    gx, gy = grid.at(u, v)
    if grid.crs.is_geographic:
        gy = np.clip(gy, -90.0, 90.0)
    x, y = to_crs.transform(gx, gy)
    return np.asarray(x, float), np.asarray(y, float)


def _reprojected_polygon_cells(
    polygon: shapely.Polygon, geometry_crs: CRS, grid: BruteGrid
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(sure, open) pixels of a polygon in another CRS: those whose centre, taken into that
    CRS, lies inside it; open where the centre moved by AMBIGUOUS pixels may fall outside
    (or inside), any way round."""
    cols, rows = _reach(polygon, geometry_crs, grid)
    shapely.prepare(polygon)
    inside = shapely.contains_xy(polygon, *_back(cols + 0.5, rows + 0.5, grid, geometry_crs))
    unsure = np.zeros(len(cols), bool)
    for angle in np.arange(8) * np.pi / 4:
        du, dv = AMBIGUOUS * math.cos(angle), AMBIGUOUS * math.sin(angle)
        moved = _back(cols + 0.5 + du, rows + 0.5 + dv, grid, geometry_crs)
        unsure |= shapely.contains_xy(polygon, *moved) != inside
    cells = list(zip(cols.tolist(), rows.tolist(), strict=True))
    sure = {c for c, i, u in zip(cells, inside, unsure, strict=True) if i and not u}
    return sure, {c for c, u in zip(cells, unsure, strict=True) if u}


def _square_rings(
    cols: np.ndarray, rows: np.ndarray, pad: float, grid: BruteGrid, crs: CRS
) -> np.ndarray:
    """The outlines of pixel squares ``[col - pad, col + 1 + pad] x [row - pad, row + 1 + pad]``
    taken into ``crs``, each side densified by SQUARE_SIDE_POINTS: ``(squares, points, 2)``."""
    t = np.linspace(0.0, 1.0, SQUARE_SIDE_POINTS, endpoint=False)
    lo, hi = -pad, 1.0 + pad
    span = hi - lo
    su = np.concatenate([lo + span * t, np.full_like(t, hi), hi - span * t, np.full_like(t, lo)])
    sv = np.concatenate([np.full_like(t, lo), lo + span * t, np.full_like(t, hi), hi - span * t])
    u = cols[:, None] + su[None]
    v = rows[:, None] + sv[None]
    x, y = _back(u.ravel(), v.ravel(), grid, crs)
    return np.stack([x, y], axis=-1).reshape(len(cols), len(su), 2)


def _squares(rings: np.ndarray) -> np.ndarray:
    """Polygons of :func:`_square_rings`' outlines."""
    return shapely.polygons(np.concatenate([rings, rings[:, :1]], axis=1))


def _reprojected_line_cells(
    line: shapely.LineString, geometry_crs: CRS, grid: BruteGrid
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(sure, open) pixels of a line in another CRS: the pixels of its vertices, and those
    whose square, taken into that CRS, the line passes through; open where the answer differs
    for the square grown and shrunk by AMBIGUOUS pixels."""
    vertices = shapely.get_coordinates(pixel_space(line, geometry_crs, grid))
    sure = {_point_cell(x, y) for x, y in vertices if math.isfinite(x) and math.isfinite(y)}
    cols, rows = _reach(line, geometry_crs, grid)
    rings = _square_rings(cols, rows, AMBIGUOUS, grid, geometry_crs)
    polar = _at_poles(cols, rows, geometry_crs, grid)
    if geometry_crs.is_geographic:  # outlines jumping across the antimeridian
        polar |= (np.abs(np.diff(rings[..., 0], axis=1)) > 180.0).any(axis=1)
        polar |= np.abs(rings[..., 0][:, -1] - rings[..., 0][:, 0]) > 180.0
    shapely.prepare(line)
    grown = shapely.intersects(line, _squares(rings))
    grown[polar] = False
    shrunk = np.zeros(len(cols), bool)
    shrunk[grown] = shapely.intersects(
        line, _squares(_square_rings(cols[grown], rows[grown], -AMBIGUOUS, grid, geometry_crs))
    )
    if polar.any():
        fine = _fine_pixel_line(line, geometry_crs, grid)
        shapely.prepare(fine)
        grown[polar] = shapely.intersects(fine, _pixel_squares(cols[polar], rows[polar], AMBIGUOUS))
        shrunk[polar] = shapely.intersects(
            fine, _pixel_squares(cols[polar], rows[polar], -AMBIGUOUS)
        )
    cells = list(zip(cols[grown].tolist(), rows[grown].tolist(), strict=True))
    sure |= {c for c, s in zip(cells, shrunk[grown], strict=True) if s}
    return sure, {c for c in cells if c not in sure}


# A pixel square reaching a pole of a lon/lat geometry CRS, or straddling its antimeridian,
# is no polygon there: the pole is one point on the grid but a whole line of longitudes in
# lon/lat, and the square's outline taken there jumps along it (a square with a corner on the
# South Pole, on a polar stereographic grid, became a wedge sweeping through longitudes the
# square never reaches); across the antimeridian its outline jumps from +180 to -180 and the
# polygon spans the other way round the globe. Both were found by the thorough profile. Such
# squares are tested in the grid's pixel space instead, against the line taken there
# densified uniformly in its own CRS to points FINE_STEP pixels apart: over such a step the
# curve strays from the chord by step**2 / (8 * radius) pixels, under AMBIGUOUS / 4 for any
# curve bent less sharply than a radius of 0.0125 pixel (a line passing within 1/80 of a pixel
# of the pole would be bent more: no test draws one).
FINE_STEP = 0.01


def _at_poles(cols: np.ndarray, rows: np.ndarray, geometry_crs: CRS, grid: BruteGrid) -> np.ndarray:
    """Which pixel squares, grown by AMBIGUOUS, hold a pole of the lon/lat ``geometry_crs``."""
    polar = np.zeros(len(cols), bool)
    if not geometry_crs.is_geographic or grid.crs.is_geographic:
        return polar
    to_grid = pyproj.Transformer.from_crs(EPSG4326, grid.crs, always_xy=True)
    for lat in (90.0, -90.0):
        x, y = to_grid.transform(0.0, lat)
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        u, v = grid.to_pixel(np.array([x]), np.array([y]))
        near = (cols - AMBIGUOUS <= u[0]) & (u[0] <= cols + 1 + AMBIGUOUS)
        near &= (rows - AMBIGUOUS <= v[0]) & (v[0] <= rows + 1 + AMBIGUOUS)
        polar |= near
    return polar


def _fine_pixel_line(
    line: shapely.LineString, geometry_crs: CRS, grid: BruteGrid
) -> shapely.LineString:
    """``line`` in ``grid``'s pixel space, each edge split uniformly in its own CRS into
    points at most about FINE_STEP pixels apart (measured on a first split of 1,024)."""
    to_grid = pyproj.Transformer.from_crs(geometry_crs, grid.crs, always_xy=True)

    def pixels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gx, gy = to_grid.transform(x, y)
        return np.stack(grid.to_pixel(gx, gy), axis=-1)

    xy = shapely.get_coordinates(line)
    out = [pixels(xy[:1, 0], xy[:1, 1])]
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        t = np.linspace(0.0, 1.0, 1025)
        first = pixels(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
        longest = float(np.hypot(*np.diff(first, axis=0).T).max())
        n = 1024 * max(1, math.ceil(longest / FINE_STEP))
        t = np.linspace(0.0, 1.0, n + 1)[1:]
        out.append(pixels(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    return shapely.LineString(np.concatenate(out))


def _pixel_squares(cols: np.ndarray, rows: np.ndarray, pad: float) -> np.ndarray:
    """The pixel-space squares ``[col - pad, col + 1 + pad] x [row - pad, row + 1 + pad]``."""
    return shapely.box(cols - pad, rows - pad, cols + 1 + pad, rows + 1 + pad)


def reprojected_cells(
    geometry: shapely.Geometry, geometry_crs: CRS, grid: BruteGrid
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(sure, open) pixels of a geometry in another CRS than the grid's: the union over its
    parts, a pixel some part surely covers being sure."""
    sure: set[tuple[int, int]] = set()
    unsure: set[tuple[int, int]] = set()
    for part in _parts(geometry):
        if isinstance(part, shapely.Point):
            ((x, y),) = shapely.get_coordinates(pixel_space(part, geometry_crs, grid))
            if math.isfinite(x) and math.isfinite(y):
                sure.add(_point_cell(x, y))
        elif isinstance(part, shapely.LineString):
            s, u = _reprojected_line_cells(part, geometry_crs, grid)
            sure |= s
            unsure |= u
        elif isinstance(part, shapely.Polygon):
            s, u = _reprojected_polygon_cells(part, geometry_crs, grid)
            sure |= s
            unsure |= u
        else:
            raise TypeError(f"unexpected geometry part {part.geom_type}")
    return sure, unsure - sure


def _nodata(cube: xr.DataArray) -> Any:
    for key in ("_FillValue", "nodata", "missing_value"):
        if cube.attrs.get(key) is not None:
            return cube.attrs[key]
    return None


class Brute(NamedTuple):
    """The brute force's table (EE's list of lists) and the ``(longitude, latitude)`` of the
    pixels it may or may not hold: a table equal to ``table`` without some of those rows
    follows the contract too."""

    table: list[list[Any]]
    open: set[tuple[float, float]]


def brute_get_region(
    cube: xr.DataArray,
    geometry: shapely.Geometry,
    scale: float | None = None,
    crs: Any = None,
    crsTransform: Any = None,  # EE's name, as in getRegion
    *,
    geometry_crs: Any = "EPSG:4326",
) -> Brute:
    """EE's ``getRegion`` table for a ``(time, band, y, x)`` cube, the slow obvious way, and
    the ``(longitude, latitude)`` of its rows the contract leaves open (see AMBIGUOUS).

    ``cube`` is numpy-backed (or small enough to load) with ``time``/``band`` coordinates, a
    CRS written by rioxarray and regular ``x``/``y`` pixel-centre coordinates.
    """
    grid = working_grid(cube, scale, crs, crsTransform)
    source = cube_grid(cube)
    shape_crs = CRS.from_user_input(geometry_crs)
    a, b, _, d, e, _ = grid.transform
    mirrored = a * e - b * d < 0
    if shape_crs != grid.crs:
        found, unsure = reprojected_cells(geometry, shape_crs, grid)
        found |= unsure
    else:
        found, unsure = covered_cells(pixel_space(geometry, shape_crs, grid), mirrored), set()
    cells = sorted(found, key=lambda cell: (cell[1], cell[0]))
    cols = np.array([c for c, _ in cells], dtype=np.int64)
    rows = np.array([r for _, r in cells], dtype=np.int64)

    # Each covered centre, in the cube's CRS and in lon/lat: one transformer each, per call.
    x, y = grid.centre(cols, rows)
    to_cube = pyproj.Transformer.from_crs(grid.crs, source.crs, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(grid.crs, EPSG4326, always_xy=True)
    sx, sy = (np.asarray(v, float) for v in to_cube.transform(x, y))
    lon, lat = (np.asarray(v, float) for v in to_lonlat.transform(x, y))

    # The source pixel containing the centre; none when the centre is outside the cube.
    fx, fy = source.to_pixel(sx, sy)
    nrows, ncols = source.shape  # type: ignore[misc]
    values = np.asarray(cube.transpose("time", "band", "y", "x").values)
    nodata = _nodata(cube)
    pixels = []
    open_rows: set[tuple[float, float]] = set()
    for k in range(len(cells)):
        if not (math.isfinite(fx[k]) and math.isfinite(fy[k])):
            continue
        ix, iy = math.floor(fx[k]), math.floor(fy[k])
        if 0 <= ix < ncols and 0 <= iy < nrows:
            pixels.append((float(lon[k]), float(lat[k]), iy, ix))
            if cells[k] in unsure:
                open_rows.add((float(lon[k]), float(lat[k])))

    ids = [str(i) for i in range(cube.sizes["time"])]
    times = cube["time"].values.astype("datetime64[ms]").astype(np.int64).tolist()
    bands = [str(b) for b in cube["band"].values.tolist()]
    table: list[list[Any]] = [["id", "longitude", "latitude", "time", *bands]]
    for t, (image_id, time_ms) in enumerate(zip(ids, times, strict=True)):
        for lon_k, lat_k, iy, ix in pixels:
            row: list[Any] = [image_id, lon_k, lat_k, time_ms]
            for b in range(len(bands)):
                value = values[t, b, iy, ix].item()  # int or float, by the band's dtype
                masked = (isinstance(value, float) and math.isnan(value)) or (
                    nodata is not None and value == nodata
                )
                row.append(None if masked else value)
            table.append(row)
    return Brute(table, open_rows)
