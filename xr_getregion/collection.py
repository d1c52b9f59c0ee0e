"""Earth Engine's ImageCollection methods on a cube: filter, select, sort, first, size.

Each function takes a time-stacked ``DataArray`` or ``Dataset`` and returns an xarray object
of the same kind (or a plain Python value), reading metadata only, so an EE script's chain
``col.filterBounds(...).filterDate(...).select(...)`` becomes
``cube.ee.filterBounds(...).ee.filterDate(...).ee.select(...)`` and stays lazy.

>>> import xr_getregion
>>> from xr_getregion import Geometry
>>> col = xr_getregion.sample_cube()
>>> col = (
...     col.ee.filterBounds(Geometry.Point(-90.49, 34.85))
...     .ee.filterDate("2020-07-01", "2020-10-01")
...     .ee.select("B[2-4]")
... )
>>> col.ee.size(), col.ee.bandNames()
(5, ['B2', 'B3', 'B4'])
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import shapely
import shapely.geometry
import xarray as xr

from xr_getregion.coverage import to_pixel_space
from xr_getregion.cube import BAND_DIM, Cube, read_cube
from xr_getregion.errors import ArgumentError, CubeError, EmptyCollectionError
from xr_getregion.geometry import read_geometry

__all__ = [
    "band_names",
    "filter_bounds",
    "filter_date",
    "first",
    "select",
    "size",
    "sort",
]

Obj = TypeVar("Obj", xr.DataArray, xr.Dataset)

# Per-image footprint coordinates, as STAC's projection extension names them (stackstac
# keeps item properties as coordinates along time): a bbox or a GeoJSON geometry, both in
# the cube's CRS.
FOOTPRINT_BBOX = "proj:bbox"
FOOTPRINT_GEOMETRY = "proj:geometry"


def size(obj: xr.DataArray | xr.Dataset) -> int:
    """The number of images (1 for a cube without a time dim), like EE's ``size()``."""
    try:
        return read_cube(obj).n_images
    except EmptyCollectionError:  # filtered down to no images: EE's size() is 0, not an error
        return 0


def band_names(obj: xr.DataArray | xr.Dataset) -> list[str]:
    """The band names, like EE's ``bandNames()``."""
    return read_cube(obj).band_names


def first(obj: Obj) -> Obj:
    """The first image, like EE's ``first()``: the time dim is dropped, its ``id`` and time
    stay as scalar coordinates (so ``getRegion`` on it still reports them).

    Raises
    ------
    EmptyCollectionError
        The collection has no images.
    """
    cube = _cube(obj)
    return obj if cube.image_dim is None else obj.isel({cube.image_dim: 0})


def filter_date(obj: Obj, start: Any, end: Any = None) -> Obj:
    """Images whose time is in ``[start, end)``, like EE's ``filterDate``.

    Parameters
    ----------
    start, end
        Dates as ISO strings (``'2020-07-01'``), ``datetime``/``date``, ``numpy.datetime64``,
        ``pandas.Timestamp`` or integer milliseconds since the epoch. Times without a zone
        are UTC, as in Earth Engine. Without ``end``, the interval is one millisecond
        (EE's default): the images taken exactly at ``start``.

    Returns
    -------
    The same kind of object, with only the matching images (possibly none; ``getRegion`` on
    an empty collection then raises, as EE's does). Images without a time never match.
    """
    cube = _cube(obj, need_images=True)
    t0 = _to_ms(start, "start")
    t1 = t0 + 1 if end is None else _to_ms(end, "end")
    if t1 < t0:
        raise ArgumentError(
            f"filterDate: end {end!r} is before start {start!r}; the interval is [start, end)."
        )
    times = np.array([np.nan if t is None else t for t in cube.times_ms], dtype=float)
    with np.errstate(invalid="ignore"):
        keep = (times >= t0) & (times < t1)
    return obj.isel({cube.image_dim: np.flatnonzero(keep)})


def filter_bounds(obj: Obj, geometry: Any, *, geometry_crs: Any = None) -> Obj:
    """Images whose footprint intersects ``geometry``, like EE's ``filterBounds``.

    The footprint of each image is its ``proj:geometry`` (GeoJSON) or ``proj:bbox``
    coordinate along the time dim where the cube carries one (stackstac keeps STAC item
    properties so), in the cube's CRS; otherwise every image's footprint is the cube's
    extent, so the filter keeps all images or none.

    Parameters
    ----------
    geometry
        Any geometry :func:`xr_getregion.getRegion` accepts (EPSG:4326 unless it says
        otherwise or ``geometry_crs`` is given).
    """
    cube = _cube(obj, need_images=True)
    shape, crs = read_geometry(geometry, geometry_crs)
    pixels = to_pixel_space(shape, crs, cube.grid)
    footprints = shapely.transform(
        _footprints(obj, cube), lambda xy: np.column_stack(cube.grid.to_pixel(xy[:, 0], xy[:, 1]))
    )
    keep = shapely.intersects(footprints, pixels)
    return obj.isel({cube.image_dim: np.flatnonzero(keep)})


def select(obj: Obj, *selectors: Any, names: Sequence[str] | None = None) -> Obj:
    """Bands by name, regular expression or position, optionally renamed, like EE's ``select``.

    Each string is a regular expression that must match a **whole** band name (``'B1'``
    selects ``B1``, not ``B10``; ``'B[2-4]'`` selects ``B2, B3, B4``); an integer is a band
    position. Bands come in the selectors' order, and within one selector in the cube's
    order. EE's two-list form ``select(['B4', 'B3'], ['red', 'green'])`` works too.

    Parameters
    ----------
    *selectors
        Strings (regular expressions), integers, or one list of them.
    names
        New names, one per selected band.

    Raises
    ------
    ArgumentError
        A selector matches no band, a band is selected twice, or ``names`` has the wrong
        length.
    """
    if len(selectors) == 2 and all(_is_list(s) for s in selectors) and names is None:
        selectors, names = tuple(selectors[0]), list(selectors[1])
    elif len(selectors) == 1 and _is_list(selectors[0]):
        selectors = tuple(selectors[0])
    if not selectors:
        raise ArgumentError("select: give at least one band name, pattern or position.")
    available = band_names(obj)
    chosen: list[int] = []
    for selector in selectors:
        matches = _match(selector, available)
        if not matches:
            raise ArgumentError(
                f"select: pattern {selector!r} did not match any band; the bands are "
                f"{available}. Patterns must match a whole name (use 'B1.*' for B1, B10...)."
            )
        chosen.extend(matches)
    picked = [available[i] for i in chosen]
    if len(set(chosen)) != len(chosen):
        raise ArgumentError(f"select: a band is selected twice: {picked}.")
    new = picked if names is None else [str(n) for n in names]
    if len(new) != len(picked):
        raise ArgumentError(
            f"select: {len(picked)} bands selected ({picked}) but {len(new)} new names given."
        )
    if len(set(new)) != len(new):
        raise ArgumentError(f"select: the new band names repeat: {new}.")
    if isinstance(obj, xr.Dataset):
        variables = obj[picked]
        return variables.rename(dict(zip(picked, new, strict=True))) if names else variables
    if BAND_DIM not in obj.dims:
        return obj if names is None else obj.rename(new[0])
    out = obj.isel({BAND_DIM: chosen})
    return out.assign_coords({BAND_DIM: new}) if names is not None else out


def sort(obj: Obj, prop: str, ascending: bool = True) -> Obj:
    """Images ordered by a property, like EE's ``sort``; the order is stable, and images
    missing the property come last.

    Parameters
    ----------
    prop
        ``'system:time_start'`` (the image time), ``'system:index'`` (the id), or the name of
        any coordinate along the time dim (stackstac's ``'eo:cloud_cover'``, for example).
    """
    cube = _cube(obj, need_images=True)
    if prop == "system:time_start":
        key = pd.Series([np.nan if t is None else t for t in cube.times_ms], dtype=float)
    elif prop == "system:index":
        key = pd.Series(cube.ids)
    elif prop in obj.coords and obj.coords[prop].dims == (cube.image_dim,):
        key = pd.Series(np.asarray(obj.coords[prop].values))
    else:
        along = [n for n, c in obj.coords.items() if c.dims == (cube.image_dim,)]
        raise ArgumentError(
            f"sort: no property {prop!r}; use 'system:time_start', 'system:index' or a "
            f"coordinate along {cube.image_dim!r}: {along}."
        )
    order = key.sort_values(ascending=ascending, kind="stable", na_position="last").index
    return obj.isel({cube.image_dim: order.to_numpy()})


def _cube(obj: Any, need_images: bool = False) -> Cube:
    cube = read_cube(obj)
    if need_images and cube.image_dim is None:
        raise CubeError(
            "this is one image (the cube has no time dim); collection filters need a time "
            "dim. Add one with cube.expand_dims('time')."
        )
    if cube.n_images == 0:
        raise EmptyCollectionError("the collection has no images.")
    return cube


def _to_ms(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"filterDate: {what}={value!r} is not a date.")
    if isinstance(value, int | np.integer):
        return int(value)
    try:
        stamp = pd.Timestamp(value.isoformat() if isinstance(value, dt.date) else value)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(
            f"filterDate: {what}={value!r} is not a date ({exc}). Use an ISO string such "
            "as '2020-07-01', a datetime or milliseconds since the epoch."
        ) from exc
    if stamp is pd.NaT:
        raise ArgumentError(f"filterDate: {what}={value!r} is not a date.")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)  # .value is nanoseconds whatever the unit


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _match(selector: Any, available: list[str]) -> list[int]:
    if isinstance(selector, int | np.integer) and not isinstance(selector, bool):
        index = int(selector)
        return [index] if 0 <= index < len(available) else []
    if not isinstance(selector, str):
        raise ArgumentError(
            f"select: {selector!r} is neither a band name pattern (str) nor a position (int)."
        )
    try:
        pattern = re.compile(selector)
    except re.error as exc:
        raise ArgumentError(f"select: {selector!r} is not a regular expression ({exc}).") from exc
    return [i for i, name in enumerate(available) if pattern.fullmatch(name)]


def _footprints(obj: Any, cube: Cube) -> np.ndarray:
    n = cube.n_images
    along = {name: c for name, c in obj.coords.items() if c.dims in ((cube.image_dim,), ())}
    if FOOTPRINT_GEOMETRY in along:
        values = np.broadcast_to(np.asarray(along[FOOTPRINT_GEOMETRY].values, object), (n,))
        return np.array([_geojson(v) for v in values], dtype=object)
    if FOOTPRINT_BBOX in along:
        raw = along[FOOTPRINT_BBOX].values
        boxes = [raw] * n if along[FOOTPRINT_BBOX].ndim == 0 else list(raw)
        return np.array([_bbox(b) for b in boxes], dtype=object)
    rows, cols = cube.grid.shape  # type: ignore[misc]
    a, b, c, d, e, f = cube.grid.transform
    corners = [(0, 0), (cols, 0), (cols, rows), (0, rows)]
    extent = shapely.Polygon([(a * i + b * j + c, d * i + e * j + f) for i, j in corners])
    return np.array([extent] * n, dtype=object)


def _geojson(value: Any) -> shapely.Geometry:
    try:
        return shapely.geometry.shape(value)
    except Exception as exc:
        raise CubeError(
            f"the {FOOTPRINT_GEOMETRY!r} coordinate holds {value!r}, not a GeoJSON geometry."
        ) from exc


def _bbox(value: Any) -> shapely.Geometry:
    coords = np.asarray(value, dtype=float).ravel()
    if coords.size != 4 or not np.isfinite(coords).all():
        raise CubeError(
            f"the {FOOTPRINT_BBOX!r} coordinate holds {value!r}, not [xmin, ymin, xmax, ymax]."
        )
    return shapely.box(*coords)
