"""Earth Engine's pyramids: at a working grid coarser than the cube's, blocks of native pixels.

EE stores every asset as a pyramid: level ``k`` aggregates ``2**k x 2**k`` blocks of native
pixels by a pyramiding policy (the mask-weighted MEAN by default, or SAMPLE, MIN, MAX, MODE),
and a computation at a coarse scale reads the level whose scale is the closest at or below
it. Here the cube plays the asset: level-``k`` pixels are blocks aligned to the cube's own
grid origin, and a working pixel takes the block holding the native pixel its centre falls in.

Reads stay at the floor: the native pixels of the blocks are grouped by the chunk holding
them, each chunk is read once, and the task reading it reduces its part of every block to a
*partial* (sums and counts, a minimum and a count, value counts), so a task returns a few
numbers per block, not ``4**k`` pixels. Partials of a block spanning several chunks are
combined after the reads, in :class:`Combine`.

Why the level-``k`` MEAN is ``sum(valid) / count(valid)`` over the native block: EE's level
``j+1`` value is the mean of the four level-``j`` values weighted by their masks, and its mask
the mean of their masks. By induction a level-``j`` pixel's mask is ``count_j / 4**j`` (the
valid share of its native block) and its value ``sum_j / count_j``; the weighted mean of four
is then ``sum(count_i/4**j * sum_i/count_i) / sum(count_i/4**j) = sum(sum_i) / sum(count_i)``.
A block with no valid native pixel has mask 0: it is masked. Native pixels outside the cube do
not exist, so they are neither valid nor counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.array.chunk import getitem
from dask.highlevelgraph import HighLevelGraph

from xr_getregion.errors import ArgumentError
from xr_getregion.grid import METRES_PER_DEGREE, Grid, Window

__all__ = ["POLICIES", "Combine", "nominal_scale", "pyramid_level", "read_policies"]

#: The pyramiding policies, as EE names them (lower case here).
POLICIES = ("mean", "sample", "min", "max", "mode")

#: Relative tolerance of the level choice: ``scale = native * 2**k`` within it is level ``k``
#: (a scale of 60 on a 30 m cube is level 1, though ``60 / 111319.49... * 111319.49...``
#: may round a last bit below 60).
LEVEL_TOLERANCE = 1e-9

# A chunk's blocks are read through their bounding window when it is at most this share of
# the chunk (as reads.WINDOW_SHARE for pixels).
_WINDOW_SHARE = 0.25


def nominal_scale(grid: Grid) -> float:
    """The pixel size of ``grid`` in metres, as EE's nominal scale: the side of a square of
    the pixel's area (``sqrt(|a*e - b*d|)``, ``|a|`` for square pixels) in the CRS's units,
    times the metres per unit (``111319.49079327357`` per degree for a geographic CRS)."""
    a, b, _, d, e, _ = grid.transform
    side = math.sqrt(abs(a * e - b * d))
    if grid.crs.is_geographic:
        return side * METRES_PER_DEGREE
    info = grid.crs.axis_info
    return side * (info[0].unit_conversion_factor if info else 1.0)


def pyramid_level(native: Grid, working: Grid) -> int:
    """The pyramid level a ``working`` grid reads of a cube on ``native``: the largest ``k``
    with ``nominal_scale(native) * 2**k <= nominal_scale(working)`` (relative tolerance
    :data:`LEVEL_TOLERANCE`); 0 on the cube's own grid and on any grid not coarser."""
    if working.same_pixels(native):
        return 0
    ratio = nominal_scale(working) / nominal_scale(native) * (1 + LEVEL_TOLERANCE)
    if not ratio >= 2:
        return 0
    level = math.floor(math.log2(ratio))
    # log2 of a ratio a hair under a power of two can round up to it: check exactly.
    while level > 0 and 2.0**level > ratio:
        level -= 1
    return level


def read_policies(pyramiding: Any, bands: Sequence[Any]) -> tuple[str, ...] | None:
    """Each band's policy from ``pyramiding``: ``None`` (no pyramids), a policy name for
    every band, or EE's per-band dict (``{"QA_PIXEL": "sample", ".default": "mean"}``,
    ``.default`` defaulting to ``"mean"``). Names are case-blind (EE's ``"MEAN"``).

    Raises
    ------
    ArgumentError
        An unknown policy or band name, or another type.
    """
    if pyramiding is None:
        return None
    names = [b.name for b in bands]
    if isinstance(pyramiding, str):
        return (_policy(pyramiding, "pyramiding"),) * len(names)
    if isinstance(pyramiding, Mapping):
        unknown = [k for k in pyramiding if k != ".default" and k not in names]
        if unknown:
            raise ArgumentError(
                f"pyramiding names bands {unknown} the cube does not have; its bands are "
                f"{names} (and '.default' sets the others)."
            )
        default = _policy(pyramiding.get(".default", "mean"), "pyramiding['.default']")
        return tuple(
            _policy(pyramiding[n], f"pyramiding[{n!r}]") if n in pyramiding else default
            for n in names
        )
    raise ArgumentError(
        f"pyramiding must be one of {list(POLICIES)}, a dict of them per band (with "
        f"'.default'), or None for the nearest native pixel; got {pyramiding!r}."
    )


def _policy(value: Any, where: str) -> str:
    if isinstance(value, str) and value.lower() in POLICIES:
        return value.lower()
    raise ArgumentError(
        f"{where} must be one of {list(POLICIES)} (EE's pyramiding policies); got {value!r}."
    )


def check_policies(bands: Sequence[Any], policies: Sequence[str]) -> None:
    """Refuse an aggregating policy on a band that holds no numbers (dates, text)."""
    for band, policy in zip(bands, policies, strict=True):
        if policy != "sample" and band.dtype.kind not in "biuf":
            raise ArgumentError(
                f"band {band.name!r} holds {band.dtype} values, which pyramiding={policy!r} "
                f"cannot aggregate at a coarse scale; pass pyramiding={{{band.name!r}: "
                "'sample', '.default': 'mean'}, or pyramiding=None for the nearest pixel."
            )


def out_dtype(dtype: np.dtype, policy: str) -> np.dtype:
    """The dtype a band's level-k values take: float64 for MEAN (a mean of integers is no
    integer; EE gives doubles), the band's own for the other policies, which pick values."""
    return np.dtype(np.float64) if policy == "mean" else dtype


@dataclass(frozen=True)
class BandRule:
    """What a read task needs of one band: its policy, declared missing values and dtype."""

    policy: str
    nodata: tuple[Any, ...]
    dtype: np.dtype


def _missing(values: np.ndarray, nodata: tuple[Any, ...]) -> np.ndarray:
    mask = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    for value in nodata:
        mask |= values == value
    return mask


def _identity(dtype: np.dtype, policy: str) -> Any:
    """The value that never wins a MIN (``policy="min"``) or MAX."""
    low = policy == "min"
    if dtype.kind == "f":
        return np.inf if low else -np.inf
    if dtype.kind == "b":
        return low
    info = np.iinfo(dtype)
    return info.max if low else info.min


def _masked_fill(rule: BandRule) -> Any:
    """The value of a masked level-k pixel: NaN in a float output, else a declared missing
    value (an integer band without one has no invalid pixel, so no masked block)."""
    dtype = out_dtype(rule.dtype, rule.policy)
    if dtype.kind == "f":
        return np.nan
    return rule.nodata[0] if rule.nodata else 0


def reduce_blocks(
    window: np.ndarray,
    y0: int,
    x0: int,
    size: int,
    by: np.ndarray,
    bx: np.ndarray,
    rules: Sequence[BandRule],
) -> list[tuple[np.ndarray, ...]]:
    """Partials of blocks ``(by, bx)`` (block indices, each block meeting the window) from
    ``window``, an ``(images, bands, h, w)`` array whose pixel ``[..., 0, 0]`` is native
    pixel ``(y0, x0)``; ``size`` native pixels per block side; one rule per band.

    Returns, per band, ``(value, count)`` arrays of shape ``(images, blocks)`` (MEAN: the
    sum of valid values; MIN/MAX: the extreme over valid values; SAMPLE: the block's
    top-left pixel where the window holds it), or for MODE ``(image, block, value, count)``
    flat arrays, one entry per distinct valid value of a block.
    """
    n_img, _, h, w = window.shape
    # Block rows meeting the window and where each starts inside it (the first may start
    # before the window: its part in the window starts at 0).
    gy0, gx0 = y0 // size, x0 // size
    ystarts = np.maximum(np.arange(gy0, (y0 + h - 1) // size + 1) * size - y0, 0)
    xstarts = np.maximum(np.arange(gx0, (x0 + w - 1) // size + 1) * size - x0, 0)
    sy, sx = by - gy0, bx - gx0
    out: list[tuple[np.ndarray, ...]] = []
    for j, rule in enumerate(rules):
        values = window[:, j]
        if rule.policy == "sample":
            r, c = by * size - y0, bx * size - x0
            here = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            picked = values[:, np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
            out.append((picked, np.broadcast_to(here.astype(np.int64), picked.shape)))
            continue
        valid = ~_missing(values, rule.nodata)
        # Reduced along rows first, so no temporary larger than the window is made.
        rows = np.add.reduceat(valid, ystarts, 1, dtype=np.int64)
        counts = np.add.reduceat(rows, xstarts, 2)[:, sy, sx]
        if rule.policy == "mean":
            rows = np.add.reduceat(np.where(valid, values, 0), ystarts, 1, dtype=np.float64)
            out.append((np.add.reduceat(rows, xstarts, 2)[:, sy, sx], counts))
        elif rule.policy in ("min", "max"):
            ufunc = np.minimum if rule.policy == "min" else np.maximum
            filled = np.where(valid, values, _identity(values.dtype, rule.policy))
            extreme = ufunc.reduceat(ufunc.reduceat(filled, ystarts, 1), xstarts, 2)
            out.append((extreme[:, sy, sx].astype(values.dtype), counts))
        else:  # mode
            out.append(_value_counts(values, valid, ystarts, xstarts, sy, sx, n_img))
    return out


def _value_counts(
    values: np.ndarray,
    valid: np.ndarray,
    ystarts: np.ndarray,
    xstarts: np.ndarray,
    sy: np.ndarray,
    sx: np.ndarray,
    n_img: int,
) -> tuple[np.ndarray, ...]:
    """``(image, block position, value, count)`` of every distinct valid value of each
    asked block in ``values`` (images, h, w)."""
    h, w = values.shape[1:]
    # Each window pixel's block position among those asked (-1: a block not asked).
    lookup = np.full((len(ystarts), len(xstarts)), -1, np.int64)
    lookup[sy, sx] = np.arange(len(sy))
    row_seg = np.searchsorted(ystarts, np.arange(h), "right") - 1
    col_seg = np.searchsorted(xstarts, np.arange(w), "right") - 1
    label = np.broadcast_to(lookup[row_seg[:, None], col_seg[None, :]], values.shape)
    image = np.broadcast_to(np.arange(n_img)[:, None, None], values.shape)
    keep = valid & (label >= 0)
    return _count_runs(image[keep], label[keep], values[keep], np.ones(int(keep.sum()), np.int64))


def _count_runs(
    image: np.ndarray, block: np.ndarray, value: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts summed over equal ``(image, block, value)``."""
    if not len(value):
        return image, block, value, count
    order = np.lexsort((value, block, image))
    image, block, value, count = image[order], block[order], value[order], count[order]
    new = np.ones(len(value), bool)
    new[1:] = (image[1:] != image[:-1]) | (block[1:] != block[:-1]) | (value[1:] != value[:-1])
    starts = np.flatnonzero(new)
    return image[starts], block[starts], value[starts], np.add.reduceat(count, starts)


@dataclass(frozen=True)
class Combine:
    """How the partials of one block set's read tasks become level-k values.

    ``targets[t]`` is ``(band indices, image slice, block positions)`` of task ``t``'s
    partials; ``rules`` one per band index of the array; ``n_images``/``n_blocks`` the
    result's shape. Small and picklable: a partition task carries it.
    """

    targets: list[tuple[range, slice, np.ndarray]]
    rules: tuple[BandRule, ...]
    n_images: int
    n_blocks: int

    def place(self, results: Sequence[list[tuple[np.ndarray, ...]]]) -> list[np.ndarray]:
        """Per band index, the ``(images, blocks)`` level-k values of the tasks' ``results``."""
        shape = (self.n_images, self.n_blocks)
        counts = [np.zeros(shape, np.int64) for _ in self.rules]
        acc: list[Any] = []
        for rule in self.rules:
            if rule.policy == "mean":
                acc.append(np.zeros(shape, np.float64))
            elif rule.policy in ("min", "max"):
                acc.append(np.full(shape, _identity(rule.dtype, rule.policy), rule.dtype))
            elif rule.policy == "sample":
                acc.append(np.zeros(shape, rule.dtype))
            else:
                acc.append([])
        for (bands, images, blocks), parts in zip(self.targets, results, strict=True):
            for b, part in zip(bands, parts, strict=True):
                policy = self.rules[b].policy
                if policy == "mode":
                    image, block, value, count = part
                    acc[b].append((image + images.start, blocks[block], value, count))
                    continue
                value, count = part
                counts[b][images, blocks] += count
                if policy == "mean":
                    acc[b][images, blocks] += value
                elif policy == "min":
                    acc[b][images, blocks] = np.minimum(acc[b][images, blocks], value)
                elif policy == "max":
                    acc[b][images, blocks] = np.maximum(acc[b][images, blocks], value)
                else:  # sample: only the task holding the top-left pixel has a count
                    acc[b][images, blocks] = np.where(count > 0, value, acc[b][images, blocks])
        out = []
        for b, rule in enumerate(self.rules):
            if rule.policy == "mode":
                out.append(_mode(acc[b], shape, rule))
                continue
            if rule.policy == "sample":
                # A block's top-left pixel is always inside the cube: there is no empty block,
                # and the value keeps its own mask (and any dtype, dates included).
                out.append(acc[b])
                continue
            values = acc[b] / np.maximum(counts[b], 1) if rule.policy == "mean" else acc[b]
            filled = np.where(counts[b] > 0, values, _masked_fill(rule))
            out.append(filled.astype(out_dtype(rule.dtype, rule.policy)))
        return out


def _mode(
    parts: list[tuple[np.ndarray, ...]], shape: tuple[int, int], rule: BandRule
) -> np.ndarray:
    """The most frequent valid value of each block (ties: the smallest), from value counts."""
    out = np.full(shape, _masked_fill(rule), rule.dtype)
    if not parts:
        return out
    image, block, value, count = (np.concatenate(a) for a in zip(*parts, strict=True))
    image, block, value, count = _count_runs(image, block, value, count)
    if not len(value):
        return out
    # Within each (image, block): the highest count first, then the smallest value.
    order = np.lexsort((value, -count, block, image))
    image, block, value = image[order], block[order], value[order]
    first = np.ones(len(value), bool)
    first[1:] = (image[1:] != image[:-1]) | (block[1:] != block[:-1])
    out[image[first], block[first]] = value[first]
    return out


@dataclass(frozen=True)
class PyramidReads:
    """The tasks reducing block sets of a 4-D ``(image, band, y, x)`` dask array: for set
    ``s``, ``keys[s]`` its tasks and ``combines[s]`` how their partials become values."""

    graph: HighLevelGraph
    keys: list[list[tuple]]
    combines: list[Combine]


def block_chunks(
    chunks: tuple[tuple[int, ...], ...],
    by: np.ndarray,
    bx: np.ndarray,
    size: int,
    shape: tuple[int, int],
) -> list[tuple[int, int, np.ndarray]]:
    """Blocks ``(by, bx)`` grouped by the spatial chunks their native pixels (clipped to
    the cube's ``shape``) fall in: ``(cy, cx, positions)`` per chunk meeting any, a block
    across several chunks listed under each."""
    ybounds = np.cumsum((0, *chunks[2]))
    xbounds = np.cumsum((0, *chunks[3]))
    nrows, ncols = shape

    def spans(b: np.ndarray, bounds: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.searchsorted(bounds, b * size, "right") - 1
        last = np.searchsorted(bounds, np.minimum((b + 1) * size, n) - 1, "right") - 1
        return first, last - first + 1

    cy0, ny = spans(by, ybounds, nrows)
    cx0, nx = spans(bx, xbounds, ncols)
    per = ny * nx
    pos = np.repeat(np.arange(len(by)), per)
    # Each (block, chunk) pair: the block's k-th chunk in row-major order of its span.
    k = np.arange(len(pos)) - np.repeat(np.cumsum(per) - per, per)
    cy = cy0[pos] + k // nx[pos]
    cx = cx0[pos] + k % nx[pos]
    key = cy * len(chunks[3]) + cx
    order = np.argsort(key, kind="stable")
    keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    nxb = len(chunks[3])
    return [
        (int(c) // nxb, int(c) % nxb, pos[order[s : s + n]])
        for c, s, n in zip(keys, starts, counts, strict=True)
    ]


def pyramid_read_tasks(
    data: da.Array,
    block_sets: Sequence[tuple[np.ndarray, np.ndarray]],
    level: int,
    rules: tuple[BandRule, ...],
    name: str,
    prefix: tuple = (),
) -> PyramidReads:
    """The :class:`PyramidReads` of ``block_sets`` (each ``(by, bx)``, level-``level``
    block indices) from ``data``, whose band axis holds one band per rule.

    One task per (chunk meeting a set's blocks, image chunk, band chunk), keyed as in
    :meth:`~xr_getregion.reads.Source.read_tasks`; it takes the chunk (or the blocks'
    bounding window of it, when small) and returns partials.
    """
    size = 1 << level
    nrows, ncols = data.shape[2], data.shape[3]
    ybounds = np.cumsum((0, *data.chunks[2]))
    xbounds = np.cumsum((0, *data.chunks[3]))
    tbounds = np.cumsum((0, *data.chunks[0]))
    bbounds = np.cumsum((0, *data.chunks[1]))
    dsk: dict[tuple, Any] = {}
    keys: list[list[tuple]] = []
    combines: list[Combine] = []
    n = 0
    for by, bx in block_sets:
        groups = []
        for cy, cx, positions in block_chunks(data.chunks, by, bx, size, (nrows, ncols)):
            yc0, yc1 = int(ybounds[cy]), int(ybounds[cy + 1])
            xc0, xc1 = int(xbounds[cx]), int(xbounds[cx + 1])
            b_y, b_x = by[positions], bx[positions]
            # The blocks' bounding window, clipped to the chunk, in chunk-local pixels.
            w = Window(
                col0=max(int(b_x.min()) * size, xc0) - xc0,
                row0=max(int(b_y.min()) * size, yc0) - yc0,
                col1=min((int(b_x.max()) + 1) * size, xc1) - xc0,
                row1=min((int(b_y.max()) + 1) * size, yc1) - yc0,
            )
            area = (w.row1 - w.row0) * (w.col1 - w.col0)
            small = area <= _WINDOW_SHARE * (yc1 - yc0) * (xc1 - xc0)
            window = (slice(None), slice(None), *w.slices) if small else None
            origin = (yc0 + w.row0, xc0 + w.col0) if small else (yc0, xc0)
            groups.append((n, cy, cx, window, origin, b_y, b_x, positions))
            n += 1
        set_keys, targets = [], []
        for ti in range(len(data.chunks[0])):
            images = slice(int(tbounds[ti]), int(tbounds[ti + 1]))
            for bi in range(len(data.chunks[1])):
                bands = range(int(bbounds[bi]), int(bbounds[bi + 1]))
                band_rules = tuple(rules[b] for b in bands)
                for g, cy, cx, window, origin, b_y, b_x, positions in groups:
                    key = (name, *prefix, ti, bi, g)
                    block: tuple = (data.name, ti, bi, cy, cx)
                    if window is not None:
                        # Folded into the chunk's getter by dask's optimization, as for
                        # pixel reads: a lazily indexed source reads only the window.
                        dsk[(f"{name}-window", *key[1:])] = (getitem, block, window)
                        block = (f"{name}-window", *key[1:])
                    dsk[key] = (reduce_blocks, block, *origin, size, b_y, b_x, band_rules)
                    set_keys.append(key)
                    targets.append((bands, images, positions))
        keys.append(set_keys)
        combines.append(Combine(targets, rules, data.shape[0], len(by)))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])  # type: ignore[arg-type,list-item]
    return PyramidReads(graph, keys, combines)
