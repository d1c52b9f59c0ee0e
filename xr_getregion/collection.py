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
import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import shapely
import shapely.geometry
import xarray as xr
from pyproj import CRS

from xr_getregion.coverage import to_pixel_space_many, window_of
from xr_getregion.cube import BAND_DIM, Cube, read_cube
from xr_getregion.errors import ArgumentError, CubeError, EmptyCollectionError
from xr_getregion.geometry import read_crs, read_geometry

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
    """The number of images (1 for a cube without a time dim; 0 once filtered to none), like
    EE's ``size()``."""
    return _cube(obj).n_images


def band_names(obj: xr.DataArray | xr.Dataset) -> list[str]:
    """The band names, like EE's ``bandNames()``."""
    return _cube(obj).band_names


def first(obj: Obj) -> Obj:
    """The first image, like EE's ``first()``: the time dim is dropped, and the image's id and
    time stay as scalar ``system:index`` and ``system:time_start`` coordinates (so
    ``getRegion`` on it still reports them, whatever the time dim was called).

    Raises
    ------
    EmptyCollectionError
        The collection has no images.
    """
    cube = _cube(obj)
    if cube.image_dim is None:
        return obj
    if cube.n_images == 0:
        raise EmptyCollectionError("first: the collection has no images.")
    image = obj.isel({cube.image_dim: 0})
    scalars: dict[str, Any] = {"system:index": cube.ids[0]}
    if cube.times_ms[0] is not None:
        scalars["system:time_start"] = cube.times_ms[0]
    return image.assign_coords(scalars)


def filter_date(obj: Obj, start: Any, end: Any = None) -> Obj:
    """Images whose time is in ``[start, end)``, like EE's ``filterDate``.

    Parameters
    ----------
    start, end
        Dates as ISO strings (``'2020-07-01'``), ``datetime``/``date``, ``numpy.datetime64``,
        ``pandas.Timestamp`` or milliseconds since the epoch (int or float). Times without a zone
        are UTC, as in Earth Engine. Without ``end``, the interval is one millisecond
        (EE's default): the images taken exactly at ``start``.

    Returns
    -------
    The same kind of object, with only the matching images (possibly none; ``getRegion`` on
    an empty collection then raises, as EE's does). Images without a time never match.
    """
    cube = _cube(obj, need_images=True)
    obj = _keep_ids(obj, cube)
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
    properties so), in the image's ``proj:epsg`` (or ``proj:code``) CRS if it has that
    coordinate too, else the cube's; otherwise every image's footprint is the cube's extent,
    so the filter keeps all images or none. The geometry is read as ``getRegion`` reads it
    (clipped to the cube's area, longitudes wrapped to a cube labelled past 180).

    Parameters
    ----------
    geometry
        Any geometry :func:`xr_getregion.getRegion` accepts (EPSG:4326 unless it says
        otherwise or ``geometry_crs`` is given).
    """
    cube = _cube(obj, need_images=True)
    obj = _keep_ids(obj, cube)
    shape, crs = read_geometry(geometry, geometry_crs)
    window = window_of(cube.grid, cube.grid)
    pixels = to_pixel_space_many(np.array([shape], dtype=object), crs, cube.grid, window)[0]
    keep = shapely.intersects(_footprints(obj, cube, window), pixels)
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
        taken = [n for n in new if n in obj.variables and n not in picked]
        if taken:
            raise ArgumentError(
                f"select: the new names {taken} are already variables or coordinates of the "
                "Dataset; choose others."
            )
        # Variables that are not bands (a CF grid mapping, time bounds) stay.
        others = [v for v in obj.data_vars if v not in available]
        out = obj[picked + others]
        return out.rename(dict(zip(picked, new, strict=True))) if names else out
    if BAND_DIM not in obj.dims:
        return obj if names is None else obj.rename(new[0])
    # The names are written back: without a band coordinate, positions would rename them.
    return obj.isel({BAND_DIM: chosen}).assign_coords({BAND_DIM: new})


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
    obj = _keep_ids(obj, cube)
    if prop == "system:time_start":
        key: pd.Series = pd.Series([np.nan if t is None else t for t in cube.times_ms], dtype=float)
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
    try:
        order = key.sort_values(ascending=ascending, kind="stable", na_position="last").index
    except TypeError as exc:
        raise ArgumentError(
            f"sort: the values of {prop!r} cannot be ordered ({exc}): {key.tolist()}."
        ) from exc
    return obj.isel({cube.image_dim: order.to_numpy()})


def _cube(obj: Any, need_images: bool = False) -> Cube:
    # An empty collection (filtered to no images) filters, sorts and selects as in EE.
    cube = read_cube(obj, allow_empty=True)
    if need_images and cube.image_dim is None:
        raise CubeError(
            "this is one image (the cube has no time dim); collection filters need a time "
            "dim. Add one with cube.expand_dims('time')."
        )
    return cube


def _keep_ids(obj: Obj, cube: Cube) -> Obj:
    """Images without an id coordinate are named by position ('0', '1', ...); write those
    names down before filtering or sorting, so each image keeps its id, as in EE."""
    along = (cube.image_dim,)
    if any(n in obj.coords and obj.coords[n].dims == along for n in ("system:index", "id")):
        return obj
    return obj.assign_coords({"system:index": (cube.image_dim, list(cube.ids))})


def _to_ms(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"filterDate: {what}={value!r} is not a date.")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            raise ArgumentError(f"filterDate: {what}={value!r} is not a date.")
        return math.floor(value)  # milliseconds, as EE reads a number
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


def _footprints(obj: Any, cube: Cube, window: Any) -> np.ndarray:
    """Each image's footprint in the cube's pixel space."""
    n = cube.n_images
    along = {name: c for name, c in obj.coords.items() if c.dims in ((cube.image_dim,), ())}

    def per_image(name: str) -> list[Any]:
        c = along[name]
        return [c.values.item()] * n if c.ndim == 0 else list(c.values)

    if FOOTPRINT_GEOMETRY in along:
        shapes = [_geojson(v) for v in per_image(FOOTPRINT_GEOMETRY)]
    elif FOOTPRINT_BBOX in along:
        shapes = [_bbox(v) for v in per_image(FOOTPRINT_BBOX)]
    else:
        rows, cols = cube.grid.shape  # type: ignore[misc]
        return np.array([shapely.box(0, 0, cols, rows)] * n, dtype=object)
    code = next((c for c in ("proj:epsg", "proj:code") if c in along), None)
    crss = per_image(code) if code else [cube.grid.crs] * n
    out = np.empty(n, dtype=object)
    for value in dict.fromkeys(str(c) for c in crss):
        which = np.array([str(c) == value for c in crss])
        crs = cube.grid.crs if code is None else _footprint_crs(value, code)
        out[which] = to_pixel_space_many(
            np.array(shapes, dtype=object)[which], crs, cube.grid, window
        )
    return out


def _footprint_crs(value: str, name: str) -> CRS:
    try:
        code = float(value)
        return CRS.from_epsg(int(code)) if code.is_integer() else read_crs(value, name)
    except ValueError:
        return read_crs(value, name)


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
