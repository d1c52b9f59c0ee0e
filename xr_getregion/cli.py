"""The ``xr-getregion`` command line.

``demo`` runs Earth Engine's reference example on the sample cube; ``extract`` is the batch
job: a cube file, a features file, a table file, on this machine or a dask cluster. Bad input
gives one line on stderr and exit status 2, never a traceback; a job that fails while it runs
(a chunk that cannot be decoded, a worker lost too often) gives one line and exit status 1 and
leaves TABLE as it was.

Input files are read only by the libraries' own format readers (Zarr, h5netcdf, GDAL through
rasterio and pyogrio, pyarrow), never by pickle or ``eval``. Each file's first bytes must be what
its extension says before a reader sees it: GDAL picks its driver from the content, so without
that check a ``.tif`` or ``.geojson`` holding a VRT could make it open other files or URLs.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from pprint import pformat
from typing import Any

import numpy as np
import xarray as xr

from xr_getregion._signals import INTERRUPTED, Terminated, command_start_over, terminate_as_exit

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command's input, reported as one line (exit status 2)."""


class JobFailed(Exception):
    """The job started and failed; reported as one line (exit status 1)."""


def _summary(cube: xr.DataArray) -> str:
    from xr_getregion.cube import read_cube

    info = read_cube(cube)
    a, _, _, _, e, _ = info.grid.transform
    rows, cols = info.grid.shape or (0, 0)
    lines = [
        f"ImageCollection ({info.n_images} images): {cube.name}, {info.grid.crs.to_string()}, "
        f"{abs(a):g} x {abs(e):g} m pixels, {cols} x {rows}",
        f"  bands: {', '.join(info.band_names)}",
    ]
    for image_id, ms in zip(info.ids, info.times_ms, strict=True):
        when = "no time" if ms is None else str(np.datetime64(ms, "ms")) + "Z"
        lines.append(f"  {image_id}  {when}")
    return "\n".join(lines)


def _print_table(title: str, table: list[list]) -> None:
    print(f"{title} ({len(table)} rows with the header):")
    for row in table:
        print(" ", pformat(row, width=200))


def demo(args: argparse.Namespace) -> int:
    """Earth Engine's getRegion reference example, on the built-in sample cube."""
    import xr_getregion
    from xr_getregion import Geometry

    cube = xr_getregion.sample_cube()
    # EE: col = ImageCollection(...).filterBounds(...).filterDate(...).select('B[2-4]')
    col = cube.sel(band=["B2", "B3", "B4"])
    print("Collection")
    print(_summary(col))
    print()
    roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    _print_table("Extracted pixel info", col.ee.getRegion(roi, scale=30))
    print()
    points = Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]])
    _print_table("Point geometry example", col.ee.getRegion(points, scale=30))
    return 0


# --- extract -------------------------------------------------------------------------------


CUBE_FORMATS = (
    "a Zarr store (a directory, usually .zarr), a NetCDF-4 file (.nc, .nc4, .netcdf, .h5), "
    "a GeoTIFF (.tif, .tiff) or STAC items (.json: an ItemCollection or a list of Items)"
)
_STAC_SUFFIXES = (".json", ".geojson")
EXTRACT_EXAMPLES = """\
examples:
  # every field of a GeoPackage, from a local Zarr cube, to Parquet
  xr-getregion extract cube.zarr --geometry fields.gpkg --out fields.parquet \\
      --id-column field_id --properties crop,year

  # on S3, with a local cluster of 4 worker processes; credentials from AWS_* variables
  xr-getregion extract s3://bucket/cube.zarr --geometry s3://bucket/fields.gpkg \\
      --out s3://bucket/out.parquet --workers 4 --progress

  # STAC items (an ItemCollection JSON) as the cube, two bands, at 20 m in UTM 33N
  xr-getregion extract items.json --bands B04,B08 --crs EPSG:32633 --resolution 20 \\
      --geometry fields.geojson --out ndvi.csv
"""
FEATURE_FORMATS = (
    "GeoJSON (.geojson, .json), GeoPackage (.gpkg), a Shapefile (.shp) "
    "or GeoParquet (.parquet, .geoparquet)"
)
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5")
_TIFF_SUFFIXES = (".tif", ".tiff")
_FEATURE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".parquet", ".geoparquet")

# The first bytes of each format (classic TIFF and BigTIFF, both byte orders).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SHAPEFILE_MAGIC = b"\x00\x00\x27\x0a"  # file code 9994, big-endian
_PARQUET_MAGIC = b"PAR1"
_ZARR_ROOT = ("zarr.json", ".zgroup", ".zmetadata")


def _head(p: Any, n: int = 8, offset: int = 0) -> bytes:
    # A local Path or a storage.RemotePath, whose files read exactly the bytes asked for
    # (one ranged GET), so a remote input is checked without being downloaded.
    with p.open("rb") as f:
        f.seek(offset)
        return f.read(n)


def _starts(head: bytes) -> str:
    return "it is empty" if not head else f"it starts with {head[:8]!r}"


def _check_cube_content(p: Any, label: str, kind: str) -> None:
    """Refuse a cube file whose first bytes are not ``kind``, before any reader opens it."""
    if kind == "Zarr":
        if not p.is_dir():
            raise UsageError(
                f"{label} is not a Zarr store: a Zarr store is a directory, this is a file."
            )
        if not any((p / name).is_file() for name in _ZARR_ROOT):
            raise UsageError(
                f"{label} is not a Zarr store: the directory holds none of {', '.join(_ZARR_ROOT)}."
            )
        _refuse_unlisted_http_zarr(p, label)
        _refuse_pickle_codecs(p, label)
    elif kind == "NetCDF":
        head = _head(p)
        if head[:4] in _NETCDF3_MAGIC:
            raise UsageError(
                f"{label} is a NetCDF-3 (classic) file; extract reads NetCDF-4 (HDF5) files: "
                "convert it with `nccopy -k nc4 IN OUT` or xarray's to_netcdf(engine='h5netcdf')."
            )
        # HDF5 allows a user block before the signature, at a power of two from 512 bytes.
        if not any(_head(p, 8, off) == _HDF5_MAGIC for off in (0, 512, 1024, 2048, 4096)):
            raise UsageError(
                f"{label} is not a NetCDF-4 file: there is no HDF5 signature; {_starts(head)}."
            )
    elif kind == "GeoTIFF":
        head = _head(p)
        if head[:4] not in _TIFF_MAGIC:
            raise UsageError(f"{label} is not a GeoTIFF: no TIFF header; {_starts(head)}.")
    elif kind == "STAC items":
        head = _head(p, 1 << 16).removeprefix(b"\xef\xbb\xbf").lstrip()
        if not head.startswith((b"{", b"[")):
            raise UsageError(
                f"{label} is not STAC items: JSON starts with '{{' or '['; {_starts(head)}."
            )


def _codec_names(meta: Any) -> Iterator[str]:
    """The codec names in one array's metadata (Zarr v2 ``.zarray`` or v3 ``zarr.json``)."""
    if not isinstance(meta, dict):
        return
    codecs = [meta.get("compressor")]
    for key in ("filters", "codecs", "compressors", "index_codecs"):
        value = meta.get(key)
        codecs.extend(value if isinstance(value, list) else [])
    for codec in codecs:
        if isinstance(codec, dict):
            name = codec.get("id", codec.get("name"))
            if isinstance(name, str):
                yield name
            # Sharding nests its own codec chains in its configuration.
            yield from _codec_names(codec.get("configuration"))


def _refuse_unlisted_http_zarr(p: Any, label: str) -> None:
    """Refuse a Zarr store over HTTP(S) without consolidated metadata.

    HTTP has no listing: zarr finds a group's arrays there only in the consolidated metadata
    (v2 ``.zmetadata``, v3 ``consolidated_metadata`` in the root ``zarr.json``). Without it
    xarray opens an empty dataset, and the user would be told the cube has no time dimension.
    """
    from xr_getregion import storage

    if storage.protocol(str(p)) not in ("http", "https") or (p / ".zmetadata").is_file():
        return
    root = p / "zarr.json"
    if root.is_file():
        try:
            meta = json.loads(root.read_bytes())
        except (OSError, ValueError):
            return  # _refuse_pickle_codecs says what is wrong with it
        if isinstance(meta, dict) and isinstance(meta.get("consolidated_metadata"), dict):
            return
    raise UsageError(
        f"{label} is a Zarr store without consolidated metadata, and over HTTP, which has "
        "no listing, its arrays cannot be found. Consolidate it where it is written "
        "(zarr.consolidate_metadata(store), or xarray's to_zarr(..., consolidated=True)), "
        "or read it from object storage (s3://, gs://...)."
    )


def _refuse_pickle_codecs(p: Any, label: str) -> None:
    """Refuse a Zarr store whose arrays use numcodecs' pickle codec.

    Decoding such a chunk unpickles bytes from the file, which can run any code; zarr 2 does it
    for object arrays. Only the metadata of the root and of its direct children (the variables
    xarray opens) is read, never a listing of the chunks.
    """
    files = [p / name for name in (*_ZARR_ROOT, ".zarray")]
    for entry in p.iterdir():
        if entry.is_dir():
            files += [entry / "zarr.json", entry / ".zarray"]
    arrays: list[tuple[str, Any]] = []
    for file in files:
        # Read, not asked first whether it is a file: on object storage that is a request
        # more per file, in turn, and a listing for each one absent.
        try:
            raw = file.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        try:
            meta = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"cannot read {label} as Zarr: {file.relative_to(p)} is not JSON "
                f"({_first_line(exc)})."
            ) from exc
        if not isinstance(meta, dict):
            continue
        name = file.parent.name if file.parent != p else "/"
        arrays.append((name, meta))
        consolidated = meta.get("metadata")  # v2 .zmetadata: {"metadata": {"v/.zarray": ...}}
        if file.name == "zarr.json":  # v3: {"consolidated_metadata": {"metadata": {"v": ...}}}
            inner = meta.get("consolidated_metadata")
            consolidated = inner.get("metadata") if isinstance(inner, dict) else None
        if isinstance(consolidated, dict):
            arrays += [(key.split("/")[0], value) for key, value in consolidated.items()]
    for name, meta in arrays:
        for codec in _codec_names(meta):
            if codec.lower().rsplit(".", 1)[-1] == "pickle":
                raise UsageError(
                    f"{label}: array {name!r} is stored with the {codec!r} codec, which runs "
                    "code from the file when it is read; extract refuses pickled data."
                )


@contextlib.contextmanager
def _warnings_only_on_success() -> Iterator[None]:
    """Hold back the readers' warnings; show them only if the block succeeds.

    A refused input must give exactly one line on stderr, not a reader's warning before it.
    Zarr's note that a store has no consolidated metadata is dropped: xarray reads the store
    either way and the user can do nothing about it here.
    """
    from xr_getregion.errors import GetRegionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "consolidated metadata" in str(w.message):
            continue
        if issubclass(w.category, GetRegionWarning):
            # Ours are about the user's input: one line each, in the command's words.
            print(f"xr-getregion: warning: {_in_cli_words(str(w.message))}", file=sys.stderr)
            continue
        # The libraries' own (zarr's UnstableSpecificationWarning, xarray's calendar notes,
        # GDAL's) say nothing the user of the command can act on: shown with --verbose only.
        if _VERBOSE.get():
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# Set by `extract --verbose`: the libraries' warnings are shown.
_VERBOSE: contextvars.ContextVar[bool] = contextvars.ContextVar("verbose", default=False)


def _in_cli_words(text: str) -> str:
    """A message of the Python API, naming the command's options instead of its arguments."""
    return text.replace("geometry_crs=", "--geometry-crs ")


def _as_path(path: str, storage_options: dict[str, Any] | None = None) -> Any:
    """``Path(path)``, or for a URL (``s3://``, ``https://``...) a storage.RemotePath."""
    from xr_getregion.storage import RemotePath, is_url

    if not is_url(path):
        return Path(path)
    try:
        return RemotePath(path, storage_options)
    except Exception as exc:
        raise UsageError(f"cannot reach {path!r}: {_first_line(exc)}") from exc


def _checked_input(
    path: str,
    role: str,
    kind_of: Callable[[str], str],
    check: Callable[[Any, str, str], None],
    storage_options: dict[str, Any] | None = None,
) -> tuple[Any, str, str]:
    """An input path that exists and whose first bytes are what its extension says: the
    path, its format and the label messages name it by; else UsageError."""
    p = _as_path(path, storage_options)
    if not p.exists():
        raise UsageError(f"{role} {path!r} does not exist.")
    kind = kind_of(path)
    label = f"{role} {path!r}"
    try:
        check(p, label, kind)
    except OSError as exc:
        raise UsageError(f"cannot read {label} as {kind}: {_first_line(exc)}") from exc
    return p, kind, label


def cube_kind(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """The format of CUBE from its name ("Zarr", "NetCDF" or "GeoTIFF"), or UsageError."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".zarr" or _as_path(path, storage_options).is_dir():
        return "Zarr"
    if suffix in _NETCDF_SUFFIXES:
        return "NetCDF"
    if suffix in _TIFF_SUFFIXES:
        return "GeoTIFF"
    if suffix in _STAC_SUFFIXES:
        return "STAC items"
    raise UsageError(f"CUBE {path!r}: unknown format {suffix!r}; give {CUBE_FORMATS}.")


def open_cube(
    path: str,
    variable: str | None = None,
    storage_options: dict[str, Any] | None = None,
    *,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    stac_crs: str | None = None,
) -> xr.DataArray | xr.Dataset:
    """Open a Zarr store, NetCDF-4 file or GeoTIFF lazily (dask-backed); ``path`` may be a
    URL (Zarr through fsspec, NetCDF through h5netcdf on an fsspec file, GeoTIFF through
    GDAL's ``/vsis3/``, ``/vsicurl/``...), with fsspec's ``storage_options``."""
    from xr_getregion import storage

    p, kind, label = _checked_input(
        path,
        "CUBE",
        lambda x: cube_kind(x, storage_options),
        _check_cube_content,
        storage_options,
    )
    remote = storage.is_url(path)
    if kind == "STAC items":
        return _open_stac(path, label, storage_options, bands, resolution, stac_crs)
    try:
        with _warnings_only_on_success():
            if kind == "Zarr":
                if storage.protocol(path) in ("az", "abfs", "abfss"):
                    storage.close_azure_clients_at_exit()
                obj: Any = xr.open_zarr(
                    path if remote else p,
                    decode_coords="all",
                    storage_options=(
                        storage.read_options(path, storage_options) if remote else None
                    ),
                )
            elif kind == "NetCDF":
                source = p.fs.open(p.path, "rb") if remote else p
                obj = xr.open_dataset(source, engine="h5netcdf", chunks={}, decode_coords="all")
            else:
                import rasterio
                import rioxarray

                # driver="GTiff": GDAL may use no other driver, whatever the content says.
                # Inside an Env, GDAL's messages go to rasterio's logger, not straight to
                # stderr, so a damaged header gives our one line and not libtiff's too.
                source = storage.gdal_path(path) if remote else p
                with rasterio.Env(**storage.gdal_options()):
                    obj = rioxarray.open_rasterio(
                        source,
                        chunks={"band": -1, "y": 1024, "x": 1024},
                        driver="GTiff",
                    )
                    with rasterio.open(source, driver="GTiff") as src:
                        descriptions = src.descriptions
                obj = obj.assign_coords(band=_tiff_band_names(obj, descriptions, path))
    except Exception as exc:
        raise UsageError(f"cannot read {label} as {kind}: {_first_line(exc)}") from exc
    if isinstance(obj, xr.Dataset):
        obj = _ids_as_coordinate(obj)
    if variable is not None and kind == "GeoTIFF":
        names = [str(b) for b in obj["band"].values.tolist()]
        if variable not in names:
            raise UsageError(
                f"--variable {variable!r} is not a band of CUBE {path!r}; it has {names}."
            )
        obj = obj.sel(band=[variable])
    elif variable is not None:
        if not isinstance(obj, xr.Dataset) or variable not in obj.data_vars:
            names = [str(n) for n in obj.data_vars] if isinstance(obj, xr.Dataset) else [obj.name]
            raise UsageError(f"--variable {variable!r} is not in CUBE {path!r}; it has {names}.")
        obj = _variable(obj, variable)
    elif isinstance(obj, xr.Dataset):
        obj = _the_cube_of(obj, path)
    if kind != "GeoTIFF":
        dims = set(obj.dims)
        spatial = {"y", "x", "lat", "lon", "latitude", "longitude"}
        if not dims & {"time", "t"} and not any(
            np.issubdtype(obj[d].dtype, np.datetime64) for d in dims - spatial if d in obj.coords
        ):
            raise UsageError(
                f"CUBE {path!r} has no time dim (dims: {sorted(dims)}): extract works on "
                "time-stacked cubes. Add one (cube.expand_dims(time=[...])) or use a GeoTIFF."
            )
    return obj


_SPATIAL_PAIRS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))


def _tiff_band_names(obj: xr.DataArray, descriptions: Sequence[Any], path: str) -> list[Any]:
    """A GeoTIFF's band names: its band descriptions (GDAL's, per band); else a single band is
    named by the file's stem (``ndvi.tif`` gives ``ndvi``), not GDAL's number ``1``, and
    several keep their numbers."""
    n = obj.sizes["band"]
    # Descriptions name the bands only if each band has its own (rioxarray's to_raster writes
    # the variable's long_name into every band's).
    if len(descriptions) == n and all(descriptions) and len(set(descriptions)) == n:
        return [str(d) for d in descriptions]
    if n == 1:
        stem = path.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        return [stem.rsplit(".", 1)[0] or "1"]
    return obj["band"].values.tolist()


def _ids_as_coordinate(ds: xr.Dataset) -> xr.Dataset:
    """Image ids that a NetCDF round trip turned into a data variable (``system:index`` or
    ``id`` along the time dim, strings) are the images' ids again, not a band."""
    for name in ("system:index", "id"):
        var = ds.data_vars.get(name)
        if var is not None and var.ndim == 1 and var.dtype.kind in "OSU":
            ds = ds.set_coords(name)
    return ds


def _open_stac(
    path: str,
    label: str,
    storage_options: dict[str, Any] | None,
    bands: Sequence[str] | None,
    resolution: float | None,
    crs: str | None,
) -> xr.Dataset:
    """STAC items loaded by odc-stac (xr_getregion.stac), each asset to be loaded checked
    first to be a TIFF (its first bytes, a ranged read), as a GeoTIFF CUBE is."""
    from concurrent.futures import ThreadPoolExecutor

    from xr_getregion.errors import GetRegionError
    from xr_getregion.stac import read_items, stac_cube

    try:
        items = read_items(path, storage_options)
    except GetRegionError as exc:
        raise UsageError(
            f"{label}: a .json CUBE holds STAC items, and "
            f"{_first_line(exc).removeprefix('STAC items: ')}"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read {label} as STAC items: {_first_line(exc)}") from exc
    keys = list(bands) if bands is not None else None
    hrefs = sorted(
        {a.href for i in items for k, a in i.assets.items() if keys is None or k in keys}
    )
    missing = sorted({k for k in keys or () if not any(k in i.assets for i in items)})
    if missing:
        have = sorted({k for i in items for k in i.assets})
        raise UsageError(f"--bands {missing} are not assets of {label}; it has {have}.")

    def check(href: str) -> None:
        asset = _as_path(href, storage_options)
        asset_label = f"asset {href!r} of {label}"
        try:
            head = _head(asset)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {asset_label}: {_first_line(exc)}") from exc
        if head[:4] not in _TIFF_MAGIC:
            raise UsageError(f"{asset_label} is not a GeoTIFF: no TIFF header; {_starts(head)}.")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, hrefs))
    try:
        with _warnings_only_on_success():
            return stac_cube(items, keys, resolution, crs, storage_options=storage_options)
    except GetRegionError as exc:
        raise UsageError(f"{label}: {_first_line(exc).removeprefix('STAC items: ')}") from exc


def _variable(ds: xr.Dataset, name: str) -> xr.DataArray:
    """``ds[name]``, keeping the Dataset's ``crs`` and ``transform`` attributes (the ones the
    cube is read from) where the variable has none."""
    var = ds[name]
    extra = {k: ds.attrs[k] for k in ("crs", "transform") if k in ds.attrs and k not in var.attrs}
    return var.assign_attrs(extra) if extra else var


def _the_cube_of(ds: xr.Dataset, path: str) -> xr.DataArray | xr.Dataset:
    """The cube a store holds when no --variable is given.

    A store of one raster variable (what ``cube.to_dataset(name=...).to_zarr(...)`` writes)
    is that variable, with its ``band`` dim if it has one. Several raster variables are the
    bands of a Dataset, unless one has a ``band`` dim of its own: then the store holds
    several cubes and the user picks one.
    """
    rasters = [
        str(name)
        for name, var in ds.data_vars.items()
        if any(y in var.dims and x in var.dims for y, x in _SPATIAL_PAIRS)
    ]
    if len(rasters) == 1:
        return _variable(ds, rasters[0])
    banded = [name for name in rasters if "band" in ds[name].dims]
    if banded:
        raise UsageError(
            f"CUBE {path!r} holds {len(rasters)} data variables {rasters}, and {banded} "
            "have a 'band' dim, so they are not one band each: choose one with --variable "
            f"NAME (e.g. --variable {banded[0]})."
        )
    return ds


def _feature_kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _FEATURE_SUFFIXES:
        raise UsageError(f"FEATURES {path!r}: unknown format {suffix!r}; give {FEATURE_FORMATS}.")
    return {".gpkg": "GeoPackage", ".shp": "a Shapefile"}.get(
        suffix, "GeoParquet" if "parquet" in suffix else "GeoJSON"
    )


def _check_feature_content(p: Any, label: str, kind: str) -> None:
    """Refuse a features file whose first bytes are not ``kind``, before GDAL or pyarrow."""
    if kind == "GeoParquet" and p.is_dir():
        return  # a Parquet dataset directory: pyarrow checks each of its files
    if p.is_dir():
        raise UsageError(f"{label} is a directory, not {kind}.")
    # GeoJSON may start with a byte-order mark and any amount of white space.
    head = _head(p, 1 << 16 if kind == "GeoJSON" else 16)
    if kind == "GeoJSON":
        if not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
            raise UsageError(
                f"{label} is not GeoJSON: a JSON object starts with '{{'; {_starts(head)}."
            )
    elif kind == "GeoPackage" and not head.startswith(_SQLITE_MAGIC):
        raise UsageError(f"{label} is not a GeoPackage (SQLite) file; {_starts(head)}.")
    elif kind == "a Shapefile" and not head.startswith(_SHAPEFILE_MAGIC):
        raise UsageError(f"{label} is not a Shapefile: no .shp header; {_starts(head)}.")
    elif kind == "GeoParquet":
        size = p.stat().st_size
        if size < 12 or not head.startswith(_PARQUET_MAGIC) or _head(p, 4, size - 4) != b"PAR1":
            raise UsageError(f"{label} is not a Parquet file: no PAR1 marks; {_starts(head)}.")


def read_feature_file(
    path: str, geometry_crs: str | None = None, storage_options: dict[str, Any] | None = None
) -> Any:
    """Read GeoJSON, GeoPackage, Shapefile or GeoParquet features with geopandas; features
    without a CRS need ``geometry_crs`` (``--geometry-crs``). ``path`` may be a URL."""
    import geopandas as gpd

    from xr_getregion import storage

    p, kind, label = _checked_input(
        path, "FEATURES", _feature_kind, _check_feature_content, storage_options
    )
    try:
        with _warnings_only_on_success():
            if not storage.is_url(path):
                gdf = gpd.read_parquet(p) if kind == "GeoParquet" else gpd.read_file(p)
            elif kind == "GeoParquet":
                gdf = gpd.read_parquet(path, storage_options=storage_options)
            elif kind == "a Shapefile":
                # Its .shx, .dbf and .prj sit beside it: GDAL's /vsi readers find them.
                import rasterio

                with rasterio.Env(**storage.gdal_options()):
                    gdf = gpd.read_file(storage.gdal_path(path))
            else:
                with p.fs.open(p.path, "rb") as f, warnings.catch_warnings():
                    # pyogrio reads the bytes from a /vsimem/ name without the extension.
                    warnings.filterwarnings("ignore", "File /vsimem/.* non conformant")
                    gdf = gpd.read_file(f)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read {label} as {kind}: {_first_line(exc)}") from exc
    if gdf.crs is None and geometry_crs is None:
        raise UsageError(
            f"FEATURES {path!r} have no CRS: set one in the file (for a Shapefile, its .prj), "
            "e.g. gdf.set_crs('EPSG:4326').to_file(...), or pass --geometry-crs."
        )
    if len(gdf) == 0:
        raise UsageError(f"FEATURES {path!r} hold no feature.")
    return gdf


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _describe(exc: BaseException) -> str:
    """``Type: first line``, and the cause's when there is one (GDAL's reads chain the detail)."""
    text = f"{type(exc).__name__}: {_first_line(exc)}"
    cause = exc.__cause__
    if cause is not None and _first_line(cause) not in text:
        text += f" ({type(cause).__name__}: {_first_line(cause)})"
    return text


def _as_flags(exc: BaseException) -> str:
    """The first line of an output error, naming the command's flag, not the Python argument."""
    return _first_line(exc).replace("overwrite=True", "--overwrite")


def _crs_transform(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"--crs-transform {text!r} must be 6 numbers a,b,c,d,e,f.") from exc
    if len(values) != 6:
        raise UsageError(f"--crs-transform needs 6 numbers a,b,c,d,e,f; got {len(values)}.")
    return values


def _bands(text: str | None) -> list[str] | None:
    """--bands B4,B8: the asset keys of STAC items to load."""
    return _names(text, "--bands")


def _names(text: str | None, flag: str) -> list[str] | None:
    """A comma-separated list of names (--bands, --properties)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(f"{flag} needs names separated by commas; got {text!r}.")
    return names


@contextlib.contextmanager
def _library_warnings_hidden(verbose: bool) -> Iterator[None]:
    """While the job runs, the libraries' warnings only with --verbose (ours always)."""
    from xr_getregion.errors import GetRegionWarning

    with warnings.catch_warnings():
        if not verbose:
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", category=GetRegionWarning)
        yield


def _storage_options(text: str | None) -> dict[str, Any] | None:
    """--storage-options: a JSON object of fsspec options for every URL of the command."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"--storage-options must be a JSON object, e.g. '{{\"anon\": true}}'; got {text!r}."
        ) from exc
    if not isinstance(value, dict):
        raise UsageError(f"--storage-options must be a JSON object; got {text!r}.")
    return value


def _max_values(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise UsageError(f"--max-values must be a whole number or 'none'; got {text!r}.") from exc


def _pyramiding(text: str) -> Any:
    """``--pyramiding``: a policy, ``none``, or ``BAND=policy,...`` (``.default=`` for the
    others), checked here so a typo costs no read."""
    from xr_getregion.pyramid import POLICIES

    def policy(value: str, flag: str) -> str:
        if value.lower() not in POLICIES:
            raise UsageError(
                f"--pyramiding {flag!r}: {value!r} is no policy; use one of "
                f"{', '.join(POLICIES)}, none, or BAND=policy,.default=policy."
            )
        return value.lower()

    if text.lower() == "none":
        return None
    if "=" not in text:
        return policy(text, text)
    out = {}
    for item in text.split(","):
        band, sep, value = item.partition("=")
        if not sep or not band:
            raise UsageError(
                f"--pyramiding {text!r}: {item!r} is not BAND=policy (e.g. "
                "QA_PIXEL=sample,.default=mean)."
            )
        out[band.strip()] = policy(value.strip(), text)
    return out


@contextlib.contextmanager
def _scheduler(address: str | None, workers: int | None) -> Iterator[Any]:
    """A distributed client for --scheduler / --workers, else the local threaded scheduler."""
    if address is None and workers is None:
        yield None
        return
    import distributed

    if address is not None:
        try:
            client = distributed.Client(address, timeout="10s")
        except OSError as exc:
            raise UsageError(f"cannot reach the scheduler at {address!r}: {exc}") from exc
        with client:
            yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def extract(args: argparse.Namespace) -> int:
    """The batch job: extract FEATURES from CUBE into TABLE."""
    import dask

    from xr_getregion import storage
    from xr_getregion.api import get_region
    from xr_getregion.errors import ArgumentError, GetRegionError, OutputExistsError
    from xr_getregion.output import check_target, write_table

    storage_options = _storage_options(args.storage_options)
    _VERBOSE.set(args.verbose)
    remote_out = storage.is_url(args.out)
    out = Path(args.out)
    if not args.out.lower().rstrip("/").endswith((".parquet", ".csv")):
        raise UsageError(f"--out {args.out!r} must end in .parquet or .csv.")
    if "*" in args.out:
        # Checked before the cube is opened; write_table refuses it too (dask's wildcard).
        raise UsageError(
            f"--out {args.out!r} holds a '*', which dask's writers read as a partition-number "
            f"wildcard; rename it without '*' (e.g. {args.out.replace('*', '_')!r})."
        )
    try:
        if remote_out:
            storage.check_remote_target(args.out, args.overwrite, storage_options)
        else:
            check_target(out, args.overwrite)
    except (OutputExistsError, ArgumentError) as exc:
        raise UsageError(f"cannot write --out {args.out!r}: {_as_flags(exc)}") from exc
    except OSError as exc:
        raise UsageError(f"cannot reach --out {args.out!r}: {_first_line(exc)}") from exc
    if not remote_out and out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: {str(out.parent)!r} is not a directory.")
    crs_transform = _crs_transform(args.crs_transform)
    max_values = _max_values(args.max_values)
    pyramiding = _pyramiding(args.pyramiding)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1; got {args.workers}.")
    # Both paths are checked before either file is opened, so a typo costs no read.
    for label, path in (("CUBE", args.cube), ("FEATURES", args.geometry)):
        if not _as_path(path, storage_options).exists():
            raise UsageError(f"{label} {path!r} does not exist.")
    cube_kind(args.cube, storage_options)
    _feature_kind(args.geometry)
    # GDAL (rasterio's and pyogrio's) reads its S3 endpoint from the environment; set it from
    # AWS_ENDPOINT_URL here, before worker processes are started, so they inherit it.
    storage.export_gdal_options()
    start = time.perf_counter()
    # A reader's warning (a GeoTIFF without georeferencing, say) would be a second line before
    # the error it leads to; it is shown only if the inputs pass.
    with _warnings_only_on_success():
        cube = open_cube(
            args.cube,
            args.variable,
            storage_options,
            bands=_bands(args.bands),
            resolution=args.resolution,
            stac_crs=None if args.crs == "native" else args.crs,
        )
        features = read_feature_file(args.geometry, args.geometry_crs, storage_options)
        try:
            table = get_region(
                cube,
                features,
                args.scale,
                args.crs,
                crs_transform,
                max_values=max_values,
                id_column=args.id_column,
                lazy=True,
                properties=_names(args.properties, "--properties"),
                geometry_crs=args.geometry_crs,
                pyramiding=pyramiding,
            )
        except GetRegionError as exc:
            raise UsageError(_in_cli_words(str(exc))) from exc
    with _scheduler(args.scheduler, args.workers) as client:
        if args.progress and client is None:
            from dask.diagnostics import ProgressBar

            progress: Any = ProgressBar()
        else:
            progress = contextlib.nullcontext()
        with (
            progress,
            dask.config.set(scheduler=client or "threads"),
            _library_warnings_hidden(args.verbose),
        ):
            existed = _as_path(args.out, storage_options).exists()
            try:
                written = write_table(
                    table,
                    args.out if remote_out else out,
                    overwrite=args.overwrite,
                    progress=args.progress,
                    storage_options=storage_options,
                )
            except ArgumentError as exc:
                raise UsageError(f"cannot write --out {args.out!r}: {_as_flags(exc)}") from exc
            except GetRegionError as exc:
                raise UsageError(str(exc)) from exc
            except Exception as exc:
                # A chunk that cannot be decoded, a worker lost too often, a full disk: the
                # input passed every check, so this is the job failing, not a usage error.
                # write_table has removed its temporary; say what is (not) on disk.
                kept = "the old table is kept" if existed else "nothing was written"
                raise JobFailed(
                    f"extract failed and {kept} at --out {args.out!r}: {_describe(exc)}"
                ) from exc
    elapsed = time.perf_counter() - start
    print(
        f"wrote {written} ({table.npartitions} partitions) from {len(features)} features "
        f"in {elapsed:.1f} s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xr-getregion`` and ``python -m xr_getregion``.

    Ctrl-C anywhere gives one line and exit status 130; SIGTERM (``kill``, ``timeout``, batch
    schedulers) and SIGHUP (a closed terminal) give one line and 128 + the signal number. Each
    unwinds through write_table's cleanup first, so no temporary directory is left behind.
    (Ctrl-C while the package is still being imported, before this runs, is handled by
    ``xr_getregion._signals``.)
    """
    try:
        with command_start_over(), terminate_as_exit():
            return _main(argv)
    except UsageError as exc:
        _say(f"xr-getregion: error: {exc}")
        return 2
    except JobFailed as exc:
        if _caused_by_ctrl_c(exc):
            _say(INTERRUPTED)
            return 130
        _say(f"xr-getregion: error: {exc}")
        return 1
    except KeyboardInterrupt:
        # write_table removes its temporary on any exit, so there is nothing half-written.
        _say(INTERRUPTED)
        return 130
    except Terminated as exc:
        _say(f"xr-getregion: stopped by {exc.name}; no table was written.")
        return 128 + exc.signum


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the chain: Ctrl-C lands wherever the main thread is,
    and some code wraps what it catches (CPython, one raised in ``__set_name__``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _say(line: str) -> None:
    # After SIGHUP the terminal may be gone; the exit status still tells.
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="xr-getregion",
        description="Earth Engine's ImageCollection.getRegion for xarray cubes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser(
        "demo", help="run the EE reference page's example on the built-in sample cube"
    )
    run_demo.set_defaults(func=demo)
    run = commands.add_parser(
        "extract",
        help="extract many features from a cube file into a Parquet or CSV table",
        description="Extract every feature of FEATURES from CUBE (Zarr, NetCDF, GeoTIFF or "
        "STAC items) into TABLE (.parquet or .csv), reading only the chunks the features "
        "cover. Paths may be s3://, gs://, az:// or https:// URLs.",
        epilog=EXTRACT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "cube",
        metavar="CUBE",
        help="Zarr store, NetCDF file, GeoTIFF or STAC items (.json); a path or "
        "an s3://, gs://, az:// or https:// URL",
    )
    run.add_argument(
        "--geometry",
        required=True,
        metavar="FEATURES",
        help="GeoJSON, GeoPackage, Shapefile or GeoParquet features",
    )
    run.add_argument("--out", required=True, metavar="TABLE", help="output .parquet or .csv")
    run.add_argument("--scale", type=float, help="working grid scale in metres (EE's scale)")
    run.add_argument(
        "--crs", default="native", help="working grid CRS (default: the cube's own grid)"
    )
    run.add_argument("--crs-transform", metavar="a,b,c,d,e,f", help="working grid transform")
    run.add_argument(
        "--geometry-crs", metavar="CRS", help="the features' CRS (overrides the file's)"
    )
    run.add_argument("--variable", metavar="NAME", help="one data variable of the cube")
    run.add_argument(
        "--bands",
        "--assets",
        metavar="KEY,KEY",
        help="STAC items: the asset keys to load as bands (default: all)",
    )
    run.add_argument(
        "--resolution",
        type=float,
        metavar="R",
        help="STAC items: pixel size to load at, in --crs units (default: "
        "the items' own); --crs also sets the CRS they are loaded in",
    )
    run.add_argument("--id-column", metavar="COL", help="feature column naming each feature")
    run.add_argument(
        "--properties", metavar="COL,COL", help="feature columns to copy into each row"
    )
    run.add_argument(
        "--max-values",
        default="none",
        metavar="N|none",
        help="refuse more values than N (default: none, no limit)",
    )
    run.add_argument(
        "--pyramiding",
        default="mean",
        metavar="POLICY",
        help="at a scale coarser than the cube's, EE's pyramid blocks: mean "
        "(default), sample, min, max, mode, none (the nearest pixel), or "
        "BAND=policy,.default=policy",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a dask.distributed scheduler")
    where.add_argument(
        "--workers", type=int, metavar="N", help="start a local cluster of N worker processes"
    )
    run.add_argument("--progress", action="store_true", help="show a progress bar")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' warnings (zarr, xarray, GDAL)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing TABLE")
    run.add_argument(
        "--storage-options",
        metavar="JSON",
        help="fsspec options for s3://, gs://, az://, https:// paths, e.g. "
        "'{\"anon\": true}' (credentials otherwise from the environment)",
    )
    run.set_defaults(func=extract)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
