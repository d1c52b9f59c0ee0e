"""Reading what a plan lists: one read abstraction for every kind of band array.

A :class:`Source` is one array of the cube holding one or more bands (a DataArray's band
dimension is one array; each variable of a Dataset is one). It answers one question for the
eager table, the lazy table and Parquet alike: *these pixels of this array, grouped by the
blocks that hold them*.

- A dask-backed array is read by :meth:`Source.read_tasks`: one task per block of the array
  holding any of the pixels (per image chunk and band chunk), which reads that block, or only
  the window of it holding the pixels, and returns the pixels' values. Tasks work on the array
  in its own dimension order, so the window reaches the array's getter (dask's optimization
  folds it in): a lazily indexed file reads that window alone.
- Any other array (numpy, or a file xarray opened lazily without dask) is read by
  :meth:`Source.take`, xarray's vectorised indexing of just those pixels.

:func:`gather` reads a plan's values in one ``dask.compute`` call; :mod:`xr_getregion.lazy`
builds the lazy table from the same tasks. Nothing here decides which pixels are read: that
is :mod:`xr_getregion.plan`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import get_scheduler, is_dask_collection, tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from xr_getregion.cube import Band, Cube
from xr_getregion.errors import ArgumentError, CubeError
from xr_getregion.grid import Grid
from xr_getregion.iopool import IOPool
from xr_getregion.loaders import (
    IO_THREAD_PREFIX,
    SPARES,
    Spares,
    Tiles,
    local_hdf5_stored_bytes,
    local_zarr_stored_bytes,
    reaches_storage,
    reads_image_windows,
    storage_tiles,
    whole_chunk_tasks,
    window_tasks,
)
from xr_getregion.plan import Plan
from xr_getregion.pyramid import BandRule, PyramidReads, out_dtype, pyramid_read_tasks

__all__ = [
    "PYRAMID_CHUNK",
    "WINDOW_SHARE",
    "Placement",
    "ReadEstimate",
    "Reads",
    "Source",
    "compute",
    "distinct_pixels",
    "estimate",
    "gather",
    "io_pool",
    "io_threads",
    "optimized_reads",
    "pyramid_blocks",
]

#: Chunk side given to a band array not backed by dask when a pyramid level is read, so its
#: blocks are read and reduced as a dask array's are.
PYRAMID_CHUNK = 2048

#: A chunk's pixels are read through their bounding window when it is at most this share of
#: the chunk: for a compact region the store then copies and masks a window, not the whole
#: chunk (a compressed chunk is still decompressed whole). Scattered pixels (points, many
#: small features) span most of a chunk, where windows measured slower than whole chunks.
WINDOW_SHARE = 0.25

#: The most reads kept in flight on dask's threaded scheduler (see :func:`io_threads`); the
#: pool starts with fewer and adds threads while reads wait on the network (see
#: :mod:`xr_getregion.iopool`). Measured with ``python -m benchmarks.cogs --quick
#: --latency-ms 30 --loader odc-stac`` on 2 cores (wall time, x a tile reader with 8
#: threads; 12 points / 1 km2 / 25 km2 / 250 points): 2 threads (dask's default here) 1.26 /
#: 2.77 / 1.06 / 0.64; 8 threads 0.81 / 1.62 / 1.03 / 0.58; 16 threads 0.82 / 2.17 / 1.00 /
#: 0.83; 48 threads 0.81 / 2.02 / 1.01 / 0.59. On the full stack at 30 ms, 16 threads beat
#: 8 on every loader: 50 points 2.98-3.91 s against 4.04-5.32 s, ~100 km2 0.57-0.73 s
#: against 0.65-0.88 s.
IO_THREADS = 16


def io_threads() -> int:
    """The most reads run at once on dask's threaded scheduler: the ``xr_getregion.io_threads``
    dask config value (``dask.config.set({"xr_getregion.io_threads": 32})`` or the
    ``DASK_XR_GETREGION__IO_THREADS`` environment variable), else :data:`IO_THREADS`."""
    value = dask.config.get("xr_getregion.io_threads", IO_THREADS)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    # int() would quietly take True as 1 and 2.5 (or DASK_XR_GETREGION__IO_THREADS=2.5,
    # which dask parses as a float) as 2: refuse them as the value they are.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        n = 0
    if n < 1:
        raise ArgumentError(
            f"xr_getregion.io_threads must be a positive integer; got {value!r}. Set it with "
            'dask.config.set({"xr_getregion.io_threads": 16}).'
        )
    return n


#: The decoded bytes of reads kept in flight at once: the pool of :func:`compute` shrinks
#: below :func:`io_threads` when each read is large (whole 4096 x 4096 images: 4 threads),
#: so memory does not grow with the concurrency. (The extra bytes once measured with more
#: threads on such images, 1.08x the tile reader's with 16, came from GDAL's cache of ranges,
#: not from memory: see :func:`xr_getregion.loaders._odc_read_env`.)
IO_MEMORY = 256 * 2**20


def compute(*collections: Any, largest_read: int = 0) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` with up to :func:`io_threads` reads in flight (see
    :func:`io_pool`) when dask's threaded scheduler (the default) runs it; any other
    scheduler (a distributed client, a ``scheduler=`` the user set) runs it as configured.
    Reads are I/O: on 2 cores a pool of 2 threads leaves the network idle. With
    ``largest_read`` (the decoded bytes of the largest read), no more reads run at once than
    :data:`IO_MEMORY` holds, and at least 2 (or :func:`io_threads`, if fewer)."""
    if _threaded_default():
        threads = io_threads()
        if largest_read:
            # At least 2 (one read's decode need not wait for another's fetch), unless the
            # user asked for fewer.
            threads = max(min(threads, 2), min(threads, IO_MEMORY // largest_read))
        spares = Spares()
        with io_pool(threads) as pool:
            for collection in collections:
                # Our reads' graphs, built already; a dataframe's would be built twice.
                if isinstance(collection, Delayed):
                    spares.open(collection.dask, pool)
            token = SPARES.set(spares)  # seen by the reads: the pool runs them in copies
            try:
                # The pool as the scheduler: dask runs it as its threaded scheduler would,
                # and does not import distributed to look for a client first.
                return dask.compute(*collections, scheduler=pool)
            finally:
                SPARES.reset(token)
    return dask.compute(*collections)


def io_pool(threads: int) -> IOPool:
    """A pool of at most ``threads`` threads for reads, which starts with a few and adds
    threads while reads wait on the network (see :mod:`xr_getregion.iopool`). Its threads
    are named so that the loaders' readers know they run there (see
    :data:`xr_getregion.loaders.IO_THREAD_PREFIX`): what a read thread keeps open closes
    when the pool ends."""
    return IOPool(threads, IO_THREAD_PREFIX)


def _threaded_default() -> bool:
    """Whether dask would run a computation on its threaded scheduler with its default
    pool: no ``scheduler`` or ``num_workers`` set, no distributed client. ``distributed``
    is not imported to find out (importing it costs 0.2 s): without it there is no client."""
    if dask.config.get("scheduler", None) not in (None, "threads", "threading"):
        return False
    if dask.config.get("num_workers", None) is not None:
        return False
    if "distributed" in sys.modules:  # a client, if any, is the scheduler dask would use
        return get_scheduler() in (None, dask.threaded.get)
    return True


@dataclass(frozen=True)
class _Axes:
    """Where a band array's dims are: ``y``, ``x`` and the optional ``image`` and ``band``
    axes, as positions in the array's own dimension order."""

    y: int
    x: int
    image: int | None
    band: int | None

    def pick(self, block: Any, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """The values of ``block`` (a block of the array, in its own dim order) at pixels
        ``(iy, ix)``, as ``(images, bands, pixels)`` in native byte order."""
        values = np.moveaxis(np.asarray(block), (self.y, self.x), (-2, -1))[..., iy, ix]
        rest = [a for a in range(values.ndim + 1) if a not in (self.y, self.x)]
        order = [rest.index(a) for a in (self.image, self.band) if a is not None]
        values = values.transpose(*order, values.ndim - 1)
        if self.image is None:
            values = values[None]
        if self.band is None:
            values = values[:, None]
        return _native(values)


def _pick(block: Any, iy: np.ndarray, ix: np.ndarray, axes: _Axes) -> np.ndarray:
    return axes.pick(block, iy, ix)


@dataclass(frozen=True, eq=False)
class Source:
    """One array of the cube and the bands it holds, read as ``(image, band, pixel)``.

    Attributes
    ----------
    array
        The array, dims ``image_dim`` (optional), ``band_dim`` (optional), ``ydim``,
        ``xdim`` in any order.
    bands
        The cube's bands held by it, each at its ``band_index`` along ``band_dim``.
    """

    array: xr.DataArray
    bands: tuple[Band, ...]
    image_dim: str | None
    band_dim: str | None
    ydim: str
    xdim: str
    grid: Grid

    @classmethod
    def of(cls, cube: Cube) -> list[Source]:
        """The cube's arrays, each once with all the bands it holds, in band order."""
        groups: dict[int, list[Band]] = {}
        for band in cube.bands:
            groups.setdefault(id(band.array), []).append(band)
        return [
            cls(
                array=bands[0].array,
                bands=tuple(bands),
                image_dim=cube.image_dim,
                band_dim=bands[0].band_dim,
                ydim=cube.ydim,
                xdim=cube.xdim,
                grid=cube.grid,
            )
            for bands in groups.values()
        ]

    @property
    def lazy(self) -> bool:
        """Whether the array is backed by dask (read by tasks, not up front)."""
        return is_dask_collection(self.array.data)

    @cached_property
    def tiles(self) -> Tiles | None:
        """The storage blocks of the array on the cube's grid (a COG's tiles, a Zarr array's
        chunks), or ``None`` when unknown or out of reach (a window of a chunk would not reach
        the storage): see :mod:`xr_getregion.loaders`."""
        return self._find_tiles()

    def _find_tiles(self) -> Tiles | None:
        """:attr:`tiles`, found (a header read, for a COG)."""
        if not self.lazy or not reaches_storage(self.array.variable.data):
            return None
        return storage_tiles(self.array, self.grid, self.ydim, self.xdim)

    @property
    def dtype(self) -> np.dtype:
        """The values' dtype, in native byte order."""
        return self.array.dtype.newbyteorder("=")

    @property
    def _dims4(self) -> list[str]:
        return [d for d in (self.image_dim, self.band_dim, self.ydim, self.xdim) if d]

    @property
    def _axes(self) -> _Axes:
        dims = list(self.array.dims)
        return _Axes(
            y=dims.index(self.ydim),
            x=dims.index(self.xdim),
            image=dims.index(self.image_dim) if self.image_dim else None,
            band=dims.index(self.band_dim) if self.band_dim else None,
        )

    def take(self, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """The values at pixels ``(iy, ix)``, ``(images, bands, pixels)``, read now with
        xarray's vectorised indexing (for arrays not backed by dask)."""
        var = self.array.variable.transpose(*self._dims4)
        picked = var.isel(
            {self.ydim: xr.Variable("__pixel__", iy), self.xdim: xr.Variable("__pixel__", ix)}
        )
        values = _native(np.asarray(picked.values))
        if self.image_dim is None:
            values = values[None]
        if self.band_dim is None:
            values = values[:, None]
        return values

    def as_dask_4d(self) -> da.Array:
        """The array as dask ``(image, band, y, x)``, missing dims of length 1; one not backed
        by dask (numpy, a lazily indexed file) is chunked spatially first (see
        :data:`PYRAMID_CHUNK`), without hashing its values."""
        arr = self.array
        if not self.lazy:
            chunks = {self.ydim: PYRAMID_CHUNK, self.xdim: PYRAMID_CHUNK}
            arr = arr.chunk(chunks, token=uuid.uuid4().hex)
        data = arr.variable.transpose(*self._dims4).data
        if self.image_dim is None:
            data = data[None]
        if self.band_dim is None:
            data = data[:, None]
        return data

    def chunk_groups(self, iy: np.ndarray, ix: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        """Pixels ``(iy, ix)`` grouped by the spatial chunk of the array holding them:
        ``(by, bx, positions)`` per chunk holding any, in chunk order, ``positions`` indexing
        ``iy``/``ix`` in their own order."""
        if self.lazy:
            axes = self._axes
            chunks = self.array.variable.data.chunks
            return _chunk_groups(chunks[axes.y], chunks[axes.x], iy, ix)
        # An array not backed by dask is read in the chunks :meth:`as_dask_4d` gives it.
        shape = (self.array.sizes[self.ydim], self.array.sizes[self.xdim])
        ychunks, xchunks = da.core.normalize_chunks((PYRAMID_CHUNK, PYRAMID_CHUNK), shape)
        return _chunk_groups(ychunks, xchunks, iy, ix)

    def rules(self, plan: Plan) -> tuple[BandRule, ...]:
        """The pyramid rule of each band index of the array, in band-index order."""
        policy = dict(zip(plan.cube.band_names, plan.policies or (), strict=True))
        ordered = sorted(self.bands, key=lambda b: b.band_index)
        return tuple(BandRule(policy[b.name], tuple(b.nodata), b.dtype) for b in ordered)

    def read_tasks(
        self,
        pixel_sets: Sequence[tuple[np.ndarray, np.ndarray]],
        name: str,
        prefix: tuple = (),
        shared: dict | None = None,
    ) -> Reads:
        """The :class:`Reads` of ``pixel_sets``, each ``(iy, ix)``, from the dask array.

        Keys are ``(name, *prefix, image chunk, band chunk, n)`` with ``n`` counting blocks
        over all sets: unique in their index, not only in their name, because dask's fusion
        renames a fused read after every name in it and cuts long names to a short hash.
        Reads of several arrays computed together need distinct names and prefixes.

        ``shared``, one dict for the arrays of one cube read for the same ``pixel_sets``,
        keeps the grouping of the pixels into reads for arrays with the same chunks and
        storage blocks (odc-stac's bands, a Dataset's variables): it is computed once.
        """
        data = self.array.variable.data
        axes = self._axes
        chunks = data.chunks
        index_dtype = np.int32 if max(data.shape[axes.y], data.shape[axes.x]) < 2**31 else np.int64
        layers = [
            (ti, bi, images, bands)
            for ti, images in _chunk_slices(chunks, axes.image)
            for bi, bands in _chunk_slices(chunks, axes.band)
        ]
        dsk: dict[tuple, Any] = {}
        keys: list[list[tuple]] = []
        placements: list[Placement] = []
        n = largest = 0
        depth = self.dtype.itemsize * max(
            (images.stop - images.start) * (bands.stop - bands.start)
            for _, _, images, bands in layers
        )
        tiles = self.tiles  # its grid, not the file it was learnt from
        grid = None if tiles is None else (tiles.height, tiles.width, tiles.row0, tiles.col0)
        layout = (chunks[axes.y], chunks[axes.x], grid, self._reads_files)
        for s, (iy, ix) in enumerate(pixel_sets):
            spatial = None if shared is None else shared.get((s, layout))
            if spatial is None:
                spatial = []
                for by, bx, origin, shape, positions, window in self._spatial_reads(iy, ix):
                    liy = iy[positions] - origin[0]
                    lix = ix[positions] - origin[1]
                    if window is not None:
                        liy, lix = liy - window[0].start, lix - window[1].start
                    local = (liy.astype(index_dtype), lix.astype(index_dtype))
                    ys, xs = window or (slice(0, shape[0]), slice(0, shape[1]))
                    area = (ys.stop - ys.start) * (xs.stop - xs.start)
                    spatial.append((by, bx, window, local, _as_slice(positions), area))
                if shared is not None:
                    shared[(s, layout)] = spatial
            groups = []
            for by, bx, window, local, pixels, area in spatial:
                groups.append((n, by, bx, window, local, pixels))
                largest = max(largest, area * depth)
                n += 1
            set_keys, targets = [], []
            for ti, bi, images, bands in layers:
                for g, by, bx, window, (liy, lix), pixels in groups:
                    key = (name, *prefix, ti, bi, g)
                    block: tuple = (data.name, *_block_index(axes, ti, bi, by, bx))
                    if window is not None:
                        # A task of its own: dask's optimization folds it into the chunk's
                        # getter, so a lazily indexed source (xarray's backends) reads the
                        # window; stackstac's and odc-stac's readers are handed it.
                        index = [slice(None)] * data.ndim
                        index[axes.y], index[axes.x] = window
                        window_key = (f"{name}-window", *key[1:])
                        dsk.update(window_tasks(data, block, tuple(index), window_key))
                        block = window_key
                    else:
                        # odc-stac's chunk, read whole with the GDAL options of our reads.
                        window_key = (f"{name}-window", *key[1:])
                        whole = whole_chunk_tasks(data, block, window_key)
                        if whole is not None:
                            dsk.update(whole)
                            block = window_key
                    dsk[key] = (_pick, block, liy, lix, axes)
                    set_keys.append(key)
                    targets.append((bands, images, pixels))
            keys.append(set_keys)
            n_images = 1 if axes.image is None else data.shape[axes.image]
            n_bands = 1 if axes.band is None else data.shape[axes.band]
            placements.append(Placement(targets, (n_bands, n_images, len(iy)), self.dtype))
        # dask's own annotations reject its Array as a collection and tuple keys as keys.
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])  # type: ignore[arg-type]
        return Reads(graph, keys, placements, largest)

    @cached_property
    def _reads_files(self) -> bool:
        """Whether windows go to the loader's reader of the files (stackstac's), which reads
        any window of an image, not only windows of one dask chunk (see :meth:`_spatial_reads`)."""
        if self.tiles is None:
            return False
        data = self.array.variable.data
        axes = self._axes
        probe = [slice(None)] * data.ndim
        probe[axes.y] = probe[axes.x] = slice(0, 1)
        return reads_image_windows(data, tuple(probe))

    def _spatial_reads(
        self, iy: np.ndarray, ix: np.ndarray
    ) -> list[tuple[int, int, tuple[int, int], tuple[int, int], np.ndarray, Any]]:
        """The reads of pixels ``(iy, ix)``: ``(by, bx, origin, shape, positions, window)``
        per read, the chunk ``(by, bx)`` at ``origin`` of ``shape`` it reads (all of it when
        ``window`` is ``None``, else that chunk-local window), ``positions`` its pixels.

        Where the loader reads files by windows of the image (stackstac), the storage blocks
        are grouped over the whole image, not chunk by chunk, in rectangles no larger than a
        chunk: a region across a chunk boundary is one read per image, not one per chunk
        (measured on the 100 km2 polygon of ``benchmarks.cogs``: 36 reads of 2 x 2 tiles,
        not 144 of one tile each). Those reads name chunk ``(0, 0)``, the image's origin.
        """
        axes = self._axes
        chunks = self.array.variable.data.chunks
        if self._reads_files:
            shape = (int(sum(chunks[axes.y])), int(sum(chunks[axes.x])))
            cap = (max(chunks[axes.y]), max(chunks[axes.x]))
            full = (slice(0, shape[0]), slice(0, shape[1]))
            return [
                (0, 0, (0, 0), shape, positions, window or full)
                for positions, window in self._windows(
                    iy, ix, np.arange(len(iy)), (0, 0), shape, cap
                )
            ]
        ybounds = np.cumsum((0, *chunks[axes.y]))
        xbounds = np.cumsum((0, *chunks[axes.x]))
        out = []
        for by, bx, in_chunk in _chunk_groups(chunks[axes.y], chunks[axes.x], iy, ix):
            shape = (chunks[axes.y][by], chunks[axes.x][bx])
            origin = (int(ybounds[by]), int(xbounds[bx]))
            for positions, window in self._windows(iy, ix, in_chunk, origin, shape):
                out.append((by, bx, origin, shape, positions, window))
        return out

    def _windows(
        self,
        iy: np.ndarray,
        ix: np.ndarray,
        positions: np.ndarray,
        origin: tuple[int, int],
        shape: tuple[int, int],
        cap: tuple[int, int] | None = None,
    ) -> list[tuple[np.ndarray, tuple[slice, slice] | None]]:
        """The reads of one chunk's pixels (``positions`` into ``iy``/``ix``): for each,
        the pixels it serves and the chunk-local window it reads (``None``: the chunk).

        Where the chunk spans several storage blocks, the blocks holding pixels are read,
        side-by-side ones merged into rectangles (one request each where the store merges
        ranges), each through its pixels' bounding window, and no other block is; with
        ``cap``, each rectangle at most ``cap`` pixels high and wide (in whole blocks). Otherwise
        (blocks unknown, or one block per chunk) the chunk is one read, of the pixels'
        bounding window when that is small (see :data:`WINDOW_SHARE`).
        """
        tiles = self.tiles
        if tiles is None or (tiles.height >= shape[0] and tiles.width >= shape[1]):
            liy, lix = iy[positions] - origin[0], ix[positions] - origin[1]
            return [(positions, _small_window(liy, lix, shape[0] * shape[1]))]
        ty, tx = tiles.of(iy[positions], ix[positions])
        corners = tiles.of(
            np.array([origin[0], origin[0] + shape[0] - 1]),
            np.array([origin[1], origin[1] + shape[1] - 1]),
        )
        out: list[tuple[np.ndarray, tuple[slice, slice] | None]] = []
        limits = None if cap is None else (cap[0] // tiles.height, cap[1] // tiles.width)
        for rect in _rectangles(ty, tx, limits):
            part = positions[rect]
            # A rectangle of every block of the chunk is the chunk: read as the loader reads
            # its chunks (odc-stac fetched 9% more for a window a few pixels short of one).
            spans = (ty[rect].min(), ty[rect].max(), tx[rect].min(), tx[rect].max())
            if spans == (corners[0][0], corners[0][1], corners[1][0], corners[1][1]):
                out.append((part, None))
                continue
            y0, y1 = int(iy[part].min()) - origin[0], int(iy[part].max()) + 1 - origin[0]
            x0, x1 = int(ix[part].min()) - origin[1], int(ix[part].max()) + 1 - origin[1]
            out.append((part, (slice(y0, y1), slice(x0, x1))))
        return out

    def pyramid_reads(
        self,
        plan: Plan,
        block_sets: Sequence[tuple[np.ndarray, np.ndarray]],
        name: str,
        prefix: tuple = (),
    ) -> PyramidReads:
        """The tasks reducing the level-``plan.level`` blocks of each of ``block_sets``
        (``(by, bx)``), by each band's pyramiding policy: see
        :func:`~xr_getregion.pyramid.pyramid_read_tasks`."""
        data = self.as_dask_4d()
        rules = self.rules(plan)
        return pyramid_read_tasks(data, block_sets, plan.level, rules, name, prefix)


def _chunk_slices(chunks: tuple[tuple[int, ...], ...], axis: int | None) -> list[tuple[int, slice]]:
    """Each chunk of ``axis`` (one of length 1 when the array has no such axis) and the
    slice of the ``(band, image, pixel)`` result it fills."""
    if axis is None:
        return [(0, slice(0, 1))]
    bounds = np.cumsum((0, *chunks[axis]))
    return [(i, slice(int(bounds[i]), int(bounds[i + 1]))) for i in range(len(chunks[axis]))]


def _block_index(axes: _Axes, ti: int, bi: int, by: int, bx: int) -> tuple[int, ...]:
    """A block's chunk index in the array's own dimension order."""
    index = [0] * (2 + (axes.image is not None) + (axes.band is not None))
    index[axes.y], index[axes.x] = by, bx
    if axes.image is not None:
        index[axes.image] = ti
    if axes.band is not None:
        index[axes.band] = bi
    return tuple(index)


@dataclass(frozen=True)
class ReadEstimate:
    """What reading a plan fetches from one array of the cube.

    Attributes
    ----------
    bands
        The bands the array holds.
    reads
        The read tasks: one per window of storage blocks (or chunk) per image chunk and
        band chunk.
    blocks
        The storage blocks those reads touch (COG tiles, Zarr chunks), or the dask chunks
        when the storage's blocks are unknown; 0 for an array read up front.
    nbytes
        Their bytes before compression: what is decoded.
    granularity
        How the array is read: ``"storage blocks 512 x 512 (from ...)"``, ``"dask chunks
        ..."`` (the storage's blocks are unknown, or no smaller than a chunk), or
        ``"covered pixels"`` (not backed by dask).
    fetch_bytes
        The stored (compressed) bytes of the storage blocks the reads fetch, each fetched
        whole; file headers and a store's rounding of ranges (GDAL's 16 KB) not included.
        Known for GeoTIFFs (COGs behind stackstac, odc-stac and rioxarray cubes): the
        ``TileByteCounts`` of the blocks read in the file the tile layout was learnt from
        (named by ``granularity``; read from the header already fetched for the layout, no
        other request), times the images x bands read. Exact for that file's blocks; for
        the other files an estimate, as their tiles compress differently (they are not
        opened before the reads). For a Zarr array in a local directory (``xr.open_zarr``),
        exact: the sizes of the chunk files read, each counted once; in a sharded store,
        the inner chunks' sizes from the shards' indexes, plus the index each read
        fetches per shard it touches. For a chunked netCDF4/HDF5 variable in a local file
        (``xr.open_dataset(..., chunks=...)``, h5netcdf or netcdf4), exact: the stored
        sizes of the chunks read, from the file's chunk index, each counted once. ``None``
        where the store does not tell its blocks' stored sizes without a request per block
        (Zarr or netCDF on object storage or HTTP), for a contiguous (unchunked) netCDF
        variable (its reads' byte runs are HDF5's, not the file's layout), where the
        storage's blocks are unknown (a cube computed from a loaded one) and for arrays not
        backed by dask: then ``nbytes`` is the only size, before compression. A block is
        counted once even where dask chunks that split the storage's blocks (xarray warns of
        them when opening) make several reads fetch it.
    """

    bands: tuple[str, ...]
    reads: int
    blocks: int
    nbytes: int
    granularity: str
    fetch_bytes: int | None = None


def estimate(plan: Plan) -> list[ReadEstimate]:
    """What reading ``plan`` fetches, per array of its cube, from coordinates and chunks
    alone (no value is read). At a pyramid level, the chunks meeting its blocks."""
    width = plan.cube.grid.shape[1]  # type: ignore[index]
    iy, ix, _ = distinct_pixels(plan.iy, plan.ix, width)
    out = []
    sources = Source.of(plan.cube)
    _learn_tiles([s for s in sources if plan.n_pixels and s.lazy and not plan.level])
    for source in sources:
        names = tuple(b.name for b in source.bands)
        if not plan.n_pixels:
            out.append(ReadEstimate(names, 0, 0, 0, "nothing to read", 0))
            continue
        if plan.level or not source.lazy:
            out.append(_chunk_estimate(plan, source, names, iy, ix))
            continue
        out.append(_window_estimate(source, names, iy, ix))
    return out


def _layers_of(source: Source) -> tuple[int, int]:
    """Image chunks x band chunks of a dask-backed array, and images x bands in it."""
    data = source.array.variable.data
    axes = source._axes
    n_layers = len(_chunk_slices(data.chunks, axes.image)) * len(
        _chunk_slices(data.chunks, axes.band)
    )
    depth = int(np.prod([n for a, n in enumerate(data.shape) if a not in (axes.y, axes.x)]))
    return n_layers, depth


def _window_estimate(
    source: Source, names: tuple[str, ...], iy: np.ndarray, ix: np.ndarray
) -> ReadEstimate:
    data = source.array.variable.data
    axes = source._axes
    chunks = data.chunks
    tiles = source.tiles
    windows = blocks = pixels = 0
    stored: int | None = 0 if tiles is not None and tiles.sizes is not None else None
    spans: list[tuple[range, range]] = []
    for _, _, origin, shape, _, window in source._spatial_reads(iy, ix):
        windows += 1
        ys = window[0] if window else slice(0, shape[0])
        xs = window[1] if window else slice(0, shape[1])
        if tiles is not None:
            # The blocks the read's window spans, each fetched whole.
            r0, c0 = tiles.of(np.array([origin[0] + ys.start]), np.array([origin[1] + xs.start]))
            r1, c1 = tiles.of(
                np.array([origin[0] + ys.stop - 1]), np.array([origin[1] + xs.stop - 1])
            )
            spanned = (range(int(r0[0]), int(r1[0]) + 1), range(int(c0[0]), int(c1[0]) + 1))
            spans.append(spanned)
            if stored is not None:
                stored += tiles.stored_bytes(*spanned) or 0
        small = tiles is not None and (tiles.height < shape[0] or tiles.width < shape[1])
        if small:
            assert tiles is not None
            n = len(spanned[0]) * len(spanned[1])
            blocks += n
            pixels += n * tiles.height * tiles.width
        else:
            blocks += 1
            pixels += shape[0] * shape[1]
    n_layers, depth = _layers_of(source)
    itemsize = source.dtype.itemsize
    if tiles is not None and (
        tiles.height < max(chunks[axes.y]) or tiles.width < max(chunks[axes.x])
    ):
        kind = f"storage blocks {tiles.height} x {tiles.width} (from {tiles.source})"
    else:
        kind = f"dask chunks {max(chunks[axes.y])} x {max(chunks[axes.x])} " + (
            "(the storage's blocks are unknown)"
            if tiles is None
            else f"(storage blocks {tiles.height} x {tiles.width})"
        )
    return ReadEstimate(
        names,
        windows * n_layers,
        blocks * n_layers,
        pixels * depth * itemsize,
        kind,
        _fetch_bytes(source, stored, depth, spans),
    )


def _fetch_bytes(
    source: Source, stored: int | None, depth: int, spans: list[tuple[range, range]]
) -> int | None:
    """:attr:`ReadEstimate.fetch_bytes`: a GeoTIFF's tile byte counts (``stored``, over one
    band of one file) times the ``depth`` images x bands read, else the stored chunks of a
    local Zarr store or HDF5 (netCDF4) file the blocks ``spans`` (rows, columns) are in,
    else unknown."""
    if stored is not None:
        return stored * depth
    if source.tiles is None or source.tiles.source != "encoding" or not spans:
        return None
    for stored_bytes in (local_zarr_stored_bytes, local_hdf5_stored_bytes):
        found = stored_bytes(source.array, source.ydim, source.xdim, spans)
        if found is not None:
            return found
    return None


def _chunk_estimate(
    plan: Plan, source: Source, names: tuple[str, ...], iy: np.ndarray, ix: np.ndarray
) -> ReadEstimate:
    k = plan.level
    groups = source.chunk_groups((iy >> k) << k, (ix >> k) << k)
    data = source.as_dask_4d()
    depth = data.shape[0] * data.shape[1]
    if not source.lazy and not k:
        return ReadEstimate(names, 1, 0, len(iy) * depth * source.dtype.itemsize, "covered pixels")
    ch, cw = max(data.chunks[2]), max(data.chunks[3])
    n_layers = len(data.chunks[0]) * len(data.chunks[1])
    kind = f"dask chunks {ch} x {cw} (pyramid level {k})"
    return ReadEstimate(
        names,
        len(groups) * n_layers,
        len(groups) * n_layers,
        len(groups) * ch * cw * depth * source.dtype.itemsize,
        kind,
    )


def distinct_pixels(
    iy: np.ndarray, ix: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct pixels of ``(iy, ix)`` in raster order, and each pixel's position among
    them: a pixel several working pixels or features sample is read once."""
    unique, inverse = np.unique(iy * width + ix, return_inverse=True)
    uy, ux = np.divmod(unique, width)
    return uy, ux, inverse


def pyramid_blocks(plan: Plan, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct level-``plan.level`` blocks ``(by, bx)`` holding pixels ``(iy, ix)``,
    in raster order, and each pixel's position among them."""
    k = plan.level
    nbx = -(-plan.cube.grid.shape[1] // (1 << k))  # type: ignore[index]
    return distinct_pixels(iy >> k, ix >> k, nbx)


def gather(plan: Plan) -> dict[str, np.ndarray]:
    """Read the planned values: for each band, an ``(images, pixels)`` array.

    Dask-backed bands are gathered in one ``dask.compute`` call whose graph reads only the
    blocks that hold covered pixels and returns each block's few pixels as they are; they are
    put in place once, here, in the array the table is built from. Other bands (numpy, lazily
    indexed files) are read with xarray's vectorised indexing of just those pixels.
    """
    if plan.level:
        return _gather_pyramid(plan)
    cube = plan.cube
    width = cube.grid.shape[1]  # type: ignore[index]
    iy, ix, inverse = distinct_pixels(plan.iy, plan.ix, width)
    # Raster-ordered plans without repeats (one region on the cube's grid) need no reorder.
    in_order = bool(np.array_equal(inverse, np.arange(len(inverse))))
    lazy: list[tuple[Source, Reads]] = []
    out: dict[str, np.ndarray] = {}
    shared: dict = {}
    sources = Source.of(cube)
    _learn_tiles([s for s in sources if plan.n_pixels and s.lazy])
    for a, source in enumerate(sources):
        if plan.n_pixels and source.lazy:
            name = f"getregion-read-{tokenize(source.array.data.name, iy, ix)}-{a}"
            # The array's position in the key index keeps keys apart if names are cut.
            lazy.append((source, source.read_tasks([(iy, ix)], name, (a,), shared)))
        else:
            values = source.take(iy, ix)
            for band in source.bands:
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
            largest = max(reads.largest for _, reads in lazy)
            (blocks,) = compute(Delayed(name, {**graph, name: keys}), largest_read=largest)
        for (source, _), placement, values, buffer in zip(
            lazy, placements, blocks, buffers.result(), strict=True
        ):
            placed = placement.place(values, buffer)
            if not in_order:
                placed = np.take(placed, inverse, axis=2)
            for band in source.bands:
                out[band.name] = placed[band.band_index]  # C-ordered (image, pixel)
    return {band.name: out[band.name] for band in cube.bands}


def _learn_tiles(sources: list[Source]) -> None:
    """Learn the storage blocks of ``sources`` at once: each band of an odc-stac cube (or a
    Dataset's variable) reads the header of a file of its own, a request each, which would
    otherwise wait for one another (3 x 12 ms on the ~1 km2 polygon of ``benchmarks.cogs``)."""
    if len(sources) > 1:
        # Found apart and stored where the property caches it: on Python 3.11 a
        # cached_property holds one lock for every instance, which would read them in turn.
        with ThreadPoolExecutor(min(len(sources), io_threads())) as pool:
            for source, tiles in zip(sources, pool.map(Source._find_tiles, sources), strict=True):
                source.__dict__["tiles"] = tiles


def _gather_pyramid(plan: Plan) -> dict[str, np.ndarray]:
    """:func:`gather` at pyramid level ``plan.level > 0``: each distinct block is reduced
    once, in the tasks reading the chunks holding it, and its value given to every working
    pixel it holds."""
    sources = Source.of(plan.cube)
    policy = dict(zip(plan.cube.band_names, plan.policies or (), strict=True))
    if not plan.n_pixels:
        return {
            b.name: np.empty((plan.cube.n_images, 0), out_dtype(b.dtype, policy[b.name]))
            for b in plan.cube.bands
        }
    by, bx, inverse = pyramid_blocks(plan, plan.iy, plan.ix)
    reads = []
    for a, source in enumerate(sources):
        array_token = source.array.data.name if source.lazy else uuid.uuid4().hex
        token = tokenize(array_token, plan.level, by, bx)
        reads.append(source.pyramid_reads(plan, [(by, bx)], f"getregion-pyramid-{token}-{a}", (a,)))
    keys = [r.keys[0] for r in reads]
    name = "getregion-blocks-" + tokenize(keys)
    graph = optimized_reads(reads)
    (results,) = compute(Delayed(name, {**graph, name: keys}))
    out: dict[str, np.ndarray] = {}
    for source, read, result in zip(sources, reads, results, strict=True):
        values = read.combines[0].place(result)
        for band in source.bands:
            out[band.name] = np.take(values[band.band_index], inverse, axis=1)
    return {band.name: out[band.name] for band in plan.cube.bands}


def _rectangles(
    ty: np.ndarray, tx: np.ndarray, limits: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """Pixels grouped by rectangles of the storage blocks ``(ty, tx)`` holding them: runs of
    side-by-side blocks along a row, merged with the runs of the next rows that span the same
    columns. Each block holding a pixel is in one rectangle, and no other block is; with
    ``limits`` (rows, columns), none is more blocks high or wide. Returns the positions (into
    ``ty``/``tx``) of each rectangle's pixels, in raster order of the rectangles."""
    most_rows, most_cols = (max(1, limits[0]), max(1, limits[1])) if limits else (0, 0)
    # One integer per block: numpy's unique of a 1-D array is a plain sort, while a row-wise
    # unique (axis=0) sorted 110,000 pixels in 76 ms, most of the planning of a 100 km2 region.
    ty0, tx0 = int(ty.min()), int(tx.min())
    ncols = int(tx.max()) - tx0 + 1
    codes, inverse = np.unique((ty - ty0) * ncols + (tx - tx0), return_inverse=True)
    blocks = np.stack(np.divmod(codes, ncols), axis=1)
    runs: list[list[int]] = []  # [row0, row1, col0, col1] per rectangle, rows growing
    label = np.empty(len(blocks), np.int64)
    open_runs: dict[tuple[int, int], int] = {}  # (col0, col1) of the last row -> rectangle
    k = 0
    while k < len(blocks):
        row, col = int(blocks[k, 0]), int(blocks[k, 1])
        end = k + 1
        while end < len(blocks) and blocks[end, 0] == row and blocks[end, 1] == col + end - k:
            if most_cols and end - k == most_cols:
                break
            end += 1
        span = (col, col + end - k)
        rect = open_runs.get(span)
        full = most_rows and rect is not None and runs[rect][1] - runs[rect][0] == most_rows
        if rect is None or runs[rect][1] != row or full:
            rect = len(runs)
            runs.append([row, row + 1, *span])
        else:
            runs[rect][1] = row + 1
        open_runs[span] = rect
        label[k:end] = rect
        k = end
    # Labels in the smallest integer type: numpy sorts 8- and 16-bit integers by radix.
    of_pixel = label.astype(np.min_scalar_type(len(runs)))[inverse.ravel()]
    order = np.argsort(of_pixel, kind="stable")
    bounds = np.searchsorted(of_pixel[order], np.arange(len(runs) + 1))
    return [order[bounds[r] : bounds[r + 1]] for r in range(len(runs))]


def _chunk_groups(
    ychunks: tuple[int, ...], xchunks: tuple[int, ...], iy: np.ndarray, ix: np.ndarray
) -> list[tuple[int, int, np.ndarray]]:
    ybounds = np.cumsum((0, *ychunks))
    xbounds = np.cumsum((0, *xchunks))
    nxb = len(xchunks)
    key = (np.searchsorted(ybounds, iy, side="right") - 1) * nxb + (
        np.searchsorted(xbounds, ix, side="right") - 1
    )
    order = np.argsort(key, kind="stable")
    blocks, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    return [
        (int(b) // nxb, int(b) % nxb, order[s : s + c])
        for b, s, c in zip(blocks, starts, counts, strict=True)
    ]


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
    """The tasks reading pixel sets from a dask-backed :class:`Source`.

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
    largest: int = 0


def _small_window(liy: np.ndarray, lix: np.ndarray, area: int) -> tuple[slice, slice] | None:
    """The ``(y, x)`` slices of the bounding window of chunk-local pixels ``(liy, lix)``, or
    ``None`` when it exceeds :data:`WINDOW_SHARE` of the chunk's ``area``."""
    y0, y1, x0, x1 = int(liy.min()), int(liy.max()) + 1, int(lix.min()), int(lix.max()) + 1
    if (y1 - y0) * (x1 - x0) > WINDOW_SHARE * area:
        return None
    return slice(y0, y1), slice(x0, x1)


def optimized_reads(reads: Sequence[Reads | PyramidReads]) -> dict:
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
