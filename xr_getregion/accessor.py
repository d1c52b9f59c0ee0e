"""The ``.ee`` accessor on DataArray and Dataset: a thin face over :mod:`xr_getregion.api`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, Literal, Unpack, overload

import dask.dataframe as dd
import pandas as pd
import xarray as xr

from xr_getregion import api, collection
from xr_getregion.collection import Obj
from xr_getregion.grid import NATIVE
from xr_getregion.options import FeatureOptions, PlanOptions
from xr_getregion.plan import Plan
from xr_getregion.types import CRSLike, GeometryLike, TimeLike, TransformLike

__all__ = ["EEAccessor"]


@xr.register_dataarray_accessor("ee")
@xr.register_dataset_accessor("ee")
class EEAccessor(Generic[Obj]):
    """Earth Engine's ImageCollection methods on a time-stacked cube.

    Holds the object and nothing else; every method forwards to :mod:`xr_getregion.api`.
    """

    def __init__(self, obj: Obj) -> None:
        self._obj: Obj = obj

    # --- collection methods: each returns an xarray object, so calls chain with ``.ee`` ---

    def filterDate(self, start: TimeLike, end: TimeLike | None = None) -> Obj:
        """Images in ``[start, end)``; see :func:`xr_getregion.collection.filter_date`."""
        return collection.filter_date(self._obj, start, end)

    def filterBounds(self, geometry: GeometryLike, *, geometry_crs: CRSLike | None = None) -> Obj:
        """Images whose footprint meets ``geometry``; see
        :func:`xr_getregion.collection.filter_bounds`."""
        return collection.filter_bounds(self._obj, geometry, geometry_crs=geometry_crs)

    def select(
        self, *selectors: str | int | Sequence[str | int], names: Sequence[str] | None = None
    ) -> Obj:
        """Bands by whole-name regex or position, optionally renamed; see
        :func:`xr_getregion.collection.select`."""
        return collection.select(self._obj, *selectors, names=names)

    def sort(self, prop: str, ascending: bool = True) -> Obj:
        """Images ordered by a property; see :func:`xr_getregion.collection.sort`."""
        return collection.sort(self._obj, prop, ascending)

    def first(self) -> Obj:
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
        geometry: GeometryLike,
        scale: float | None = None,
        crs: CRSLike | None = None,
        crsTransform: TransformLike | None = None,
        **options: Unpack[PlanOptions],
    ) -> list[list[Any]]:
        """EE's ``getRegion`` on this cube; see :func:`xr_getregion.getRegion`."""
        return api.getRegion(self._obj, geometry, scale, crs, crsTransform, **options)

    @overload
    def get_region(
        self,
        geometry: GeometryLike,
        scale: float | None = ...,
        crs: CRSLike | None = ...,
        crs_transform: TransformLike | None = ...,
        *,
        lazy: Literal[False] = ...,
        **options: Unpack[FeatureOptions],
    ) -> pd.DataFrame: ...

    @overload
    def get_region(
        self,
        geometry: GeometryLike,
        scale: float | None = ...,
        crs: CRSLike | None = ...,
        crs_transform: TransformLike | None = ...,
        *,
        lazy: Literal[True],
        **options: Unpack[FeatureOptions],
    ) -> dd.DataFrame: ...

    @overload
    def get_region(
        self,
        geometry: GeometryLike,
        scale: float | None = ...,
        crs: CRSLike | None = ...,
        crs_transform: TransformLike | None = ...,
        *,
        lazy: bool,
        **options: Unpack[FeatureOptions],
    ) -> pd.DataFrame | dd.DataFrame: ...

    def get_region(
        self,
        geometry: GeometryLike,
        scale: float | None = None,
        crs: CRSLike | None = NATIVE,
        crs_transform: TransformLike | None = None,
        *,
        lazy: bool = False,
        **options: Unpack[FeatureOptions],
    ) -> pd.DataFrame | dd.DataFrame:
        """The getRegion rows as a DataFrame, for one region or many features; see
        :func:`xr_getregion.get_region`."""
        return api.get_region(self._obj, geometry, scale, crs, crs_transform, lazy=lazy, **options)

    def plan(
        self,
        geometry: GeometryLike,
        scale: float | None = None,
        crs: CRSLike | None = NATIVE,
        crs_transform: TransformLike | None = None,
        **options: Unpack[PlanOptions],
    ) -> Plan:
        """What an extraction would read, without reading it; see :func:`xr_getregion.plan`."""
        return api.plan(self._obj, geometry, scale, crs, crs_transform, **options)

    def to_parquet(
        self,
        geometry: GeometryLike,
        path: str | os.PathLike[str],
        scale: float | None = None,
        crs: CRSLike | None = NATIVE,
        crs_transform: TransformLike | None = None,
        *,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
        **options: Unpack[FeatureOptions],
    ) -> Path | str:
        """Extract and stream the rows to Parquet (or CSV); see :func:`xr_getregion.to_parquet`."""
        from xr_getregion.output import to_parquet

        return to_parquet(
            self._obj,
            geometry,
            path,
            scale,
            crs,
            crs_transform,
            overwrite=overwrite,
            storage_options=storage_options,
            **options,
        )
