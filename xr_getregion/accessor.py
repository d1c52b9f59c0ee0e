"""The ``.ee`` accessor on DataArray and Dataset: a thin face over :mod:`xr_getregion.api`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pandas as pd
import xarray as xr

from xr_getregion import api
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

    def getRegion(
        self,
        geometry: Any,
        scale: float | None = None,
        crs: Any = None,
        crsTransform: Any = None,
        *,
        max_values: int | None = MAX_VALUES,
        geometry_crs: Any = None,
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
    ) -> Plan:
        """What an extraction would read, without reading it; see :func:`xr_getregion.plan`."""
        return api.plan(
            self._obj, geometry, scale, crs, crs_transform,
            geometry_crs=geometry_crs, max_values=max_values,
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
