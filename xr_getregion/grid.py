"""Grids: an affine transform in a CRS, and EE's rules for the grid to work on.

A grid maps pixel space (``col``, ``row``; pixel ``(i, j)`` spans ``[i, i+1) x [j, j+1)`` and its
centre is ``(i + 0.5, j + 0.5)``) to CRS coordinates with a row-major 3x2 affine transform
``[a, b, c, d, e, f]``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyproj
from pyproj import CRS

from xr_getregion.errors import GetRegionWarning, GridError
from xr_getregion.geometry import EPSG4326, read_crs

__all__ = ["METRES_PER_DEGREE", "NATIVE", "Grid", "Transform", "Window", "working_grid"]

#: ``crs=NATIVE`` alone means the cube's own grid, with no resampling: the default of
#: ``get_region``, ``plan``, ``to_parquet`` and ``region_map`` (``getRegion`` keeps EE's).
NATIVE = "native"

#: Earth Engine's metres per degree, to the last bit: ``30 / METRES_PER_DEGREE`` is the
#: 30 m step of EE's printed outputs. (``6378137 * pi / 180`` in Python is one ulp off.)
METRES_PER_DEGREE = 111319.49079327357

#: The samples per side of a grid window's outline (:meth:`Grid.outline`): its edges are
#: curves in another CRS, and 64 chords follow them to well within a pixel's margin.
OUTLINE_SAMPLES = 64


class Transform(NamedTuple):
    """A row-major 3x2 affine: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float


class Window(NamedTuple):
    """A half-open window of grid pixels: columns ``[col0, col1)``, rows ``[row0, row1)``."""

    col0: int
    row0: int
    col1: int
    row1: int

    def grown(self, n: int) -> Window:
        """The window with ``n`` more pixels on every side."""
        return Window(self.col0 - n, self.row0 - n, self.col1 + n, self.row1 + n)

    @property
    def slices(self) -> tuple[slice, slice]:
        """The window as an index of the last two (``y``, ``x``) axes of an array."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)


@dataclass(frozen=True)
class Grid:
    """A pixel grid: a row-major affine ``transform`` in ``crs``, bounded when ``shape`` is set.

    Parameters
    ----------
    transform
        ``(a, b, c, d, e, f)`` with ``x = a*col + b*row + c``, ``y = d*col + e*row + f``.
    crs
        The grid's CRS.
    shape
        ``(rows, cols)`` for a finite grid (a cube's own), ``None`` for EE's unbounded grids.
    """

    transform: Transform
    crs: CRS
    shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        a, b, _, d, e, _ = self.transform
        if not all(math.isfinite(v) for v in self.transform) or a * e - b * d == 0:
            raise GridError(
                f"the grid transform {list(self.transform)} is not an invertible affine map: "
                "it needs 6 finite numbers with a*e - b*d != 0."
            )
        # A plain 6-tuple is accepted and kept as the named one (equal to it, as tuples).
        object.__setattr__(self, "transform", Transform(*self.transform))

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("xr_getregion.Grid", self.transform, self.crs.to_wkt(), self.shape)

    @property
    def axis_aligned(self) -> bool:
        """True when the grid has no rotation or shear (``b == d == 0``)."""
        return self.transform[1] == 0 and self.transform[3] == 0

    @property
    def mirrored(self) -> bool:
        """True when pixel space is a mirror image of the CRS (``a*e - b*d < 0``): rows run
        south as columns run east, as on every north-up grid."""
        a, b, _, d, e, _ = self.transform
        return a * e - b * d < 0

    def to_pixel(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates to fractional pixel coordinates ``(col, row)``.

        For axis-aligned grids this is ``(x - c) / a`` exactly, as EE computes it, so a point
        on a grid line lands in the pixel it starts rather than one ulp before it.
        """
        a, b, c, d, e, f = self.transform
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if self.axis_aligned:
            return (x - c) / a, (y - f) / e
        det = a * e - b * d
        dx, dy = x - c, y - f
        return (e * dx - b * dy) / det, (a * dy - d * dx) / det

    def wrap_longitude(self, x: np.ndarray) -> np.ndarray:
        """``x`` moved by whole turns of 360 degrees into the turn starting at this grid's west
        edge, for a bounded, axis-aligned geographic grid (``x`` unchanged otherwise).

        A cube labelled 0..360 or 179..181 holds longitude -90 or -179.5 under another label;
        this finds it there. Points are moved one by one, so only use it on points.
        """
        x = np.asarray(x, dtype=float)
        if self.shape is None or not self.crs.is_geographic or not self.axis_aligned:
            return x
        a, _, c, _, _, _ = self.transform
        west = min(c, c + a * self.shape[1])
        with np.errstate(invalid="ignore"):
            # Longitudes already in that turn keep their exact value (no rounding at edges).
            outside = (x < west) | (x >= west + 360.0)
            return np.where(outside, west + np.mod(x - west, 360.0), x)

    def to_crs(self, cols: npt.ArrayLike, rows: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(col, row)``, fractional, to CRS coordinates: the forward
        affine. On axis-aligned grids ``x`` depends on ``col`` alone (``a*col + c``)."""
        a, b, c, d, e, f = self.transform
        u = np.asarray(cols, dtype=float)
        v = np.asarray(rows, dtype=float)
        if self.axis_aligned:
            return a * u + c, e * v + f
        return a * u + b * v + c, d * u + e * v + f

    def centres(self, cols: npt.ArrayLike, rows: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of the centres of pixels ``(cols, rows)``."""
        return self.to_crs(np.asarray(cols, dtype=float) + 0.5, np.asarray(rows, dtype=float) + 0.5)

    def outline(
        self, col0: float, row0: float, col1: float, row1: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of points along the outline of the pixel window
        ``[col0, col1) x [row0, row1)``: :data:`OUTLINE_SAMPLES` chords a side, from
        ``(col0, row0)`` along the first row, down the last column, back along the last row
        and up the first column (a closed chain, its corners repeated)."""
        t = np.linspace(0.0, 1.0, OUTLINE_SAMPLES + 1)
        east, west = col0 + t * (col1 - col0), col1 - t * (col1 - col0)
        down, up = row0 + t * (row1 - row0), row1 - t * (row1 - row0)
        first_col, last_col = np.full_like(t, col0), np.full_like(t, col1)
        first_row, last_row = np.full_like(t, row0), np.full_like(t, row1)
        return self.to_crs(
            np.concatenate([east, last_col, west, first_col]),
            np.concatenate([first_row, down, last_row, up]),
        )

    def same_pixels(self, other: Grid) -> bool:
        """True when both grids have the same transform and an equal CRS (pyproj equality)."""
        return self.transform == other.transform and self.crs == other.crs


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise GridError(f"scale must be a number of metres; got {scale!r}.")
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise GridError(f"scale must be a positive, finite number of metres; got {scale!r}.")
    return value


def _check_transform(crs_transform: Any) -> Transform:
    try:
        values = [float(v) for v in crs_transform]
    except (TypeError, ValueError) as exc:
        raise GridError(
            f"crsTransform must be 6 numbers [a, b, c, d, e, f]; got {crs_transform!r}."
        ) from exc
    if len(values) != 6:
        raise GridError(
            "crsTransform must be 6 numbers, the row-major 3x2 affine [a, b, c, d, e, f]; "
            f"got {len(values)}: {list(crs_transform)!r}."
        )
    a, b, c, d, e, f = values
    if not all(math.isfinite(v) for v in values) or a * e - b * d == 0:
        raise GridError(
            f"crsTransform {values} is not invertible (a*e - b*d == 0) or not finite; "
            "check the pixel sizes a and e."
        )
    return Transform(a, b, c, d, e, f)


def _metres_to_units(crs: CRS, metres: float) -> float:
    if crs.is_geographic:
        return metres / METRES_PER_DEGREE
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return metres / factor


def working_grid(
    native: Grid,
    scale: Any = None,
    crs: Any = None,
    crs_transform: Any = None,
) -> Grid:
    """The grid pixel decisions are made on, by Earth Engine's rules.

    ==============================  ===================================================
    arguments                       grid
    ==============================  ===================================================
    ``scale``                       EPSG:4326, origin (0, 0), ``scale / 111319.49...``
                                    degree pixels, positive y step
    ``crs`` + ``scale``             ``crs``, origin (0, 0), ``scale``-metre pixels
    ``crs`` + ``crs_transform``     that transform in ``crs``
    ``crs_transform``               that transform in EPSG:4326
    nothing                         EPSG:4326, identity: 1-degree pixels (warns)
    ``crs="native"`` alone          ``native``, the cube's own grid: no resampling
    ==============================  ===================================================

    ``crs="native"`` together with ``scale`` or ``crs_transform`` means no ``crs`` was given
    (EE's EPSG:4326); pass the cube's CRS itself to work in it at another scale.

    Raises
    ------
    GridError
        ``scale`` and ``crs_transform`` together, a bad scale or a bad transform.
    CRSError
        ``crs`` is not a CRS pyproj understands.
    """
    if scale is not None and crs_transform is not None:
        raise GridError(
            "scale and crsTransform are mutually exclusive (as in Earth Engine): "
            "pass one or the other."
        )
    if isinstance(crs, str) and crs.lower() == NATIVE:
        if scale is None and crs_transform is None:
            return native
        crs = None
    target = EPSG4326 if crs is None else read_crs(crs, "crs")
    if crs_transform is not None:
        return Grid(_check_transform(crs_transform), target)
    if scale is not None:
        step = _metres_to_units(target, _check_scale(scale))
        return Grid(Transform(step, 0.0, 0.0, 0.0, step, 0.0), target)
    unit = "degree" if target.is_geographic else (target.axis_info[0].unit_name or "unit")
    warnings.warn(
        f"no scale= or crsTransform= given: working on {target.to_string()} with 1-{unit} "
        "pixels, Earth Engine's default. Pass scale= (metres), crs='native' for the cube's own "
        "grid, or crsTransform=.",
        GetRegionWarning,
        stacklevel=3,
    )
    return Grid(Transform(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), target)


def transformer(src: CRS, dst: CRS) -> pyproj.Transformer:
    """An always-xy transformer (longitude/easting first) between two CRSs, cached."""
    return _transformer(src.to_wkt(), dst.to_wkt())


@functools.lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)
