"""Reading a time-stacked xarray cube as an Earth Engine ImageCollection, from metadata only.

Nothing here touches band values: dims, band names, image ids, times, the CRS and the native
grid all come from coordinates and attributes, so a dask-backed cube is never computed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import pyproj
import xarray as xr
from pyproj import CRS

from xr_getregion.errors import CRSError, CubeError, EmptyCollectionError, MissingCRSError
from xr_getregion.geometry import EPSG4326, read_crs
from xr_getregion.grid import Grid, Transform

__all__ = ["Band", "Cube", "read_cube"]

SPATIAL_DIMS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))
GEOGRAPHIC_DIMS = {("lat", "lon"), ("latitude", "longitude")}
BAND_DIM = "band"
# Every attribute that declares missing values: CF's, GDAL's, and those rioxarray reads.
_NODATA_ATTRS = ("_FillValue", "missing_value", "nodata", "fill_value", "nodatavals")
# stackstac and STAC-derived cubes carry the EPSG code as a coordinate under one of these.
_EPSG_COORDS = ("epsg", "proj:epsg", "proj:code")


@dataclass(frozen=True, eq=False)
class Band:
    """One band: the array holding it and how to pick it out.

    ``array`` has dims ``image_dim`` (optional), ``band_dim`` (optional), ``y``, ``x`` in any
    order; ``band_index`` is the band's position along ``band_dim``. ``nodata`` holds every
    declared missing value, as numbers of the band's dtype (empty when none is declared).
    """

    name: str
    array: xr.DataArray
    band_dim: str | None
    band_index: int
    nodata: tuple[Any, ...]

    @property
    def dtype(self) -> np.dtype:
        """The band's dtype in native byte order, as its values are gathered."""
        return self.array.dtype.newbyteorder("=")


@dataclass(frozen=True, eq=False)
class Cube:
    """A cube read as an ImageCollection: images along ``image_dim``, bands, a native grid."""

    bands: tuple[Band, ...]
    image_dim: str | None
    ydim: str
    xdim: str
    ids: tuple[str, ...]
    times_ms: tuple[int | None, ...]
    grid: Grid

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    @property
    def n_images(self) -> int:
        return len(self.ids)


def read_cube(obj: xr.DataArray | xr.Dataset, *, allow_empty: bool = False) -> Cube:
    """Read a ``DataArray`` or ``Dataset`` as a collection of images, without computing it.

    With ``allow_empty``, a collection with no images is read too (the collection methods
    filter and sort it as EE does an empty collection); it still needs bands.

    Raises
    ------
    EmptyCollectionError
        No images (unless ``allow_empty``) or no bands.
    CubeError
        No spatial dims, several candidate time dims, Dataset bands with different dims,
        irregular coordinates.
    MissingCRSError
        No CRS in any convention and no lat/lon dims.
    """
    if isinstance(obj, xr.Dataset):
        bands, dims = _dataset_bands(obj)
    elif isinstance(obj, xr.DataArray):
        bands, dims = _dataarray_bands(obj)
    else:
        raise CubeError(f"expected an xarray DataArray or Dataset; got {type(obj).__name__}.")
    ydim, xdim = _spatial_dims(dims, obj)
    for dim in (ydim, xdim):
        if obj.sizes[dim] == 0:
            # Not EE's "No bands in collection": images and bands exist, pixels do not.
            raise CubeError(
                f"the cube is 0 pixels along {dim!r} (cube.sizes[{dim!r}] == 0): there is no "
                "pixel to extract. A selection that kept nothing is the usual cause: a slice "
                f"in the wrong order for a descending coordinate (on a north-up cube, "
                f"cube.sel({dim}=slice(low, high)) keeps nothing; give slice(high, low), or "
                f"cube.sortby({dim!r}) first), or a window outside the cube."
            )
    others = [d for d in dims if d not in (ydim, xdim, BAND_DIM)]
    if len(others) > 1:
        raise CubeError(
            f"the cube has {len(others)} non-spatial dims {others}; one of them must be the "
            "image (time) dim. Select or stack the others first, e.g. cube.isel("
            f"{others[-1]}=0)."
        )
    # xarray types dims as any Hashable; a cube's image dim is a name like the others.
    image_dim = cast("str | None", others[0] if others else None)
    n_images = obj.sizes[image_dim] if image_dim else 1
    if not bands or (n_images == 0 and not allow_empty):
        raise EmptyCollectionError("ImageCollection.getRegion: No bands in collection.")
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CubeError(
            f"band names must be unique, as in Earth Engine; repeated: {dup} (names are the "
            f"band labels as strings: {names}). Rename the bands, e.g. "
            "cube.assign_coords(band=['B1', 'B2', ...]), or select one of each."
        )
    crs = _read_crs(obj, (ydim, xdim))
    grid = _native_grid(obj, ydim, xdim, crs)
    ids, times = _ids_and_times(obj, image_dim, n_images)
    return Cube(tuple(bands), image_dim, ydim, xdim, ids, times, grid)


def _spatial_dims(dims: tuple[Hashable, ...], obj: Any) -> tuple[str, str]:
    for ydim, xdim in SPATIAL_DIMS:
        if ydim in dims and xdim in dims:
            return ydim, xdim
    raise CubeError(
        f"no spatial dims: the cube's dims are {list(dims)}; expected y/x, lat/lon or "
        "latitude/longitude. Rename them, e.g. cube.rename({'northing': 'y', 'easting': 'x'})."
    )


def _missing_values(
    arr: xr.DataArray, names: list[str], where: str
) -> list[tuple[np.generic, ...]]:
    """The declared missing values of each of ``names`` (the bands ``arr`` holds, in order),
    as numbers of the band's dtype.

    Every declaration counts, not only the first: ``_FillValue``, ``missing_value`` (CF
    allows a vector), ``nodata``, and the attributes rioxarray's ``rio.nodata`` reads
    (``fill_value``; old ``open_rasterio``'s ``nodatavals``, one value per band), each a
    number or a number given as text. ``where`` is how the user reaches ``arr``
    (``cube``, ``ds['B4']``), to name it in the fix.

    Raises
    ------
    CubeError
        A declared value is not a number (``nodata="abc"``).
    """
    declared: list[list[tuple[str, Any]]] = [[] for _ in names]
    sources = [("attrs", arr.attrs)]
    # .encoding holds the stored (raw) value: CF decoding, or rio.write_nodata(encoded=True),
    # says the band was masked with it already. For a float band that means NaN already
    # stands for it, and a value equal to the raw one is data (a scaled band's raw fill
    # value is not even on its scale). An integer or boolean band was not masked: the raw
    # value is still there and masks.
    if arr.dtype.kind in "iub":
        sources.append(("encoding", arr.encoding))
    for label, source in sources:
        for key in _NODATA_ATTRS:
            value = source.get(key)
            if value is None:
                continue
            values = _as_list(value)
            if key == "nodatavals" and len(values) == len(names) > 1:
                for k, v in enumerate(values):  # one per band
                    declared[k].append((f"{label}[{key!r}]", v))
                continue
            for band in declared:
                band.extend((f"{label}[{key!r}]", v) for v in values)
    dtype = arr.dtype.newbyteorder("=")
    out = []
    for name, band in zip(names, declared, strict=True):
        found: list[np.generic] = []
        for attribute, value in band:
            number = _as_band_number(value, dtype)
            if number is _NOT_A_NUMBER:
                raise CubeError(
                    f"band {name!r}: {attribute} = {value!r} is not a number, so it cannot "
                    f"mark {dtype} values as missing. Set the number it means (e.g. "
                    f"{where}.{attribute} = -9999) or drop it: "
                    f"del {where}.{attribute}."
                )
            if number is not None and not any(number == f for f in found):
                found.append(number)
        out.append(tuple(found))
    return out


_NOT_A_NUMBER = object()


def _as_list(value: Any) -> list[Any]:
    """A scalar or vector attribute as a list of its elements."""
    if isinstance(value, str | bytes):
        return [value]
    return list(np.asarray(value, dtype=object).ravel())


def _as_band_number(value: Any, dtype: np.dtype) -> Any:
    """``value`` as a number of ``dtype``; ``None`` when no value of ``dtype`` can equal it;
    ``_NOT_A_NUMBER`` when it is no number at all.

    A value out of an integer band's range (``nodata=1e10`` on int16, ``-9999`` on uint8) or
    not a whole number there cannot occur in the band, so it masks nothing: that is what
    ``band == value`` means. Refusing it would refuse files GDAL writes (it stores nodata
    as a double whatever the band's type). NaN masks by itself in a float band and cannot
    occur in an integer one. A float band's value is rounded to the band's precision, as it
    was when the band was written (``0.1`` declared as a double marks the float32 ``0.1``).
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return _NOT_A_NUMBER
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return _NOT_A_NUMBER
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        return _NOT_A_NUMBER
    if dtype.kind == "f":
        if np.isnan(value):
            return None  # NaN is masked in every float band anyway
        with np.errstate(over="ignore"):
            number = dtype.type(value)
        # A finite value beyond the dtype's range would round to infinity: it masks nothing.
        return None if np.isinf(number) and not np.isinf(value) else number
    if dtype.kind in "iub":
        if isinstance(value, float) and not (np.isfinite(value) and value.is_integer()):
            return None
        value = int(value)
        low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        return dtype.type(value) if low <= value <= high else None
    return None  # other dtypes (dates, text) hold no declared numeric missing values


def _check_dtype(arr: xr.DataArray, names: list[str]) -> None:
    """Refuse complex bands: EE's table and Parquet hold real numbers only."""
    if arr.dtype.kind == "c":
        which = f"band {names[0]!r}" if len(names) == 1 else f"bands {names}"
        raise CubeError(
            f"{which} hold {arr.dtype.name} (complex) values; a getRegion table holds real "
            "numbers. Extract what you need as real bands: np.abs(cube) (the magnitude), or "
            "cube.real and cube.imag as separate bands, e.g. xr.concat([cube.real, "
            "cube.imag], 'band') with new band names."
        )


def _dataarray_bands(arr: xr.DataArray) -> tuple[list[Band], tuple[Hashable, ...]]:
    if BAND_DIM in arr.dims:
        if BAND_DIM in arr.coords:
            # Band labels of any type are names as strings (1 -> '1', b'B4' -> 'B4').
            names = [
                v.decode() if isinstance(v, bytes) else str(v)
                for v in np.asarray(arr[BAND_DIM].values).tolist()
            ]
        else:
            names = [f"b{i}" for i in range(arr.sizes[BAND_DIM])]
        _check_dtype(arr, names)
        missing = _missing_values(arr, names, "cube")
        bands = [Band(n, arr, BAND_DIM, i, missing[i]) for i, n in enumerate(names)]
    else:
        name = str(arr.name) if arr.name is not None else "b0"
        _check_dtype(arr, [name])
        bands = [Band(name, arr, None, 0, _missing_values(arr, [name], "cube")[0])]
    return bands, tuple(arr.dims)


def _dataset_bands(ds: xr.Dataset) -> tuple[list[Band], tuple[Hashable, ...]]:
    spatial = next((pair for pair in SPATIAL_DIMS if all(d in ds.dims for d in pair)), None)
    if spatial is None:
        spatial = _spatial_dims(tuple(ds.dims), ds)  # raises: no pair of spatial dims
    # Variables without both spatial dims (time bounds, a 'crs' variable) are not bands.
    variables = {k: v for k, v in ds.data_vars.items() if set(spatial) <= set(v.dims)}
    if not variables:
        return [], tuple(ds.dims)
    first_name, first = next(iter(variables.items()))
    for name, var in variables.items():
        if set(var.dims) != set(first.dims):
            raise CubeError(
                f"Dataset bands must share their dims: {first_name!r} has {list(first.dims)} "
                f"but {name!r} has {list(var.dims)}. Select or drop the odd variable, e.g. "
                f"ds.drop_vars({name!r})."
            )
        if BAND_DIM in var.dims:
            raise CubeError(
                f"Dataset variable {name!r} has a {BAND_DIM!r} dim; in a Dataset the variables "
                f"are the bands. Use ds[{name!r}] (a DataArray) or ds.isel(band=0)."
            )
    for n, v in variables.items():
        _check_dtype(v, [str(n)])
    bands = [
        Band(str(n), v, None, 0, _missing_values(v, [str(n)], f"ds[{str(n)!r}]")[0])
        for n, v in variables.items()
    ]
    return bands, tuple(first.dims)


def _read_crs(obj: xr.DataArray | xr.Dataset, spatial: tuple[str, str]) -> CRS:
    found: dict[str, CRS] = {}
    try:
        rio_crs = obj.rio.crs
    except Exception:  # rioxarray refuses some layouts; the other conventions still apply
        rio_crs = None
    if rio_crs is not None:
        found["rio.crs (spatial_ref)"] = CRS.from_user_input(rio_crs)
    cf = _cf_grid_mapping_crs(obj)
    if cf is not None:
        found["CF grid_mapping"] = cf
    if obj.attrs.get("crs") is not None:
        found["attrs['crs']"] = read_crs(obj.attrs["crs"], "the cube's crs attribute")
    if "crs" in obj.coords and obj.coords["crs"].ndim == 0:
        # A CF grid-mapping coordinate named 'crs' holds a dummy value and the CRS in its
        # attributes; only a non-empty string value is itself a CRS.
        holder = obj.coords["crs"]
        wkt = holder.attrs.get("crs_wkt") or holder.attrs.get("spatial_ref")
        value = holder.values.item()
        if wkt:
            found["coords['crs'] attributes"] = read_crs(wkt, "the cube's crs coordinate")
        elif isinstance(value, str) and value != "":
            found["coords['crs']"] = read_crs(value, "the cube's crs coordinate")
    for key in _EPSG_COORDS:
        if key.startswith("proj:") and found:
            # STAC's proj:epsg/proj:code describe each item's source assets; a cube that
            # declares its own CRS (stackstac's 'epsg', rio) may have been reprojected.
            continue
        if key in obj.coords:
            distinct = pd.unique(np.asarray(obj.coords[key].values).ravel())
            codes = [c for c in distinct if c is not None and not pd.isna(c)]
            if len(codes) > 1:
                raise CubeError(
                    f"the cube's {key!r} coordinate holds several CRSs {list(codes)}: its "
                    "images are on different grids. Reproject them to one CRS first."
                )
            if codes:
                code = codes[0]
                found[f"coords[{key!r}]"] = read_crs(
                    int(code) if isinstance(code, int | np.integer | float) else code,
                    f"the cube's {key} coordinate",
                )
    if not found:
        if spatial in GEOGRAPHIC_DIMS:
            return EPSG4326
        raise MissingCRSError(
            "the cube has no CRS: none in rio.crs (a spatial_ref coordinate), a 'crs' attribute "
            "or coordinate, or stackstac's 'epsg' coordinate. Set it with "
            "cube.rio.write_crs('EPSG:32615') (your cube's CRS)."
        )
    (first_key, crs), *rest = found.items()
    for key, other in rest:
        if other != crs:
            raise CubeError(
                f"the cube's CRS conventions disagree: {first_key} is {crs.to_string()} but "
                f"{key} is {other.to_string()}. Remove the wrong one."
            )
    return crs


def _cf_grid_mapping_crs(obj: xr.DataArray | xr.Dataset) -> CRS | None:
    """The CRS of a CF ``grid_mapping`` variable, also when it was opened as a data variable."""
    arrays = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    for arr in arrays:
        name = arr.attrs.get("grid_mapping") or arr.encoding.get("grid_mapping")
        if name is None:
            continue
        holder = obj.variables.get(name) if isinstance(obj, xr.Dataset) else obj.coords.get(name)
        if holder is None:
            continue
        wkt = holder.attrs.get("crs_wkt") or holder.attrs.get("spatial_ref")
        if wkt:
            return read_crs(wkt, f"the CF grid_mapping variable {name!r}")
        if "grid_mapping_name" in holder.attrs:
            # A valid CF file may give the grid mapping as parameters only: pyproj reads those.
            try:
                return CRS.from_cf(dict(holder.attrs))
            except pyproj.exceptions.CRSError as exc:
                raise CRSError(
                    f"the CF grid_mapping variable {name!r} ({dict(holder.attrs)}) cannot be "
                    f"read as a CRS: {exc}. Add its WKT as a 'crs_wkt' attribute, or set the "
                    "CRS with cube.rio.write_crs(...)."
                ) from exc
    return None


def _axis(obj: Any, dim: str, longitude: bool = False) -> tuple[float, float]:
    """(first centre, step) of a regular coordinate, from its values.

    With ``longitude``, a coordinate that wraps at the antimeridian (``179.5, -179.5``) is
    read as continuous (``179.5, 180.5``): the same pixels, labelled without the jump.
    """
    if dim not in obj.coords:
        raise CubeError(
            f"the spatial dim {dim!r} has no coordinate: pixel positions are unknown. "
            "Assign one, e.g. cube.assign_coords(...) or rioxarray's open_rasterio."
        )
    raw = np.asarray(obj[dim].values)
    try:
        values = raw.astype(float)
    except (TypeError, ValueError) as exc:
        raise CubeError(
            f"the {dim!r} coordinate holds {raw.dtype} values, not numbers: pixel positions "
            f"are unknown. Assign numeric coordinates, e.g. cube.assign_coords({dim}=...)."
        ) from exc
    n = values.size
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise CubeError(
            f"the {dim!r} coordinate has a non-finite value {float(values[bad])!r} at index {bad}: "
            f"pixel positions are unknown. Assign finite coordinates, e.g. cube.assign_coords("
            f"{dim}=...)."
        )
    if n == 1:
        return float(values[0]), float("nan")
    if longitude:
        unwrapped = np.unwrap(values, period=360.0)
        step = None if np.array_equal(unwrapped, values) else _regular_step(unwrapped, raw)
        if step is not None:
            return float(unwrapped[0]), step
    step = _regular_step(values, raw)
    if step is None:
        raise CubeError(_irregular_message(dim, values, longitude))
    return float(values[0]), step


def _regular_step(values: np.ndarray, raw: np.ndarray) -> float | None:
    """The step of evenly spaced ``values``, or None when they are not."""
    step = (values[-1] - values[0]) / (values.size - 1)
    diffs = np.diff(values)
    # Coordinates stored in float32 (or float16) are regular to within a few of their ulps.
    eps = np.finfo(raw.dtype).eps if raw.dtype.kind == "f" else np.finfo(float).eps
    tolerance = max(1e-6 * abs(step), 4 * eps * float(np.abs(values).max()))
    if step == 0 or not np.allclose(diffs, step, rtol=0, atol=tolerance):
        return None
    return float(step)


def _irregular_message(dim: str, values: np.ndarray, longitude: bool) -> str:
    """Why a coordinate is not a regular grid, with the values and the fix."""
    diffs = np.diff(values)
    if (diffs == 0).any():
        i = int(np.flatnonzero(diffs == 0)[0])
        return (
            f"the {dim!r} coordinate repeats the value {float(values[i])!r} (indices {i} and "
            f"{i + 1}): two pixels at one position. Drop the repeats first, e.g. "
            f"cube.drop_duplicates({dim!r})."
        )
    if (diffs > 0).any() and (diffs < 0).any():
        i = int(np.flatnonzero(np.sign(diffs) != np.sign(diffs[0]))[0])
        where = f"it goes from {float(values[i])!r} to {float(values[i + 1])!r} at index {i + 1}"
        if longitude and abs(diffs[i]) > 180:
            # Wrapped longitudes are read past 180 when that makes them regular; here it did not.
            return (
                f"the {dim!r} coordinate is not monotonic: {where}, longitudes wrapped at the "
                "antimeridian, and even read past 180 they are not evenly spaced. getRegion "
                "needs a regular grid; check the coordinate or resample the cube first."
            )
        return (
            f"the {dim!r} coordinate is not monotonic: {where}. getRegion needs a regular "
            f"grid; sort it first, e.g. cube.sortby({dim!r})."
        )
    step = (values[-1] - values[0]) / (values.size - 1)
    worst = diffs[np.argmax(np.abs(diffs - step))]
    return (
        f"the {dim!r} coordinate is not regular: steps vary from {float(step)!r} to "
        f"{float(worst)!r}. getRegion needs a regular grid; resample the cube first "
        "(e.g. rio.reproject)."
    )


# Two transform attributes of one Dataset are the same grid to this relative tolerance.
_SAME_TRANSFORM_RTOL = 1e-12
# A label within this fraction of a pixel of a corner (or centre) of the transform is one.
_LABEL_TOLERANCE = 1e-3


def _transform_attr(obj: Any, ydim: str, xdim: str) -> tuple[float, ...] | None:
    """The affine ``(a, b, c, d, e, f)`` of the cube's ``attrs['transform']`` (stackstac's, or
    the old ``xr.open_rasterio``'s), or None when there is none.

    A Dataset built from stackstac arrays (``xr.Dataset({...})``, ``xr.merge``) keeps the
    attribute on its band variables only, so theirs count too: missing it would read corner
    labels as centres, half a pixel off. They must agree, with each other and the Dataset's.

    Raises
    ------
    CubeError
        Two of those attributes give different transforms.
    """
    # Keyed by how the user reaches each attribute, to name it in the error.
    found = {"ds.attrs['transform']": _one_transform_attr(obj.attrs)}
    if isinstance(obj, xr.Dataset):
        for name, var in obj.data_vars.items():
            if ydim in var.dims and xdim in var.dims:  # a band, as _dataset_bands reads them
                found[f"ds[{str(name)!r}].attrs['transform']"] = _one_transform_attr(var.attrs)
    given = [(where, t) for where, t in found.items() if t is not None]
    if not given:
        return None
    (first_where, first), *rest = given
    for where, other in rest:
        if not np.allclose(first, other, rtol=_SAME_TRANSFORM_RTOL, atol=0.0):
            raise CubeError(
                f"the Dataset's transform attributes disagree: {first_where} is {list(first)} "
                f"but {where} is {list(other)}: its bands are on different grids, or one "
                "attribute is stale. Put the bands on one grid first, or drop the wrong "
                f"attribute, e.g. del {where}."
            )
    return first


def _one_transform_attr(attrs: dict[Any, Any]) -> tuple[float, ...] | None:
    """One ``attrs['transform']`` as 6 floats, or None when absent or not 6 or 9 numbers."""
    value = attrs.get("transform")
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        numbers = np.asarray(tuple(value), dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if numbers.size not in (6, 9) or not np.isfinite(numbers).all():
        return None
    return tuple(float(v) for v in numbers[:6])


def _registration(
    t: tuple[float, ...] | None, ydim: str, xdim: str, x0: float, y0: float
) -> tuple[float, float]:
    """How far the first x and y labels are from their pixel's centre: (0, 0) for centre
    labels (xarray's convention), half a pixel for stackstac's default top-left labels.

    Decided from ``t``, the cube's ``attrs['transform']`` when it carries one: a label on a
    pixel corner of that transform is a corner, one on a centre is a centre. Slicing keeps
    the attribute, so only the fraction of a pixel matters.
    """
    if t is None:
        return 0.0, 0.0
    a, b, c, d, e, f = t
    if b != 0 or d != 0 or a == 0 or e == 0:
        raise CubeError(
            f"the cube's transform attribute {list(t)} is rotated or sheared (b, d != 0) or "
            "degenerate, but its x and y coordinates can only describe an axis-aligned grid. "
            "Reproject the cube to a north-up grid first (e.g. rio.reproject); if the attribute "
            "is not a rasterio-order affine (a, b, c, d, e, f), drop it: "
            "del cube.attrs['transform']."
        )

    def fraction(label: float, origin: float, size: float) -> float:
        u = (label - origin) / size
        return float(u - np.floor(u))

    where = {}
    for dim, label, origin, size in ((xdim, x0, c, a), (ydim, y0, f, e)):
        frac = fraction(label, origin, size)
        if min(frac, 1 - frac) < _LABEL_TOLERANCE:
            where[dim] = "corner"
        elif abs(frac - 0.5) < _LABEL_TOLERANCE:
            where[dim] = "centre"
        else:
            raise CubeError(
                f"the cube's {dim!r} coordinate ({label!r} first) is neither a pixel corner nor "
                f"a pixel centre of its transform attribute {list(t)} (it is {frac:.3f} of a "
                "pixel off): the attribute is stale. Drop it (del cube.attrs['transform']) if "
                "the coordinates are pixel centres, or rebuild the cube."
            )
    if where[xdim] != where[ydim]:
        raise CubeError(
            f"the cube's coordinates mix registrations: {xdim!r} labels pixel "
            f"{where[xdim]}s but {ydim!r} labels pixel {where[ydim]}s of its transform "
            f"attribute {list(t)}. Rebuild it with centre labels (stackstac: "
            "xy_coords='center')."
        )
    if where[xdim] == "centre":
        return 0.0, 0.0
    # stackstac's xy_coords='topleft': each label is its pixel's top-left corner in the
    # transform's orientation, so the centre is half a pixel (a/2, e/2) away, whichever way
    # the coordinate itself runs (a sortby('y') keeps labels on the same corners).
    return a / 2, e / 2


def _stackstac_marks(obj: Any) -> list[str]:
    """What still says a cube came from ``stackstac.stack`` once its attrs are gone.

    Clearing attrs (needed to write it to Zarr) or arithmetic on xarray before 2025.11
    drops ``attrs['transform']`` but keeps the name and the coordinates. STAC ``proj:``
    coordinates count only on a cube with no rioxarray/CF grid mapping: stackstac writes
    none, and a cube that has one was declared in a convention whose labels are centres.
    """
    names = [obj.name] if isinstance(obj, xr.DataArray) else list(obj.data_vars)
    marks = [f"its name {n!r}" for n in names if str(n).startswith("stackstac-")]
    if "epsg" in obj.coords:
        marks.append("its 'epsg' coordinate")
    stac = sorted(str(k) for k in obj.coords if str(k).startswith("proj:"))
    if stac and not _has_grid_mapping(obj):
        marks.append(f"its STAC coordinates {stac}")
    return marks


def _has_grid_mapping(obj: Any) -> bool:
    try:
        mapping = obj.rio.grid_mapping
    except Exception:
        return False
    return mapping in obj.coords or (isinstance(obj, xr.Dataset) and mapping in obj.variables)


def _refuse_unregistered_stackstac(
    obj: Any, ydim: str, xdim: str, x0: float, dx: float, y0: float, dy: float
) -> None:
    """Refuse a stackstac cube whose registration went with its ``attrs['transform']``.

    stackstac labels pixel top-left corners by default (``xy_coords='topleft'``) and centres
    on request, and nothing left on the cube tells which: its ``proj:transform`` coordinate
    is the items' grid, not the cube's (stackstac snaps its own grid to multiples of the
    resolution, so on grids like Landsat's, offset by half a pixel, corner labels sit on the
    items' pixel centres), and when the items share it stackstac 0.5.1 stores it as a Python
    set, its order lost. Reading corners as centres takes every value from the neighbouring
    pixel, so the cube is refused with the two statements that fix it.

    Raises
    ------
    CubeError
        The cube looks like stackstac output and has no transform attribute.
    """
    marks = _stackstac_marks(obj)
    if not marks:
        return
    holder = "ds" if isinstance(obj, xr.Dataset) else "cube"
    if np.isnan(dx) or np.isnan(dy):
        corner = centre = "(xres, 0.0, left, 0.0, -yres, top)"
    else:
        ax, ay = abs(dx), abs(dy)
        # The corner statement names the first labels themselves: only the fraction of a
        # pixel between labels and transform decides, whichever way y runs.
        corner = repr((ax, 0.0, x0, 0.0, -ay, y0))
        centre = repr((ax, 0.0, x0 - ax / 2, 0.0, -ay, y0 + ay / 2))
    raise CubeError(
        f"the cube looks like stackstac output ({', '.join(marks)}) but has no transform "
        f"attribute, so whether its {xdim!r} and {ydim!r} coordinates label pixel top-left "
        "corners (stackstac's default, xy_coords='topleft') or pixel centres "
        "(xy_coords='center') is unknown; reading corners as centres would take every value "
        "from the neighbouring pixel. State it with the transform stackstac wrote: for "
        f"corner labels {holder}.attrs['transform'] = {corner}; for centre labels "
        f"{holder}.attrs['transform'] = {centre}. To write a stackstac cube to Zarr, keep it "
        f"when clearing attrs: {holder}.attrs = {{'transform': "
        f"tuple({holder}.attrs['transform'])}}."
    )


def _written_geotransform(obj: Any) -> bool:
    try:
        mapping = obj.rio.grid_mapping
    except Exception:
        return False
    return mapping in obj.coords and "GeoTransform" in obj.coords[mapping].attrs


# Pixel sizes of a transform attribute and of the coordinates agree to this relative
# tolerance (a float32 coordinate's steps carry some 1e-7 of rounding).
_PIXEL_SIZE_RTOL = 1e-6


def _check_pixel_sizes(attr: tuple[float, ...], axes: tuple[tuple[str, float, float], ...]) -> None:
    """Refuse a transform attribute whose pixel size (per ``(dim, step, size)``) is not the
    coordinate's step (a NaN step, one label, is no evidence)."""
    for dim, step, size in axes:
        if not np.isnan(step) and not np.isclose(abs(step), abs(size), rtol=_PIXEL_SIZE_RTOL):
            raise CubeError(
                f"the cube's transform attribute {list(attr)} gives {size!r}-unit pixels but "
                f"its {dim!r} coordinate steps by {step!r}: the attribute is stale (after "
                "coarsen or a reprojection?). Drop it (del cube.attrs['transform']) or fix it."
            )


def _native_grid(obj: Any, ydim: str, xdim: str, crs: CRS) -> Grid:
    x0, dx = _axis(obj, xdim, longitude=crs.is_geographic)
    y0, dy = _axis(obj, ydim)
    attr = _transform_attr(obj, ydim, xdim)
    if attr is None:
        _refuse_unregistered_stackstac(obj, ydim, xdim, x0, dx, y0, dy)
    if attr is not None:
        _check_pixel_sizes(attr, ((xdim, dx, attr[0]), (ydim, dy, attr[4])))
    # After the pixel sizes agree, the fraction of a pixel tells corners from centres.
    shift_x, shift_y = _registration(attr, ydim, xdim, x0, y0)
    if np.isnan(dx) or np.isnan(dy):
        a = e = float("nan")
        # Only a transform actually written counts: rioxarray falls back to identity.
        if _written_geotransform(obj):
            a, _, _, _, e, _ = tuple(obj.rio.transform(recalc=False))[:6]
        elif attr is not None:
            a, e = attr[0], attr[4]
        if np.isnan(a) or np.isnan(e):
            raise CubeError(
                f"the cube is one pixel wide along {xdim if np.isnan(dx) else ydim!r} and has no "
                "transform to give the pixel size. Write one with cube.rio.write_transform()."
            )
        dx = a if np.isnan(dx) else dx
        dy = e if np.isnan(dy) else dy
    x0, y0 = x0 + shift_x, y0 + shift_y
    shape = (int(obj.sizes[ydim]), int(obj.sizes[xdim]))
    return Grid(Transform(dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2), crs, shape)


def _ids_and_times(
    obj: Any, image_dim: str | None, n: int
) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """The images' ids and times (``system:time_start``: integer milliseconds, UTC).

    The time is the ``system:time_start`` coordinate if there is one (integers, floats of whole
    milliseconds, or datetimes; NaN or NaT is an image without a time), else the ``time``
    coordinate (or the image dim's own), read by :func:`_instants_ms`.
    """

    def coord(name: str) -> xr.DataArray | None:
        if name not in obj.coords:
            return None
        c = obj.coords[name]
        along = () if image_dim is None else (image_dim,)
        return c if c.dims == along else None

    raw_ids = coord("system:index")
    if raw_ids is None:
        raw_ids = coord("id")
    ids = (
        tuple(str(v) for v in np.asarray(raw_ids.values).reshape(-1).tolist())
        if raw_ids is not None
        else tuple(str(i) for i in range(n))
    )
    start = coord("system:time_start")
    if start is not None:
        return ids, _time_start_ms(_coord_values(start), "system:time_start")
    # The image dim's own coordinate if it holds times, else a 'time' coordinate along it
    # (images along 't' numbered 0, 1, ... with their times beside them).
    for name in dict.fromkeys([image_dim or "time", "time"]):
        time = coord(name)
        if time is None:
            continue
        try:
            return ids, _instants_ms(_coord_values(time), name, image_dim)
        except _NotATime:  # numbers, strings: a coordinate that holds no times
            continue
    return ids, (None,) * n


# Earth Engine's times are int64 milliseconds; the smallest int64 is NaT in numpy and pandas.
_MS_MIN, _MS_MAX = -(2**63) + 1, 2**63 - 1
# numpy units no finer than a millisecond: casting them to milliseconds multiplies, and may
# overflow; finer units divide (numpy floors), which cannot.
_COARSE_UNITS = ("Y", "M", "W", "D", "h", "m", "s", "ms")


class _NotATime(Exception):
    """A coordinate value that is neither a time nor missing."""

    def __init__(self, position: int, value: Any) -> None:
        super().__init__(position, value)
        self.position, self.value = position, value


def _coord_values(c: xr.DataArray) -> np.ndarray | pd.Index:
    """A coordinate's values, keeping what numpy would lose: a pandas extension dtype
    (timezone-aware ``datetime64[ns, tz]``, ``period[M]``) comes back as its pandas index,
    whose ``.values`` would be bare nanoseconds or objects."""
    if c.ndim == 1 and not isinstance(c.dtype, np.dtype):
        return c.to_index()
    return np.asarray(c.values).reshape(-1)


def _instants_ms(
    values: np.ndarray | pd.Index, name: str, image_dim: str | None = None
) -> tuple[int | None, ...]:
    """Milliseconds since 1970-01-01 UTC of each time, floored; ``None`` where missing.

    - ``datetime64`` of any unit without a zone: a UTC time, as in Earth Engine.
    - Timezone-aware times (a pandas ``DatetimeIndex`` with ``tz``, ``Timestamp`` or
      ``datetime`` objects with ``tzinfo``, zones mixed or not): the UTC instant they denote.
    - ``Period``: the instant its period starts (``Period.start_time``), UTC.
    - cftime dates in any calendar: the same year, month, day, hour, minute, second and
      microsecond read as a proleptic Gregorian UTC time (so ``noleap`` 2001-03-01 is
      2001-03-01, and a ``julian`` or pre-1582 ``standard`` date keeps its labels, not its
      day count). A date with no such Gregorian date (``360_day`` 30 February, ``all_leap``
      29 February 2001) is refused, naming ``convert_calendar``. Reading the fields directly
      never calls xarray's ``CFTimeIndex.to_datetimeindex``, so its calendar warning is not
      raised on every call.

    Finer than a millisecond is floored (toward negative infinity): the millisecond holding the
    instant, so instants before 1970 keep their order and ``filterDate``'s ``[start, end)``
    holds on whole milliseconds.

    Raises
    ------
    _NotATime
        A value is neither a time nor missing.
    CubeError
        A date with no Gregorian equivalent, or a time beyond int64 milliseconds.
    """
    if isinstance(values, pd.PeriodIndex):
        # Microsecond periods count from the epoch; every frequency's start is whole us.
        # pandas-stubs lacks PeriodIndex.asi8 and the lower-case how= spellings.
        # The stubs of pandas 2 and 3 disagree here; either ignore may be unused.
        micros = values.asfreq("us", how="start").asi8  # type: ignore[arg-type, attr-defined, unused-ignore]
        pairs = zip(values, micros, strict=True)
        return tuple(None if p is pd.NaT else int(u) // 1000 for p, u in pairs)
    if isinstance(values, pd.DatetimeIndex):
        values = (values.tz_convert(None) if values.tz is not None else values).to_numpy()
    values = np.asarray(values)
    if values.dtype.kind == "M":
        return _datetime64_ms(values, name)
    if values.dtype != object:
        raise _NotATime(0, values[0] if len(values) else None)
    return tuple(_instant_ms(v, i, name, image_dim) for i, v in enumerate(values.tolist()))


def _datetime64_ms(values: np.ndarray, name: str) -> tuple[int | None, ...]:
    ms = values.astype("datetime64[ms]")  # numpy floors finer units
    if np.datetime_data(values.dtype)[0] in _COARSE_UNITS:
        wrapped = (ms.astype(values.dtype) != values) & ~np.isnat(values)
        if wrapped.any():
            k = int(np.flatnonzero(wrapped)[0])
            raise CubeError(
                f"the {name!r} coordinate holds {values[k]} (image {k}), beyond the range of "
                "Earth Engine's times (int64 milliseconds since 1970-01-01 UTC). Fix or drop "
                f"that image's time."
            )
    missing = np.isnat(ms).tolist()
    return tuple(None if m else v for m, v in zip(missing, ms.view(np.int64).tolist(), strict=True))


def _instant_ms(value: Any, position: int, name: str, image_dim: str | None) -> int | None:
    """One object's milliseconds (see :func:`_instants_ms`)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.datetime64):
        return _datetime64_ms(np.asarray([value]), name)[0]
    if isinstance(value, pd.Period):
        return int(value.asfreq("us", how="start").ordinal) // 1000
    if hasattr(value, "calendar") and hasattr(value, "dayofyr"):  # a cftime date
        return _cftime_ms(value, position, name, image_dim)
    if isinstance(value, dt.datetime):
        offset = value.utcoffset()  # None for a naive time: UTC, as in Earth Engine
        micros = _wall_micros(value, value.year)
        if offset is not None:
            micros -= offset // dt.timedelta(microseconds=1)
        return micros // 1000
    if isinstance(value, dt.date):
        return _civil_micros(value.year, value.month, value.day) // 1000
    raise _NotATime(position, value)


def _cftime_ms(value: Any, position: int, name: str, image_dim: str | None) -> int:
    year = value.year
    if year < 1 and not getattr(value, "has_year_zero", True):
        year += 1  # 1 BC is year 0 of the proleptic Gregorian calendar
    if not 1 <= value.day <= _days_in_month(year, value.month):
        dim = "" if image_dim in (None, "time") else f', dim="{image_dim}"'
        raise CubeError(
            f"the {name!r} coordinate holds {value} in the {value.calendar!r} calendar (image "
            f"{position}), a date that does not exist in the standard calendar Earth Engine's "
            "times (milliseconds since 1970-01-01 UTC) count in. Convert the cube first: "
            f'cube.convert_calendar("standard", align_on="date"{dim}) drops such dates, '
            f'align_on="year" moves every date to keep them all.'
        )
    return _wall_micros(value, year) // 1000


def _wall_micros(value: Any, year: int) -> int:
    """Microseconds from 1970-01-01T00:00 to ``value``'s fields read as a proleptic Gregorian
    time (sub-microsecond parts, a ``Timestamp``'s nanoseconds, cannot change the floored ms)."""
    seconds = (value.hour * 60 + value.minute) * 60 + value.second
    return _civil_micros(year, value.month, value.day) + seconds * 1_000_000 + value.microsecond


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _civil_micros(year: int, month: int, day: int) -> int:
    """Microseconds from 1970-01-01 to midnight of a proleptic Gregorian date, any year.

    Howard Hinnant's ``days_from_civil``, in Python integers: no year range to overflow.
    """
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * 86_400_000_000


def _time_start_ms(values: np.ndarray | pd.Index, name: str) -> tuple[int | None, ...]:
    """A ``system:time_start`` coordinate: integer milliseconds, or datetimes converted.

    Floats must be whole milliseconds (NaN is an image without a time); a fraction, an
    infinity, a number beyond int64, a string or a bool is refused, naming the value.
    """
    fix = (
        f" Earth Engine's {name} is integer milliseconds since 1970-01-01 UTC (a time in "
        "seconds must be multiplied by 1000). Fix it, e.g. cube.assign_coords({'"
        f"{name}': (cube['{name}'] // 1).astype('int64')}}), or drop it "
        f"(cube.drop_vars('{name}')) to use the time coordinate."
    )
    if isinstance(values, pd.Index) or np.asarray(values).dtype.kind == "M":
        return _instants_ms(values, name)
    out: list[int | None] = []
    for i, v in enumerate(np.asarray(values).tolist()):
        if isinstance(v, np.integer | np.floating | np.bool_):  # numpy scalars in an object array
            v = v.item()
        if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, bool) or isinstance(v, str | bytes):
            raise CubeError(f"the {name!r} coordinate holds {v!r} (image {i}), not a time." + fix)
        elif isinstance(v, int | float):
            if isinstance(v, float) and not (np.isfinite(v) and v == int(v)):
                what = "not a finite number" if not np.isfinite(v) else "not whole milliseconds"
                raise CubeError(f"the {name!r} coordinate holds {v!r} (image {i}), {what}." + fix)
            if not _MS_MIN <= int(v) <= _MS_MAX:
                raise CubeError(
                    f"the {name!r} coordinate holds {v!r} (image {i}), beyond int64 "
                    "milliseconds." + fix
                )
            out.append(int(v))
        else:
            try:
                out.append(_instant_ms(v, i, name, None))
            except _NotATime:
                raise CubeError(
                    f"the {name!r} coordinate holds {v!r} (image {i}), not a time." + fix
                ) from None
    return tuple(out)
