"""The lazy table: a ``dask.dataframe.DataFrame`` with one partition per covered chunk.

The graph is built from the plan alone. For each spatial chunk holding covered pixels there
are gather tasks (one per image chunk and band chunk of each band array, each taking its
source block and the few local indices of the chunk's covered pixels) and one partition task
that turns those small arrays into rows. No task carries the cube, a mask or a geometry;
chunks with no covered pixel are not in the graph; each chunk is read once for all the bands
it holds and all the features that touch it.
"""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.base import is_dask_collection, tokenize

from xr_getregion.cube import Band
from xr_getregion.extraction import Plan, _as_4d, _take
from xr_getregion.geometry import Features
from xr_getregion.table import TableSpec, build_frame, empty_values, feature_columns

__all__ = ["lazy_frame"]


def _band_groups(plan: Plan) -> list[list[Band]]:
    groups: dict[int, list[Band]] = {}
    for band in plan.cube.bands:
        groups.setdefault(id(band.array), []).append(band)
    return list(groups.values())


def _dask_4d(bands: list[Band], plan: Plan) -> da.Array:
    arr = bands[0].array
    if not is_dask_collection(arr.data):
        # numpy or a lazily opened file: let xarray make dask chunks that read slices.
        arr = arr.chunk("auto")
    return _as_4d(arr, plan.cube, bands[0].band_dim)


def _partition(
    spec: TableSpec,
    layout: list[list[tuple[str, int]]],
    lon: np.ndarray,
    lat: np.ndarray,
    inverse: np.ndarray,
    feature: pd.DataFrame | None,
    feature_pos: np.ndarray | None,
    pieces: list[list[list[np.ndarray]]],
) -> pd.DataFrame:
    """Rows of one partition from its gathered pieces ``pieces[array][time_chunk][band_chunk]``."""
    values: dict[str, np.ndarray] = {}
    for bands, grid in zip(layout, pieces, strict=True):
        block = np.concatenate([np.concatenate(row, axis=1) for row in grid], axis=0)
        for name, index in bands:
            values[name] = block[:, index][:, inverse]
    return build_frame(spec, lon, lat, values, feature, feature_pos)


def lazy_frame(plan: Plan, features: Features | None = None) -> dd.DataFrame:
    """The plan's table as a dask DataFrame, one partition per covered spatial chunk.

    Within a partition rows are grouped as in the eager table (feature, image, pixel);
    partitions follow the chunks. The schema (``meta``) comes from the bands' metadata.
    """
    spec = TableSpec.of(plan.cube)
    per_feature = features is not None and plan.feature is not None
    meta = build_frame(
        spec,
        np.empty(0),
        np.empty(0),
        empty_values(spec),
        feature_columns(features, np.empty(0, np.int64)) if per_feature else None,
    )
    if plan.n_pixels == 0:
        return dd.from_pandas(meta, npartitions=1)
    groups = _band_groups(plan)
    arrays = [_dask_4d(bands, plan) for bands in groups]
    ref = arrays[0]
    # Band arrays chunked differently in space are aligned to the first one's chunks.
    arrays = [
        a if a.chunks[2:] == ref.chunks[2:] else a.rechunk({2: ref.chunks[2], 3: ref.chunks[3]})
        for a in arrays
    ]
    layout = [[(b.name, b.band_index) for b in bands] for bands in groups]
    ybounds = np.cumsum((0, *ref.chunks[2]))
    xbounds = np.cumsum((0, *ref.chunks[3]))
    nxb = len(ref.chunks[3])
    block_of = (np.searchsorted(ybounds, plan.iy, side="right") - 1) * nxb + (
        np.searchsorted(xbounds, plan.ix, side="right") - 1
    )
    order = np.argsort(block_of, kind="stable")
    blocks, starts, counts = np.unique(block_of[order], return_index=True, return_counts=True)
    token = tokenize(plan.iy, plan.ix, plan.feature, [a.name for a in arrays], spec)
    gather_name, part_name = f"getregion-take-{token}", f"getregion-table-{token}"
    width = plan.cube.grid.shape[1]  # type: ignore[index]
    dsk: dict = {}
    keys = []
    for g, (block, start, count) in enumerate(zip(blocks, starts, counts, strict=True)):
        by, bx = divmod(int(block), nxb)
        rows = order[start : start + count]  # plan pixels in this chunk, in plan order
        unique, inverse = np.unique(plan.iy[rows] * width + plan.ix[rows], return_inverse=True)
        uy, ux = np.divmod(unique, width)
        liy = (uy - ybounds[by]).astype(np.int32)
        lix = (ux - xbounds[bx]).astype(np.int32)
        pieces = []
        for a, arr in enumerate(arrays):
            grid = []
            for ti in range(len(arr.chunks[0])):
                row = []
                for bi in range(len(arr.chunks[1])):
                    key = (gather_name, a, ti, bi, g)
                    dsk[key] = (_take, (arr.name, ti, bi, by, bx), liy, lix)
                    row.append(key)
                grid.append(row)
            pieces.append(grid)
        feature = feature_columns(features, plan.feature[rows]) if per_feature else None
        feature_pos = plan.feature[rows] if per_feature else None
        key = (part_name, g)
        dsk[key] = (
            _partition, spec, layout, plan.lon[rows], plan.lat[rows],
            inverse, feature, feature_pos, pieces,
        )  # fmt: skip
        keys.append(key)
    from dask.highlevelgraph import HighLevelGraph

    graph = HighLevelGraph.from_collections(part_name, dsk, dependencies=arrays)
    return dd.from_graph(graph, meta, (None,) * (len(keys) + 1), keys, "getregion")
