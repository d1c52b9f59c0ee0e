"""The ``.ee`` accessor on DataArray and Dataset: a thin face over :mod:`xr_getregion.api`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pandas as pd
import xarray as xr

from xr_getregion import api, collection
from xr_getregion.extraction import MAX_VALUES, Plan

__all__ = ["EEAccessor"]


@xr.register_dataarray_accessor("ee")
@xr.register_dataset_accessor("ee")
class EEAccessor:
    """Earth Engine's ImageCollection methods on a time-stacked cube.

    Holds the object and nothing else; every method forwards to :mod:`xr_getregion.api`.
    """

    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    # --- collection methods: each returns an xarray object, so calls chain with ``.ee`` ---

    def filterDate(self, start: Any, end: Any = None) -> Any:
        """Images in ``[start, end)``; see :func:`xr_getregion.collection.filter_date`."""
        return collection.filter_date(self._obj, start, end)

    def filterBounds(self, geometry: Any, *, geometry_crs: Any = None) -> Any:
        """Images whose footprint meets ``geometry``; see
        :func:`xr_getregion.collection.filter_bounds`."""
        return collection.filter_bounds(self._obj, geometry, geometry_crs=geometry_crs)

    def select(self, *selectors: Any, names: Sequence[str] | None = None) -> Any:
        """Bands by whole-name regex or position, optionally renamed; see
        :func:`xr_getregion.collection.select`."""
        return collection.select(self._obj, *selectors, names=names)

    def sort(self, prop: str, ascending: bool = True) -> Any:
        """Images ordered by a property; see :func:`xr_getregion.collection.sort`."""
        return collection.sort(self._obj, prop, ascending)

    def first(self) -> Any:
        """The first image; see :func:`xr_getregion.collection.first`."""
        return collection.first(self._obj)

    def size(self) -> int:
        """The number of images."""
        return collection.size(self._obj)

    def bandNames(self) -> list[str]:
        """The band names."""
        return collection.band_names(self._obj)

    # --- getRegion and friends ---

    def getRegion(
        self,
        geometry: Any,
        scale: float | None = None,
        crs: Any = None,
        crsTransform: Any = None,
        *,
        max_values: int | None = MAX_VALUES,
        geometry_crs: Any = None,
        pyramiding: Any = "mean",
    ) -> list[list[Any]]:
        """EE's ``getRegion`` on this cube; see :func:`xr_getregion.getRegion`."""
        return api.getRegion(
            self._obj,
            geometry,
            scale,
            crs,
            crsTransform,
            max_values=max_values,
            geometry_crs=geometry_crs,
            pyramiding=pyramiding,
        )

    def get_region(
        self,
        geometry: Any,
        scale: float | None = None,
        crs: Any = "native",
        crs_transform: Any = None,
        *,
        max_values: int | None = MAX_VALUES,
        geometry_crs: Any = None,
        id_column: str | None = None,
        properties: Sequence[str] | None = None,
        lazy: bool = False,
        pyramiding: Any = "mean",
    ) -> pd.DataFrame | dd.DataFrame:
        """The getRegion rows as a DataFrame, for one region or many features; see
        :func:`xr_getregion.get_region`."""
        return api.get_region(
            self._obj,
            geometry,
            scale,
            crs,
            crs_transform,
            max_values=max_values,
            geometry_crs=geometry_crs,
            id_column=id_column,
            properties=properties,
            lazy=lazy,
            pyramiding=pyramiding,
        )

    def plan(
        self,
        geometry: Any,
        scale: float | None = None,
        crs: Any = None,
        crs_transform: Any = None,
        *,
        geometry_crs: Any = None,
        max_values: int | None = None,
        pyramiding: Any = "mean",
    ) -> Plan:
        """What an extraction would read, without reading it; see :func:`xr_getregion.plan`."""
        return api.plan(
            self._obj, geometry, scale, crs, crs_transform,
            geometry_crs=geometry_crs, max_values=max_values, pyramiding=pyramiding,
        )  # fmt: skip

    def to_parquet(
        self,
        geometry: Any,
        path: str | os.PathLike[str],
        scale: float | None = None,
        crs: Any = "native",
        crs_transform: Any = None,
        **kwargs: Any,
    ) -> Path:
        """Extract and stream the rows to Parquet (or CSV); see :func:`xr_getregion.to_parquet`."""
        from xr_getregion.output import to_parquet

        return to_parquet(self._obj, geometry, path, scale, crs, crs_transform, **kwargs)
