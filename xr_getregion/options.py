"""The keywords that plan, extract, write and draw a region share, each written once.

:class:`Options` holds every keyword's name, type and default; the functions take the
working grid (``scale, crs, crs_transform``, positional as in EE's ``getRegion``) by name and
the rest as ``**options``, typed for their callers' type checkers by the ``TypedDict`` of
the keywords they accept (:class:`RegionOptions` and its extensions), so ``mypy`` checks a
call such as ``get_region(cube, roi, max_values="1e6")`` and no signature restates another.
:func:`xr_getregion.getRegion` and :func:`xr_getregion.get_region` document each keyword.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, TypedDict

from xr_getregion.grid import NATIVE
from xr_getregion.plan import MAX_VALUES
from xr_getregion.types import CRSLike, PyramidingLike, TransformLike

__all__ = ["FeatureOptions", "Options", "PlanOptions", "RegionOptions", "check_keywords"]


class RegionOptions(TypedDict, total=False):
    """How the region is read: the keywords of :func:`xr_getregion.plot.region_map`."""

    geometry_crs: CRSLike | None
    pyramiding: PyramidingLike


class PlanOptions(RegionOptions, total=False):
    """:class:`RegionOptions` and the value limit: the keywords of :func:`~xr_getregion.plan`
    and :func:`~xr_getregion.getRegion`."""

    max_values: int | None


class FeatureOptions(PlanOptions, total=False):
    """:class:`PlanOptions` and the features' columns: the keywords of
    :func:`~xr_getregion.get_region` and :func:`~xr_getregion.to_parquet`."""

    id_column: str | None
    properties: Sequence[str] | None


@dataclass(frozen=True, eq=False)
class Options:
    """One extraction's options with their defaults, as the package passes them on.

    Parameters
    ----------
    scale, crs, crs_transform, geometry_crs, pyramiding, max_values, id_column, properties
        As for :func:`~xr_getregion.get_region` (``crs="native"``: the cube's own grid
        unless ``scale`` or ``crs_transform`` is given).
    """

    scale: float | None = None
    crs: CRSLike | None = NATIVE
    crs_transform: TransformLike | None = None
    _: KW_ONLY
    geometry_crs: CRSLike | None = None
    pyramiding: PyramidingLike = "mean"
    max_values: int | None = MAX_VALUES
    id_column: str | None = None
    properties: Sequence[str] | None = None

    @classmethod
    def of(
        cls,
        func: str,
        accepted: type[Mapping[str, Any]],
        scale: float | None,
        crs: CRSLike | None,
        crs_transform: TransformLike | None,
        given: Mapping[str, Any],
    ) -> Options:
        """The options of a call to ``func``, whose ``**options`` are ``accepted``."""
        check_keywords(func, accepted, given)
        return cls(scale, crs, crs_transform, **given)


def check_keywords(func: str, accepted: type[Mapping[str, Any]], given: Mapping[str, Any]) -> None:
    """Refuse a keyword of ``given`` that ``accepted`` (a ``TypedDict``) does not list, with the
    ``TypeError`` Python raises for a signature that lists its keywords (a type checker reports
    it before the call runs)."""
    allowed: frozenset[str] = getattr(accepted, "__optional_keys__", frozenset())
    unknown = [name for name in given if name not in allowed]
    if unknown:
        raise TypeError(f"{func}() got an unexpected keyword argument {unknown[0]!r}")
