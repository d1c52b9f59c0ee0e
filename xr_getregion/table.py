"""Turning gathered values into EE's list of lists or a tidy DataFrame.

Rows are image-major (the collection's order), then the plan's pixels in raster order of the
working grid; with several features, grouped by feature first. Masked values (NaN, and every
value the band declares missing: ``_FillValue``, ``missing_value``, ``nodata``...) become
``None`` in EE's table and NaN / ``pd.NA`` in the DataFrame. Column dtypes depend on the
bands' metadata only (dtype, whether a missing value that the dtype can hold is declared),
never on the values read, so a lazy table's schema is known before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xr_getregion.cube import Cube
from xr_getregion.errors import ArgumentError
from xr_getregion.geometry import Features
from xr_getregion.plan import Plan
from xr_getregion.pyramid import out_dtype

__all__ = [
    "HEADER",
    "BandSpec",
    "TableSpec",
    "as_frame",
    "build_frame",
    "to_dataframe",
    "to_geodataframe",
    "to_list",
]

HEADER = ["id", "longitude", "latitude", "time"]


@dataclass(frozen=True)
class BandSpec:
    """A band's name, dtype (native byte order) and declared missing values (numbers of
    that dtype; empty if none)."""

    name: str
    dtype: np.dtype
    nodata: tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """Everything a table needs besides pixels and values: small and picklable, so each
    partition task of a lazy table can carry it."""

    ids: tuple[str, ...]
    times_ms: tuple[int | None, ...]
    bands: tuple[BandSpec, ...]

    @classmethod
    def of(cls, cube: Cube, plan: Plan | None = None) -> TableSpec:
        """The spec of ``cube``'s table, or of ``plan``'s: at a pyramid level, a MEAN
        band's values are float64 with NaN where masked (a mean may equal a declared
        missing value without being missing)."""
        bands = []
        for i, b in enumerate(cube.bands):
            if plan is not None and plan.level and plan.policies is not None:
                dtype = out_dtype(b.dtype, plan.policies[i])
                if dtype != b.dtype:
                    bands.append(BandSpec(b.name, dtype, ()))
                    continue
            bands.append(BandSpec(b.name, b.dtype, tuple(b.nodata)))
        return cls(cube.ids, cube.times_ms, tuple(bands))


def missing_mask(values: np.ndarray, band: BandSpec) -> np.ndarray:
    """True where ``values`` of ``band`` are masked: NaN, or equal to any declared missing
    value."""
    mask = np.isnan(values) if values.dtype.kind in "fc" else np.zeros(values.shape, bool)
    for value in band.nodata:
        mask |= values == value
    return mask


def to_list(plan: Plan, values: dict[str, np.ndarray]) -> list[list[Any]]:
    """EE's getRegion output: a header row, then one row per [pixel, image] pair."""
    spec = TableSpec.of(plan.cube, plan)
    n_img, n_pix = len(spec.ids), plan.n_pixels
    columns: list[list[Any]] = [
        [i for i in spec.ids for _ in range(n_pix)],
        np.tile(plan.lon, n_img).tolist(),
        np.tile(plan.lat, n_img).tolist(),
        [t for t in spec.times_ms for _ in range(n_pix)],
    ]
    for band in spec.bands:
        flat = values[band.name].reshape(-1)
        column = flat.tolist()  # Python int / float by the band's dtype
        for i in np.flatnonzero(missing_mask(flat, band)).tolist():
            column[i] = None
        columns.append(column)
    return [HEADER + [b.name for b in spec.bands], *(list(r) for r in zip(*columns, strict=True))]


def _band_column(flat: np.ndarray, band: BandSpec) -> Any:
    kind = flat.dtype.kind
    if kind in "fc" and not band.nodata:
        return flat  # NaN already marks what is masked
    mask = missing_mask(flat, band)
    if kind in "fc":
        return np.where(mask, np.nan, flat).astype(flat.dtype, copy=False)
    if band.nodata and kind in "iu":
        return pd.arrays.IntegerArray(flat.copy(), mask)
    if band.nodata and kind == "b":
        return pd.arrays.BooleanArray(flat.copy(), mask)
    return flat


def feature_columns(features: Features, positions: np.ndarray) -> pd.DataFrame:
    """The ``feature`` column and the chosen properties for pixels of features ``positions``."""
    frame = features.properties.take(positions).reset_index(drop=True)
    frame.insert(0, "feature", features.ids.take(positions))
    return frame


def pixel_columns(spec: TableSpec, lon: np.ndarray, lat: np.ndarray) -> dict[str, Any]:
    """``id``, ``longitude``, ``latitude`` and ``time`` of ``len(lon)`` pixels in every
    image, image-major: the columns that depend on the plan alone, not on values.

    ``id`` is categorical, its categories the ids in collection order: one small code per
    row instead of a string (a table of millions of rows holds a few distinct ids), and
    grouping by ``id`` keeps the collection's order.
    """
    n_img, n_pix = len(spec.ids), len(lon)
    null = np.iinfo(np.int64).min  # NaT
    times_ms = np.array([null if t is None else t for t in spec.times_ms], dtype=np.int64)
    times = pd.to_datetime(times_ms.view("datetime64[ms]"), utc=True).array
    # Two images may share an id: categories are the distinct ids, in order of appearance.
    id_codes, categories = pd.factorize(pd.Index(list(spec.ids)))
    # Codes built in the integer type pandas keeps them in, so they are not converted again.
    n = len(categories)
    small = np.int8 if n < 127 else np.int16 if n < 32767 else np.int32
    return {
        # pandas-stubs wants a Sequence of codes; pandas takes (and keeps) the array.
        "id": pd.Categorical.from_codes(
            np.repeat(id_codes.astype(small), n_pix),  # type: ignore[arg-type, unused-ignore]
            categories,
        ),
        "longitude": np.tile(np.asarray(lon, float), n_img),
        "latitude": np.tile(np.asarray(lat, float), n_img),
        "time": times.repeat(n_pix),
    }


def build_frame(
    spec: TableSpec,
    lon: np.ndarray,
    lat: np.ndarray,
    values: dict[str, np.ndarray],
    feature: pd.DataFrame | None = None,
    feature_pos: np.ndarray | None = None,
    pixels: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The rows of ``len(lon)`` pixels in every image, as a DataFrame.

    ``values[band]`` is ``(images, pixels)``. With ``feature`` (one row per pixel: ``feature``
    and property columns) and ``feature_pos`` (each pixel's feature position), rows are
    grouped by feature, then image, then pixel; otherwise image, then pixel. ``pixels`` is
    :func:`pixel_columns` of ``lon``/``lat`` if already built.
    """
    n_img, n_pix = len(spec.ids), len(lon)
    data: dict[str, Any] = {}
    if feature is not None:
        which = np.tile(np.arange(n_pix), n_img)
        for name in feature.columns:
            data[name] = feature[name].array.take(which)  # keeps each column's dtype
    data.update(pixel_columns(spec, lon, lat) if pixels is None else pixels)
    for band in spec.bands:
        data[band.name] = _band_column(values[band.name].reshape(-1), band)
    if feature_pos is not None and len(feature_pos) and feature_pos.min() != feature_pos.max():
        # Rows grouped by feature, then image, then pixel: each column reordered before the
        # frame is built (a frame's take copies its columns again and consolidates them).
        image = np.repeat(np.arange(n_img), n_pix)
        pixel = np.tile(np.arange(n_pix), n_img)
        order = np.lexsort((pixel, image, feature_pos[pixel]))
        data = {name: column.take(order) for name, column in data.items()}
    # Every column is a fresh array of ours: no copy, and no consolidation into 2-D blocks.
    return pd.DataFrame(data, copy=False)


def empty_values(spec: TableSpec) -> dict[str, np.ndarray]:
    """Zero-pixel values of each band's dtype: what a table's schema is built from."""
    return {b.name: np.empty((len(spec.ids), 0), b.dtype) for b in spec.bands}


def to_dataframe(
    plan: Plan,
    values: dict[str, np.ndarray],
    features: Features | None = None,
    pixels: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The same rows as :func:`to_list` as a DataFrame: ``id, longitude, latitude, time``
    (timezone-aware UTC) and one column per band, its dtype kept.

    For a many-feature plan, rows are grouped by feature (then image, then pixel) and start
    with a ``feature`` column and the chosen ``features.properties``. ``pixels`` is
    :func:`pixel_columns` of the plan if already built.
    """
    spec = TableSpec.of(plan.cube, plan)
    if features is None or plan.feature is None:
        return build_frame(spec, plan.lon, plan.lat, values, pixels=pixels)
    extra = feature_columns(features, plan.feature)
    return build_frame(spec, plan.lon, plan.lat, values, extra, plan.feature, pixels)


def as_frame(table: pd.DataFrame | list[list[Any]]) -> pd.DataFrame:
    """A ``get_region`` DataFrame as it is, or ``getRegion``'s list of lists as one.

    The list's ``time`` (milliseconds) becomes timezone-aware UTC and ``None`` values NaN,
    as in :func:`to_dataframe`. A lazy (dask) table must be computed first.
    """
    if isinstance(table, pd.DataFrame):
        return table
    if hasattr(table, "dask"):
        raise ArgumentError(
            "this is a lazy (dask) table; compute it first (table.compute()), or write it "
            "with xr_getregion.to_parquet and read it back."
        )
    if not isinstance(table, list) or not table or list(table[0][:4]) != HEADER:
        raise ArgumentError(
            "expected a get_region DataFrame or getRegion's list of lists (a header row "
            f"starting {HEADER}); got {type(table).__name__}."
        )
    frame = pd.DataFrame(table[1:], columns=table[0])
    frame["time"] = pd.to_datetime(frame["time"].astype("Int64"), unit="ms", utc=True)
    categories = pd.Index(list(frame["id"].unique()))
    frame["id"] = pd.Categorical(frame["id"], categories=categories)
    for i, name in enumerate(frame.columns[4:], start=4):
        present = [row[i] for row in table[1:] if row[i] is not None]
        if len(present) < len(table) - 1 and present and all(type(v) is int for v in present):
            frame[name] = pd.array([row[i] for row in table[1:]], dtype="Int64")  # pd.NA masked
        elif frame[name].dtype == object:  # floats with None
            frame[name] = pd.to_numeric(frame[name])
    return frame


def to_geodataframe(table: pd.DataFrame | list[list[Any]]) -> Any:
    """The table as a ``geopandas.GeoDataFrame`` of pixel-centre points in EPSG:4326.

    Every column is kept; ``.explore()`` on the result draws an interactive map of the
    pixels (it needs folium).

    >>> import xr_getregion
    >>> col = xr_getregion.sample_cube()
    >>> roi = xr_getregion.Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    >>> gdf = xr_getregion.to_geodataframe(col.ee.getRegion(roi, scale=30))
    >>> len(gdf), gdf.crs.to_epsg(), gdf.geometry.iloc[0].geom_type
    (10, 4326, 'Point')
    """
    import geopandas as gpd

    frame = as_frame(table)
    points = gpd.points_from_xy(frame["longitude"], frame["latitude"], crs="EPSG:4326")
    return gpd.GeoDataFrame(frame, geometry=points)
