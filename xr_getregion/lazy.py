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

import uuid
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from xr_getregion.geometry import Features
from xr_getregion.plan import Plan
from xr_getregion.pyramid import Combine, PyramidReads
from xr_getregion.reads import (
    Placement,
    Reads,
    Source,
    distinct_pixels,
    optimized_reads,
    pyramid_blocks,
)
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


def _feature_frame(features: Features | None, positions: np.ndarray | None) -> pd.DataFrame | None:
    """The per-feature columns of a partition's rows, or ``None`` for one region."""
    if features is None or positions is None:
        return None
    return feature_columns(features, positions)


def _token(plan: Plan, spec: TableSpec, features: Features | None, arrays: list[Any]) -> str:
    """The graph's name: everything a partition depends on (the plan's pixels and level, the
    table's schema, the features, the arrays read)."""
    feature_token = None if features is None else (features.ids, features.properties)
    return tokenize(
        plan.iy,
        plan.ix,
        plan.feature,
        plan.lon,
        plan.lat,
        plan.grid,
        spec,
        feature_token,
        plan.level,
        plan.policies,
        arrays,
    )


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
    sources = Source.of(plan.cube)
    layout = [[(b.name, b.band_index) for b in source.bands] for source in sources]
    if plan.level:
        return _lazy_pyramid(plan, features, spec, meta, sources, layout)
    # Arrays not backed by dask are read for the covered pixels now; each partition carries
    # only its own slice.
    direct_values = [None if s.lazy else s.take(plan.iy, plan.ix) for s in sources]
    lazy_sources = [s for s in sources if s.lazy]
    if lazy_sources:
        partition_rows = [rows for _, _, rows in lazy_sources[0].chunk_groups(plan.iy, plan.ix)]
    else:
        partition_rows = np.array_split(
            np.arange(plan.n_pixels), -(-plan.n_pixels // _DIRECT_PARTITION)
        )
    arrays = [
        s.array.data.name if s.lazy else v for s, v in zip(sources, direct_values, strict=True)
    ]
    token = _token(plan, spec, features, arrays)
    gather_name, part_name = f"getregion-take-{token}", f"getregion-table-{token}"
    width = plan.cube.grid.shape[1]  # type: ignore[index]
    parts, pixel_sets = [], []
    for rows in partition_rows:
        iy, ix, inverse = distinct_pixels(plan.iy[rows], plan.ix[rows], width)
        parts.append((rows, inverse))
        pixel_sets.append((iy, ix))
    # Each band array's reads for all partitions; keys (name, array, ..., block number).
    shared: dict = {}  # the grouping of pixels into reads, for arrays of the same layout
    reads: list[Reads | None] = [
        s.read_tasks(pixel_sets, f"{gather_name}-{a}", (a,), shared) if s.lazy else None
        for a, s in enumerate(sources)
    ]
    # One optimization for all of them: each chunk read runs with its take as one task.
    dsk = optimized_reads([r for r in reads if r is not None]) if lazy_sources else {}
    direct = [[None if v is None else v[:, :, rows] for v in direct_values] for rows, _ in parts]
    placements = [
        [None if r is None else r.placements[g] for r in reads] for g in range(len(parts))
    ]
    gathered = [[None if r is None else r.keys[g] for r in reads] for g in range(len(parts))]
    return _frame(
        plan, features, spec, meta, layout, part_name, dsk, parts, direct, placements, gathered
    )


def _lazy_pyramid(
    plan: Plan,
    features: Features | None,
    spec: TableSpec,
    meta: pd.DataFrame,
    sources: list[Source],
    layout: list[list[tuple[str, int]]],
) -> dd.DataFrame:
    """:func:`lazy_frame` at pyramid level ``plan.level > 0``: a partition per chunk (of the
    first band array) holding the top-left pixel of its pixels' blocks. Each partition
    reduces its distinct blocks in tasks reading the chunks they meet; a chunk feeding
    several partitions (a block across chunks) is one key of the graph, read once."""
    k = plan.level
    home = sources[0].chunk_groups((plan.iy >> k) << k, (plan.ix >> k) << k)
    arrays = [s.array.data.name if s.lazy else uuid.uuid4().hex for s in sources]
    token = _token(plan, spec, features, arrays)
    gather_name, part_name = f"getregion-pyramid-{token}", f"getregion-table-{token}"
    parts, block_sets = [], []
    for _, _, rows in home:
        by, bx, inverse = pyramid_blocks(plan, plan.iy[rows], plan.ix[rows])
        parts.append((rows, inverse))
        block_sets.append((by, bx))
    reads: list[PyramidReads] = [
        s.pyramid_reads(plan, block_sets, f"{gather_name}-{a}", (a,)) for a, s in enumerate(sources)
    ]
    dsk = optimized_reads(reads)
    direct: list[list[np.ndarray | None]] = [[None] * len(sources) for _ in parts]
    combines = [[r.combines[g] for r in reads] for g in range(len(parts))]
    gathered = [[r.keys[g] for r in reads] for g in range(len(parts))]
    return _frame(
        plan, features, spec, meta, layout, part_name, dsk, parts, direct, combines, gathered
    )


def _frame(
    plan: Plan,
    features: Features | None,
    spec: TableSpec,
    meta: pd.DataFrame,
    layout: list[list[tuple[str, int]]],
    name: str,
    dsk: dict,
    parts: list[tuple[np.ndarray, np.ndarray]],
    direct: list[list[np.ndarray | None]],
    placements: list[list[Any]],
    gathered: list[list[Any]],
) -> dd.DataFrame:
    """The dask DataFrame of one :func:`_partition` task per part ``(rows, inverse)`` over
    the read tasks in ``dsk``: ``direct[g]``, ``placements[g]`` and ``gathered[g]`` are the
    ``g``-th partition's arguments of the same names."""
    keys = []
    for g, (rows, inverse) in enumerate(parts):
        feature_pos = None if plan.feature is None or features is None else plan.feature[rows]
        key = (name, g)
        dsk[key] = (
            _partition,
            spec,
            layout,
            plan.lon[rows],
            plan.lat[rows],
            inverse,
            _feature_frame(features, feature_pos),
            feature_pos,
            direct[g],
            placements[g],
            gathered[g],
        )
        keys.append(key)
    graph = HighLevelGraph.from_collections(name, dsk)
    return dd.from_graph(graph, meta, (None,) * (len(keys) + 1), keys, "getregion")
