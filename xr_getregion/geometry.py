"""Geometries: EE-style constructors and the reading of every accepted geometry input.

Earth Engine builds ``Polygon``, ``Rectangle``, ``LineString`` (and their multi forms) from
numbers as *geodesic* geometries: their edges follow great circles. ``BBox`` is planar. A
:class:`Geometry` keeps that flag, and :func:`read_geometry` turns geodesic edges into
densified planar ones with :class:`pyproj.Geod`, so everything downstream is plain shapely.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from pyproj import CRS

from xr_getregion.errors import CRSError, GeometryError

__all__ = [
    "EPSG4326",
    "Features",
    "Geometry",
    "is_feature_collection",
    "read_crs",
    "read_features",
    "read_geometry",
]

EPSG4326 = CRS.from_epsg(4326)

# Geodesic edges are densified with a vertex at least every this many metres; over 1 km a
# great circle and the straight lon/lat chord between its points differ by well under 1 mm.
_GEODESIC_STEP_M = 1000.0
_MAX_POINTS_PER_EDGE = 10_000


def read_crs(value: Any, what: str = "crs") -> CRS:
    """Return ``value`` as a :class:`pyproj.CRS`, or raise :class:`CRSError` naming it.

    Parameters
    ----------
    value
        Anything :meth:`pyproj.CRS.from_user_input` accepts ("EPSG:32615", 4326, WKT, a CRS).
    what
        The argument's name, for the error message.
    """
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as exc:
        raise CRSError(
            f"{what}={value!r} is not a CRS pyproj understands ({exc}). "
            "Pass an EPSG code such as 'EPSG:32615', a WKT string or a pyproj.CRS."
        ) from exc


@dataclass(frozen=True, eq=False)
class Geometry:
    """A geometry as Earth Engine holds it: a shape, its CRS and its edge interpretation.

    Build one with the EE-style constructors (``Geometry.Point``, ``Geometry.Polygon``, ...),
    which take Earth Engine's arguments in Earth Engine's order.

    Parameters
    ----------
    shape
        The shapely geometry, in ``crs`` coordinates.
    crs
        Its coordinate reference system (EPSG:4326 by default, longitude then latitude).
    geodesic
        Whether edges follow great circles (True) or are straight lines in ``crs`` (False).

    Examples
    --------
    >>> from xr_getregion import Geometry
    >>> Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197).geodesic
    False
    >>> Geometry.Rectangle([-90.5, 34.8, -90.4, 34.9]).geodesic
    True
    """

    shape: shapely.Geometry
    crs: CRS = EPSG4326
    geodesic: bool = False

    @property
    def __geo_interface__(self) -> dict[str, Any]:
        return self.shape.__geo_interface__

    @property
    def type(self) -> str:
        """The geometry type, as in GeoJSON ("Point", "Polygon", ...)."""
        return self.shape.geom_type

    def __repr__(self) -> str:
        kind = "geodesic" if self.geodesic else "planar"
        return f"Geometry({self.shape.wkt[:80]}, crs={self.crs.to_string()}, {kind})"

    # --- EE-style constructors -------------------------------------------------------------

    @classmethod
    def Point(cls, coords: Sequence[float] | float, proj: Any = None, *args: float) -> Geometry:
        """``ee.Geometry.Point(coords, proj)``: ``Point([x, y])`` or ``Point(x, y)``."""
        coords, proj = _numbers_as_coords(coords, proj, args, 2)
        xy = _as_array(coords, 1, "Point")
        return cls._make(shapely.Point(xy), proj, geodesic=False)

    @classmethod
    def MultiPoint(cls, coords: Sequence[Any], proj: Any = None) -> Geometry:
        """``ee.Geometry.MultiPoint(coords, proj)``: a list of ``[x, y]`` points."""
        pts = _as_array(_pairs(coords), 2, "MultiPoint")
        return cls._make(shapely.MultiPoint(pts), proj, geodesic=False)

    @classmethod
    def LineString(
        cls,
        coords: Sequence[Any],
        proj: Any = None,
        geodesic: bool | None = None,
        maxError: float | None = None,
    ) -> Geometry:
        """``ee.Geometry.LineString(coords, proj, geodesic, maxError)``; geodesic by default."""
        pts = _as_array(_pairs(coords), 2, "LineString")
        return cls._make(_build(shapely.LineString, "LineString", pts), proj, geodesic)

    @classmethod
    def MultiLineString(
        cls,
        coords: Sequence[Any],
        proj: Any = None,
        geodesic: bool | None = None,
        maxError: float | None = None,
    ) -> Geometry:
        """``ee.Geometry.MultiLineString(coords, proj, geodesic, maxError)``."""
        lines = [
            _build(shapely.LineString, "MultiLineString", _as_array(c, 2, "MultiLineString"))
            for c in coords
        ]
        return cls._make(shapely.MultiLineString(lines), proj, geodesic)

    @classmethod
    def Polygon(
        cls,
        coords: Sequence[Any],
        proj: Any = None,
        geodesic: bool | None = None,
        maxError: float | None = None,
        evenOdd: bool = True,
    ) -> Geometry:
        """``ee.Geometry.Polygon(coords, proj, geodesic, maxError, evenOdd)``.

        ``coords`` is a list of rings (the first the shell, the rest holes) or one ring.
        """
        return cls._make(_polygon(coords), proj, geodesic)

    @classmethod
    def MultiPolygon(
        cls,
        coords: Sequence[Any],
        proj: Any = None,
        geodesic: bool | None = None,
        maxError: float | None = None,
        evenOdd: bool = True,
    ) -> Geometry:
        """``ee.Geometry.MultiPolygon(coords, proj, geodesic, maxError, evenOdd)``."""
        return cls._make(shapely.MultiPolygon([_polygon(c) for c in coords]), proj, geodesic)

    @classmethod
    def Rectangle(
        cls,
        coords: Sequence[Any] | float,
        proj: Any = None,
        geodesic: bool | None = None,
        maxError: float | None = None,
        evenOdd: bool = True,
    ) -> Geometry:
        """``ee.Geometry.Rectangle(coords, ...)``: ``[xmin, ymin, xmax, ymax]``, two corners,
        or four numbers. Geodesic by default, as in Earth Engine."""
        if not isinstance(coords, Sequence):
            four = [coords, proj, geodesic, maxError]
            if not all(isinstance(v, int | float) for v in four):
                raise GeometryError(
                    f"Rectangle takes [xmin, ymin, xmax, ymax] or four numbers; got {four!r}."
                )
            coords, proj, geodesic = four, None, None
        items = np.asarray(coords, dtype=object).ravel().tolist()
        for k, value in enumerate(items):
            if not isinstance(value, numbers.Real):
                raise GeometryError(
                    f"Rectangle coordinate {k} is {value!r}, not a number: Rectangle takes "
                    "[xmin, ymin, xmax, ymax] or two corners [[xmin, ymin], [xmax, ymax]], all "
                    f"numbers; got {coords!r}."
                )
        flat = np.asarray(items, dtype=float)
        if flat.size != 4:
            raise GeometryError(
                f"Rectangle needs 4 numbers (xmin, ymin, xmax, ymax); got {flat.size}: {coords!r}."
            )
        xmin, ymin, xmax, ymax = flat.tolist()
        return cls._make(_box(xmin, ymin, xmax, ymax, "Rectangle"), proj, geodesic)

    @classmethod
    def BBox(cls, west: float, south: float, east: float, north: float) -> Geometry:
        """``ee.Geometry.BBox(west, south, east, north)``: planar, in EPSG:4326."""
        _check_finite(np.array([[west, south], [east, north]], dtype=float), "BBox")
        if west > east:
            # EE reads this as a box across the antimeridian. One planar box cannot hold both
            # of its halves, and which longitudes the cube uses (-180..180, 0..360) decides
            # the right split, so the caller states it.
            raise GeometryError(
                f"BBox west={west} is east of east={east}: a box crossing the antimeridian is "
                "not supported: split it at 180 into two boxes and pass both (a list is their "
                f"union): [Geometry.BBox({west}, {south}, 180, {north}), Geometry.BBox(-180, "
                f"{south}, {east}, {north})], or, if the cube's longitudes run past 180, "
                f"Geometry.BBox({west}, {south}, {east + 360}, {north})."
            )
        box = _box(west, south, east, north, "BBox")
        pieces = math.ceil((east - west) / 180.0)
        if pieces > 1:
            # The same planar rectangle, with vertices along its parallels so that no edge
            # spans more than 180 degrees: a longer edge reads as a jump across the
            # antimeridian (see _check_antimeridian), but EE's BBox is planar and means it.
            xs = np.linspace(west, east, pieces + 1)
            xs[-1] = east  # linspace may round the last value
            ring = [*((x, south) for x in xs), *((x, north) for x in xs[::-1])]
            box = shapely.Polygon(ring)
        return cls._make(box, None, geodesic=False)

    @classmethod
    def _make(cls, shape: Any, proj: Any, geodesic: bool | None) -> Geometry:
        crs = EPSG4326 if proj is None else read_crs(proj, "proj")
        if geodesic is None:
            geodesic = crs.is_geographic
        return cls(shape, crs, bool(geodesic))

    def to_planar(self) -> tuple[shapely.Geometry, CRS]:
        """Return the geometry with straight edges, and the CRS its coordinates are in.

        Geodesic edges are densified along the great circle of the CRS's ellipsoid; the
        result is in the CRS's geographic (lon/lat) CRS.
        """
        if not self.geodesic or self.shape.geom_type in ("Point", "MultiPoint"):
            return self.shape, self.crs
        geographic = self.crs.geodetic_crs or EPSG4326
        shape = self.shape
        if not self.crs.is_geographic:
            to_geo = pyproj.Transformer.from_crs(self.crs, geographic, always_xy=True)
            shape = shapely.transform(shape, lambda xy: np.column_stack(to_geo.transform(*xy.T)))
        geod = geographic.get_geod() or pyproj.Geod(ellps="WGS84")
        return _densify_geodesic(shape, geod), geographic


def _numbers_as_coords(coords: Any, proj: Any, rest: tuple[float, ...], n: int) -> tuple[Any, Any]:
    """Let ``Point(x, y)`` mean ``Point([x, y])``, as the EE Python client does."""
    if isinstance(coords, int | float) and isinstance(proj, int | float):
        return [coords, proj, *rest][:n], None
    return coords, proj


def _pairs(coords: Sequence[Any]) -> Any:
    """Accept ``[[x, y], ...]`` and EE's flat ``[x1, y1, x2, y2, ...]``."""
    arr = np.asarray(coords, dtype=object)
    if arr.ndim == 1 and len(arr) % 2 == 0 and all(isinstance(v, int | float) for v in arr):
        return np.asarray(coords, dtype=float).reshape(-1, 2)
    return coords


def _as_array(coords: Any, ndim: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(coords, dtype=float)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{what} coordinates must be numbers; got {coords!r}.") from exc
    if arr.ndim != ndim or arr.shape[-1] != 2:
        shape = "[x, y]" if ndim == 1 else "[[x, y], ...]"
        raise GeometryError(f"{what} coordinates must be {shape}; got array of shape {arr.shape}.")
    _check_finite(arr.reshape(-1, 2), what)
    return arr


def _check_finite(xy: np.ndarray, what: str = "the geometry") -> None:
    """Refuse NaN or infinite coordinates, naming the first one: they have no position."""
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        x, y = (float(v) for v in xy[k])
        raise GeometryError(
            f"{what} has a non-finite coordinate ({x}, {y}) (vertex {k}): NaN and infinity "
            "have no position. Remove or fix that vertex (missing values in the source data?)."
        )


def _polygon(coords: Sequence[Any]) -> shapely.Polygon:
    depth = np.asarray(coords, dtype=object).ndim if coords else 0
    first = coords[0] if len(coords) else None
    # One ring given directly: [[x, y], ...] rather than [[[x, y], ...], ...].
    if first is not None and len(first) == 2 and isinstance(first[0], int | float):
        coords = [coords]
    elif depth == 1 and all(isinstance(v, int | float) for v in coords):
        coords = [_pairs(coords)]
    rings = [_as_array(ring, 2, "Polygon") for ring in coords]
    if not rings:
        raise GeometryError("Polygon needs at least one ring of [x, y] coordinates; got none.")
    return _build(shapely.Polygon, "Polygon", rings[0], rings[1:])


def _build(make: Any, what: str, *args: Any) -> shapely.Geometry:
    """Call a shapely constructor, turning its complaints into a GeometryError."""
    try:
        return make(*args)
    except (ValueError, shapely.errors.ShapelyError) as exc:
        need = "at least 2 points" if "Line" in what else "rings of at least 3 distinct points"
        raise GeometryError(f"{what} needs {need}: {exc}") from exc


def _box(xmin: float, ymin: float, xmax: float, ymax: float, what: str) -> shapely.Polygon:
    _check_finite(np.array([[xmin, ymin], [xmax, ymax]], dtype=float), what)
    if not (xmin <= xmax and ymin <= ymax):
        raise GeometryError(
            f"{what} needs min <= max on both axes; got x {xmin}..{xmax}, y {ymin}..{ymax}."
        )
    return shapely.box(xmin, ymin, xmax, ymax)


def _densify_geodesic(shape: shapely.Geometry, geod: pyproj.Geod) -> shapely.Geometry:
    """Insert great-circle points on every edge of ``shape`` (lon/lat coordinates)."""

    def densify_coords(xy: np.ndarray) -> np.ndarray:
        out = [xy[:1]]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            dist = geod.inv(x0, y0, x1, y1)[2]
            npts = min(math.ceil(dist / _GEODESIC_STEP_M) - 1, _MAX_POINTS_PER_EDGE)
            if npts > 0:
                out.append(np.asarray(geod.npts(x0, y0, x1, y1, npts), dtype=float))
            out.append(np.array([[x1, y1]]))
        return _unwrap_longitudes(np.concatenate(out))

    def densify(g: shapely.Geometry) -> shapely.Geometry:
        kind = g.geom_type
        if kind == "LineString":
            return shapely.LineString(densify_coords(shapely.get_coordinates(g)))
        if kind == "Polygon":
            shell = densify_coords(shapely.get_coordinates(g.exterior))
            holes = [densify_coords(shapely.get_coordinates(r)) for r in g.interiors]
            # A hole lives in the same turn of longitudes as its (unwrapped) shell.
            middle = (shell[:, 0].min() + shell[:, 0].max()) / 2
            for hole in holes:
                hole[:, 0] += 360.0 * np.round((middle - hole[0, 0]) / 360.0)
            return shapely.Polygon(shell, holes)
        if kind in ("MultiLineString", "MultiPolygon", "GeometryCollection"):
            return type(g)([densify(p) for p in g.geoms])
        return g

    return densify(shape)


def _unwrap_longitudes(xy: np.ndarray) -> np.ndarray:
    """A densified geodesic chain with its longitudes made continuous.

    A geodesic edge takes the short way, also across the antimeridian, where pyproj's points
    jump from 180 to -180: unwrapped, the chain runs on past 180 (179.5 -> 180.5) and stays
    planar-correct. A ring that would not close so (it circles a pole) is left as it is.
    """
    lon = np.unwrap(xy[:, 0], period=360.0)
    closed = np.array_equal(xy[0], xy[-1])
    if closed and not np.isclose(lon[0], lon[-1]):
        return xy
    return np.column_stack([lon, xy[:, 1]])


# --- reading any geometry input ---------------------------------------------------------------


def read_geometry(obj: Any, geometry_crs: Any = None) -> tuple[shapely.Geometry, CRS]:
    """Read any accepted geometry input into a valid planar shapely geometry and its CRS.

    Parameters
    ----------
    obj
        A :class:`Geometry`, a shapely geometry, a GeoJSON dict (``Geometry``, ``Feature``,
        ``FeatureCollection``) or text, WKT, anything with ``__geo_interface__``, a
        ``GeoSeries``/``GeoDataFrame`` (whose ``.crs`` is used), or a list of these. Several
        geometries are returned as one ``GeometryCollection``: their union, pixel-wise.
    geometry_crs
        The CRS of the coordinates, overriding the input's own. Default: the input's CRS,
        else EPSG:4326 (longitude, latitude), as in Earth Engine.

    Returns
    -------
    shapely.Geometry, pyproj.CRS

    Raises
    ------
    GeometryError
        The input is of an unknown type, empty, not finite or invalid.
    """
    override = None if geometry_crs is None else read_crs(geometry_crs, "geometry_crs")
    shape, crs = _read(obj, override)
    source = "its own CRS" if crs is not None else "no CRS was given"
    if override is not None:
        crs, source = override, "geometry_crs= says so"
    crs = crs or EPSG4326
    _validate(shape)
    # Before the antimeridian check: UTM metres read as degrees would "jump" thousands of
    # degrees, and that message would send the user the wrong way.
    coords, owner = shapely.get_coordinates(np.array([shape], dtype=object), return_index=True)
    _check_lonlat(coords, owner, crs, source)
    _check_antimeridian(np.array([shape], dtype=object), crs, None)
    return shape, crs


def _read(obj: Any, override: CRS | None = None) -> tuple[shapely.Geometry, CRS | None]:
    """The shapely geometry of ``obj`` and the CRS it brings (``None`` if it brings none).

    ``override`` is ``geometry_crs=``: a :class:`Geometry` is read in it (its edges stay
    geodesic only in a geographic CRS, EE's default for a projected ``proj``).
    """
    if isinstance(obj, Geometry):
        if override is not None:
            obj = Geometry(obj.shape, override, obj.geodesic and override.is_geographic)
        # Densifying geodesic edges needs finite vertices, and lon/lat ones: check them first.
        xy = shapely.get_coordinates(obj.shape)
        _check_finite(xy)
        source = (
            "geometry_crs= says so"
            if override is not None
            else "that is its proj (an EE-style constructor's default is EPSG:4326)"
        )
        _check_lonlat(xy, np.zeros(len(xy), np.intp), obj.crs, source)
        return obj.to_planar()
    if isinstance(obj, shapely.Geometry):
        return obj, None
    # GeoSeries / GeoDataFrame, without importing geopandas for users who never pass one.
    if hasattr(obj, "geometry") and hasattr(obj, "crs") and hasattr(obj, "total_bounds"):
        geoms = np.asarray(obj.geometry.values, dtype=object)
        crs = CRS.from_user_input(obj.crs) if obj.crs is not None else None
        return shapely.GeometryCollection(list(geoms)), crs
    if isinstance(obj, str):
        text = obj.strip()
        if text.startswith("{"):
            try:
                return _read(json.loads(text), override)
            except json.JSONDecodeError as exc:
                raise GeometryError(f"geometry text is not valid GeoJSON: {exc}.") from exc
        try:
            return shapely.from_wkt(text), None
        except shapely.errors.GEOSException as exc:
            raise GeometryError(
                f"geometry text is neither WKT nor GeoJSON: {text[:60]!r} ({exc})."
            ) from exc
    if hasattr(obj, "__geo_interface__") and not isinstance(obj, dict):
        return _read(obj.__geo_interface__, override)
    if isinstance(obj, dict):
        return _read_geojson(obj), None
    if isinstance(obj, Iterable):
        shapes, crs = _read_list(obj, override)
        return shapely.GeometryCollection(shapes), crs
    raise GeometryError(
        f"cannot read a geometry from {type(obj).__name__}. Pass a shapely geometry, GeoJSON, "
        "WKT, a GeoSeries/GeoDataFrame or an xr_getregion.Geometry."
    )


def _read_list(
    objs: Iterable[Any], override: CRS | None = None, what: str = "part"
) -> tuple[list[shapely.Geometry], CRS | None]:
    """Read each geometry of a list; they must agree on their CRS (or bring none). An error
    names the ``what`` (part, feature) by its position."""
    parts = []
    for k, o in enumerate(objs):
        try:
            parts.append(_read(o, override))
        except GeometryError as exc:
            where = (
                f"feature {k} (position {k})" if what == "feature" else f"{what} {k} of the list"
            )
            raise GeometryError(f"{where}: {exc}") from None
    crss = {c for _, c in parts if c is not None}
    if len(crss) > 1:
        raise GeometryError(
            "the geometries in the list have different CRSs "
            f"({', '.join(sorted(c.to_string() for c in crss))}); reproject them to one CRS."
        )
    return [g for g, _ in parts], crss.pop() if crss else None


def _read_geojson(obj: dict[str, Any]) -> shapely.Geometry:
    kind = obj.get("type")
    if kind == "Feature":
        if obj.get("geometry") is None:
            raise GeometryError("the GeoJSON Feature has no geometry.")
        return _read_geojson(obj["geometry"])
    if kind == "FeatureCollection":
        return shapely.GeometryCollection([_read_geojson(f) for f in _features_of(obj)])
    try:
        return shapely.geometry.shape(obj)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise GeometryError(f"not a GeoJSON geometry: {str(obj)[:80]} ({exc!r}).") from exc


def _features_of(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection, each checked to be an object (a dict).

    Raises
    ------
    GeometryError
        ``features`` is not a list, or one of its items is not a dict (named by position).
    """
    features = collection.get("features", [])
    if not isinstance(features, list | tuple):
        raise GeometryError(
            f"the FeatureCollection's 'features' is {type(features).__name__} "
            f"{str(features)[:60]!r}, not a list of GeoJSON Features."
        )
    for k, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise GeometryError(
                f"feature {k} of the FeatureCollection is {str(feature)[:60]!r} "
                f"({type(feature).__name__}), not a GeoJSON Feature: each must be an object "
                '{"type": "Feature", "geometry": {...}, "properties": {...}}. Fix or drop it.'
            )
    return list(features)


def _validate(shape: shapely.Geometry | None) -> None:
    if shape is None or shape.is_empty:
        raise GeometryError(
            "the geometry is empty: it covers no pixel. Pass a geometry with coordinates."
        )
    _check_finite(shapely.get_coordinates(shape))
    # Parts are checked one by one: a multi-part geometry is the union of its parts (as in
    # EE), so parts that touch or overlap are fine, but each part must be valid on its own.
    parts, _ = flat_parts(shape)
    invalid = parts[~shapely.is_valid(parts)]
    if len(invalid):
        raise GeometryError(
            f"the geometry is invalid: {shapely.is_valid_reason(invalid[0])}. "
            "Repair it first, for example with shapely.make_valid(geometry)."
        )


GeometryType = shapely.GeometryType
# Geometries made of parts: get_parts splits them (a collection may hold multi-parts).
_MULTI = (
    GeometryType.MULTIPOINT,
    GeometryType.MULTILINESTRING,
    GeometryType.MULTIPOLYGON,
    GeometryType.GEOMETRYCOLLECTION,
)
_LINES = (GeometryType.LINESTRING, GeometryType.LINEARRING)


def flat_parts(geoms: shapely.Geometry | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty single parts (points, lines, rings, polygons) of a geometry or an array
    of them, multi-parts and collections flattened at any depth, in order; and for each
    the position of the geometry it came from."""
    parts = np.atleast_1d(np.asarray(geoms, dtype=object))
    owner = np.arange(len(parts))
    while np.isin(shapely.get_type_id(parts), _MULTI).any():
        parts, k = shapely.get_parts(parts, return_index=True)
        owner = owner[k]
    keep = ~shapely.is_empty(parts)
    return parts[keep], owner[keep].astype(np.intp)


def is_line(geoms: shapely.Geometry | np.ndarray) -> np.ndarray:
    """Whether each single-part geometry is a line (a ``LineString`` or ``LinearRing``)."""
    return np.isin(shapely.get_type_id(geoms), _LINES)


def edge_lines(geoms: np.ndarray, rings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The lines and polygon rings of an array of geometries (multi-parts and collections
    flattened), and for each the position of the geometry it came from; the rings only of
    the geometries ``rings`` marks, when given."""
    parts, owner = flat_parts(geoms)
    line = is_line(parts)
    polygon = shapely.get_type_id(parts) == GeometryType.POLYGON
    if rings is not None:
        polygon &= rings[owner]
    rings, k = shapely.get_rings(parts[polygon], return_index=True)
    lines = np.concatenate([parts[line], rings])
    return lines, np.concatenate([owner[line], owner[polygon][k]]).astype(np.intp)


#: A turn of longitude, in degrees.
TURN = 360.0
#: Half a turn of longitude: a straight lon/lat edge spanning more runs the long way round.
HALF_TURN = TURN / 2


def long_edges(lon: np.ndarray, line: np.ndarray | None = None) -> np.ndarray:
    """Which edges, from vertex ``k`` to ``k + 1`` of one line (``line`` gives each
    vertex's line; one line when ``None``), span more than :data:`HALF_TURN` degrees of
    longitude ``lon``: a jump across the antimeridian when edges are short."""
    with np.errstate(invalid="ignore"):
        jump = np.abs(np.diff(lon)) > HALF_TURN
    return jump if line is None else jump & (line[1:] == line[:-1])


# Longitudes are accepted up to 540 degrees either way: one more turn past either common
# labelling (-180..180 and 0..360). EE accepts longitudes past 180 (a BBox across the
# antimeridian is written 170..190), this package asks for such boxes so, and a cube labelled
# 0..360 is met by a box written 359..361. 360 would refuse that last box; beyond 540 no
# labelling in use reaches, while projected metres (UTM eastings 166,000..834,000, northings
# up to 10,000,000) are far past it.
MAX_LONGITUDE = 540.0


def _check_lonlat(
    xy: np.ndarray,
    owner: np.ndarray,
    crs: CRS,
    source: str,
    ids: pd.Index | None = None,
) -> None:
    """Refuse coordinates that cannot be longitude/latitude in a geographic ``crs``.

    A latitude past +-90 degrees, or a longitude past +-:data:`MAX_LONGITUDE`, is almost
    surely a number in another CRS (metres, most often), or latitude and longitude swapped:
    read as lon/lat it would silently miss the cube. ``owner`` gives the feature of each
    coordinate (``ids`` names the features; ``None`` for one geometry); ``source`` says why
    the CRS is what it is.
    """
    if not crs.is_geographic or len(xy) == 0:
        return
    axis = crs.axis_info[0] if crs.axis_info else None
    # Degrees per unit of the CRS's angles (1 for degrees; grads and radians exist).
    per_unit = math.degrees(axis.unit_conversion_factor) if axis else 1.0
    lon, lat = xy[:, 0] * per_unit, xy[:, 1] * per_unit
    bad = (np.abs(lat) > 90.0) | (np.abs(lon) > MAX_LONGITUDE)
    if not bad.any():
        return
    k = int(np.flatnonzero(bad)[0])
    x, y = float(xy[k, 0]), float(xy[k, 1])
    if abs(lat[k]) > 90.0:
        why = f"latitude {y!r} is beyond +-90 degrees"
    else:
        why = f"longitude {x!r} is beyond +-{MAX_LONGITUDE:g} degrees"
    where = ""
    if ids is not None:
        f = int(owner[k])
        feature_id = ids[f]
        feature_id = feature_id.item() if hasattr(feature_id, "item") else feature_id
        n_bad = len(np.unique(owner[bad]))
        where = (
            f"{n_bad} of {len(ids)} features have coordinates that cannot be "
            f"longitude/latitude; the first, feature {feature_id!r} (position {f}): "
        )
    raise GeometryError(
        f"{where}the coordinate ({x!r}, {y!r}) cannot be longitude/latitude: {why}. The "
        f"geometry is read in {crs.to_string()} (longitude, latitude) because {source}. If its "
        "numbers are in another CRS (metres of a UTM zone, say), pass that CRS: "
        "geometry_crs='EPSG:32615' for UTM zone 15N, for example (or the geometry's own proj, "
        "or gdf.set_crs(...) for a GeoDataFrame); if latitude and longitude are swapped, give "
        "longitude first."
    )


def _check_antimeridian(geoms: np.ndarray, crs: CRS, ids: pd.Index | None) -> None:
    """Refuse edges that jump more than 180 degrees of longitude in a geographic CRS.

    A straight lon/lat edge from 179.5 to -179.5 runs the long way round, across the whole
    map: almost surely a shape meant to cross the antimeridian (GeoJSON writers wrap
    longitudes so), which a planar geometry cannot say. Edges along the antimeridian itself
    (180 to -180, a whole-world box) or along a pole are the same points on Earth, not
    ambiguous, and pass.
    """
    if not crs.is_geographic:
        return
    lines, line_owner = edge_lines(geoms)
    if len(lines) == 0:
        return
    xy, line = shapely.get_coordinates(lines, return_index=True)
    x, y = xy[:, 0], xy[:, 1]
    jump = long_edges(x, line)
    jump &= ~((np.abs(x[1:]) == HALF_TURN) & (np.abs(x[:-1]) == HALF_TURN))
    jump &= ~((np.abs(y[1:]) == 90) & (np.abs(y[:-1]) == 90))
    if not jump.any():
        return
    i = int(np.flatnonzero(jump)[0])
    where = ""
    if ids is not None:
        feature_id = ids[line_owner[line[i]]]
        where = f"feature {getattr(feature_id, 'item', lambda: feature_id)()!r}: "
    raise GeometryError(
        f"{where}the geometry crosses the antimeridian: its edge from ({x[i]}, {y[i]}) to "
        f"({x[i + 1]}, {y[i + 1]}) jumps {abs(x[i + 1] - x[i]):g} degrees of longitude, so in "
        f"{crs.to_string()} it runs the long way round the Earth. Split it at the antimeridian "
        "into parts on each side (a MultiPolygon), write the eastern longitudes past 180 "
        "(-179.5 as 180.5), or pass it in a projected CRS with geometry_crs=; add a vertex "
        "mid-edge if you mean the long way."
    )


# --- many features ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Features:
    """Several features, each extracted on its own.

    ``shapes`` are valid planar shapely geometries in ``crs``; ``ids`` the value of the
    ``feature`` column for each; ``properties`` the columns copied onto their rows.
    """

    shapes: list[shapely.Geometry]
    crs: CRS
    ids: pd.Index
    properties: pd.DataFrame


def is_feature_collection(obj: Any) -> bool:
    """True for inputs that hold several features: GeoDataFrame, GeoSeries, a GeoJSON
    FeatureCollection, or a list/tuple of geometries."""
    if isinstance(obj, str | bytes | Geometry | shapely.Geometry):
        return False
    if hasattr(obj, "geometry") and hasattr(obj, "crs") and hasattr(obj, "total_bounds"):
        return True
    if isinstance(obj, dict):
        return obj.get("type") == "FeatureCollection"
    return isinstance(obj, list | tuple) and not any(isinstance(v, int | float) for v in obj)


def read_features(
    obj: Any,
    geometry_crs: Any = None,
    id_column: str | None = None,
    properties: Sequence[str] | None = None,
) -> Features:
    """Read a feature collection (see :func:`is_feature_collection`) feature by feature.

    Parameters
    ----------
    obj
        A ``GeoDataFrame``, ``GeoSeries``, GeoJSON ``FeatureCollection`` or list of geometries.
    geometry_crs
        Overrides the collection's CRS (default: its own, else EPSG:4326).
    id_column
        The column (or GeoJSON property) whose values identify features; default the index
        (a GeoDataFrame's), the GeoJSON feature ``id``, or the position.
    properties
        Columns (or GeoJSON properties) to copy onto every row of their feature.

    Raises
    ------
    GeometryError
        A feature is empty, invalid or not finite (named by its id), or the ids repeat.
    ArgumentError
        ``id_column`` or a property does not exist.
    """
    from xr_getregion.errors import ArgumentError

    crs: CRS | None = None
    if isinstance(obj, dict):
        feats = _features_of(obj)
        shapes = [_read_geojson(f) if f.get("geometry") is not None else None for f in feats]
        table = pd.DataFrame([dict(f.get("properties") or {}) for f in feats])
        index = pd.Index([f.get("id", i) for i, f in enumerate(feats)])
    elif hasattr(obj, "geometry") and hasattr(obj, "crs"):
        shapes = list(np.asarray(obj.geometry.values, dtype=object))
        crs = CRS.from_user_input(obj.crs) if obj.crs is not None else None
        table = (
            pd.DataFrame(obj.drop(columns=obj.geometry.name))
            if hasattr(obj, "columns")
            else pd.DataFrame(index=obj.index)
        )
        index = obj.index
    else:
        override = None if geometry_crs is None else read_crs(geometry_crs, "geometry_crs")
        shapes, crs = _read_list(obj, override, "feature")
        table = pd.DataFrame(index=range(len(shapes)))
        index = pd.RangeIndex(len(shapes))
    table = table.reset_index(drop=True)
    if id_column is not None:
        if id_column not in table.columns:
            raise ArgumentError(
                f"id_column={id_column!r} is not a column of the features; they have "
                f"{list(table.columns)}."
            )
        index = pd.Index(table[id_column])
    missing = [p for p in properties or [] if p not in table.columns]
    if missing:
        raise ArgumentError(
            f"properties {missing} are not columns of the features; "
            f"they have {list(table.columns)}."
        )
    if not index.is_unique:
        dup = index[index.duplicated()].unique().tolist()[:5]
        raise GeometryError(
            f"feature ids must be unique to tell rows apart; repeated: {dup}. Pass a unique "
            "id_column= or reset the index."
        )
    # Vectorised checks; the per-feature check runs only where they flag one, to word the error.
    geoms = np.array([g if isinstance(g, shapely.Geometry) else None for g in shapes], dtype=object)
    coords, where = shapely.get_coordinates(geoms, return_index=True)
    suspect = shapely.is_missing(geoms) | shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    suspect[where[~np.isfinite(coords).all(axis=1)]] = True
    for k in np.flatnonzero(suspect):
        try:
            _validate(geoms[k])
        except GeometryError as exc:
            feature_id = index[k].item() if hasattr(index[k], "item") else index[k]
            raise GeometryError(f"feature {feature_id!r}: {exc}") from None
    source = "its own CRS" if crs is not None else "no CRS was given"
    if geometry_crs is not None:
        crs, source = read_crs(geometry_crs, "geometry_crs"), "geometry_crs= says so"
    crs = crs or EPSG4326
    # Before the antimeridian check, whose message would mislead for metres read as degrees.
    _check_lonlat(coords, where, crs, source, index)
    _check_antimeridian(geoms, crs, index)
    chosen = table[list(properties or [])].apply(_concrete)
    return Features(shapes, crs, pd.Index(_concrete(index)), chosen)


_OBJECT_TARGETS = {
    "string": "string",
    "empty": "string",
    "boolean": "boolean",
    "integer": "Int64",
    "floating": "Float64",
    "mixed-integer-float": "Float64",
    "decimal": "Float64",
}


def _concrete(values: pd.Series | pd.Index) -> pd.Series | pd.Index:
    """Give an object column a concrete dtype (mixed values become strings), so a lazy
    table's schema and its partitions agree and Parquet can store it."""
    if values.dtype != object:
        return values
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("datetime", "datetime64"):
        return pd.to_datetime(values)
    target = _OBJECT_TARGETS.get(kind, "string")
    if target == "string":
        values = values.map(lambda v: v if v is None or pd.isna(v) else str(v))
    return values.astype(pd.api.types.pandas_dtype(target))
