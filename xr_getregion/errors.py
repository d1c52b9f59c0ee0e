"""The exceptions and warnings of xr_getregion, in one hierarchy.

Catch :class:`GetRegionError` for anything this package refuses; catch a subclass for one
precise cause. Errors about values are also :class:`ValueError` so code written for plain
Python keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "CRSError",
    "CubeError",
    "EmptyCollectionError",
    "GeometryError",
    "GetRegionError",
    "GetRegionWarning",
    "GridError",
    "MissingCRSError",
    "OutputExistsError",
    "TooManyValuesError",
]


class GetRegionError(Exception):
    """Base class of every error raised by xr_getregion."""


class ArgumentError(GetRegionError, ValueError):
    """An argument has a value outside what it accepts (``max_values=0``, for example)."""


class TooManyValuesError(GetRegionError, ValueError):
    """The extraction would return more values than ``max_values`` allows."""


class EmptyCollectionError(GetRegionError, ValueError):
    """The cube has no images or no bands."""


class CubeError(GetRegionError, ValueError):
    """The cube's dimensions or coordinates cannot be read as a time-stacked raster."""


class MissingCRSError(CubeError):
    """The cube carries no coordinate reference system."""


class CRSError(GetRegionError, ValueError):
    """A CRS argument could not be understood by pyproj."""


class GridError(GetRegionError, ValueError):
    """The working grid arguments (scale, crs, crsTransform) are invalid or conflict."""


class GeometryError(GetRegionError, ValueError):
    """The geometry is empty, invalid, non-finite or of a type that cannot be read."""


class OutputExistsError(ArgumentError, FileExistsError):
    """The output path exists and may not be replaced (no ``overwrite``, or not our table)."""


class GetRegionWarning(UserWarning):
    """A call that works but probably does not do what the caller meant."""
