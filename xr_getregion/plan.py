"""Planning an extraction from coordinates alone, and checking the value limit.

:func:`plan_region` and :func:`plan_features` decide everything an extraction returns (the
covered pixels, their centres in lon/lat, the source pixel each samples, the pyramid level,
the value count) from the geometry and the cube's coordinates; no value is read here.
:mod:`xr_getregion.reads` then reads what a :class:`Plan` lists.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from xr_getregion.coverage import (
    MAX_WORK,
    covered_runs_many,
    expand_runs,
    grid_too_fine,
    poles_inside,
    reaches_window,
    to_pixel_space_many,
    window_of,
    work_of,
)
from xr_getregion.cube import Cube
from xr_getregion.errors import ArgumentError, GetRegionWarning, TooManyValuesError
from xr_getregion.geometry import EPSG4326
from xr_getregion.grid import Grid, transformer
from xr_getregion.pyramid import check_policies, pyramid_level, read_policies
from xr_getregion.types import PyramidingLike

__all__ = [
    "MAX_VALUES",
    "Plan",
    "check_limit",
    "check_max_values",
    "plan_features",
    "plan_region",
]

#: Earth Engine's getRegion limit on ``pixels x bands x images``.
MAX_VALUES = 1_048_576


@dataclass(frozen=True, eq=False)
class Plan:
    """What an extraction will read and return, decided before any value is read.

    Attributes
    ----------
    cube, grid
        The cube and the working grid.
    cols, rows
        Working-grid pixels with a row, in raster order (row, then column).
    lon, lat
        Their centres in EPSG:4326.
    iy, ix
        The source (cube) pixel each samples: nearest neighbour of the working centre.
    feature
        For a many-feature plan, the position of the feature each pixel belongs to (pixels
        are grouped by feature, each group in raster order); ``None`` for one region.
    level
        The pyramid level read: 0 is the native pixels; at level ``k`` a working pixel takes
        the ``2**k x 2**k`` block of native pixels (aligned to the cube's origin) holding
        ``(iy, ix)``, aggregated by its band's policy.
    policies
        Each band's pyramiding policy (``"mean"``, ``"sample"``, ``"min"``, ``"max"``,
        ``"mode"``), or ``None`` when pyramids are off.
    """

    cube: Cube
    grid: Grid
    cols: np.ndarray
    rows: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    iy: np.ndarray
    ix: np.ndarray
    feature: np.ndarray | None = None
    count: int | None = None
    at_least: bool = False
    level: int = 0
    policies: tuple[str, ...] | None = None

    @property
    def n_pixels(self) -> int:
        """Rows per image: the covered pixels whose centre is inside the cube. For a plan
        over its limit, where counting stopped once past it (``at_least``), a lower bound."""
        return len(self.cols) if self.count is None else self.count

    @property
    def complete(self) -> bool:
        """False for a plan over its limit, which holds the count but no pixels."""
        return self.count is None

    @property
    def n_values(self) -> int:
        """``pixels x bands x images``, the number EE's limit applies to."""
        return self.n_pixels * len(self.cube.bands) * self.cube.n_images

    def reads(self) -> list[Any]:
        """What reading this plan will fetch, per array of the cube: the storage blocks (or
        dask chunks) read, their bytes before compression and, where the storage tells
        (COGs' tile byte counts, a local Zarr store's chunk files or shard indexes, a local
        netCDF4/HDF5 file's chunk index), their stored bytes, the bytes fetched. Computed
        from the plan, the cube's chunks and, for a COG-backed cube, one file's header (one
        ranged read, which the loader would make anyway), for a local Zarr store a stat per
        chunk read (a read of each shard's index in a sharded one), for a netCDF4 file its
        chunk index's B-tree; no value is read, nothing computed. See
        :class:`xr_getregion.reads.ReadEstimate`."""
        from xr_getregion.reads import estimate  # reads builds on plans: imported on use

        return estimate(self)


def plan_region(
    cube: Cube,
    shape: Any,
    shape_crs: CRS,
    grid: Grid,
    *,
    max_values: int | None = None,
    pyramiding: PyramidingLike = "mean",
) -> Plan:
    """Plan the extraction of ``shape`` (a planar shapely geometry in ``shape_crs``)."""
    return plan_features(
        cube,
        [shape],
        shape_crs,
        grid,
        per_feature=False,
        max_values=max_values,
        pyramiding=pyramiding,
    )


# Pixels handled per step when the working grid differs from the cube's: bounds the memory
# of counting a huge region to a few tens of MB whatever its size.
_BATCH_PIXELS = 1 << 20


def plan_features(
    cube: Cube,
    shapes: Sequence[Any],
    shape_crs: CRS,
    grid: Grid,
    *,
    per_feature: bool = True,
    max_values: int | None = None,
    pyramiding: PyramidingLike = "mean",
) -> Plan:
    """Plan the extraction of each of ``shapes`` separately: a pixel two features cover is
    planned once for each, and ``Plan.feature`` says which feature each pixel belongs to.

    With ``max_values``, pixel arrays are only built while the count stays within it: a plan
    over the limit holds the count (``n_pixels``) and no pixels, so refusing a huge region
    costs no memory. On the cube's own grid the count comes from the coverage runs alone,
    exactly; on another grid each covered pixel's centre is tested against the cube's
    extent, batch by batch, and counting stops at the first batch past the limit
    (``Plan.at_least``).

    ``pyramiding`` (EE's policies: ``"mean"``, ``"sample"``, ``"min"``, ``"max"``,
    ``"mode"``, a dict of them per band with ``".default"``, or ``None``) decides the values
    of a working grid coarser than the cube's: see :mod:`xr_getregion.pyramid`. The level is
    chosen from the two grids alone and recorded in ``Plan.level``.

    Shapes that miss the cube's bounds altogether (on the working grid) give no pixel and
    one :class:`GetRegionWarning` naming how many missed and both extents in lon/lat.

    Raises
    ------
    TooManyValuesError
        The region spans more than :data:`~xr_getregion.coverage.MAX_WORK` working pixels
        (a scale in degrees, most often), whatever ``max_values``.
    """
    check_max_values(max_values)
    policies = read_policies(pyramiding, cube.bands)
    level = 0 if policies is None else pyramid_level(cube.grid, grid)
    if level:
        check_policies(cube.bands, policies)  # type: ignore[arg-type]
    per_pixel = len(cube.bands) * cube.n_images
    budget = None if max_values is None else max_values // per_pixel
    window = window_of(cube.grid, grid)
    geoms = np.asarray(list(shapes), dtype=object)
    pixel_shapes = to_pixel_space_many(geoms, shape_crs, grid, window)
    same = grid.same_pixels(cube.grid)
    if not same:
        # Before any run or pixel is listed: the area and outline, counted in pixels of a
        # grid in degrees-as-metres, run to 1e11 and more.
        work = work_of(pixel_shapes, window)
        if work > MAX_WORK:
            raise grid_too_fine(work, grid, cube.grid)
    _warn_missed(cube.grid, grid, geoms, shape_crs, pixel_shapes, window, per_feature)
    runs = covered_runs_many(pixel_shapes, window, grid.mirrored)
    at_least = False
    if same:
        # The window is the cube itself: every covered pixel has a row, counted from runs.
        total = int((runs[2] - runs[1]).sum())
        keep = budget is None or total <= budget
        if keep and total > MAX_WORK:
            raise grid_too_fine(total, grid, cube.grid)
        if keep:
            cols, rows, feature = expand_runs(*runs)
            iy, ix = rows, cols
    else:
        total, kept = 0, []
        lengths = np.cumsum(runs[2] - runs[1])
        start = 0
        while start < len(lengths):
            # Batches of about _BATCH_PIXELS pixels bound the memory of counting.
            done = lengths[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(lengths, done + _BATCH_PIXELS, "right")))
            cols, rows, feature = expand_runs(*(a[start:stop] for a in runs))
            start = stop
            iy, ix, inside = _source_pixels(cube.grid, grid, cols, rows)
            total += int(inside.sum())
            keep = budget is None or total <= budget
            if not keep:
                # Past the limit: the rest need not be tested (they may be billions).
                at_least = start < len(lengths)
                break
            kept.append((cols[inside], rows[inside], iy[inside], ix[inside], feature[inside]))
        keep = budget is None or total <= budget
        if keep and kept:
            cols, rows, iy, ix, feature = (np.concatenate(a) for a in zip(*kept, strict=True))
        elif keep:
            cols = rows = iy = ix = feature = np.empty(0, np.int64)
    if not keep:
        empty = np.empty(0, np.int64)
        return Plan(
            cube=cube,
            grid=grid,
            cols=empty,
            rows=empty,
            lon=empty.astype(float),
            lat=empty.astype(float),
            iy=empty,
            ix=empty,
            count=total,
            at_least=at_least,
            level=level,
            policies=policies,
        )
    x, y = grid.centres(cols, rows)
    if grid.crs == EPSG4326:
        lon, lat = x, y
    else:
        lon, lat = transformer(grid.crs, EPSG4326).transform(x, y)
    return Plan(
        cube=cube,
        grid=grid,
        cols=cols,
        rows=rows,
        lon=np.asarray(lon, float),
        lat=np.asarray(lat, float),
        iy=iy.astype(np.int64),
        ix=ix.astype(np.int64),
        feature=feature if per_feature else None,
        level=level,
        policies=policies,
    )


def _warn_missed(
    cube_grid: Grid,
    grid: Grid,
    shapes: np.ndarray,
    shape_crs: CRS,
    pixel_shapes: np.ndarray,
    window: Any,
    per_feature: bool,
) -> None:
    """Warn once when shapes miss the cube's bounds on the working grid (so they give no
    row), naming how many and, in lon/lat, their extent and the cube's.

    An empty table is Earth Engine's answer to a geometry outside the collection, but almost
    always a mistake (a wrong CRS, the wrong cube). A shape inside the bounds that covers no
    pixel centre (a tiny polygon) is no miss: that empty table is the right answer.
    """
    col0, row0, col1, row1 = window
    bounds = shapely.box(col0, row0, col1, row1)
    shapely.prepare(bounds)
    with np.errstate(invalid="ignore"):
        missed = ~shapely.intersects(bounds, pixel_shapes)
    # In the grid's pixel space a shape may fall outside the window without missing the
    # cube: a polygon across 180 or around a pole on a lon/lat grid is replaced by the boxes
    # of the centres it holds (none when it is tiny), and one on the 180 seam may be labelled
    # a turn away. Such a shape still reaches the window's area in its own CRS; a shape far
    # from the cube (clipped away, or on the far side of the Earth) does not.
    seams = shape_crs != grid.crs or grid.crs.is_geographic
    unsure = missed & (shapely.is_empty(pixel_shapes) | seams)
    if unsure.any():
        missed[unsure] = ~reaches_window(shapes[unsure], shape_crs, grid, window)
    if not missed.any():
        return
    xy = shapely.get_coordinates(shapes[missed])
    lon, lat = xy[:, 0], xy[:, 1]
    if shape_crs != EPSG4326:
        lon, lat = (np.asarray(v) for v in transformer(shape_crs, EPSG4326).transform(lon, lat))
    theirs = _extent(lon, lat)
    ours = _extent(*_cube_lonlat(cube_grid))
    if not per_feature:
        head = "the geometry misses the cube, so the table is the header alone (as in Earth Engine)"
        who, verb, crs_of = "the geometry", "spans", "it is"
    else:
        head = (
            f"{int(missed.sum())} of {len(shapes)} features miss the cube and give no rows "
            f"(the first at position {int(np.flatnonzero(missed)[0])})"
        )
        who, verb, crs_of = "they", "span", "they are"
    warnings.warn(
        f"{head}. In EPSG:4326 longitude/latitude, {who} {verb} {theirs}; the cube spans "
        f"{ours}. Check the CRS: {crs_of} read in {shape_crs.to_string()}; pass "
        "geometry_crs= if the numbers are in another CRS.",
        GetRegionWarning,
        stacklevel=4,
    )


def _extent(lon: np.ndarray, lat: np.ndarray) -> str:
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return "no place on Earth (its coordinates cannot be transformed)"
    w, e, s, n = lon[ok].min(), lon[ok].max(), lat[ok].min(), lat[ok].max()
    return f"longitude {w:.6g} to {e:.6g}, latitude {s:.6g} to {n:.6g}"


def _cube_lonlat(cube_grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Points of the cube's outline in lon/lat (64 per side), and the poles it holds."""
    rows, cols = cube_grid.shape or (1, 1)
    x, y = cube_grid.outline(0, 0, cols, rows)
    if cube_grid.crs != EPSG4326:
        x, y = (np.asarray(v) for v in transformer(cube_grid.crs, EPSG4326).transform(x, y))
    # A pole inside a projected cube is no point of its outline, but its latitude bounds it.
    for lat in poles_inside(cube_grid):
        x, y = np.append(x, [-180.0, 180.0]), np.append(y, [lat, lat])
    return x, y


def _source_pixels(
    src: Grid, grid: Grid, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cube pixel containing each working pixel's centre, and whether it is in the cube."""
    x, y = grid.centres(cols, rows)
    if grid.crs != src.crs:
        x, y = transformer(grid.crs, src.crs).transform(x, y)
    # A geographic cube labelled 0..360 (or 179..181) holds longitude -90 under another label.
    fx, fy = src.to_pixel(src.wrap_longitude(x), np.asarray(y))
    nrows, ncols = src.shape  # type: ignore[misc]
    with np.errstate(invalid="ignore"):
        ix, iy = np.floor(fx), np.floor(fy)
        # A working pixel whose centre is outside the cube has no image covering it: no row.
        inside = np.isfinite(ix) & np.isfinite(iy)
        inside &= (ix >= 0) & (ix < ncols) & (iy >= 0) & (iy < nrows)
    return (
        np.where(inside, iy, 0).astype(np.int64),
        np.where(inside, ix, 0).astype(np.int64),
        inside,
    )


def check_max_values(max_values: int | None) -> None:
    """Refuse a ``max_values`` that is neither ``None`` nor a positive integer."""
    if max_values is None:
        return
    if (
        isinstance(max_values, bool)
        or not isinstance(max_values, numbers.Integral)
        or max_values < 1
    ):
        raise ArgumentError(
            f"max_values must be a positive integer, or None for no limit; got {max_values!r}."
        )


def check_limit(plan: Plan, max_values: int | None) -> None:
    """Refuse a plan over ``max_values`` values, with EE's message and the ways under it.

    Raises
    ------
    TooManyValuesError
        ``pixels x bands x images > max_values``.
    """
    check_max_values(max_values)
    if max_values is not None and plan.n_values > max_values:
        b, i = len(plan.cube.bands), plan.cube.n_images
        p = f"at least {plan.n_pixels}" if plan.at_least else plan.n_pixels
        raise TooManyValuesError(
            f"ImageCollection.getRegion: Too many values: {p} points x {b} bands x {i} images "
            f"> {max_values}. To get under it: a smaller geometry or a coarser scale= (fewer "
            "points), fewer bands (cube.sel(band=[...])), fewer images (cube.sel(time=slice(...))"
            "), or raise the limit with max_values= (None lifts it)."
        )
    if not plan.complete:
        raise ArgumentError(
            f"this plan holds only its count: plan it with max_values={max_values!r}."
        )
