"""Pictures: why these pixels (:func:`region_map`) and what they hold over time
(:func:`time_series`). matplotlib only, each function returns its ``Axes``.

Install with ``pip install "xr_getregion[plot]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import pandas as pd
import shapely
import xarray as xr

from xr_getregion.coverage import to_pixel_space_many, window_of
from xr_getregion.cube import read_cube
from xr_getregion.errors import ArgumentError
from xr_getregion.geometry import read_geometry
from xr_getregion.grid import NATIVE, Grid, Window, transformer, working_grid
from xr_getregion.options import Options, RegionOptions
from xr_getregion.plan import plan_region
from xr_getregion.table import as_frame
from xr_getregion.types import CRSLike, GeometryLike, TransformLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MAX_OUTLINES", "region_map", "time_series"]

#: :func:`region_map` draws every selected pixel; past this many it refuses.
MAX_OUTLINES = 20_000
PIXELS_GID = "getregion-pixels"
BLOCKS_GID = "getregion-blocks"
# time_series draws one line per pixel up to this many pixels, then a median and a band.
_MAX_LINES = 20


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            'xr_getregion.plot needs matplotlib: pip install "xr_getregion[plot]".'
        ) from exc
    return plt


def region_map(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    scale: float | None = None,
    crs: CRSLike | None = NATIVE,
    crs_transform: TransformLike | None = None,
    *,
    image: int | str = 0,
    bands: Sequence[str] | None = None,
    min: float | Sequence[float] | None = None,
    max: float | Sequence[float] | None = None,
    pad: int = 3,
    ax: Axes | None = None,
    **options: Unpack[RegionOptions],
) -> Axes:
    """Draw one image as RGB, the geometry, and the outline of every working pixel it selects.

    The picture of the EE reference page's ``Map.addLayer`` calls: it shows *why*
    ``getRegion`` returns the pixels it does. Everything is drawn in the cube's CRS, in a
    window around the geometry and the selected pixels.

    Parameters
    ----------
    cube, geometry, scale, crs, crs_transform, geometry_crs, pyramiding
        As for :func:`xr_getregion.get_region`, with its defaults: ``crs="native"`` alone is
        the cube's own grid; with a ``scale`` (and no other ``crs``) it is EE's EPSG:4326 grid.
        At a pyramid level ``k > 0`` (a scale at least twice the cube's), the
        ``2**k x 2**k`` block of native pixels each working pixel's value comes from is drawn
        behind it (clipped to the cube), so the picture shows what was averaged.
    image
        The image to draw: its position, or its id.
    bands
        Three bands for red, green, blue (or one, drawn in grey). Default: ``B4, B3, B2``
        when the cube has them (Landsat 8's true colour), else the first three bands.
    min, max
        The values drawn black and white, one number or one per band, as EE's visParams.
        Default: the 2nd and 98th percentiles of the window.
    pad
        Cube pixels of margin around the geometry and the selected pixels.
    ax
        The Axes to draw on; a new figure's by default.

    Returns
    -------
    matplotlib.axes.Axes
        The pixel outlines are one ``PolyCollection`` with gid ``"getregion-pixels"``; the
        pyramid blocks, if any, one with gid ``"getregion-blocks"``.
    """
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    o = Options.of("region_map", RegionOptions, scale, crs, crs_transform, options)
    info = read_cube(cube)
    # getRegion's pixels (several features are one region); past MAX_OUTLINES only counted.
    budget = (MAX_OUTLINES + 1) * len(info.bands) * info.n_images
    shape, shape_crs = read_geometry(geometry, o.geometry_crs)
    grid = working_grid(info.grid, scale, crs, crs_transform)
    plan = plan_region(info, shape, shape_crs, grid, max_values=budget, pyramiding=o.pyramiding)
    if plan.n_pixels > MAX_OUTLINES:
        raise ArgumentError(
            f"region_map draws each selected pixel, and this geometry selects "
            f"{plan.n_pixels:,} (> {MAX_OUTLINES:,}). Draw a smaller geometry or a coarser scale."
        )
    outlines = _pixel_outlines(plan)
    blocks = _block_outlines(plan)
    shape = _to_cube_crs(shape, shape_crs, info.grid)

    names = list(bands) if bands is not None else _default_bands(info.band_names)
    index = _image_index(info, image)
    window = _window(info.grid, np.concatenate([outlines, blocks]), shape, pad)
    rgb, extent = _rgb(cube, info, names, index, window, min, max)

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(rgb, extent=extent, interpolation="nearest")
    import geopandas as gpd

    if len(blocks):
        ax.add_collection(
            PolyCollection(
                list(blocks),
                facecolors=(0.0, 0.9, 1.0, 0.18),
                edgecolors="cyan",
                linewidths=1.0,
                linestyles="--",
                gid=BLOCKS_GID,
            )
        )
    gpd.GeoSeries([shape]).plot(ax=ax, facecolor="none", edgecolor="white", linewidth=1.5)
    if len(blocks):
        # The centres: each picks the block it falls in, as it would pick a native pixel.
        centres = outlines.mean(axis=1)
        ax.plot(centres[:, 0], centres[:, 1], "o", color="yellow", markersize=3)
    ax.add_collection(
        PolyCollection(
            list(outlines), facecolors="none", edgecolors="yellow", linewidths=1.2, gid=PIXELS_GID
        )
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel(f"x ({info.grid.crs.to_string()})")
    ax.set_ylabel("y")
    what = "pixel" if plan.n_pixels == 1 else "pixels"
    title = f"{info.ids[index]}: {plan.n_pixels} {what} selected"
    if plan.level:
        n = 1 << plan.level
        policies = sorted(set(plan.policies or ()))
        title += f"\npyramid level {plan.level}: {n}x{n}-pixel blocks ({', '.join(policies)})"
    ax.set_title(title)
    return ax


def time_series(
    table: pd.DataFrame | list[list[Any]],
    bands: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Plot band values over time from a :func:`xr_getregion.get_region` table.

    Up to 20 pixels, each pixel is one line per band; beyond, each band is drawn as its
    median over the pixels with the 25-75 % range shaded, so a polygon's table stays
    readable. Masked values are gaps.

    Parameters
    ----------
    table
        A ``get_region`` DataFrame, or ``getRegion``'s list of lists.
    bands
        The bands to draw; default all.
    ax
        The Axes to draw on; a new figure's by default.
    """
    plt = _pyplot()
    frame = as_frame(table)
    # The bands follow ``time`` (a many-feature table starts with ``feature`` and properties).
    after_time = list(frame.columns[list(frame.columns).index("time") + 1 :])
    names = list(bands) if bands is not None else after_time
    unknown = [n for n in names if n not in frame.columns]
    if unknown or not names:
        raise ArgumentError(
            f"time_series: no column {unknown or names} in the table; its columns are "
            f"{list(frame.columns)}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    keys = [c for c in ("feature", "longitude", "latitude") if c in frame.columns]
    pixels = frame.groupby(keys, sort=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        colour = colours[k % len(colours)]
        values = frame[name].astype("float64")
        if pixels.ngroups <= _MAX_LINES:
            for j, (_, rows) in enumerate(pixels):
                ax.plot(
                    rows["time"],
                    values.loc[rows.index],
                    marker="o",
                    color=colour,
                    label=name if j == 0 else None,
                )
        else:
            by_time = values.groupby(frame["time"])
            q = by_time.quantile(np.array([0.25, 0.5, 0.75])).unstack()
            ax.fill_between(q.index, q[0.25], q[0.75], color=colour, alpha=0.25)
            ax.plot(
                q.index,
                q[0.5],
                marker="o",
                color=colour,
                label=f"{name} (median of {pixels.ngroups} pixels)",
            )
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("value")
    ax.legend()
    return ax


def _default_bands(names: list[str]) -> list[str]:
    if {"B4", "B3", "B2"} <= set(names):
        return ["B4", "B3", "B2"]
    return names[:3] if len(names) >= 3 else names[:1]


def _image_index(info: Any, image: int | str) -> int:
    if isinstance(image, str):
        if image not in info.ids:
            raise ArgumentError(f"region_map: no image {image!r}; the ids are {list(info.ids)}.")
        return info.ids.index(image)
    if not -info.n_images <= image < info.n_images:
        raise ArgumentError(
            f"region_map: image={image} but the collection has {info.n_images} images."
        )
    return image % info.n_images


def _pixel_outlines(plan: Any) -> np.ndarray:
    """The selected working pixels as ``(n, 4, 2)`` corner arrays in the cube's CRS."""
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=float)
    u = plan.cols[:, None] + corners[None, :, 0]
    v = plan.rows[:, None] + corners[None, :, 1]
    x, y = plan.grid.to_crs(u, v)
    if plan.grid.crs != plan.cube.grid.crs:
        x, y = transformer(plan.grid.crs, plan.cube.grid.crs).transform(x, y)
    return np.stack([np.asarray(x), np.asarray(y)], axis=-1).reshape(-1, 4, 2)


def _block_outlines(plan: Any) -> np.ndarray:
    """The level-k blocks of a pyramid plan's pixels, clipped to the cube, as ``(n, 4, 2)``
    corner arrays in the cube's CRS (none at level 0)."""
    if not plan.level or not plan.n_pixels:
        return np.empty((0, 4, 2))
    k, size = plan.level, 1 << plan.level
    nrows, ncols = plan.cube.grid.shape
    blocks = np.unique(np.stack([plan.iy >> k, plan.ix >> k], axis=1), axis=0)
    r0, c0 = blocks[:, 0] * size, blocks[:, 1] * size
    r1, c1 = np.minimum(r0 + size, nrows), np.minimum(c0 + size, ncols)
    u = np.stack([c0, c1, c1, c0], axis=1).astype(float)
    v = np.stack([r0, r0, r1, r1], axis=1).astype(float)
    a, b, c, d, e, f = plan.cube.grid.transform
    return np.stack([a * u + b * v + c, d * u + e * v + f], axis=-1)


def _to_cube_crs(shape: shapely.Geometry, crs: Any, grid: Grid) -> shapely.Geometry:
    """The geometry in the cube's CRS, projected as getRegion projects it (densified edges,
    clipped to the cube's area, longitudes wrapped to the cube's labelling)."""
    if crs == grid.crs:
        return shape
    window = window_of(grid, grid)
    pixels = to_pixel_space_many(np.array([shape], dtype=object), crs, grid, window)[0]

    def to_crs(uv: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # a point outside the CRS's domain is NaN
            return np.column_stack(grid.to_crs(uv[:, 0], uv[:, 1]))

    return shapely.transform(pixels, to_crs)


def _window(grid: Any, outlines: np.ndarray, shape: shapely.Geometry, pad: int) -> Window:
    """The window of cube pixels around the pixels and the geometry."""
    xs = [outlines[..., 0].ravel()] if len(outlines) else []
    ys = [outlines[..., 1].ravel()] if len(outlines) else []
    xmin, ymin, xmax, ymax = shape.bounds
    xs.append(np.array([xmin, xmax]))
    ys.append(np.array([ymin, ymax]))
    col, row = grid.to_pixel(np.concatenate(xs), np.concatenate(ys))
    # A geometry clipped away, or a point outside the CRS's domain, has no finite bounds.
    finite = np.isfinite(col) & np.isfinite(row)
    if not finite.any():
        raise ArgumentError("region_map: the geometry is outside the cube; nothing to draw.")
    col, row = col[finite], row[finite]
    rows, cols = grid.shape
    r0 = int(np.clip(np.floor(row.min()) - pad, 0, rows))
    r1 = int(np.clip(np.ceil(row.max()) + pad, 0, rows))
    c0 = int(np.clip(np.floor(col.min()) - pad, 0, cols))
    c1 = int(np.clip(np.ceil(col.max()) + pad, 0, cols))
    if r1 <= r0 or c1 <= c0:
        raise ArgumentError("region_map: the geometry is outside the cube; nothing to draw.")
    return Window(c0, r0, c1, r1)


def _rgb(
    cube: Any, info: Any, names: list[str], index: int, window: Window, lo: Any, hi: Any
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    if len(names) not in (1, 3):
        raise ArgumentError(f"region_map: bands must be 1 or 3 names; got {names}.")
    missing = [n for n in names if n not in info.band_names]
    if missing:
        raise ArgumentError(f"region_map: no band {missing}; the bands are {info.band_names}.")
    rows, cols = window.slices
    layers = []
    for name in names:
        band = next(b for b in info.bands if b.name == name)
        arr = band.array
        sel: dict[str, slice | int] = {info.ydim: rows, info.xdim: cols}
        if info.image_dim is not None:
            sel[info.image_dim] = index
        if band.band_dim is not None:
            sel[band.band_dim] = band.band_index
        raw = np.asarray(arr.isel(sel).transpose(info.ydim, info.xdim).values)
        values = raw.astype(float)
        for missing in band.nodata:  # every declared missing value, compared in the band's dtype
            values[raw == missing] = np.nan
        layers.append(values)
    stack = np.stack(layers, axis=-1)
    finite = stack[np.isfinite(stack)]
    lo = np.broadcast_to(_stretch_end(lo, finite, 2, 0.0), (len(names),))
    hi = np.broadcast_to(_stretch_end(hi, finite, 98, 1.0), (len(names),))
    scaled = np.clip((stack - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    if len(names) == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    alpha = np.isfinite(stack).all(axis=-1, keepdims=True).astype(float)
    rgba = np.concatenate([np.nan_to_num(scaled), alpha], axis=-1)
    a, _, c, _, e, f = info.grid.transform
    x0, x1 = c + a * window.col0, c + a * window.col1
    y0, y1 = f + e * window.row0, f + e * window.row1
    if e > 0:  # south-up: row 0 is the bottom; imshow draws row 0 at the top
        rgba, (y0, y1) = rgba[::-1], (y1, y0)
    return rgba, (x0, x1, y1, y0)


def _stretch_end(given: Any, finite: np.ndarray, percentile: float, empty: float) -> Any:
    """A stretch end: the one given, else the window's ``percentile``, else (no finite value
    to take it from) ``empty``."""
    if given is not None:
        return given
    return np.nanpercentile(finite, percentile) if finite.size else empty
