"""Planning an extraction from coordinates, checking the limit, and gathering the values.

:func:`plan_region` decides everything (covered pixels, their centres in lon/lat, the source
pixel each samples, the value count) from the geometry and the cube's coordinates alone.
:func:`gather` then reads the values: for dask-backed bands, one graph whose tasks each take
one source chunk and the small index arrays of the covered pixels inside it, so only chunks
holding covered pixels are read, each once for all the bands it holds.
"""

from __future__ import annotations

import numbers
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import shapely
import xarray as xr
from dask.array.chunk import getitem
from dask.base import is_dask_collection, tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from pyproj import CRS

from xr_getregion.coverage import (
    MAX_WORK,
    _poles_inside,
    covered_runs_many,
    expand_runs,
    grid_too_fine,
    reaches_window,
    to_pixel_space_many,
    window_of,
    work_of,
)
from xr_getregion.cube import Band, Cube
from xr_getregion.errors import ArgumentError, CubeError, GetRegionWarning, TooManyValuesError
from xr_getregion.geometry import EPSG4326
from xr_getregion.grid import Grid, transformer
from xr_getregion.pyramid import (
    BandRule,
    check_policies,
    out_dtype,
    pyramid_level,
    pyramid_read_tasks,
    read_policies,
)
from xr_getregion.types import PyramidingLike

__all__ = [
    "MAX_VALUES",
    "Plan",
    "check_limit",
    "check_max_values",
    "gather",
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
        cube, [shape], shape_crs, grid, per_feature=False, max_values=max_values,
        pyramiding=pyramiding,
    )  # fmt: skip


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
        return Plan(cube, grid, empty, empty, empty.astype(float), empty.astype(float),
                    empty, empty, None, count=total, at_least=at_least, level=level,
                    policies=policies)  # fmt: skip
    x, y = grid.centres(cols, rows)
    if grid.crs == EPSG4326:
        lon, lat = x, y
    else:
        lon, lat = transformer(grid.crs, EPSG4326).transform(x, y)
    return Plan(
        cube, grid, cols, rows, np.asarray(lon, float), np.asarray(lat, float),
        iy.astype(np.int64), ix.astype(np.int64), feature if per_feature else None,
        level=level, policies=policies,
    )  # fmt: skip


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
    for lat in _poles_inside(cube_grid):
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


def gather(plan: Plan) -> dict[str, np.ndarray]:
    """Read the planned values: for each band, an ``(images, pixels)`` array.

    Dask-backed bands are gathered in one ``dask.compute`` call whose graph reads only the
    chunks that hold covered pixels and returns each chunk's few pixels as they are; they are
    put in place once, here, in the array the table is built from. Other bands (numpy, lazily
    indexed files) are read with xarray's vectorised indexing of just those pixels.
    """
    if plan.level:
        return _gather_pyramid(plan)
    cube = plan.cube
    # Each source pixel is read once, however many working pixels or features sample it.
    width = cube.grid.shape[1]  # type: ignore[index]
    unique, inverse = np.unique(plan.iy * width + plan.ix, return_inverse=True)
    iy, ix = np.divmod(unique, width)
    # Raster-ordered plans without repeats (one region on the cube's grid) need no reorder.
    in_order = bool(np.array_equal(inverse, np.arange(len(inverse))))
    lazy: list[tuple[list[Band], Reads]] = []
    out: dict[str, np.ndarray] = {}
    for a, bands in enumerate(band_groups(cube)):
        arr = bands[0].array
        if plan.n_pixels and is_dask_collection(arr.data):
            data = _as_4d(arr, cube, bands[0].band_dim)
            name = f"getregion-read-{tokenize(data.name, iy, ix)}-{a}"
            # The array's position in the key index keeps keys apart if names are cut.
            lazy.append((bands, read_tasks(data, [(iy, ix)], name, (a,))))
        else:
            values = _eager_gather(arr, cube, bands[0].band_dim, iy, ix)
            for band in bands:
                out[band.name] = np.take(values[:, band.band_index], inverse, axis=1)
    if lazy:
        # One compute for all arrays, returning the blocks as read (not concatenated into
        # a dask array's chunks); each is placed once, here.
        keys = [reads.keys[0] for _, reads in lazy]
        name = "getregion-blocks-" + tokenize(keys)
        graph = optimized_reads([reads for _, reads in lazy])
        placements = [reads.placements[0] for _, reads in lazy]
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The result arrays are allocated and first touched while the chunks are read
            # (reading leaves a core partly idle), not after: on a fresh process's memory,
            # first touches cost more than the copy.
            buffers = pool.submit(lambda: [p.allocate() for p in placements])
            (blocks,) = dask.compute(Delayed(name, {**graph, name: keys}))
        for (bands, _), placement, values, buffer in zip(
            lazy, placements, blocks, buffers.result(), strict=True
        ):
            placed = placement.place(values, buffer)
            if not in_order:
                placed = np.take(placed, inverse, axis=2)
            for band in bands:
                out[band.name] = placed[band.band_index]  # C-ordered (image, pixel)
    return {band.name: out[band.name] for band in cube.bands}


def block_keys(plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct level-k blocks ``(by, bx)`` of a pyramid plan's pixels, in raster
    order, and each pixel's position among them."""
    k = plan.level
    nbx = -(-plan.cube.grid.shape[1] // (1 << k))  # type: ignore[index]
    unique, inverse = np.unique((plan.iy >> k) * nbx + (plan.ix >> k), return_inverse=True)
    by, bx = np.divmod(unique, nbx)
    return by, bx, inverse


def band_rules(plan: Plan, bands: list[Band]) -> tuple[BandRule, ...]:
    """The pyramid rule of each band index of ``bands``' array, in band-index order."""
    policy = dict(zip(plan.cube.band_names, plan.policies or (), strict=True))
    ordered = sorted(bands, key=lambda b: b.band_index)
    return tuple(BandRule(policy[b.name], tuple(b.nodata), b.dtype) for b in ordered)


#: Chunk side given to a band array not backed by dask when a pyramid level is read, so its
#: blocks are read and reduced as a dask array's are.
PYRAMID_CHUNK = 2048


def as_dask_4d(arr: xr.DataArray, cube: Cube, band_dim: str | None) -> da.Array:
    """The band array as dask ``(image, band, y, x)``; one not backed by dask (numpy, a
    lazily indexed file) is chunked spatially first, without hashing its values."""
    if not is_dask_collection(arr.data):
        chunks = {cube.ydim: PYRAMID_CHUNK, cube.xdim: PYRAMID_CHUNK}
        arr = arr.chunk(chunks, token=uuid.uuid4().hex)
    return _as_4d(arr, cube, band_dim)


def _gather_pyramid(plan: Plan) -> dict[str, np.ndarray]:
    """:func:`gather` at pyramid level ``plan.level > 0``: each distinct block is reduced
    once, in the tasks reading the chunks holding it, and its value given to every working
    pixel it holds."""
    groups = band_groups(plan.cube)
    policy = dict(zip(plan.cube.band_names, plan.policies or (), strict=True))
    if not plan.n_pixels:
        return {
            b.name: np.empty((plan.cube.n_images, 0), out_dtype(b.dtype, policy[b.name]))
            for b in plan.cube.bands
        }
    by, bx, inverse = block_keys(plan)
    reads = []
    for a, bands in enumerate(groups):
        data = as_dask_4d(bands[0].array, plan.cube, bands[0].band_dim)
        name = f"getregion-pyramid-{tokenize(data.name, plan.level, by, bx)}-{a}"
        rules = band_rules(plan, bands)
        reads.append(pyramid_read_tasks(data, [(by, bx)], plan.level, rules, name, (a,)))
    keys = [r.keys[0] for r in reads]
    name = "getregion-blocks-" + tokenize(keys)
    merged = HighLevelGraph.merge(*(r.graph for r in reads))
    graph = dict(da.Array.__dask_optimize__(merged, [k for ks in keys for k in ks]))
    (results,) = dask.compute(Delayed(name, {**graph, name: keys}))
    out: dict[str, np.ndarray] = {}
    for a, bands in enumerate(groups):
        values = reads[a].combines[0].place(results[a])
        for band in bands:
            out[band.name] = np.take(values[band.band_index], inverse, axis=1)
    return {band.name: out[band.name] for band in plan.cube.bands}


def band_groups(cube: Cube) -> list[list[Band]]:
    """Bands grouped by the array holding them (a DataArray's band dim is one array), so each
    array is read once for all its bands."""
    groups: dict[int, list[Band]] = {}
    for band in cube.bands:
        groups.setdefault(id(band.array), []).append(band)
    return list(groups.values())


def _dims(arr: xr.DataArray, cube: Cube, band_dim: str | None) -> list[str]:
    return [d for d in (cube.image_dim, band_dim, cube.ydim, cube.xdim) if d is not None]


def _as_4d(arr: xr.DataArray, cube: Cube, band_dim: str | None) -> da.Array:
    """The band array as dask ``(image, band, y, x)``; missing dims become length 1."""
    data = arr.variable.transpose(*_dims(arr, cube, band_dim)).data
    if cube.image_dim is None:
        data = data[None]
    if band_dim is None:
        data = data[:, None]
    return data


def _eager_gather(
    arr: xr.DataArray, cube: Cube, band_dim: str | None, iy: np.ndarray, ix: np.ndarray
) -> np.ndarray:
    var = arr.variable.transpose(*_dims(arr, cube, band_dim))
    picked = var.isel(
        {cube.ydim: xr.Variable("__pixel__", iy), cube.xdim: xr.Variable("__pixel__", ix)}
    )
    values = _native(np.asarray(picked.values))
    if cube.image_dim is None:
        values = values[None]
    if band_dim is None:
        values = values[:, None]
    return values


def chunk_groups(
    chunks: tuple[tuple[int, ...], ...], iy: np.ndarray, ix: np.ndarray
) -> list[tuple[int, int, np.ndarray]]:
    """Pixels ``(iy, ix)`` grouped by the spatial chunk of ``chunks`` (``(image, band, y, x)``
    chunks) holding them: ``(by, bx, positions)`` for each chunk holding any, in chunk order,
    ``positions`` indexing ``iy``/``ix`` in their own order."""
    ybounds = np.cumsum((0, *chunks[2]))
    xbounds = np.cumsum((0, *chunks[3]))
    nxb = len(chunks[3])
    key = (np.searchsorted(ybounds, iy, side="right") - 1) * nxb + (
        np.searchsorted(xbounds, ix, side="right") - 1
    )
    order = np.argsort(key, kind="stable")
    blocks, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    return [
        (int(b) // nxb, int(b) % nxb, order[s : s + c])
        for b, s, c in zip(blocks, starts, counts, strict=True)
    ]


def _take(block: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    return _native(np.asarray(block[:, :, iy, ix]))


def _native(values: np.ndarray) -> np.ndarray:
    """``values`` in native byte order: pandas and pyarrow refuse byte-swapped arrays (a
    big-endian ``>i2`` band from a FITS file or ``astype('>f4')``). Swapping only the
    gathered pixels costs little; the same array when already native."""
    if values.dtype.isnative:
        return values
    return values.astype(values.dtype.newbyteorder("="))


@dataclass(frozen=True)
class Placement:
    """Where the blocks read for a pixel list go in its ``(band, image, pixel)`` array.

    ``targets[k]`` is ``(band slice, image slice, pixel positions)`` for the ``k``-th block,
    the positions a slice when they run without gaps; ``shape`` is ``(bands, images,
    pixels)``. Small and picklable: a partition task can carry it.
    """

    targets: list[tuple[slice, slice, slice | np.ndarray]]
    shape: tuple[int, int, int]
    dtype: np.dtype

    def allocate(self) -> np.ndarray:
        """An uninitialised array for :meth:`place`, each of its memory pages touched once."""
        out = np.empty(self.shape, dtype=self.dtype)
        flat = out.reshape(-1)
        flat[:: max(1, 4096 // out.itemsize)] = 0
        return out

    def place(self, blocks: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """``blocks``, each ``(images, bands, pixels)``, as one ``(band, image, pixel)``
        array (``out`` if given, from :meth:`allocate`), pixels in the order asked: one
        copy, no concatenation."""
        out = np.empty(self.shape, dtype=self.dtype) if out is None else out
        for (bands, images, pixels), block in zip(self.targets, blocks, strict=True):
            if block.dtype != self.dtype:  # never cast quietly (NaN into an integer band)
                raise CubeError(
                    f"a chunk of this cube holds {block.dtype} values, but its dask array "
                    f"declares {self.dtype}; give the array its true dtype (for example "
                    "map_blocks(..., dtype=...) or .astype(...))."
                )
            out[bands, images, pixels] = block.transpose(1, 0, 2)
        return out


@dataclass(frozen=True)
class Reads:
    """The tasks reading pixel sets from a 4-D ``(image, band, y, x)`` dask array.

    One task per (source block holding pixels of a set, image chunk, band chunk) takes the
    block, or only the pixels' bounding window of it when that is small (see
    :data:`WINDOW_SHARE`), and the local indices of the set's pixels in it, the only arrays
    it carries, and returns ``(images, bands, pixels)``. Blocks holding none of the pixels
    are not in ``graph``, so they are never read. For pixel set ``s``, ``keys[s]`` lists its
    tasks and ``placements[s]`` where their results go, in the same order.
    """

    graph: HighLevelGraph
    keys: list[list[tuple]]
    placements: list[Placement]


def read_tasks(
    data: da.Array,
    pixel_sets: Sequence[tuple[np.ndarray, np.ndarray]],
    name: str,
    prefix: tuple = (),
) -> Reads:
    """The :class:`Reads` of ``pixel_sets``, each ``(iy, ix)``, from ``data``.

    Keys are ``(name, *prefix, image chunk, band chunk, n)`` with ``n`` counting blocks over
    all sets: unique in their index, not only in their name, because dask's fusion renames
    a fused read after every name in it and cuts long names to a short hash. Reads of
    several arrays computed together need distinct names (graph layers) and prefixes.
    """
    ybounds = np.cumsum((0, *data.chunks[2]))
    xbounds = np.cumsum((0, *data.chunks[3]))
    tbounds = np.cumsum((0, *data.chunks[0]))
    bbounds = np.cumsum((0, *data.chunks[1]))
    index_dtype = np.int32 if max(data.chunks[2] + data.chunks[3]) < 2**31 else np.int64
    layers = [
        (ti, bi, slice(int(tbounds[ti]), int(tbounds[ti + 1])),
         slice(int(bbounds[bi]), int(bbounds[bi + 1])))
        for ti in range(len(data.chunks[0])) for bi in range(len(data.chunks[1]))
    ]  # fmt: skip
    dsk: dict[tuple, Any] = {}
    keys: list[list[tuple]] = []
    placements: list[Placement] = []
    n = 0
    for iy, ix in pixel_sets:
        groups = []
        for by, bx, positions in chunk_groups(data.chunks, iy, ix):
            liy = iy[positions] - ybounds[by]
            lix = ix[positions] - xbounds[bx]
            window = _small_window(liy, lix, data.chunks[2][by] * data.chunks[3][bx])
            if window is not None:
                liy, lix = liy - window[2].start, lix - window[3].start
            groups.append((n, by, bx, window, liy.astype(index_dtype),
                           lix.astype(index_dtype), _as_slice(positions)))  # fmt: skip
            n += 1
        set_keys, targets = [], []
        for ti, bi, images, bands in layers:
            for g, by, bx, window, liy, lix, pixels in groups:
                key = (name, *prefix, ti, bi, g)
                block: tuple = (data.name, ti, bi, by, bx)
                if window is not None:
                    # A task of its own, so dask's optimization folds it into the chunk's
                    # getter: a lazily indexed source (xarray's backends) reads the window.
                    dsk[(f"{name}-window", *key[1:])] = (getitem, block, window)
                    block = (f"{name}-window", *key[1:])
                dsk[key] = (_take, block, liy, lix)
                set_keys.append(key)
                targets.append((bands, images, pixels))
        keys.append(set_keys)
        shape = (data.shape[1], data.shape[0], len(iy))
        placements.append(Placement(targets, shape, data.dtype.newbyteorder("=")))
    # dask's own annotations reject its Array as a collection and tuple keys as keys.
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])  # type: ignore[arg-type, list-item]
    return Reads(graph, keys, placements)


#: A chunk's pixels are read through their bounding window when it is at most this share of
#: the chunk: for a compact region the store then copies and masks a window, not the whole
#: chunk (a compressed chunk is still decompressed whole). Scattered pixels (points, many
#: small features) span most of a chunk, where windows measured slower than whole chunks.
WINDOW_SHARE = 0.25


def _small_window(liy: np.ndarray, lix: np.ndarray, area: int) -> tuple[slice, ...] | None:
    """The ``(image, band, y, x)`` index of the bounding window of chunk-local pixels
    ``(liy, lix)``, or ``None`` when it exceeds :data:`WINDOW_SHARE` of the chunk's ``area``."""
    y0, y1, x0, x1 = int(liy.min()), int(liy.max()) + 1, int(lix.min()), int(lix.max()) + 1
    if (y1 - y0) * (x1 - x0) > WINDOW_SHARE * area:
        return None
    return (slice(None), slice(None), slice(y0, y1), slice(x0, x1))


def optimized_reads(reads: Sequence[Reads]) -> dict:
    """One graph computing every task of ``reads``, optimized as dask arrays are: each chunk
    read runs with its take as one task, so only the taken pixels leave it."""
    graph = HighLevelGraph.merge(*(r.graph for r in reads))
    keys = [k for r in reads for set_keys in r.keys for k in set_keys]
    return dict(da.Array.__dask_optimize__(graph, keys))


def _as_slice(positions: np.ndarray) -> slice | np.ndarray:
    """``positions`` as a slice when they run without gaps (cheaper to assign through)."""
    if len(positions) and positions[-1] - positions[0] == len(positions) - 1:
        if len(positions) == 1 or bool(np.all(np.diff(positions) == 1)):
            return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions
