"""Which pixels of a grid a geometry covers (SEMANTICS.md section 4).

Everything here works in the grid's *pixel space*: the geometry is transformed once so that
pixel ``(col, row)`` is the unit square ``[col, col+1) x [row, row+1)``. Then

- a point covers the pixel containing it (``floor``, so a point on a grid line belongs to the
  pixel that starts there);
- a polygon covers every pixel whose centre lies inside it or on its boundary (holes respected);
- a line covers every pixel its open segments pass through, plus the pixels of its vertices;
- a multi-part geometry or a collection covers the union of its parts' pixels, each once.

Work is bounded by a window (the cube's footprint on the grid): polygons are tested strip by
strip inside their clipped bounds, lines are walked crossing by crossing, so the cost grows
with the covered pixels and the geometry's outline, never with the whole grid.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import CRS

from xr_getregion.errors import GeometryError
from xr_getregion.grid import Grid, transformer

__all__ = ["Window", "covered_pixels", "to_pixel_space", "window_of"]

Window = tuple[int, int, int, int]  # col0, row0, col1, row1, half-open

# Candidate centres tested per strip at most, to bound memory for very large polygons.
_MAX_CANDIDATES = 1 << 20
# When a geometry changes CRS, edges are split to at most this fraction of its extent so
# straight edges stay straight in their own CRS rather than in the grid's.
_SEGMENTS_PER_EXTENT = 64


def _project(xy: np.ndarray, src: CRS, grid: Grid) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    if src != grid.crs:
        x, y = transformer(src, grid.crs).transform(x, y)
    px, py = grid.to_pixel(np.asarray(x), np.asarray(y))
    return np.column_stack([px, py])


def to_pixel_space(shape: shapely.Geometry, crs: CRS, grid: Grid) -> shapely.Geometry:
    """Transform ``shape`` (in ``crs``) into ``grid``'s pixel space.

    Edges are densified first when the CRS changes, so an edge straight in ``crs`` is followed
    as such in the grid's CRS. Points that cannot be projected (outside the CRS's domain)
    become NaN and cover nothing; lines and polygons that cannot are an error.
    """
    if src_differs := (crs != grid.crs):
        has_edges = shapely.get_dimensions(shape) > 0
        if has_edges:
            minx, miny, maxx, maxy = shape.bounds
            extent = math.hypot(maxx - minx, maxy - miny)
            if extent > 0:
                shape = shapely.segmentize(shape, extent / _SEGMENTS_PER_EXTENT)
    out = shapely.transform(shape, lambda xy: _project(xy, crs, grid))
    if src_differs and shapely.get_dimensions(out) > 0:
        coords = shapely.get_coordinates(out)
        if not np.isfinite(coords).all():
            raise GeometryError(
                f"the geometry cannot be projected from {crs.to_string()} to the working grid's "
                f"CRS {grid.crs.to_string()}: part of it lies outside that CRS's domain. "
                "Clip it to the area of the cube or choose another crs=."
            )
    return out


def window_of(cube_grid: Grid, grid: Grid) -> Window:
    """The bounding window, in ``grid`` pixels, of the cube grid's footprint (with a margin)."""
    if cube_grid.same_pixels(grid) and cube_grid.shape is not None:
        rows, cols = cube_grid.shape
        return 0, 0, cols, rows
    rows, cols = cube_grid.shape or (1, 1)
    t = np.linspace(0.0, 1.0, 65)
    edge_cols = np.concatenate([t * cols, np.full_like(t, cols), t[::-1] * cols, np.zeros_like(t)])
    edge_rows = np.concatenate([np.zeros_like(t), t * rows, np.full_like(t, rows), t[::-1] * rows])
    a, b, c, d, e, f = cube_grid.transform
    x = a * edge_cols + b * edge_rows + c
    y = d * edge_cols + e * edge_rows + f
    if cube_grid.crs != grid.crs:
        x, y = transformer(cube_grid.crs, grid.crs).transform(x, y)
    px, py = grid.to_pixel(np.asarray(x), np.asarray(y))
    ok = np.isfinite(px) & np.isfinite(py)
    if not ok.any():
        return 0, 0, 0, 0
    # A pixel of margin: the footprint's edges are densified chords of curves.
    return (
        math.floor(px[ok].min()) - 1,
        math.floor(py[ok].min()) - 1,
        math.floor(px[ok].max()) + 2,
        math.floor(py[ok].max()) + 2,
    )


def covered_pixels(shape: shapely.Geometry, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The pixels a pixel-space geometry covers inside ``window``, in raster order.

    Parameters
    ----------
    shape
        A geometry already in pixel space (see :func:`to_pixel_space`).
    window
        ``(col0, row0, col1, row1)``, half-open: only pixels inside it are returned.

    Returns
    -------
    cols, rows : numpy.ndarray of int64
        Unique pixels sorted by row, then column.
    """
    found: list[np.ndarray] = []
    for part in _flat_parts(shape):
        kind = shapely.get_type_id(part)
        if kind == 0:  # Point
            found.append(_point_pixels(part))
        elif kind in (1, 2):  # LineString, LinearRing
            found.append(_line_pixels(part, window))
        elif kind == 3:  # Polygon
            found.append(_polygon_pixels(part, window))
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pixels = np.concatenate(found)
    col0, row0, col1, row1 = window
    inside = (
        (pixels[:, 0] >= col0)
        & (pixels[:, 0] < col1)
        & (pixels[:, 1] >= row0)
        & (pixels[:, 1] < row1)
    )
    pixels = pixels[inside]
    if len(pixels) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows_cols = np.unique(pixels[:, ::-1], axis=0)  # sorts by row, then col
    return rows_cols[:, 1].copy(), rows_cols[:, 0].copy()


def _flat_parts(shape: shapely.Geometry) -> list[shapely.Geometry]:
    parts = [shape]
    out = []
    while parts:
        g = parts.pop()
        if shapely.get_type_id(g) in (4, 5, 6, 7):  # Multi* and GeometryCollection
            parts.extend(shapely.get_parts(g).tolist())
        elif not g.is_empty:
            out.append(g)
    return out


def _pixels(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.column_stack([cols.astype(np.int64), rows.astype(np.int64)])


def _point_pixels(point: shapely.Geometry) -> np.ndarray:
    xy = shapely.get_coordinates(point)
    xy = xy[np.isfinite(xy).all(axis=1)]
    return _pixels(np.floor(xy[:, 0]), np.floor(xy[:, 1]))


def _line_pixels(line: shapely.Geometry, window: Window) -> np.ndarray:
    col0, row0, col1, row1 = window
    # Only the part inside the window (plus a pixel) can yield pixels we keep.
    line = shapely.clip_by_rect(line, col0 - 1, row0 - 1, col1 + 1, row1 + 1)
    cells = []
    for piece in _flat_parts(line):
        if shapely.get_type_id(piece) == 0:
            cells.append(_point_pixels(piece))
            continue
        xy = shapely.get_coordinates(piece)
        cells.append(_segment_pixels(xy[:-1], xy[1:]))
    return np.concatenate(cells) if cells else np.empty((0, 2), np.int64)


def _crossings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments from ``a`` to ``b`` (one axis), the parameters t where they cross an
    integer grid line, with the index of the segment each belongs to."""
    lo = np.ceil(np.minimum(a, b))
    hi = np.floor(np.maximum(a, b))
    count = np.where(a != b, np.maximum(hi - lo + 1, 0), 0).astype(np.int64)
    seg = np.repeat(np.arange(len(a)), count)
    offsets = np.cumsum(count) - count
    k = lo[seg] + (np.arange(count.sum()) - offsets[seg])
    return (k - a[seg]) / (b[seg] - a[seg]), seg


def _segment_pixels(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Pixels crossed by the segments ``p0[i] -> p1[i]``: the cell of the midpoint of every
    piece between consecutive grid-line crossings, and the cells of the endpoints."""
    n = len(p0)
    tx, sx = _crossings(p0[:, 0], p1[:, 0])
    ty, sy = _crossings(p0[:, 1], p1[:, 1])
    t = np.concatenate([np.zeros(n), np.ones(n), tx, ty])
    seg = np.concatenate([np.arange(n), np.arange(n), sx, sy])
    order = np.lexsort((t, seg))
    t, seg = t[order], seg[order]
    same = (seg[1:] == seg[:-1]) & (t[1:] > t[:-1])
    tm = (t[1:][same] + t[:-1][same]) / 2
    sm = seg[1:][same]
    mid = p0[sm] + tm[:, None] * (p1[sm] - p0[sm])
    pts = np.concatenate([mid, p0, p1])
    return _pixels(np.floor(pts[:, 0]), np.floor(pts[:, 1]))


def _polygon_pixels(poly: shapely.Geometry, window: Window) -> np.ndarray:
    col0, row0, col1, row1 = window
    minx, miny, maxx, maxy = poly.bounds
    # Pixel centres i + 0.5 within the bounds, clamped to the window (inclusive ranges).
    c0 = max(math.ceil(minx - 0.5), col0)
    c1 = min(math.floor(maxx - 0.5), col1 - 1)
    r0 = max(math.ceil(miny - 0.5), row0)
    r1 = min(math.floor(maxy - 0.5), row1 - 1)
    if c0 > c1 or r0 > r1:
        return np.empty((0, 2), np.int64)
    shapely.prepare(poly)
    ncols, nrows = c1 - c0 + 1, r1 - r0 + 1
    strip = max(1, min(math.ceil(nrows / 256), _MAX_CANDIDATES // ncols))
    out = []
    for s0 in range(r0, r1 + 1, strip):
        s1 = min(s0 + strip - 1, r1)
        if strip == nrows:
            lo, hi = c0, c1
        else:
            # Narrow the columns to where the polygon is within this strip of rows.
            piece = shapely.clip_by_rect(poly, c0, s0, c1 + 1, s1 + 1)
            if piece.is_empty:
                continue
            bx0, _, bx1, _ = piece.bounds
            lo = max(c0, math.ceil(bx0 - 0.5) - 1)
            hi = min(c1, math.floor(bx1 - 0.5) + 1)
            if lo > hi:
                continue
        step = max(1, _MAX_CANDIDATES // (s1 - s0 + 1))
        for chunk0 in range(lo, hi + 1, step):
            chunk1 = min(hi, chunk0 + step - 1)
            cc, rr = np.meshgrid(
                np.arange(chunk0, chunk1 + 1, dtype=np.int64),
                np.arange(s0, s1 + 1, dtype=np.int64),
            )
            cc, rr = cc.ravel(), rr.ravel()
            hit = shapely.intersects_xy(poly, cc + 0.5, rr + 0.5)
            out.append(_pixels(cc[hit], rr[hit]))
    return np.concatenate(out) if out else np.empty((0, 2), np.int64)
