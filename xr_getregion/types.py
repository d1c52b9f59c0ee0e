"""Type aliases for the inputs the public functions accept.

Only annotations use them; at run time the aliases that name package classes are strings,
so importing this module imports nothing of the package (no cycles).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
from pyproj import CRS

if TYPE_CHECKING:
    import pandas as pd
    import shapely

    from xr_getregion.geometry import Geometry

__all__ = [
    "CRSLike",
    "GeometryLike",
    "PyramidingLike",
    "SupportsGeoInterface",
    "TimeLike",
    "TransformLike",
]


class SupportsGeoInterface(Protocol):
    """Anything with ``__geo_interface__``: a ``GeoSeries``, ``GeoDataFrame``, a GeoJSON-like
    object of another library."""

    @property
    def __geo_interface__(self) -> Mapping[str, Any]: ...


#: What :meth:`pyproj.CRS.from_user_input` reads: a ``CRS``, ``"EPSG:32615"`` or WKT text,
#: an EPSG code, an ``("EPSG", 32615)`` pair, a PROJ JSON dict.
CRSLike: TypeAlias = CRS | str | int | tuple[str, int | str] | Mapping[str, Any]

#: A geometry input: an :class:`~xr_getregion.Geometry`, a shapely geometry, a GeoJSON dict
#: (Geometry, Feature, FeatureCollection) or GeoJSON/WKT text, anything with
#: ``__geo_interface__`` (a ``GeoSeries``/``GeoDataFrame``), or a list of these.
GeometryLike: TypeAlias = (
    "Geometry | shapely.Geometry | SupportsGeoInterface | Mapping[str, Any] | str "
    "| Sequence[GeometryLike]"
)

#: A row-major 3x2 affine ``[a, b, c, d, e, f]``.
TransformLike: TypeAlias = Sequence[float] | npt.NDArray[np.floating[Any]]

#: A time: a ``datetime``/``date``/``numpy.datetime64``/``pandas.Timestamp``, ISO text, or
#: whole milliseconds since the Unix epoch.
TimeLike: TypeAlias = "str | int | float | datetime.date | np.datetime64 | pd.Timestamp"


#: EE's pyramiding policy: one of ``"mean"``, ``"sample"``, ``"min"``, ``"max"``, ``"mode"``
#: (any case), a mapping of band names (and ``".default"``) to those, or ``None`` for none.
PyramidingLike: TypeAlias = str | Mapping[str, str | None] | None
