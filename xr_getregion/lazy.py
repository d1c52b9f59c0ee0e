"""The lazy table: a ``dask.dataframe.DataFrame`` with one partition per covered chunk.

The graph is built from the plan alone. For each spatial chunk holding covered pixels there
are gather tasks (one per image chunk and band chunk of each band array, each taking its
source block and the few local indices of the chunk's covered pixels) and one partition task
that turns those small arrays into rows. No task carries the cube, a mask or a geometry;
chunks with no covered pixel are not in the graph; each chunk is read once for all the bands
it holds and all the features that touch it. The reads are optimized as dask arrays are when
the table is built, so a chunk read that feeds nothing else runs with its take as one task
(``optimization.fuse.active=False`` set then turns that off).
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.base import is_dask_collection, tokenize
from dask.highlevelgraph import HighLevelGraph

from xr_getregion.extraction import (
    Placement,
    Plan,
    _as_4d,
    _eager_gather,
    as_dask_4d,
    band_groups,
    band_rules,
    chunk_groups,
    optimized_reads,
    read_tasks,
)
from xr_getregion.geometry import Features
from xr_getregion.pyramid import Combine, pyramid_read_tasks
from xr_getregion.table import TableSpec, build_frame, empty_values, feature_columns

__all__ = ["lazy_frame"]


def _partition(
    spec: TableSpec,
    layout: list[list[tuple[str, int]]],
    lon: np.ndarray,
    lat: np.ndarray,
    inverse: np.ndarray,
    feature: pd.DataFrame | None,
    feature_pos: np.ndarray | None,
    direct: list[np.ndarray | None],
    placements: list[Placement | Combine | None],
    gathered: list[list[Any] | None],
) -> pd.DataFrame:
    """Rows of one partition.

    For each band array: either ``direct[a]``, its values ``(images, bands, rows)`` read up
    front (arrays not backed by dask), or ``gathered[a]``, the blocks of the partition's
    distinct pixels that ``placements[a]`` puts in place.
    """
    values: dict[str, np.ndarray] = {}
    for read, placement, blocks, bands in zip(direct, placements, gathered, layout, strict=True):
        if read is not None:
            for name, index in bands:
                values[name] = read[:, index]
        elif placement is not None and blocks is not None:
            placed: Any = placement.place(blocks)
            if isinstance(placed, list):  # a pyramid's: (images, blocks) per band index
                for name, index in bands:
                    values[name] = np.take(placed[index], inverse, axis=1)
                continue
            placed = np.take(placed, inverse, axis=2)
            for name, index in bands:
                values[name] = placed[index]
    return build_frame(spec, lon, lat, values, feature, feature_pos)


# Partition size when no band is backed by dask (the values are read up front).
_DIRECT_PARTITION = 1 << 16


def lazy_frame(plan: Plan, features: Features | None = None) -> dd.DataFrame:
    """The plan's table as a dask DataFrame, one partition per covered spatial chunk.

    Within a partition rows are grouped as in the eager table (feature, image, pixel);
    partitions follow the chunks of the first dask-backed band array. Each other band array
    is taken along its own chunk grid, so only chunks holding covered pixels are read. Band
    arrays not backed by dask (numpy, lazily opened files) are read for the covered pixels
    when the table is built, and each partition carries only its own slice. The schema
    (``meta``) comes from the bands' metadata.
    """
    spec = TableSpec.of(plan.cube, plan)
    # The plan's feature of each pixel, when the table has per-feature columns.
    feature_of = plan.feature if features is not None else None
    if feature_of is None:
        features = None
    per_feature = features is not None
    meta = build_frame(
        spec,
        np.empty(0),
        np.empty(0),
        empty_values(spec),
        feature_columns(features, np.empty(0, np.int64)) if features is not None else None,
    )
    if plan.n_pixels == 0:
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.from_pandas(meta, npartitions=1)
    groups = band_groups(plan.cube)
    layout = [[(b.name, b.band_index) for b in bands] for bands in groups]
    if plan.level:
        return _lazy_pyramid(plan, features, spec, meta, groups, layout, per_feature)
    arrays: list[da.Array | None] = []
    direct_values: list[np.ndarray | None] = []
    for bands in groups:
        arr = bands[0].array
        if is_dask_collection(arr.data):
            arrays.append(_as_4d(arr, plan.cube, bands[0].band_dim))
            direct_values.append(None)
        else:
            arrays.append(None)
            direct_values.append(_eager_gather(arr, plan.cube, bands[0].band_dim, plan.iy, plan.ix))
    lazy_arrays = [a for a in arrays if a is not None]
    if lazy_arrays:
        partitions = chunk_groups(lazy_arrays[0].chunks, plan.iy, plan.ix)
        partition_rows = [rows for _, _, rows in partitions]
    else:
        partition_rows = np.array_split(
            np.arange(plan.n_pixels), -(-plan.n_pixels // _DIRECT_PARTITION)
        )
    feature_token = (features.ids, features.properties) if features is not None else None
    token = tokenize(
        plan.iy, plan.ix, plan.feature, plan.lon, plan.lat, plan.grid, spec, feature_token,
        [a.name if a is not None else v for a, v in zip(arrays, direct_values, strict=True)],
    )  # fmt: skip
    gather_name, part_name = f"getregion-take-{token}", f"getregion-table-{token}"
    width = plan.cube.grid.shape[1]  # type: ignore[index]
    parts, pixel_sets = [], []
    for rows in partition_rows:
        unique, inverse = np.unique(plan.iy[rows] * width + plan.ix[rows], return_inverse=True)
        parts.append((rows, inverse))
        pixel_sets.append(np.divmod(unique, width))
    # Each band array's reads for all partitions; keys (name, array, ..., block number).
    reads = [
        None if arr is None else read_tasks(arr, pixel_sets, f"{gather_name}-{a}", (a,))
        for a, arr in enumerate(arrays)
    ]
    # One optimization for all of them: each chunk read runs with its take as one task.
    dsk = optimized_reads([r for r in reads if r is not None]) if lazy_arrays else {}
    keys = []
    for g, (rows, inverse) in enumerate(parts):
        direct = [None if v is None else v[:, :, rows] for v in direct_values]
        placements = [None if r is None else r.placements[g] for r in reads]
        gathered = [None if r is None else r.keys[g] for r in reads]
        feature_pos = None if feature_of is None else feature_of[rows]
        feature = (
            None
            if features is None or feature_pos is None
            else feature_columns(features, feature_pos)
        )
        key = (part_name, g)
        dsk[key] = (
            _partition, spec, layout, plan.lon[rows], plan.lat[rows], inverse,
            feature, feature_pos, direct, placements, gathered,
        )  # fmt: skip
        keys.append(key)
    graph = HighLevelGraph.from_collections(part_name, dsk)
    return dd.from_graph(graph, meta, (None,) * (len(keys) + 1), keys, "getregion")


def _lazy_pyramid(
    plan: Plan,
    features: Features | None,
    spec: TableSpec,
    meta: pd.DataFrame,
    groups: list,
    layout: list[list[tuple[str, int]]],
    per_feature: bool,
) -> dd.DataFrame:
    """:func:`lazy_frame` at pyramid level ``plan.level > 0``: a partition per chunk (of the
    first band array) holding the top-left pixel of its pixels' blocks. Each partition
    reduces its distinct blocks in tasks reading the chunks they meet; a chunk feeding
    several partitions (a block across chunks) is one key of the graph, read once."""
    arrays = [as_dask_4d(bands[0].array, plan.cube, bands[0].band_dim) for bands in groups]
    features = features if per_feature else None
    k = plan.level
    home = chunk_groups(arrays[0].chunks, (plan.iy >> k) << k, (plan.ix >> k) << k)
    feature_token = None if features is None else (features.ids, features.properties)
    token = tokenize(
        plan.iy, plan.ix, plan.feature, plan.lon, plan.lat, plan.grid, spec, feature_token,
        plan.level, plan.policies, [a.name for a in arrays],
    )  # fmt: skip
    gather_name, part_name = f"getregion-pyramid-{token}", f"getregion-table-{token}"
    nbx = -(-plan.cube.grid.shape[1] // (1 << k))  # type: ignore[index]
    parts, block_sets = [], []
    for _, _, rows in home:
        unique, inverse = np.unique(
            (plan.iy[rows] >> k) * nbx + (plan.ix[rows] >> k), return_inverse=True
        )
        parts.append((rows, inverse))
        block_sets.append(np.divmod(unique, nbx))
    reads = [
        pyramid_read_tasks(arr, block_sets, k, band_rules(plan, bands), f"{gather_name}-{a}", (a,))
        for a, (arr, bands) in enumerate(zip(arrays, groups, strict=True))
    ]
    graph = HighLevelGraph.merge(*(r.graph for r in reads))
    dsk = dict(da.Array.__dask_optimize__(graph, [k for r in reads for ks in r.keys for k in ks]))
    keys = []
    for g, (rows, inverse) in enumerate(parts):
        feature = feature_pos = None
        if features is not None and plan.feature is not None:
            feature = feature_columns(features, plan.feature[rows])
            feature_pos = plan.feature[rows]
        key = (part_name, g)
        dsk[key] = (
            _partition, spec, layout, plan.lon[rows], plan.lat[rows], inverse, feature,
            feature_pos, [None] * len(arrays), [r.combines[g] for r in reads],
            [r.keys[g] for r in reads],
        )  # fmt: skip
        keys.append(key)
    out = HighLevelGraph.from_collections(part_name, dsk)
    return dd.from_graph(out, meta, (None,) * (len(keys) + 1), keys, "getregion")
