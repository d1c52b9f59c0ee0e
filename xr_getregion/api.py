"""The public extraction functions: ``getRegion`` (EE's list of lists) and ``get_region``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Unpack, overload

import dask.dataframe as dd
import pandas as pd
import xarray as xr

from xr_getregion.cube import read_cube
from xr_getregion.errors import ArgumentError
from xr_getregion.geometry import Features, is_feature_collection, read_features, read_geometry
from xr_getregion.grid import NATIVE, working_grid
from xr_getregion.lazy import lazy_frame
from xr_getregion.options import FeatureOptions, Options, PlanOptions
from xr_getregion.plan import Plan, check_limit, plan_features, plan_region
from xr_getregion.reads import gather
from xr_getregion.table import HEADER, TableSpec, pixel_columns, to_dataframe, to_list
from xr_getregion.types import CRSLike, GeometryLike, TransformLike

__all__ = ["getRegion", "get_region", "plan"]


def plan(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    scale: float | None = None,
    crs: CRSLike | None = NATIVE,
    crs_transform: TransformLike | None = None,
    **options: Unpack[PlanOptions],
) -> Plan:
    """Decide which pixels and values an extraction returns, without reading any value.

    Takes the arguments of :func:`get_region`, with its defaults (``crs="native"``: the
    cube's own grid unless ``scale`` or ``crs_transform`` is given; ``crs=None`` is EE's
    1-degree default grid, as for :func:`getRegion`) but ``max_values=None``, and returns
    the :class:`~xr_getregion.plan.Plan`; ``plan(...).n_values`` is the number
    the ``max_values`` limit is checked against. Several features (a ``GeoDataFrame``, ...)
    are planned each on its own, as :func:`get_region` extracts them, so ``n_pixels`` counts
    a pixel once per feature covering it. With ``max_values``, a plan over it is only
    counted: it holds ``n_pixels`` but no pixel arrays. On a resampled grid counting stops
    past the limit, so there ``n_pixels`` is a lower bound (``Plan.at_least``).
    ``Plan.level`` is the pyramid level the values come from (0: native pixels).
    """
    # A plan counts every value unless asked to stop: it is how a caller sizes the limit.
    given = {"max_values": None, **options}
    o = Options.of("plan", PlanOptions, scale, crs, crs_transform, given)
    return _plan(cube, geometry, o)[0]


def _plan(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    options: Options,
    apart: bool = True,
) -> tuple[Plan, Features | None]:
    """The plan, and the features it was made of (``None`` for one region). With ``apart``
    false, several features are one region, their union."""
    o = options
    collection = read_cube(cube)
    properties = o.properties
    if not (apart and is_feature_collection(geometry)):
        if o.id_column is not None or properties:
            raise ArgumentError(
                "id_column= and properties= apply to several features (a GeoDataFrame, "
                "GeoSeries, FeatureCollection or list); the geometry given is one region."
            )
        shape, shape_crs = read_geometry(geometry, o.geometry_crs)
        grid = working_grid(collection.grid, o.scale, o.crs, o.crs_transform)
        p = plan_region(
            collection, shape, shape_crs, grid, max_values=o.max_values, pyramiding=o.pyramiding
        )
        return p, None
    features = read_features(geometry, o.geometry_crs, o.id_column, properties)
    reserved = {"feature", *HEADER, *collection.band_names}
    clash = [p for p in properties or [] if p in reserved]
    if clash:
        raise ArgumentError(
            f"properties {clash} clash with the table's own columns (feature, id, longitude, "
            "latitude, time and the bands); rename them first, e.g. "
            f"features.rename(columns={{{clash[0]!r}: {clash[0] + '_feature'!r}}})."
        )
    grid = working_grid(collection.grid, o.scale, o.crs, o.crs_transform)
    shapes, shapes_crs = features.shapes, features.crs
    p = plan_features(
        collection, shapes, shapes_crs, grid, max_values=o.max_values, pyramiding=o.pyramiding
    )
    return p, features


def getRegion(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    scale: float | None = None,
    crs: CRSLike | None = None,
    crsTransform: TransformLike | None = None,
    **options: Unpack[PlanOptions],
) -> list[list[Any]]:
    """Earth Engine's ``ImageCollection.getRegion``: a row per [pixel, image] pair covered.

    Parameters
    ----------
    cube
        A time-stacked ``DataArray`` (dims ``time``, ``band``, ``y``, ``x`` in any order,
        ``time`` and ``band`` optional) or a ``Dataset`` whose variables are the bands.
    geometry
        The region: an :class:`~xr_getregion.Geometry`, a shapely geometry, GeoJSON, WKT, a
        ``GeoSeries``/``GeoDataFrame``, or a list of them (their union).
    scale
        A nominal scale in metres of the projection to work in.
    crs
        The projection to work in; EPSG:4326 when unspecified. With ``scale`` it is rescaled
        to that scale. ``"native"`` alone means the cube's own grid.
    crsTransform
        A row-major 3x2 affine ``[a, b, c, d, e, f]``; exclusive with ``scale``.
    max_values
        Refuse more than this many ``pixels x bands x images`` (EE's 1,048,576);
        ``None`` lifts the limit. Checked before any value is read.
    geometry_crs
        The CRS of the geometry's coordinates; default its own, else EPSG:4326.
    pyramiding
        How a working grid coarser than the cube's reads it, as EE's pyramids: level ``k``,
        the largest with ``native scale * 2**k <= working scale`` (metres), aggregates
        ``2**k x 2**k`` blocks of native pixels aligned to the cube's origin by ``"mean"``
        (EE's default: the mean of the valid pixels, a float), ``"sample"`` (the block's
        top-left pixel), ``"min"``, ``"max"`` or ``"mode"`` (the most frequent valid value,
        ties to the smallest); a dict gives one per band (``{"QA_PIXEL": "sample",
        ".default": "mean"}``). ``None``: the nearest native pixel at every scale.

    Returns
    -------
    list of list
        ``[['id', 'longitude', 'latitude', 'time', *bands], [...], ...]``: ``time`` in integer
        milliseconds since the Unix epoch (UTC), masked values ``None``, ``longitude`` and
        ``latitude`` the working pixel's centre.

        ``time`` is the ``system:time_start`` coordinate (whole milliseconds or datetimes),
        else the time coordinate: naive times are UTC, timezone-aware ones their UTC instant,
        a ``Period`` its start, a cftime date (``noleap``, ``360_day``, ``julian``...) the same
        year-month-day hour:minute:second read as a proleptic Gregorian UTC time (a date
        with no such day, ``360_day`` 30 February, is a ``CubeError`` naming
        ``cube.convert_calendar("standard", align_on="date")``). Sub-millisecond parts are
        floored.

    Raises
    ------
    TooManyValuesError
        More than ``max_values`` values; or, whatever ``max_values``, a region spanning more
        working-grid pixels than a plan can hold (a ``scale`` in degrees, most often).
    GeometryError
        Among others: coordinates that cannot be longitude/latitude (a latitude past 90
        degrees, metres) in a geographic CRS; pass ``geometry_crs=``.
    GetRegionError
        Any other refusal; see :mod:`xr_getregion.errors`.

    Warns
    -----
    GetRegionWarning
        The geometry misses the cube (the table is the header alone), naming both extents in
        lon/lat; or no ``scale`` nor ``crsTransform`` was given.

    Examples
    --------
    >>> import xr_getregion
    >>> from xr_getregion import Geometry
    >>> col = xr_getregion.sample_cube().sel(band=["B2", "B3", "B4"])
    >>> roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    >>> table = col.ee.getRegion(roi, scale=30)
    >>> table[0]
    ['id', 'longitude', 'latitude', 'time', 'B2', 'B3', 'B4']
    >>> len(table)
    11
    >>> table[1][:4]
    ['LC08_023036_20200709', -90.49614697490799, 34.85198299374928, 1594303347000]
    """
    o = Options.of("getRegion", PlanOptions, scale, crs, crsTransform, options)
    # EE's getRegion takes a FeatureCollection as one region (the union of its features).
    p = _plan(cube, geometry, o, apart=False)[0]
    check_limit(p, o.max_values)
    return to_list(p, gather(p))


@overload
def get_region(
    cube: xr.DataArray | xr.Dataset,
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
    cube: xr.DataArray | xr.Dataset,
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
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    scale: float | None = ...,
    crs: CRSLike | None = ...,
    crs_transform: TransformLike | None = ...,
    *,
    lazy: bool,
    **options: Unpack[FeatureOptions],
) -> pd.DataFrame | dd.DataFrame: ...


def get_region(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    scale: float | None = None,
    crs: CRSLike | None = NATIVE,
    crs_transform: TransformLike | None = None,
    *,
    lazy: bool = False,
    **options: Unpack[FeatureOptions],
) -> pd.DataFrame | dd.DataFrame:
    """The rows of :func:`getRegion` as a tidy ``pandas.DataFrame``, for one region or many.

    Columns ``id`` (categorical: the image ids as categories, in collection order, one small
    code per row), ``longitude``, ``latitude`` (float64), ``time`` (UTC datetime),
    then one column per band with the band's dtype: float bands hold NaN where masked,
    integer bands with a declared nodata value become pandas nullable integers.

    Given several features (a ``GeoDataFrame``, ``GeoSeries``, GeoJSON ``FeatureCollection``
    or a list of geometries), each is extracted on its own, like EE's ``sampleRegions``: a
    pixel two features cover appears once for each. Rows are grouped by feature, and start
    with a ``feature`` column and the chosen ``properties``.

    Parameters
    ----------
    cube, geometry, scale, max_values, geometry_crs, pyramiding
        As for :func:`getRegion`; ``max_values`` counts every feature's values.
    crs
        ``"native"`` (default): with no ``scale`` and no ``crs_transform``, the cube's own grid,
        with no resampling. Given ``scale`` or ``crs_transform``, EE's rules apply with no
        ``crs`` (EPSG:4326), so ``get_region(g, scale=30)`` returns the rows of
        ``getRegion(g, scale=30)``. Any other value is a CRS, as for :func:`getRegion`.
    crs_transform
        As ``crsTransform`` for :func:`getRegion`.
    id_column
        For several features: the column whose values fill ``feature``; default the index
        (a GeoDataFrame's), the GeoJSON feature ``id``, or the position in a list.
    properties
        For several features: columns (GeoJSON properties) copied onto each feature's rows.
    lazy
        Return a ``dask.dataframe.DataFrame`` instead, with one partition per covered chunk
        and its schema known up front; the limit is still checked before anything runs.
        Rows within a partition are ordered as in the eager table; partitions follow chunks.

    Examples
    --------
    >>> import xr_getregion
    >>> from xr_getregion import Geometry
    >>> col = xr_getregion.sample_cube()
    >>> roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    >>> df = col.ee.get_region(roi, scale=30)
    >>> df.shape
    (10, 11)
    >>> list(df.columns[:4])
    ['id', 'longitude', 'latitude', 'time']
    >>> fields = [roi, Geometry.Point(-90.49, 34.85)]
    >>> col.ee.get_region(fields, scale=30).groupby("feature").size().tolist()
    [10, 5]
    """
    o = Options.of("get_region", FeatureOptions, scale, crs, crs_transform, options)
    p, features = _plan(cube, geometry, o)
    check_limit(p, o.max_values)
    if lazy:
        return lazy_frame(p, features)
    # The pixel columns depend on the plan alone: build them while the values are read.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pixels = pool.submit(pixel_columns, TableSpec.of(p.cube), p.lon, p.lat)
        values = gather(p)
    return to_dataframe(p, values, features, pixels.result())
