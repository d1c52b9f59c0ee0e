"""STAC items as a cube: :func:`stac_cube` loads them with odc-stac.

Why odc-stac (and not stackstac): its coordinates are pixel centres and its grid is the items'
own (``proj:*`` fields, including ``proj:code`` only), while stackstac 0.5.1 labels top-left
corners by default and pads its grid from the lon/lat bbox when items carry ``proj:code`` but
not ``proj:epsg``. odc-stac also reads items of different CRSs or grids onto one grid, and
loads each asset as its own band, named by the asset key.

Each item is one image (odc-stac's ``groupby`` by item: images are never merged), ordered by
datetime then id; the item ids become the ``id`` coordinate (the table's ``id`` column) and
the datetimes the ``time`` coordinate.
"""

from __future__ import annotations

import json
import os
import posixpath
import warnings
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import xarray as xr

from xr_getregion.errors import ArgumentError

__all__ = ["read_items", "stac_cube"]


def read_items(source: Any, storage_options: dict[str, Any] | None = None) -> list[Any]:
    """pystac Items from an ItemCollection, a list of Items (pystac objects or dicts), one
    Item, or the path or URL of a JSON file holding one of those.

    Relative asset hrefs of a file are made absolute against the file's own location.

    Raises
    ------
    ArgumentError
        ``source`` holds no STAC Item, or something else than Items.
    """
    import pystac

    base = None
    if isinstance(source, str | os.PathLike):
        base = os.fspath(source)
        source = json.loads(_read_text(base, storage_options))
    if isinstance(source, pystac.ItemCollection):
        raw: list[Any] = list(source)
    elif isinstance(source, dict) and source.get("type") == "FeatureCollection":
        raw = list(source.get("features", []))
    elif isinstance(source, dict | pystac.Item):
        raw = [source]
    elif isinstance(source, Sequence):
        raw = list(source)
    else:
        raise ArgumentError(
            f"STAC items: expected an ItemCollection, a list of Items or a JSON file of them; "
            f"got {type(source).__name__}."
        )
    items = []
    for i, entry in enumerate(raw):
        if isinstance(entry, pystac.Item):
            item = entry.clone()
        elif isinstance(entry, dict) and entry.get("type") == "Feature" and "assets" in entry:
            item = pystac.Item.from_dict(entry, preserve_dict=True)
        else:
            raise ArgumentError(
                f"STAC items: entry {i} is not a STAC Item (a GeoJSON Feature with 'assets'); "
                f"it starts {str(entry)[:60]!r}."
            )
        if base is not None:
            for asset in item.assets.values():
                asset.href = _absolute(asset.href, base)
        items.append(item)
    if not items:
        raise ArgumentError("STAC items: the collection holds no Item.")
    return items


def _read_text(path: str, storage_options: dict[str, Any] | None) -> str:
    from xr_getregion.storage import filesystem, is_url

    if not is_url(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    fs, inner = filesystem(path, storage_options)
    return bytes(fs.cat_file(inner)).decode("utf-8")


def _absolute(href: str, base: str) -> str:
    """``href`` resolved against the JSON file ``base`` (a local path or a URL)."""
    if "://" in href or os.path.isabs(href):
        return href
    if "://" in base:
        scheme, rest = base.split("://", 1)
        if scheme.lower() in ("http", "https"):
            return urljoin(base, href)
        # urljoin knows only the schemes of its own list, and returns the href of any other
        # (s3://, gs://, az://...) unchanged: join the key's path.
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), href))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base)), href))


def stac_cube(
    items: Any,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    crs: Any = None,
    *,
    chunks: Mapping[str, int] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """A lazy cube of STAC items, loaded by odc-stac: one image per item, one band per asset.

    Parameters
    ----------
    items
        An ItemCollection, a list of Items (pystac or dicts), or the path or URL of a JSON
        file of them (see :func:`read_items`).
    bands
        Asset keys to load (default: every asset odc-stac reads as raster).
    resolution, crs
        The grid to load onto (default: the items' own: their ``proj:*`` CRS and pixel size).
    chunks
        Dask chunks (default ``{"x": 1024, "y": 1024}``).

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``, one variable per band named by its asset key, coordinates
        ``time`` (each item's datetime) and ``id`` (each item's id) along ``time``, labelled
        at pixel centres, with the CRS odc-stac writes (``spatial_ref``).
    """
    import odc.stac

    loaded = read_items(items, storage_options)
    order = sorted(range(len(loaded)), key=lambda i: _key(loaded[i]))
    ranked = {id(loaded[i]): rank for rank, i in enumerate(order)}
    ids = [loaded[i].id for i in order]
    try:
        with warnings.catch_warnings():
            # odc-geo's own use of a deprecated shapely function: nothing the user can change.
            warnings.filterwarnings("ignore", r".*shapely\.ops\.transform", DeprecationWarning)
            ds = odc.stac.load(
                loaded,
                bands=list(bands) if bands is not None else None,
                resolution=resolution,
                crs=crs,
                chunks=dict(chunks or {"x": 1024, "y": 1024}),
                # One image per item, in (datetime, id) order, whatever their datetimes.
                groupby=lambda item, parsed, idx: ranked[id(item)],
            )
    except ValueError as exc:
        raise ArgumentError(f"STAC items: odc-stac cannot load them: {exc}") from exc
    if ds.sizes.get("time") != len(ids):
        raise ArgumentError(
            f"STAC items: odc-stac loaded {ds.sizes.get('time')} images from {len(ids)} items."
        )
    return ds.assign_coords(id=("time", ids))


def _key(item: Any) -> tuple[Any, str]:
    when = item.datetime or item.common_metadata.start_datetime
    return (when.timestamp() if when is not None else float("inf"), item.id)
