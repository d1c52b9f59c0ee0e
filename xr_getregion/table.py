"""Turning gathered values into EE's list of lists or a tidy DataFrame.

Rows are image-major (the collection's order), then the plan's pixels in raster order of the
working grid. Masked values (NaN, the band's ``_FillValue``/``nodata``) become ``None`` in
EE's table and NaN / ``pd.NA`` in the DataFrame. Column dtypes depend on the bands' metadata
only (dtype, whether a nodata value is declared), never on the values read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xr_getregion.cube import Band
from xr_getregion.extraction import Plan
from xr_getregion.geometry import Features

__all__ = ["HEADER", "to_dataframe", "to_list"]

HEADER = ["id", "longitude", "latitude", "time"]


def _declared_nodata(band: Band) -> Any:
    nodata = band.nodata
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)):
        return None
    return nodata


def missing_mask(values: np.ndarray, band: Band) -> np.ndarray:
    """True where ``values`` of ``band`` are masked: NaN, or equal to its nodata value."""
    mask = np.isnan(values) if values.dtype.kind in "fc" else np.zeros(values.shape, bool)
    nodata = _declared_nodata(band)
    if nodata is not None:
        mask |= values == nodata
    return mask


def _id_column(plan: Plan) -> np.ndarray:
    return np.repeat(np.asarray(plan.cube.ids, dtype=object), plan.n_pixels)


def to_list(plan: Plan, values: dict[str, np.ndarray]) -> list[list[Any]]:
    """EE's getRegion output: a header row, then one row per [pixel, image] pair."""
    cube = plan.cube
    n_img = cube.n_images
    columns: list[list[Any]] = [
        _id_column(plan).tolist(),
        np.tile(plan.lon, n_img).tolist(),
        np.tile(plan.lat, n_img).tolist(),
        [t for t in cube.times_ms for _ in range(plan.n_pixels)],
    ]
    for band in cube.bands:
        flat = values[band.name].reshape(-1)
        column = flat.tolist()  # Python int / float by the band's dtype
        for i in np.flatnonzero(missing_mask(flat, band)).tolist():
            column[i] = None
        columns.append(column)
    return [HEADER + cube.band_names, *(list(row) for row in zip(*columns, strict=True))]


def _band_column(flat: np.ndarray, band: Band) -> Any:
    mask = missing_mask(flat, band)
    kind = flat.dtype.kind
    if kind in "fc":
        return np.where(mask, np.nan, flat).astype(flat.dtype, copy=False)
    if _declared_nodata(band) is not None and kind in "iu":
        return pd.arrays.IntegerArray(flat.copy(), mask)
    if _declared_nodata(band) is not None and kind == "b":
        return pd.arrays.BooleanArray(flat.copy(), mask)
    return flat


def _feature_order(plan: Plan) -> np.ndarray | None:
    """Row permutation from (image, pixel) order to (feature, image, pixel) order."""
    if plan.feature is None:
        return None
    n_img, n_pix = plan.cube.n_images, plan.n_pixels
    image = np.repeat(np.arange(n_img), n_pix)
    pixel = np.tile(np.arange(n_pix), n_img)
    return np.lexsort((pixel, image, plan.feature[pixel]))


def to_dataframe(
    plan: Plan, values: dict[str, np.ndarray], features: Features | None = None
) -> pd.DataFrame:
    """The same rows as :func:`to_list` as a DataFrame: ``id, longitude, latitude, time``
    (timezone-aware UTC) and one column per band, its dtype kept.

    For a many-feature plan, rows are grouped by feature (then image, then pixel) and start
    with a ``feature`` column and the chosen ``features.properties``.
    """
    cube = plan.cube
    n_img = cube.n_images
    times = np.array(
        [np.iinfo(np.int64).min if t is None else t for t in cube.times_ms], dtype=np.int64
    )
    time = pd.to_datetime(np.repeat(times, plan.n_pixels).view("datetime64[ms]"), utc=True)
    data: dict[str, Any] = {}
    if features is not None and plan.feature is not None:
        which = np.tile(plan.feature, n_img)
        data["feature"] = features.ids.take(which)
        for name in features.properties.columns:
            data[name] = features.properties[name].take(which).to_numpy()
    data.update(
        {
            "id": pd.array(_id_column(plan), dtype="string"),
            "longitude": np.tile(plan.lon, n_img),
            "latitude": np.tile(plan.lat, n_img),
            "time": time,
        }
    )
    for band in cube.bands:
        data[band.name] = _band_column(values[band.name].reshape(-1), band)
    frame = pd.DataFrame(data)
    order = _feature_order(plan)
    if order is not None:
        frame = frame.take(order).reset_index(drop=True)
    return frame
