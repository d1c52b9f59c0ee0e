"""A brute-force ``getRegion``: slow, simple and obviously correct, to check the real one.

It follows ``docs/semantics.md`` sections 3 to 6 literally and shares no code with
``xr_getregion`` (only the constant ``METRES_PER_DEGREE``, which is part of the contract):

1. the working grid is built from the arguments by the table of section 3;
2. the geometry is brought into the grid's *pixel space*, where pixel ``(col, row)`` is the
   half-open unit square ``[col, col+1) x [row, row+1)``;
3. **every** pixel of a window around the geometry's bounds is tested, one predicate per
   pixel (shapely), with the rules of section 4 written out plainly;
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
from typing import Any

import numpy as np
import pyproj
import shapely
import xarray as xr
from pyproj import CRS

from xr_getregion.grid import METRES_PER_DEGREE

__all__ = ["BruteGrid", "brute_get_region", "covered_cells", "cube_grid", "working_grid"]

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

# coverage.py's contract for a geometry in another CRS than the grid's: edges are first split
# into pieces of at most 1/64 of the geometry's extent (the diagonal of its bounds), so an edge
# straight in its own CRS is followed as such; the pieces are then straight in pixel space.
SEGMENTS_PER_EXTENT = 64
# Except where those pieces stray from the edges by a good part of a pixel (near a pole): a
# polygon in a projected CRS whose pieces span more than this many degrees of longitude on an
# axis-aligned lon/lat grid covers the pixels whose centre, taken into its own CRS, is inside.
WIDE_DEGREES = 1.0


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


def pixel_space(
    geometry: shapely.Geometry,
    geometry_crs: CRS,
    grid: BruteGrid,
    whole: shapely.Geometry | None = None,
) -> shapely.Geometry:
    """The geometry in ``grid``'s pixel space (densified first when the CRS differs, by the
    extent of ``whole`` when ``geometry`` is a part of it)."""
    if geometry_crs != grid.crs:
        if shapely.get_dimensions(geometry) > 0:
            xmin, ymin, xmax, ymax = (geometry if whole is None else whole).bounds
            extent = math.hypot(xmax - xmin, ymax - ymin)
            if extent > 0:
                geometry = shapely.segmentize(geometry, extent / SEGMENTS_PER_EXTENT)
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


def _centres_inside(
    pixel_polygon: shapely.Polygon, polygon: shapely.Polygon, crs: CRS, grid: BruteGrid
) -> set[tuple[int, int]]:
    """Pixels whose centre, taken into ``crs``, lies inside ``polygon`` there: every pixel of
    its pixel-space bounds, widened by a tenth (the pieces stray near a pole) is tested."""
    xmin, ymin, xmax, ymax = pixel_polygon.bounds
    mx, my = 0.1 * (xmax - xmin) + 2, 0.1 * (ymax - ymin) + 2
    cols, rows = _window(shapely.box(xmin - mx, ymin - my, xmax + mx, ymax + my))
    x, y = grid.centre(cols, rows)
    to_crs = pyproj.Transformer.from_crs(grid.crs, crs, always_xy=True)
    px, py = (np.asarray(v, float) for v in to_crs.transform(x, y))
    inside = shapely.contains_xy(polygon, px, py)
    return set(zip(cols[inside].tolist(), rows[inside].tolist(), strict=True))


def _nodata(cube: xr.DataArray) -> Any:
    for key in ("_FillValue", "nodata", "missing_value"):
        if cube.attrs.get(key) is not None:
            return cube.attrs[key]
    return None


def brute_get_region(
    cube: xr.DataArray,
    geometry: shapely.Geometry,
    scale: float | None = None,
    crs: Any = None,
    crsTransform: Any = None,  # EE's name, as in getRegion
    *,
    geometry_crs: Any = "EPSG:4326",
) -> list[list[Any]]:
    """EE's ``getRegion`` table for a ``(time, band, y, x)`` cube, the slow obvious way.

    ``cube`` is numpy-backed (or small enough to load) with ``time``/``band`` coordinates, a
    CRS written by rioxarray and regular ``x``/``y`` pixel-centre coordinates.
    """
    grid = working_grid(cube, scale, crs, crsTransform)
    source = cube_grid(cube)
    shape_crs = CRS.from_user_input(geometry_crs)
    shape = pixel_space(geometry, shape_crs, grid)
    a, b, _, d, e, _ = grid.transform
    mirrored = a * e - b * d < 0
    if grid.crs.is_geographic and not shape_crs.is_geographic and b == 0 and d == 0:
        found: set[tuple[int, int]] = set()
        for original in _parts(geometry):
            part = pixel_space(original, shape_crs, grid, whole=geometry)
            xs = shapely.get_coordinates(part)[:, 0]
            if isinstance(part, shapely.Polygon) and np.ptp(xs) * abs(a) > WIDE_DEGREES:
                found |= _centres_inside(part, original, shape_crs, grid)
            else:
                found |= covered_cells(part, mirrored)
        cells = sorted(found, key=lambda cell: (cell[1], cell[0]))
    else:
        cells = sorted(covered_cells(shape, mirrored), key=lambda cell: (cell[1], cell[0]))
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
    for k in range(len(cells)):
        if not (math.isfinite(fx[k]) and math.isfinite(fy[k])):
            continue
        ix, iy = math.floor(fx[k]), math.floor(fy[k])
        if 0 <= ix < ncols and 0 <= iy < nrows:
            pixels.append((float(lon[k]), float(lat[k]), iy, ix))

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
    return table
