"""What the common loaders' dask graphs hold: the storage blocks behind a cube, and how to
read one window of a chunk through the loader's own reader.

Reading at the storage's own granularity needs two facts no xarray API gives:

- **the storage blocks** (a COG's internal tiles, a Zarr or HDF5 array's chunks) on the
  cube's pixel grid: from the encoding xarray's backends record (``preferred_chunks``,
  ``chunksizes``), or else from the header of the first file behind the cube (rasterio's
  ``block_shapes``), found where each loader keeps it;
- **a window read** of part of a chunk. Where a chunk's task is xarray's getter of a lazily
  indexed file (``open_zarr``, ``open_dataset``, ``rioxarray.open_rasterio``), dask's own
  optimization folds a ``getitem`` into it, so the backend reads just the window. stackstac's
  and odc-stac's chunk tasks are calls of their readers, into which dask folds nothing: for
  those the window is handed to the same reader function, in a task of our own.

The loaders' graphs are internals, not APIs: each one relied on here is pinned by tests
against the real package (``tests/test_storage_reads.py``). When a graph is not recognised
(another loader, or a cube computed from one), the chunk is read whole, as dask would.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import functools
import importlib
import itertools
import math
import os
import posixpath
import sys
import threading
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import dask.core
import numpy as np
import xarray as xr
from dask.array.chunk import getitem
from dask.highlevelgraph import HighLevelGraph

from xr_getregion.grid import Grid

__all__ = [
    "IO_THREAD_PREFIX",
    "Tiles",
    "file_window",
    "local_hdf5_stored_bytes",
    "local_zarr_stored_bytes",
    "reaches_storage",
    "reads_image_windows",
    "storage_tiles",
    "whole_chunk_tasks",
    "window_tasks",
]


@dataclass(frozen=True)
class Tiles:
    """A grid of storage blocks on the cube's pixels: block ``(i, j)`` holds rows
    ``row0 + i * height`` to ``row0 + (i + 1) * height`` and the columns likewise. ``source``
    says where the layout was learnt (for :func:`xr_getregion.plan`'s report).

    ``sizes``, when known, holds the stored (compressed) bytes of each block of one band of
    that file, ``sizes[i][j]`` for block ``(i, j)``: a GeoTIFF's ``TileByteCounts``, read
    from the header the layout came from (a pixel-interleaved file's tile shared by its
    bands, divided among them)."""

    height: int
    width: int
    row0: int = 0
    col0: int = 0
    source: str = "encoding"
    sizes: tuple[tuple[int, ...], ...] | None = field(default=None, compare=False, repr=False)

    def of(self, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The block row and column holding each pixel ``(iy, ix)``."""
        return (iy - self.row0) // self.height, (ix - self.col0) // self.width

    def stored_bytes(self, rows: range, cols: range) -> int | None:
        """The stored bytes of blocks ``rows`` x ``cols`` of one band of :attr:`source`
        (blocks off the file hold nothing), or ``None`` when :attr:`sizes` is unknown."""
        if self.sizes is None:
            return None
        n_rows, n_cols = len(self.sizes), len(self.sizes[0]) if self.sizes else 0
        rs = range(max(rows.start, 0), min(rows.stop, n_rows))
        cs = range(max(cols.start, 0), min(cols.stop, n_cols))
        return sum(self.sizes[r][c] for r in rs for c in cs)


def storage_tiles(array: xr.DataArray, grid: Grid, ydim: str, xdim: str) -> Tiles | None:
    """The storage blocks of ``array`` on the cube's ``grid``, or ``None`` when unknown.

    From the encoding first (Zarr's and netCDF's chunks, by dimension), else from the
    header of the first file behind a cube made by ``rioxarray.open_rasterio``, stackstac or
    odc-stac: one ranged read of that header, where the loader would read it anyway. Files
    on a grid other than the cube's (another CRS or resolution, or not a whole number of
    pixels away) have blocks that are not the cube's: ``None``.
    """
    sizes = _encoded_chunks(array)
    if sizes is not None and ydim in sizes and xdim in sizes:
        return Tiles(int(sizes[ydim]), int(sizes[xdim]))
    href = _first_file(array)
    if href is None:
        return None
    return _file_tiles(href, grid)


def _encoded_chunks(array: xr.DataArray) -> dict[Any, int] | None:
    preferred = array.encoding.get("preferred_chunks")
    if isinstance(preferred, dict):
        return {k: int(v) for k, v in preferred.items() if isinstance(v, int | np.integer)}
    for key in ("chunksizes", "chunks"):
        sizes = array.encoding.get(key)
        if isinstance(sizes, tuple | list) and len(sizes) == array.ndim:
            return dict(zip(array.dims, (int(s) for s in sizes), strict=True))
    return None


def _first_file(array: xr.DataArray) -> str | None:
    """The path or URL of a file behind ``array``: rioxarray's ``encoding['source']``,
    stackstac's asset table or odc-stac's raster sources."""
    source = array.encoding.get("source")
    if isinstance(source, str) and source:
        return source
    data = array.variable.data
    if not isinstance(data, da.Array):
        return None
    # stackstac: the asset table's chunk of the images and bands the array's first chunk
    # reads (below a selection, not the stack's first file, which it may never read).
    first = next(iter(dask.core.flatten(data.__dask_keys__())))
    inner, window, _ = _below_reshaping(data.dask, first, (slice(None),) * data.ndim)
    stackstac_chunks = [inner[1:3]] if inner[0].startswith("fetch_raster_window-") else []
    for name, layer in data.dask.layers.items():
        if name.startswith("asset-table-"):  # stackstac: a structured array of assets
            keys = [(name, *c) for c in stackstac_chunks if (name, *c) in layer]
            # The chunk's assets the window reads (below an integer pick: its image or band
            # alone), then any asset.
            tasks = [(layer[k], window[:2]) for k in keys]
            for task, picked in tasks + [(t, (slice(None),) * 2) for t in layer.values()]:
                table = getattr(task, "value", task)
                names = getattr(getattr(table, "dtype", None), "names", None) or ()
                if isinstance(table, np.ndarray) and "url" in names:
                    if table.ndim == 2 and all(isinstance(w, slice) for w in picked):
                        table = table[picked]
                    urls = [u for u in table["url"].ravel() if u]
                    if urls:
                        return str(urls[0])
        elif name.startswith("open-"):  # odc-stac: tasks opening a RasterSource each
            for task in layer.values():
                for arg in _args(task):
                    uri = getattr(arg, "uri", None)
                    if isinstance(uri, str):
                        return uri
    return None


def _args(task: Any) -> tuple[Any, ...]:
    """A task's arguments, in old (tuple) or new (``Task``) dask graphs."""
    if isinstance(task, tuple) and task and callable(task[0]):
        return task[1:]
    return tuple(getattr(a, "value", a) for a in getattr(task, "args", ()))


# One header read per file and grid in a process, however many extractions (a notebook's
# loop over features) plan their reads from it. The layout only groups reads: values never
# depend on it.
@functools.lru_cache(maxsize=256)
def _file_tiles(href: str, grid: Grid) -> Tiles | None:
    import rasterio

    from xr_getregion.storage import gdal_path

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a file without a transform is only skipped
            with rasterio.open(gdal_path(href)) as ds:
                if ds.driver != "GTiff":  # a netCDF's blocks come from its encoding
                    return None
                height, width = ds.block_shapes[0]
                transform, crs = ds.transform, ds.crs
                sizes = _tile_sizes(ds, height, width)
    except Exception:  # not ours to report: the loader reports its own read errors
        return None
    a, b, c, d, e, f = grid.transform
    if crs is None or not grid.crs.equals(crs.to_wkt()):
        return None
    if not np.allclose(transform[:6:3] + transform[1:6:3], (a, d, b, e), rtol=1e-9, atol=0):
        return None
    if b or d:
        return None
    col0, row0 = (transform.c - c) / a, (transform.f - f) / e
    if not (_whole(col0) and _whole(row0)):
        return None
    return Tiles(int(height), int(width), round(row0), round(col0), source=href, sizes=sizes)


#: Most tiles whose byte counts are read from a GeoTIFF's header. Measured over HTTP with
#: ``tests/range_server.py``: opening a COG and reading every tile's ``BLOCK_SIZE`` of files of
#: 16, 64, 1,024 and 1,600 tiles fetched the same single 16 KB range as opening it alone (the
#: COG header holds ``TileByteCounts``). Larger arrays may lie past the first range read.
MAX_SIZED_TILES = 1600


def _tile_sizes(ds: Any, height: int, width: int) -> tuple[tuple[int, ...], ...] | None:
    """Each tile's stored bytes for one band of open GeoTIFF ``ds`` (GDAL's ``BLOCK_SIZE``
    metadata, from ``TileByteCounts``), or ``None`` when unknown or beyond
    :data:`MAX_SIZED_TILES`."""
    n_rows, n_cols = -(-ds.height // height), -(-ds.width // width)
    if n_rows * n_cols > MAX_SIZED_TILES:
        return None
    # A pixel-interleaved tile holds every band: each band's share of it.
    share = ds.count if ds.interleaving is not None and ds.interleaving.name == "PIXEL" else 1
    try:
        rows = []
        for r in range(n_rows):
            row = []
            for c in range(n_cols):
                size = ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)
                row.append(int(size or 0) // share)  # a sparse tile is not stored: 0
            rows.append(tuple(row))
    except Exception:  # a driver or GDAL without this metadata: sizes unknown
        return None
    return tuple(rows)


def local_zarr_stored_bytes(
    array: xr.DataArray, ydim: str, xdim: str, spans: list[tuple[range, range]]
) -> int | None:
    """The stored bytes of the chunks of a Zarr array in a local store (``xr.open_zarr`` of a
    directory) that reads of chunk rows and columns ``spans`` fetch, over all of the
    array's other axes: the sizes of those chunks' files, each counted once (a chunk never
    written holds nothing).

    In a sharded array (Zarr v3) the chunks are the shards' inner chunks, which zarr reads
    one byte range each: their sizes come from each shard's index (a small read of the end,
    or start, of each shard file touched), and each read adds the index it reads first,
    once per shard it touches (a read covering a whole shard fetches the shard file in one
    request instead: the same bytes). ``None`` for any other array: a store on object
    storage (a request per chunk to learn its size), an index written by codecs other than
    the default, an array indexed or reshaped after opening.
    """
    data = array.variable.data
    if not isinstance(data, da.Array):
        return None
    node = _backend_array(data, "ZarrArrayWrapper")
    zarray = getattr(node, "_array", None)
    root = getattr(getattr(zarray, "store", None), "root", None)
    if zarray is None or root is None or type(zarray.store).__name__ != "LocalStore":
        return None
    if tuple(zarray.shape) != data.shape:
        return None
    meta = zarray.metadata
    names = getattr(meta, "dimension_names", None) or zarray.attrs.get("_ARRAY_DIMENSIONS")
    if names is None or tuple(names) != tuple(array.dims):
        return None  # dims renamed or transposed since opening: chunks not mapped
    iy, ix = array.dims.index(ydim), array.dims.index(xdim)
    chunks = tuple(int(c) for c in zarray.chunks)  # the inner chunks of a sharded array
    grid = tuple(-(-n // c) for n, c in zip(zarray.shape, chunks, strict=True))
    directory = os.path.join(str(root), zarray.path)
    if getattr(zarray, "shards", None) is None:
        total = 0
        for coords in _covered_chunks(grid, iy, ix, spans):
            path = os.path.join(directory, meta.encode_chunk_key(coords))
            total += os.path.getsize(path) if os.path.exists(path) else 0
        return total
    return _sharded_stored_bytes(zarray, directory, data, chunks, grid, iy, ix, spans)


def _sharded_stored_bytes(
    zarray: Any,
    directory: str,
    data: da.Array,
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    iy: int,
    ix: int,
    spans: list[tuple[range, range]],
) -> int | None:
    """:func:`local_zarr_stored_bytes` of a sharded Zarr v3 array: the inner chunks the
    reads cover, from the shards' indexes, plus one index per read and shard it touches."""
    codecs = zarray.metadata.codecs
    if len(codecs) != 1 or type(codecs[0]).__name__ != "ShardingCodec":
        return None  # a sharding codec nested in others: not the layout read below
    codec = codecs[0]
    per_shard = tuple(int(s) // c for s, c in zip(zarray.shards, chunks, strict=True))
    index_nbytes = _shard_index_nbytes(codec, per_shard)
    if index_nbytes is None:
        return None
    at_start = getattr(codec.index_location, "value", codec.index_location) == "start"
    indexes: dict[tuple[int, ...], np.ndarray | None] = {}

    def index(shard: tuple[int, ...]) -> np.ndarray | None:
        # Each shard's index is read once here, however many of its chunks are covered.
        if shard not in indexes:
            path = os.path.join(directory, zarray.metadata.encode_chunk_key(shard))
            table = None
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(
                        0 if at_start else -index_nbytes, os.SEEK_SET if at_start else os.SEEK_END
                    )
                    raw = f.read(16 * math.prod(per_shard))
                if len(raw) == 16 * math.prod(per_shard):  # else a truncated shard: unread
                    table = np.frombuffer(raw, "<u8").reshape(*per_shard, 2)
            indexes[shard] = table
        return indexes[shard]

    total = 0
    for coords in _covered_chunks(grid, iy, ix, spans):
        shard = tuple(c // n for c, n in zip(coords, per_shard, strict=True))
        table = index(shard)
        if table is None:
            continue  # a shard never written: zarr finds no file, fetches nothing
        offset, nbytes = table[tuple(c % n for c, n in zip(coords, per_shard, strict=True))]
        total += 0 if offset == 2**64 - 1 else int(nbytes)  # an empty inner chunk: no entry
    # The index reads: each read task reads one dask chunk of the other axes (a time
    # chunk) and the window ``span`` of the y and x axes, and zarr reads the index of
    # each shard that selection touches, every time (it keeps none between reads).
    others = [a for a in range(len(grid)) if a not in (iy, ix)]
    along = []
    for a in others:
        stops = np.cumsum(data.chunks[a])
        starts = stops - np.asarray(data.chunks[a])
        shard_size = per_shard[a] * chunks[a]
        along.append(
            [
                range(int(s0) // shard_size, (int(s1) - 1) // shard_size + 1)
                for s0, s1 in zip(starts, stops, strict=True)
            ]
        )
    for rows, cols in spans:
        ys = range(
            max(rows.start, 0) // per_shard[iy], (min(rows.stop, grid[iy]) - 1) // per_shard[iy] + 1
        )
        xs = range(
            max(cols.start, 0) // per_shard[ix], (min(cols.stop, grid[ix]) - 1) // per_shard[ix] + 1
        )
        for layer in itertools.product(*along):
            for rest in itertools.product(*layer):
                for r, c in itertools.product(ys, xs):
                    shard = _with_yx(rest, iy, r, ix, c)
                    if index(shard) is not None:
                        total += index_nbytes
    return total


def _shard_index_nbytes(codec: Any, per_shard: tuple[int, ...]) -> int | None:
    """The bytes of a shard's index written by zarr's default index codecs (little-endian
    ``(offset, nbytes)`` pairs of uint64, then a CRC32C checksum, or none), else ``None``."""
    kinds = [type(c).__name__ for c in codec.index_codecs]
    endian = getattr(getattr(codec.index_codecs[0], "endian", None), "value", None)
    if kinds not in (["BytesCodec"], ["BytesCodec", "Crc32cCodec"]) or endian != "little":
        return None
    return 16 * math.prod(per_shard) + 4 * (len(kinds) == 2)


def local_hdf5_stored_bytes(
    array: xr.DataArray, ydim: str, xdim: str, spans: list[tuple[range, range]]
) -> int | None:
    """The stored bytes of the chunks of a chunked HDF5 dataset (a netCDF4 file's variable
    opened by ``xr.open_dataset(..., chunks=...)`` with the h5netcdf or netcdf4 engine, from
    a local file) that reads of chunk rows and columns ``spans`` fetch, over all of the
    array's other axes, each chunk counted once: their sizes in the dataset's chunk index
    (h5py's ``get_chunk_info_by_coord``, which reads the index's B-tree, no data). A chunk
    never written holds nothing.

    ``None`` for a contiguous variable, whose reads fetch byte runs (HDF5's sieve buffer of
    each row segment of the window) that the file's layout does not tell ahead of the read,
    and for a file on object storage or HTTP, or an array indexed, transposed or with its
    dimensions renamed after opening.
    """
    data = array.variable.data
    if not isinstance(data, da.Array):
        return None
    node = _backend_array(data, "H5NetCDFArrayWrapper", "NetCDF4ArrayWrapper")
    path = array.encoding.get("source")
    if node is None or not isinstance(path, str) or not os.path.isfile(path):
        return None
    try:
        with node.datastore.lock:  # the file handle the reads share: used under their lock
            variable = node.get_array(needs_lock=False)
            dims = tuple(variable.dimensions)
            name = variable.name
            if type(variable).__module__.startswith("netCDF4"):
                name = posixpath.join(variable.group().path, variable.name)
    except Exception:  # not ours to report: the read reports its own errors
        return None
    if tuple(node.shape) != data.shape or dims != tuple(array.dims):
        return None  # indexed, or dims renamed or transposed, since opening
    import h5py

    iy, ix = array.dims.index(ydim), array.dims.index(xdim)
    total = 0
    try:
        with h5py.File(path, "r") as f:
            dataset = f.get(name)
            if not isinstance(dataset, h5py.Dataset) or dataset.chunks is None:
                return None
            if dataset.shape != data.shape:
                return None
            chunks = dataset.chunks
            grid = tuple(-(-n // c) for n, c in zip(dataset.shape, chunks, strict=True))
            for coords in _covered_chunks(grid, iy, ix, spans):
                offset = tuple(c * n for c, n in zip(coords, chunks, strict=True))
                info = dataset.id.get_chunk_info_by_coord(offset)
                total += 0 if info.byte_offset is None else int(info.size)
    except OSError:  # not HDF5 (a netCDF3 file), or locked by a writer: unknown
        return None
    return total


def _backend_array(data: da.Array, *names: str) -> Any:
    """The backend array of xarray's named class (``ZarrArrayWrapper``) that the getter of
    ``data``'s first chunk reads, or ``None``: another task, or a backend array indexed
    before the dask array was made (``open_dataset(...).isel(...).chunk(...)``), whose
    chunks the dask array's indices do not name."""
    first = next(iter(dask.core.flatten(data.__dask_keys__())))
    task = data.dask.get(first)
    args: tuple[Any, ...] = tuple(getattr(task, "args", ()))
    if getattr(task, "func", None) is not da.core.getter or len(args) != 2:
        return None
    node = _value(data.dask, args[0])
    for _ in range(12):  # xarray's adapters and CF decoders down to its backend array
        kind = type(node).__name__
        if kind in names:
            return node
        if kind == "LazilyVectorizedIndexedArray":
            return None
        key = getattr(getattr(node, "key", None), "tuple", None)
        shape = getattr(getattr(node, "array", None), "shape", None)
        if kind == "LazilyIndexedArray" and key is not None and shape is not None:
            whole = all(
                isinstance(k, slice) and range(*k.indices(n)) == range(n)
                for k, n in zip(key, shape, strict=False)
            )
            if not whole:
                return None
        node = getattr(node, "array", None)
    return None


def _covered_chunks(
    grid: tuple[int, ...], iy: int, ix: int, spans: list[tuple[range, range]]
) -> list[tuple[int, ...]]:
    """The chunks (indices on chunk ``grid``) in rows and columns ``spans`` of axes ``iy``
    and ``ix``, over every chunk of the other axes, each once, in the order first met."""
    others = [range(n) for a, n in enumerate(grid) if a not in (iy, ix)]
    seen: dict[tuple[int, ...], None] = {}
    for rows, cols in spans:
        for r in range(max(rows.start, 0), min(rows.stop, grid[iy])):
            for c in range(max(cols.start, 0), min(cols.stop, grid[ix])):
                for rest in itertools.product(*others):
                    seen.setdefault(_with_yx(rest, iy, r, ix, c))
    return list(seen)


def _with_yx(rest: tuple[int, ...], iy: int, r: int, ix: int, c: int) -> tuple[int, ...]:
    """Indices ``rest`` of the other axes with ``r`` and ``c`` put in at axes ``iy``, ``ix``."""
    coords = list(rest)
    for a, v in sorted(((iy, r), (ix, c))):
        coords.insert(a, v)
    return tuple(coords)


def _whole(v: float) -> bool:
    return math.isfinite(v) and abs(v - round(v)) < 1e-6


def window_tasks(
    data: da.Array, block: tuple, window: tuple[slice, ...], key: tuple
) -> dict[tuple, Any]:
    """The tasks reading ``window`` (an index of the block, in the array's dims) of chunk
    ``block`` (its key in ``data``), the last under ``key``: through the loader's own reader
    where that is known, else ``getitem`` on the chunk, which dask folds into an xarray
    getter. A chunk that is another array's chunk with new axes (``xr.concat`` of
    ``rioxarray.open_rasterio`` arrays, ``expand_dims``), with axes dropped by an integer pick
    (``sel(band="B04")``, ``isel(time=0)``) or taken by a list (``sel(band=[...])``) is
    windowed below those steps, where the getter or the loader's reader is, the window one
    position wide on a picked axis; the steps are applied to the window after."""
    task = file_window(data, block, window)
    if task is not None:
        return {key: task}
    layer = data.dask.layers.get(block[0])
    if layer is not None:
        task = _odc_window(data.dask, layer, block, window, key)
        if task is not None:
            return {key: task}
    inner, inner_window, restore = _below_reshaping(data.dask, block, window)
    read_key = (f"{key[0]}-inner", *key[1:]) if restore else key
    read = None
    if restore:  # below selections by lists or integer picks (sel(band="B04"), isel(time=0))
        read = file_window(data, inner, inner_window)
        inner_layer = data.dask.layers.get(inner[0])
        listed = _listed_images(restore[0])
        if read is None and inner_layer is not None and listed is not None:
            # isel(time=[...]) right above odc-stac's chunk: its loader reads the listed
            # images alone, in the list's order, so that take has nothing left to do.
            rest = restore[1:]
            target = read_key if rest else key
            read = _odc_window(data.dask, inner_layer, inner, inner_window, target, listed)
            if read is not None:
                if not rest:
                    return {key: read}
                restore = rest
        if read is None and inner_layer is not None:
            read = _odc_window(data.dask, inner_layer, inner, inner_window, read_key)
    if read is None:
        read = _getter_window(data.dask, inner, inner_window, read_key)
    if read is None:
        read = (getitem, inner, inner_window)
    if not restore:
        return {key: read}
    return {read_key: read, key: (_reindex, read_key, restore)}


def whole_chunk_tasks(data: da.Array, block: tuple, key: tuple) -> dict[tuple, Any] | None:
    """The tasks reading chunk ``block`` whole through odc-stac's loader with the read's
    GDAL options of :func:`_odc_read_env` (the last under ``key``), directly or below an
    integer pick; ``None`` for other loaders, whose chunk tasks read a whole chunk as well
    as a task of ours would."""
    if sys.modules.get("odc.loader._builder") is None:  # no cube of odc-stac's here
        return None
    full = tuple(slice(None) for _ in range(data.ndim))
    tasks = window_tasks(data, block, full, key)
    return tasks if any(_is_odc_read(t) for t in tasks.values()) else None


def _is_odc_read(task: Any) -> bool:
    builder = sys.modules.get("odc.loader._builder")
    func = getattr(task, "func", None)
    return func is not None and func is getattr(builder, "_dask_loader_tyx", None)


def reads_image_windows(data: da.Array, window: tuple[slice, ...]) -> bool:
    """Whether ``window`` of ``data``'s first chunk is read by the loader's reader of files
    (stackstac's), directly or below selections by lists: that reader reads any window of
    an image, within the chunk or past it."""
    block = next(iter(dask.core.flatten(data.__dask_keys__())))
    tasks = window_tasks(data, block, window, ("xr-getregion-probe", 0))
    return any(isinstance(t, tuple) and _is_fetch(t[0]) for t in tasks.values())


def _is_fetch(func: Any) -> bool:
    stackstac = sys.modules.get("stackstac.to_dask")
    return stackstac is not None and func is getattr(stackstac, "fetch_raster_window", None)


def _getter_window(graph: HighLevelGraph, block: Any, window: tuple, key: tuple) -> Any:
    """xarray's chunk task ``getter(array, index)`` (dask's ``from_array``, over a lazily
    indexed file) with ``index`` narrowed to ``window``: the backend reads that window
    alone. Written out here rather than left to dask's slice fusion, which in dask 2026 no
    longer reaches a getter in a ``Blockwise`` layer (``xr.concat`` of
    ``rioxarray.open_rasterio`` arrays read whole chunks)."""
    from dask._task_spec import DataNode, Task

    try:
        task = graph[block]
    except KeyError:
        return None
    if not (isinstance(task, Task) and task.func is da.core.getter and len(task.args) == 2):
        return None
    index = getattr(task.args[1], "value", task.args[1])
    if not (isinstance(index, tuple) and len(index) == len(window)):
        return None
    if not all(isinstance(i, slice) and i.step in (None, 1) for i in index):
        return None
    narrowed = []
    for i, w in zip(index, window, strict=True):
        start, stop, _ = w.indices(i.stop - i.start)
        narrowed.append(slice(i.start + start, i.start + stop))
    getter: Any = da.core.getter
    if _rioxarray_wrapper(_value(graph, task.args[0])) is not None:
        getter = _io_getter
    return Task(key, getter, task.args[0], DataNode(None, tuple(narrowed)), **task.kwargs)


def _value(graph: Mapping, arg: Any) -> Any:
    """A task's argument: its value, or the value of the graph's node it refers to."""
    from dask._task_spec import TaskRef

    if isinstance(arg, TaskRef):
        try:
            arg = graph[arg.key]
        except KeyError:
            return None
    return getattr(arg, "value", arg)


# --- rioxarray's default lock ---------------------------------------------------------------
#
# ``rioxarray.open_rasterio(url, chunks=...)`` with its default ``lock=None`` reads every file
# through one cached handle per file, under one lock shared by every file of the process
# (``rioxarray._io.RASTERIO_LOCK``): one read at a time, which over a network leaves it idle
# (30 ms a request: 1.9-2.2x a tile reader's time on small regions). Window reads of a remote
# GeoTIFF on this package's own I/O threads (see :data:`IO_THREAD_PREFIX`) run rioxarray's own
# read (its band selection, masking, scaling and unsigned conversion) on a handle of the
# reading thread, opened with the file manager's own opener and arguments, as stackstac and
# odc-stac read a file from several handles at once.
#
# That handle must read what rioxarray's would, and a handle opened later may not:
# - rioxarray's handle was opened under whatever ``rasterio.Env`` was active then, and
#   GDAL's options can change what a file says (a sidecar's nodata, scales, georeferencing,
#   a mask file): a thread's handle is used only when it describes the file exactly as
#   rioxarray's handle does (:func:`_description`);
# - some options GDAL reads at open change values and nothing else
#   (:data:`OPEN_TIME_READ_OPTIONS`): with one set at read time, no thread handle is opened;
# - a local file replaced or removed since rioxarray opened it is still read, old, through
#   rioxarray's open descriptor: local files keep rioxarray's handle (a remote file is read
#   by ranged requests by either handle, with no descriptor to hold on to);
# - a handle that fails to open (credentials only in the ``Env`` of the open) or to read
#   leaves the read to rioxarray's own handle, which gives its value or its error.
# A thread opens its handle of a file only when rioxarray's lock is taken as it reads it;
# while the lock is free, it reads through rioxarray's handle, as rioxarray would (an open
# costs a request and some milliseconds: on the ~1 km2 polygon of ``benchmarks.cogs``, one
# read per file, opens cost more than they saved without latency).
# A lock the user passed, ``lock=False`` (a handle per read, rioxarray's own), a warped VRT
# and other drivers are left as they are. Handles live in their thread: they close when the
# extraction's pool ends.

#: Name prefix of the threads :func:`xr_getregion.reads.compute` runs reads on; only there are
#: rioxarray's GeoTIFFs read through per-thread handles, which close with the threads.
IO_THREAD_PREFIX = "xr-getregion-io"

#: Handles a thread keeps open (the least recently used is closed first).
THREAD_HANDLES = 8

#: GDAL options read when a GeoTIFF is opened that change what reads return (zeros for a
#: corrupt tile instead of an error) without showing in :func:`_description`: with one set
#: when a read thread would open its handle, it reads through rioxarray's handle instead.
OPEN_TIME_READ_OPTIONS = ("GTIFF_IGNORE_READ_ERRORS",)

#: GDAL's virtual file systems that read a remote object by ranged requests.
_REMOTE_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift")

_threads = threading.local()


def _rioxarray_wrapper(array: Any) -> Any:
    """The ``RasterioArrayWrapper`` at the bottom of xarray's lazily indexed ``array``, when
    it reads a remote file without a warped VRT under rioxarray's default lock through a
    cached file manager; else ``None``."""
    io = sys.modules.get("rioxarray._io")  # a cube rioxarray opened has imported it
    if io is None:
        return None
    from xarray.backends.file_manager import CachingFileManager

    for _ in range(8):
        if isinstance(array, io.RasterioArrayWrapper):
            manager = getattr(array, "manager", None)
            if (
                array.lock is io.RASTERIO_LOCK
                and isinstance(manager, CachingFileManager)
                and getattr(array, "vrt_params", None) is None
                and _remote(manager._args[0] if manager._args else None)
            ):
                return array
            return None
        array = getattr(array, "array", None)
    return None


def _remote(name: Any) -> bool:
    """Whether ``name`` (what rioxarray opened) is a file GDAL reads by ranged requests: a
    URL (``https://``, ``s3://``, ...) or a path of GDAL's network file systems."""
    if not isinstance(name, str):
        return False  # a local path, or a dataset or file object rioxarray was handed
    scheme = name.split("://", 1)[0].lower() if "://" in name else ""
    if scheme:
        return scheme not in ("file", "zip", "tar", "gzip")
    return name.startswith(_REMOTE_VSI)


def _description(dataset: Any) -> tuple:
    """Everything GDAL's options can change in what an open file says about its pixels:
    its shape, types, nodata, masks, scales and offsets, georeferencing, colour
    interpretation, units, descriptions and metadata (a PAM sidecar's values show here)."""
    return (
        dataset.driver,
        dataset.shape,
        dataset.count,
        dataset.dtypes,
        # NaN nodata is the same NaN on both handles, though NaN != NaN.
        tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in dataset.nodatavals),
        tuple(tuple(f) for f in dataset.mask_flag_enums),
        dataset.scales,
        dataset.offsets,
        dataset.block_shapes,
        None if dataset.crs is None else dataset.crs.to_wkt(),
        tuple(dataset.transform),
        dataset.colorinterp,
        dataset.units,
        dataset.descriptions,
        dataset.tags(),
        tuple(dataset.tags(b) for b in dataset.indexes),
    )


class _Handle:
    """Stands for a file manager in one thread's read: ``acquire`` gives its handle."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def acquire(self, needs_lock: bool = True) -> Any:
        return self.dataset


def _open_checked(wrapper: Any) -> Any:
    """A new handle of ``wrapper``'s file, opened as its manager opens it, or ``None`` where
    it could not be opened or would not read what rioxarray's does."""
    opened = _open_twin(wrapper)
    return None if opened is None else opened[0]


def _open_twin(wrapper: Any) -> tuple[Any, Any] | None:
    """:func:`_open_checked`'s handle, with the handle of rioxarray's it was checked against."""
    import rasterio

    if any(rasterio.env.get_gdal_config(o) for o in OPEN_TIME_READ_OPTIONS):
        return None
    manager = wrapper.manager
    try:
        dataset = manager._opener(*manager._args, mode=manager._mode, **manager._kwargs)
    except Exception:  # credentials only in the Env of rioxarray's open, say
        return None
    theirs = _checked_against(wrapper, dataset)
    if theirs is None:
        dataset.close()
        return None
    return dataset, theirs


def _checked_against(wrapper: Any, dataset: Any) -> Any:
    """rioxarray's handle of ``wrapper``'s file where ``dataset`` describes the file exactly
    as it does (a GeoTIFF); else ``None``."""
    try:
        if dataset.driver != "GTiff":
            return None
        with wrapper.lock:  # rioxarray's handle is read under its lock only
            theirs = wrapper.manager.acquire(needs_lock=False)
            same = _description(theirs) == _description(dataset)
    except Exception:  # a description that cannot be read: rioxarray's handle reads
        return None
    return theirs if same else None


def _thread_handle(wrapper: Any) -> Any:
    """The calling thread's handle of ``wrapper``'s file, opened as its manager opens it,
    or ``None`` where it could not be opened or would not read what rioxarray's does."""
    handles = _threads.__dict__.setdefault("handles", collections.OrderedDict())
    key = wrapper.manager._key
    if key in handles:
        handles.move_to_end(key)
        return handles[key]
    dataset = _open_checked(wrapper)
    handles[key] = dataset  # None: this file is read through rioxarray's handle
    if len(handles) > THREAD_HANDLES:
        oldest = handles.popitem(last=False)[1]
        if oldest is not None:
            oldest.close()  # only this thread ever reads it
    return dataset


def _io_getter(array: Any, index: tuple, **kwargs: Any) -> Any:
    """dask's ``getter(array, index)`` for a lazily indexed rioxarray file: on this
    package's I/O threads, a remote GeoTIFF is read through the thread's own handle, with
    the same chain of xarray's adapters over a copy of rioxarray's wrapper, its manager that
    handle and its lock none. A read that fails there is read by rioxarray, as it would be."""
    wrapper = _rioxarray_wrapper(array)
    if wrapper is not None and threading.current_thread().name.startswith(IO_THREAD_PREFIX):
        spares = SPARES.get()
        spare = spares.take(wrapper) if spares is not None else None
        if spares is not None and spare is not None:
            ok = False
            try:
                values = _read_on(spare.dataset, array, wrapper, index, **kwargs)
                ok = True
            except Exception:  # closed, not lent again; rioxarray's own read gives its value
                pass
            finally:
                spares.give(wrapper, spare, ok)
            if ok:
                return values
        handles = _threads.__dict__.get("handles", {})
        if wrapper.manager._key not in handles and wrapper.lock.acquire(blocking=False):
            # rioxarray's handle is free: read there rather than open one of our own
            wrapper.lock.release()
            return da.core.getter(array, index, **kwargs)
        dataset = _thread_handle(wrapper)
        if dataset is not None:
            try:
                return _read_on(dataset, array, wrapper, index, **kwargs)
            except Exception:  # rioxarray's own read gives its value, or its error
                pass
    return da.core.getter(array, index, **kwargs)


def _read_on(dataset: Any, array: Any, wrapper: Any, index: tuple, **kwargs: Any) -> Any:
    """dask's ``getter(array, index)`` with the same chain of xarray's adapters over a copy
    of rioxarray's ``wrapper`` (at the bottom of ``array``) whose manager is ``dataset``, a
    handle only this read uses, and whose lock is none."""
    chain = []
    node = array
    while node is not wrapper:
        chain.append(node)
        node = node.array
    unlocked = copy.copy(wrapper)
    unlocked.manager = _Handle(dataset)
    unlocked.lock = contextlib.nullcontext()
    for adapter in reversed(chain):
        adapter = copy.copy(adapter)
        adapter.array = unlocked
        unlocked = adapter
    return da.core.getter(unlocked, index, **kwargs)


# --- spare handles, made ready before the reads ------------------------------------------------
#
# GDAL reads a GeoTIFF's directories and tile index again at a handle's first pixel read, from
# the file's first bytes: rasterio's read asks for the mask flags, for which GDAL scans the
# file's directories (overviews, masks) and then reloads the main one, dropping the tile index
# it had loaded (GTiffDataset::ScanDirectories; libtiff loads that index lazily, a 4 KB page
# around each entry asked for). rioxarray opens its files when the cube is built; by a file's
# first read, the extraction's other tiles may have pushed those bytes out of ``/vsicurl/``'s
# cache of ranges (16 MB unless ``CPL_VSIL_CURL_CACHE_SIZE`` says otherwise, fixed at the
# process's first remote read), and they are fetched again: 10-12 of the 36 files of the ~1 km2
# polygon of ``benchmarks.cogs`` (26 MB of tiles), 1.051-1.055x the covered tiles' bytes.
# A handle opened after them fetches them again too, when it opens.
#
# So before an extraction's reads, each remote file they read gets a spare handle, opened on
# the extraction's pool (all files at once, from the cache where rioxarray's open left them)
# and made to load what its first read would: the mask flags, then the tile index entries of
# the blocks the reads touch and of the block after each (GDAL's ``BLOCK_OFFSET_x_y`` item asks
# libtiff for the entry's offset and byte count; GDAL's multi-range read of a window also looks
# at the next block's offset). A read takes its file's spare when no other read holds it, before
# rioxarray's handle or a thread's own.
#
# Spares are kept from one extraction to the next, as rioxarray keeps its handles (opening one
# costs about 1 ms of CPU, and a kept one keeps GDAL's decoded tiles): at most SPARE_FILES of
# them, the least recently used closed first, and only ever a spare no read holds. A kept
# spare lives as long as rioxarray's handle it was checked against: where xarray's cache of
# files has opened that handle again (evicted, or its manager closed), the file may have
# changed since, and GDAL's decoded tiles in the spare would be the old file's, so the spare
# is closed and a new one opened. And it lives no longer than its cube: when the file
# manager is collected, its idle spare is closed.

#: Most spare handles kept (each holds its file's directories and tile index: about 128 KB
#: for a COG of 4096 x 4096 with 3 overviews); an extraction's files past it are read as
#: without spares.
SPARE_FILES = 256


@dataclass
class _Spare:
    """A spare handle, and the handle of rioxarray's it was checked against."""

    dataset: Any
    checked: Any


#: The spare handles no read holds, by their file manager's key, least recently used first.
_IDLE: collections.OrderedDict[Any, _Spare] = collections.OrderedDict()
_IDLE_LOCK = threading.Lock()

#: The files whose spares the extraction running in this context checked (see
#: :class:`Spares`): only these are read through spares.
SPARES: contextvars.ContextVar[Spares | None] = contextvars.ContextVar(
    "xr_getregion_spares", default=None
)


#: The manager keys whose manager was collected, for :func:`_idle` to close their spares.
_COLLECTED: collections.deque[Any] = collections.deque()

#: The manager keys whose manager's collection is watched (see :func:`_watch`).
_WATCHED: set[Any] = set()


@contextlib.contextmanager
def _idle() -> Iterator[list[_Spare]]:
    """Hold :data:`_IDLE_LOCK`; the spares put in the list given are closed after it is
    released, with the idle spares of the files whose manager was collected meanwhile."""
    closing: list[_Spare] = []
    try:
        with _IDLE_LOCK:
            yield closing
    finally:
        _sweep(closing)
        for spare in closing:  # idle: no read holds them
            spare.dataset.close()


def _sweep(closing: list[_Spare]) -> None:
    """Put in ``closing`` the idle spares of the files whose manager was collected, taking
    :data:`_IDLE_LOCK` only where it is free: whoever holds it sweeps after releasing it."""
    while _COLLECTED and _IDLE_LOCK.acquire(blocking=False):
        try:
            key = _COLLECTED.popleft()
        except IndexError:  # another thread's sweep took the last
            _IDLE_LOCK.release()
            break
        _WATCHED.discard(key)
        spare = _IDLE.pop(key, None)
        _IDLE_LOCK.release()
        if spare is not None:
            closing.append(spare)


def _collected(key: Any) -> None:
    """``weakref.finalize``'s callback for a file manager: close its idle spare. It may run
    in any thread at any allocation, even one holding :data:`_IDLE_LOCK` (a ``Lock``, not
    reentrant), so it never waits for that lock: it queues the key, and closes the spare
    itself where the lock is free; else whoever holds it closes the spare on release."""
    _COLLECTED.append(key)
    closing: list[_Spare] = []
    _sweep(closing)
    for spare in closing:
        spare.dataset.close()


def _watch(manager: Any, key: Any) -> None:
    """Close the idle spare of ``manager``'s file (of key ``key``) when ``manager`` is
    collected: the key holds the manager's own id (a uuid xarray gives each manager), so no
    later cube would take that spare, which would hold its file open and take a place among
    the kept."""
    with _idle():
        if key in _WATCHED:
            return
        _WATCHED.add(key)
    try:
        # Not at exit: the process's end closes every handle anyway.
        weakref.finalize(manager, _collected, key).atexit = False
    except TypeError:  # not weakly referenceable: kept until pushed out or closed
        with _idle():
            _WATCHED.discard(key)


def _take_spare(key: Any) -> _Spare | None:
    """The idle spare of the file of manager key ``key``, lent to the caller alone."""
    with _idle():
        return _IDLE.pop(key, None)


def _keep_spare(key: Any, spare: _Spare) -> None:
    """Give back (or keep) ``spare``: idle again, unless the file has an idle spare already;
    the least recently used past :data:`SPARE_FILES` are closed."""
    with _idle() as closing:
        if key in _IDLE:
            closing.append(spare)
        else:
            _IDLE[key] = spare
        while len(_IDLE) > SPARE_FILES:
            closing.append(_IDLE.popitem(last=False)[1])


def close_spares() -> None:
    """Close the spare handles kept for rioxarray's remote GeoTIFFs that no read holds (see
    the README's *Reads at the storage floor*). Those of a cube are closed anyway when the
    cube is collected."""
    with _idle() as closing:
        closing.extend(_IDLE.values())
        _IDLE.clear()


class Spares:
    """The files one extraction reads through spare handles: each has one, checked and made
    ready for the blocks its reads touch before they start."""

    def __init__(self) -> None:
        self.keys: set[Any] = set()

    def open(self, graph: Any, pool: Executor) -> None:
        """Make ready on ``pool`` a spare handle (kept, or opened) of each remote rioxarray
        GeoTIFF (at most :data:`SPARE_FILES`) that the reads of ``graph`` (a mapping of keys
        to tasks) make through :func:`_io_getter`, for the blocks they touch."""
        files = _spare_files(graph)
        ready = pool.map(_ready_spare, files.items())
        self.keys.update(key for key, ok in zip(files, ready, strict=True) if ok)

    def take(self, wrapper: Any) -> _Spare | None:
        """The spare of ``wrapper``'s file, lent to the caller alone, or ``None``."""
        key = wrapper.manager._key
        return _take_spare(key) if key in self.keys else None

    def give(self, wrapper: Any, spare: _Spare, ok: bool = True) -> None:
        """Give back ``spare``, taken for ``wrapper``'s file; closed instead where its read
        failed (``ok`` false), by the thread that read on it."""
        if ok:
            _keep_spare(wrapper.manager._key, spare)
        else:
            spare.dataset.close()


def _graph_tasks(graph: Any, outer: Mapping | None = None) -> Iterable[tuple[Any, Mapping]]:
    """The tasks of ``graph`` (a mapping, or a HighLevelGraph's materialized layers: a layer
    not materialized yet holds no reads of ours), with those of the subgraphs dask's
    optimization fused into one task, each with the mapping its references resolve in."""
    from dask._task_spec import _execute_subgraph

    if isinstance(graph, HighLevelGraph):
        for layer in graph.layers.values():
            mapping = getattr(layer, "mapping", None)
            if isinstance(mapping, dict):
                yield from _graph_tasks(mapping, graph)
        return
    if not isinstance(graph, Mapping):
        return
    scope = graph if outer is None else collections.ChainMap(graph, outer)  # type: ignore[arg-type]
    for task in graph.values():
        yield task, scope
        if getattr(task, "func", None) is _execute_subgraph and task.args:
            inner = getattr(task.args[0], "value", task.args[0])
            yield from _graph_tasks(inner, scope)


def _spare_files(graph: Any) -> dict[Any, tuple[Any, list[tuple]]]:
    """The remote rioxarray GeoTIFFs read by the :func:`_io_getter` tasks of ``graph``, by
    their manager's key: ``(wrapper, windows)``, ``windows`` the ``(band, y, x)`` slices of
    the file each task reads where the chain of adapters above the wrapper does not index it
    (``open_rasterio(..., chunks=...)``); at most :data:`SPARE_FILES` files."""
    if sys.modules.get("rioxarray._io") is None:
        return {}
    from dask._task_spec import Task

    files: dict[Any, tuple[Any, list[tuple]]] = {}
    for task, scope in _graph_tasks(graph):
        if not (isinstance(task, Task) and task.func is _io_getter and len(task.args) == 2):
            continue
        array = _value(scope, task.args[0])
        wrapper = _rioxarray_wrapper(array)
        if wrapper is None:
            continue
        key = wrapper.manager._key
        if key not in files:
            if len(files) >= SPARE_FILES:
                continue
            files[key] = (wrapper, [])
        window = _file_window(array, wrapper, _value(scope, task.args[1]))
        if window is not None:
            files[key][1].append(window)
    return files


def _file_window(array: Any, wrapper: Any, index: Any) -> tuple | None:
    """``index`` (of ``array``) as ``(band, y, x)`` slices of ``wrapper``'s file, where the
    adapters between them pass an index through unchanged; else ``None``."""
    from xarray.core import indexing

    if not (isinstance(index, tuple) and len(index) == 3):
        return None
    if not all(isinstance(i, slice) and i.step in (None, 1) for i in index):
        return None
    node = array
    while node is not wrapper:
        if isinstance(node, indexing.LazilyIndexedArray):
            shape = node.array.shape
            if not all(
                isinstance(k, slice) and k.indices(n) == (0, n, 1)
                for k, n in zip(node.key.tuple, shape, strict=True)
            ):
                return None
        elif getattr(node, "key", None) is not None:
            return None
        node = node.array
    return index


def _ready_spare(item: tuple[Any, tuple[Any, list[tuple]]]) -> bool:
    """Make ready the spare of a file (``(key, (wrapper, windows))``): the one kept while
    rioxarray's handle is the one it was checked against, else a new one; it loads what a
    first read of ``windows`` would from the file's first bytes, and is kept. Whether the
    file has a spare."""
    key, (wrapper, windows) = item
    spare = _take_spare(key)
    if spare is not None:
        try:
            with wrapper.lock:
                theirs = wrapper.manager.acquire(needs_lock=False)
        except Exception:
            theirs = None
        if theirs is None or theirs is not spare.checked:
            # Opened again: the file may have changed, and the spare's decoded tiles with it.
            spare.dataset.close()
            spare = None
    if spare is None:
        opened = _open_twin(wrapper)  # its description has asked for the mask flags
        if opened is None:
            return False
        spare = _Spare(*opened)
    try:
        _load_index(spare.dataset, windows)
    except Exception:  # a read will say what is wrong with the file
        spare.dataset.close()
        return False
    _keep_spare(key, spare)
    _watch(wrapper.manager, key)
    return True


def _load_index(dataset: Any, windows: list[tuple]) -> None:
    """Make ``dataset`` load what its first read of ``windows`` (``(band, y, x)`` slices)
    would from the file's first bytes: the mask flags (GDAL's scan of the directories), then
    the tile index entries of the blocks they touch and of the block after each."""
    _ = dataset.mask_flag_enums
    rows_of, cols_of = dataset.block_shapes[0]
    ny = -(-dataset.height // rows_of)
    nx = -(-dataset.width // cols_of)
    entries: set[tuple[int, int, int]] = set()
    for bands, ys, xs in windows:
        y0, y1, _ = ys.indices(dataset.height)
        x0, x1, _ = xs.indices(dataset.width)
        if y1 <= y0 or x1 <= x0:
            continue
        for band in range(*bands.indices(dataset.count)):
            for row in range(y0 // rows_of, (y1 - 1) // rows_of + 1):
                for col in range(x0 // cols_of, (x1 - 1) // cols_of + 1):
                    entries.add((band + 1, row, col))
                    following = (row, col + 1) if col + 1 < nx else (row + 1, 0)
                    if following[0] < ny:
                        entries.add((band + 1, *following))
    for bidx, row, col in sorted(entries):
        dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=bidx)


def _takes() -> tuple[Any, ...]:
    """dask's task functions of a selection by a list (``x[:, [0, 2]]``)."""
    found = []
    for module in ("dask.array._shuffle", "dask.array._array_expr._shuffle"):
        try:
            found.append(importlib.import_module(module)._getitem)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_TAKES = _takes()


def reaches_storage(data: da.Array) -> bool:
    """Whether a window of ``data``'s chunks reaches the loader's reader or xarray's getter
    (:func:`window_tasks`), so that it reads only the storage blocks it spans; a chunk of a
    cube computed from the loaded one (arithmetic, ``where``) is read whole."""
    key = next(iter(dask.core.flatten(data.__dask_keys__())))
    window = tuple(slice(None) for _ in range(data.ndim))
    tasks = window_tasks(data, key, window, ("xr-getregion-probe", 0))
    return any(not (isinstance(t, tuple) and t[0] in (getitem, _reindex)) for t in tasks.values())


def _reindex(block: Any, indices: tuple[tuple, ...]) -> Any:
    """``block`` indexed by each of ``indices`` in turn."""
    for index in indices:
        block = block[index]
    return block


def _below_reshaping(
    graph: HighLevelGraph, block: tuple, window: tuple[slice, ...]
) -> tuple[Any, tuple, tuple[tuple, ...]]:
    """When chunk ``block`` is, through aliases (concatenations), whole chunks indexed only
    to add axes (``None``) or drop them (an integer), down to a chunk that is none of these
    (a getter): that chunk, the window in its dims, and the indices that give the windowed
    chunk the axes of ``block`` back (innermost first). Otherwise ``block``, ``window`` and
    no indices."""
    from dask._task_spec import Alias, Task, TaskRef

    key: Any = block
    restore: list[tuple] = []
    for _ in range(16):  # a few concatenations and expand_dims/squeeze steps
        if _is_key(key) and str(key[0]).startswith("fetch_raster_window-"):
            # stackstac's reader: nothing below it. Looking its task up would build every
            # task of its layer (a Blockwise): 54 ms of a 0.46 s extraction.
            break
        try:
            task = graph[key]
        except KeyError:
            break
        if isinstance(task, Alias):
            key = task.target
            continue
        if _is_key(task) and task in graph:
            key = task
            continue
        if isinstance(task, tuple) and len(task) == 3 and task[0] is getitem:
            # An old-style task (``da.stack``): ``(getitem, inner key, index)``.
            inner, index = task[1], task[2]
            inner = TaskRef(inner) if _is_key(inner) else None
        elif isinstance(task, Task) and task.func is getitem and len(task.args) == 2:
            inner, index = task.args
        elif isinstance(task, Task) and task.func in _TAKES and len(task.args) == 2:
            # A selection by a list (``sel(band=[...])``, ``isel(time=[...])``): dask's
            # ``_getitem(chunk, (1, index))``, ``index`` a list on the selected axis. Where
            # it leaves the window's axes whole, the window is read below it and taken after.
            inner, taker = task.args
            taken = _value(graph, taker)
            index = taken[1] if isinstance(taken, tuple) and len(taken) == 2 else None
            if not (isinstance(inner, TaskRef) and isinstance(index, tuple)):
                break
            if len(index) != len(window) or not all(
                _whole_axis(w) or _whole_axis(i) for i, w in zip(index, window, strict=True)
            ):
                break
            restore.insert(0, index)
            key = inner.key
            continue
        else:
            break
        index = getattr(index, "value", index)
        if not isinstance(inner, TaskRef) or not isinstance(index, tuple):
            break
        steps = _window_below(index, window)
        if steps is None:
            break
        window, back = steps
        restore.insert(0, back)
        key = inner.key
    if not restore:
        return block, window, ()
    return key, window, tuple(restore)


def _whole_axis(index: Any) -> bool:
    """Whether ``index`` (one axis of an index) is ``slice(None)``, not an array or list."""
    return isinstance(index, slice) and index == slice(None)


def _is_key(value: Any) -> bool:
    """Whether ``value`` is a chunk's key (``(name, i, j, ...)``), not an old-style task
    tuple such as ``(getitem, key, (None, slice(...)))``: that one holds slices, which are
    unhashable before Python 3.12, so testing ``value in graph`` would raise (``da.stack``,
    which ``Dataset.to_array`` uses, still writes such tuples)."""
    return (
        isinstance(value, tuple)
        and bool(value)
        and isinstance(value[0], str)
        and all(isinstance(i, int | np.integer) for i in value[1:])
    )


def _window_below(index: tuple, window: tuple) -> tuple[tuple, tuple] | None:
    """For ``getitem(inner, index)`` with ``index`` of ``None``, ``slice(None)`` and
    integers only: the window of ``inner`` holding ``window`` (of the result), and the
    index giving the windowed ``inner`` the result's axes."""
    if not all(i is None or i == slice(None) or isinstance(i, int | np.integer) for i in index):
        return None
    if sum(1 for i in index if not isinstance(i, int | np.integer)) != len(window):
        return None
    inner: list[Any] = []
    back: list[Any] = []
    outer = iter(window)
    for i in index:
        if i is None:  # a new axis of length 1: the window takes it whole
            if next(outer) not in (slice(None), slice(0, 1)):
                return None
            back.append(None)
        elif isinstance(i, int | np.integer):  # an axis dropped: read only that position
            inner.append(slice(int(i), int(i) + 1) if i >= 0 else None)
            back.append(0)
        else:
            inner.append(next(outer))
            back.append(slice(None))
    if any(w is None for w in inner):  # negative positions: leave them to dask
        return None
    return tuple(inner), tuple(back)


def _absolute(chunks: tuple[int, ...], index: int, w: slice) -> slice:
    """Window ``w`` of chunk ``index`` of an axis chunked ``chunks``, counted from the
    axis's start. A window may reach past its chunk, into the next ones (stackstac's reader
    reads any window of an image: see ``Source._spatial_reads``); an open end stops at the
    chunk's."""
    start = int(sum(chunks[:index]))
    size = chunks[index]
    first = 0 if w.start is None else w.start
    stop = size if w.stop is None else w.stop
    if first < 0 or stop < first or start + stop > sum(chunks) or w.step not in (None, 1):
        raise ValueError(f"window {w} of chunk {index} is not a window of the axis {chunks}")
    return slice(start + first, start + stop)


def _layer_chunks(graph: HighLevelGraph, name: str) -> tuple[tuple[int, ...], ...] | None:
    """The chunks of the array layer ``name`` of ``graph`` produces (dask records them in
    the layer's annotations), or ``None`` where it does not."""
    layer = graph.layers.get(name)
    chunks = (getattr(layer, "collection_annotations", None) or {}).get("chunks")
    return chunks if isinstance(chunks, tuple) else None


def _whole_chunk(w: slice, size: int | None) -> bool:
    """Whether window ``w`` of one axis takes all of a chunk ``size`` long."""
    return w == slice(None) or (size is not None and w.indices(size) == (0, size, 1))


def file_window(data: da.Array, block: tuple, window: tuple[slice, ...]) -> tuple | None:
    """The task reading ``window`` of chunk ``block`` (a chunk of ``data`` or of an array
    below it) through the loader's reader of its files, which reads any window of an image,
    within the chunk or past it (stackstac's ``fetch_raster_window``); ``None`` for other
    loaders."""
    layer = data.dask.layers.get(block[0])
    if layer is None or not block[0].startswith("fetch_raster_window-"):
        return None
    return _stackstac_window(layer, block, window)


def _stackstac_window(layer: Any, block: tuple, window: tuple) -> tuple | None:
    """stackstac's chunk task is ``fetch_raster_window(readers, (ys, xs), dtype, fill)``
    over a ``(time, band, y, x)`` array, ``readers`` the chunk's ``(time, band)`` table of
    file readers and ``(ys, xs)`` the chunk's slices (a ``dask.layers.ArraySliceDep``): the
    same call with the window's slices, and with only the readers of the window's images
    and bands (an integer pick below, ``sel(band="B04")``, reads that band's files alone)."""
    from stackstac.to_dask import fetch_raster_window

    indices = getattr(layer, "indices", None)
    if len(block) != 5 or not indices or len(indices) != 4:
        return None
    readers, dtype, fill = indices[0][0], indices[2][0], indices[3][0]
    dep = indices[1][0]  # dask keeps a BlockwiseDep by name in the layer's io_deps
    dep = (getattr(layer, "io_deps", None) or {}).get(dep, dep) if isinstance(dep, str) else dep
    yx_chunks = getattr(dep, "chunks", None)
    if not (isinstance(yx_chunks, tuple) and len(yx_chunks) == 2):
        return None
    if any(not isinstance(w, slice) or w.step not in (None, 1) for w in window[:2]):
        return None
    ys = _absolute(yx_chunks[0], block[3], window[2])
    xs = _absolute(yx_chunks[1], block[4], window[3])
    table: Any = (readers, block[1], block[2])
    if any(w != slice(None) for w in window[:2]):
        table = (getitem, table, tuple(window[:2]))
    return (fetch_raster_window, (_stackstac_open_options, table), (ys, xs), dtype, fill)


@functools.cache
def _stackstac_env() -> Any:
    """stackstac's default GDAL options with ``VSI_CACHE`` off at open, for our reads where
    the user kept its default (see :func:`_stackstac_open_options`); made once."""
    from stackstac.rio_reader import DEFAULT_GDAL_ENV

    return DEFAULT_GDAL_ENV.updated(open={"VSI_CACHE": False})


def _stackstac_open_options(entries: np.ndarray) -> np.ndarray:
    """stackstac's readers of a chunk (an object array of ``(reader, window)`` or ``None``),
    those still unopened with stackstac's default GDAL options given them with GDAL's
    ``VSI_CACHE`` off when opening.

    stackstac opens files with ``VSI_CACHE=True``, which wraps the file handle in a cache
    read in 32 KB blocks: the header read is 32 KB where GDAL's own is 16 KB (measured with
    rasterio alone, 32,768 against 16,384 bytes), one more 16 KB per file, 1.072x the covered
    tiles' bytes on the ~1 km2 polygon of ``benchmarks.cogs`` against 1.048x without. That
    cache belongs to one handle, so other threads' opens of the same file gain nothing from
    it; they reuse the header through ``/vsicurl/``'s cache of ranges, which is shared. Readers
    with options the user gave (``stackstac.stack(..., gdal_env=...)``) are left alone.
    """
    from stackstac.rio_reader import DEFAULT_GDAL_ENV, AutoParallelRioReader

    if not isinstance(entries, np.ndarray):
        return entries
    default = DEFAULT_GDAL_ENV.__getstate__()
    for entry in entries.flat:
        reader: Any = entry[0] if isinstance(entry, tuple) and entry else None
        if (
            type(reader) is AutoParallelRioReader
            and getattr(reader, "_dataset", True) is None
            and isinstance(reader.gdal_env, type(DEFAULT_GDAL_ENV))
            and reader.gdal_env.__getstate__() == default
        ):
            # Set, not copied: a reader made for this computation, opened by the first read
            # of it (all of them take these options); setting it twice is the same.
            reader.gdal_env = _stackstac_env()
    return entries


@dataclass(frozen=True)
class _OneTile:
    """Stands for odc-stac's ``GeoboxTiles`` in one task: every index gives ``geobox``."""

    geobox: Any

    def __getitem__(self, index: Any) -> Any:
        return self.geobox


def _listed_images(index: tuple) -> list[int] | None:
    """The positions of a take's ``index`` that lists images on the first axis (odc-stac's
    time) and takes every other axis whole; ``None`` for any other index."""
    if not index or not all(_whole_axis(i) for i in index[1:]):
        return None
    listed = index[0]
    if isinstance(listed, np.ndarray) and listed.ndim == 1 and listed.dtype.kind in "iu":
        listed = listed.tolist()
    if not isinstance(listed, list) or not listed:
        return None
    if not all(isinstance(i, int | np.integer) and i >= 0 for i in listed):
        return None
    return [int(i) for i in listed]


def _odc_window(
    graph: HighLevelGraph,
    layer: Any,
    block: tuple,
    window: tuple,
    key: tuple,
    images: list[int] | None = None,
) -> Any:
    """odc-stac's chunk task is ``_dask_loader_tyx(sources, tiles, (iy, ix), ...)``, which
    loads ``tiles[iy, ix]``, a GeoBox, from ``sources``, one list per image: the same call
    with that GeoBox cut to the window and only the window's images' sources, or, given
    ``images`` (positions in the chunk, the window whole on time), those images' sources in
    that order."""
    from dask._task_spec import Task, TaskRef

    # A cube odc-stac built has imported its loader: importing it here for any other cube
    # would cost 0.1-0.25 s (odc-geo and its dependencies) for nothing.
    builder = sys.modules.get("odc.loader._builder")
    _dask_loader_tyx = getattr(builder, "_dask_loader_tyx", None)
    if _dask_loader_tyx is None:
        return None
    task = layer.get(block) if hasattr(layer, "get") else None
    if not isinstance(task, Task) or task.func is not _dask_loader_tyx:
        return None
    args = list(task.args)
    tiles_ref, iyx = args[1], getattr(args[2], "value", args[2])
    if not isinstance(tiles_ref, TaskRef):
        return None
    tiles = graph[tiles_ref.key]
    tiles = getattr(tiles, "value", tiles)
    ydim = len(getattr(args[3], "value", args[3]))  # prefix dims before y, after time
    ys, xs = window[1 + ydim], window[2 + ydim]
    # Axes other than time, y and x are taken whole (the chunk's own size read from dask's
    # record of the layer); on time, the window's images are read alone (an integer pick
    # below, isel(time=0), asks for one image of a chunk of several).
    chunks = _layer_chunks(graph, block[0])
    sizes = [None if chunks is None else chunks[i][block[1 + i]] for i in range(len(window))]
    if not all(
        _whole_chunk(w, sizes[i]) for i, w in enumerate(window) if i not in (0, 1 + ydim, 2 + ydim)
    ):
        return None
    whole_time = _whole_chunk(window[0], sizes[0])
    if images is not None:  # the listed images, of a window whole on time
        if not whole_time:
            return None
        args[0] = _odc_sources(args[0], images, sizes[0])
    elif not whole_time:  # the window's images alone
        args[0] = _odc_sources(args[0], window[0], sizes[0])
    if args[0] is None:  # not sources odc-stac's loader takes
        return None
    args[1] = _OneTile(tiles[tuple(iyx)][ys, xs])
    args[7] = _odc_read_env(args[7], args[1].geobox.shape)
    return Task(key, _dask_loader_tyx, *args, **task.kwargs)


def _odc_sources(srcs: Any, window: slice | list[int], size: int | None) -> Any:
    """odc-stac's sources of a chunk, a list with one list of readers per image of the chunk
    (``_dask_loader_tyx`` loads image ``i`` of its output from ``srcs[i]``), cut to the images
    of ``window`` (a slice, or positions in any order); ``None`` where they are not such a
    list or the window not such a cut."""
    from dask._task_spec import List

    images = getattr(srcs, "args", None)
    if not isinstance(srcs, List) or not isinstance(images, tuple):
        return None
    if size is not None and len(images) != size:
        return None
    if isinstance(window, list):
        if not window or not all(0 <= i < len(images) for i in window):
            return None
        return List(*(images[i] for i in window))
    if not isinstance(window, slice) or window.step not in (None, 1):
        return None
    start, stop, _ = window.indices(len(images))
    if not 0 <= start < stop:
        return None
    return List(*images[start:stop])


#: GDAL's default ``GDAL_MAX_RAW_BLOCK_CACHE_SIZE`` (10 MiB): how many stored bytes of its
#: tiles one read of a GeoTIFF fetches up front, in one multi-range request.
GDAL_RAW_BLOCK_CACHE = 10 * 2**20
#: Stored bytes per pixel a read's tiles may take: 8 bounds any GDAL data type but the
#: complex ones, DEFLATE's worst case and the tiles a window cuts at its edges included
#: (for windows of a tile or more, which are the ones past GDAL's default).
RAW_BYTES_PER_PIXEL = 8


def _odc_read_env(env: Any, shape: Any) -> Any:
    """odc-stac's GDAL options for one read (``env``, applied by its loader around the read)
    with ``GDAL_MAX_RAW_BLOCK_CACHE_SIZE`` raised to hold all the stored tiles of a window of
    ``shape`` (y, x), unless the user set it.

    GDAL's GeoTIFF driver fetches a read's tiles up front with one multi-range request only
    up to that many bytes (10 MiB); past it, the other tiles are read one by one through
    ``/vsicurl/``'s readahead and its process-wide cache of 16 MB (``CPL_VSIL_CURL_CACHE_SIZE``,
    fixed at the process's first ``/vsicurl/`` read), which reads of other images in flight
    at the same time evict before they are used: fetched again. Measured with
    ``tests/range_server.py`` on 36 COGs of 4096 x 4096 int16 (22 MB stored each), read whole
    by 8 threads: 850.7 MB and 516 requests with the default, 805.2 MB and 180 requests (the
    one-thread figures, every tile once) with the limit raised. The bytes so fetched are held
    until the read has decoded them: the window's stored tiles, while the decoded window it
    returns (which :data:`xr_getregion.reads.IO_MEMORY` bounds) is usually larger."""
    if not isinstance(env, dict) or "GDAL_MAX_RAW_BLOCK_CACHE_SIZE" in env:
        return env
    if "GDAL_MAX_RAW_BLOCK_CACHE_SIZE" in os.environ:
        return env
    pixels = int(math.prod(int(n) for n in shape))
    limit = max(GDAL_RAW_BLOCK_CACHE, RAW_BYTES_PER_PIXEL * pixels)
    return {**env, "GDAL_MAX_RAW_BLOCK_CACHE_SIZE": str(limit)}
