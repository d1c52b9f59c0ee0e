"""The ``xr-getregion`` command line.

``demo`` runs Earth Engine's reference example on the sample cube; ``extract`` is the batch
job: a cube file, a features file, a table file, on this machine or a dask cluster. Bad input
gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from pprint import pformat
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command's input, reported as one line."""


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


def open_cube(path: str, variable: str | None = None) -> xr.DataArray | xr.Dataset:
    """Open a Zarr store, NetCDF file or GeoTIFF lazily (dask-backed)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"CUBE {path!r} does not exist.")
    suffix = p.suffix.lower()
    try:
        if p.is_dir() or suffix == ".zarr":
            kind = "Zarr"
            obj: Any = xr.open_zarr(p, decode_coords="all")
        elif suffix in (".nc", ".nc4", ".netcdf", ".h5"):
            kind = "NetCDF"
            obj = xr.open_dataset(p, engine="h5netcdf", chunks={}, decode_coords="all")
        elif suffix in (".tif", ".tiff"):
            import rioxarray

            kind = "GeoTIFF"
            obj = rioxarray.open_rasterio(p, chunks={"band": -1, "y": 1024, "x": 1024})
            descriptions = obj.attrs.get("long_name")
            if isinstance(descriptions, tuple | list) and len(descriptions) == obj.sizes["band"]:
                obj = obj.assign_coords(band=list(descriptions))
        else:
            raise UsageError(
                f"CUBE {path!r}: unknown format {suffix!r}; give a Zarr store (directory or "
                ".zarr), a NetCDF file (.nc) or a GeoTIFF (.tif)."
            )
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read CUBE {path!r} as {kind}: {_first_line(exc)}") from exc
    if variable is not None:
        if not isinstance(obj, xr.Dataset) or variable not in obj.data_vars:
            names = list(obj.data_vars) if isinstance(obj, xr.Dataset) else [obj.name]
            raise UsageError(f"--variable {variable!r} is not in CUBE {path!r}; it has {names}.")
        obj = obj[variable]
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


def read_feature_file(path: str) -> Any:
    """Read GeoJSON, GeoPackage, Shapefile or GeoParquet features with geopandas."""
    import geopandas as gpd

    p = Path(path)
    if not p.exists():
        raise UsageError(f"FEATURES {path!r} does not exist.")
    suffix = p.suffix.lower()
    if suffix not in (".geojson", ".json", ".gpkg", ".shp", ".parquet", ".geoparquet"):
        raise UsageError(
            f"FEATURES {path!r}: unknown format {suffix!r}; give GeoJSON, GeoPackage (.gpkg), "
            "a Shapefile (.shp) or GeoParquet (.parquet)."
        )
    try:
        gdf = gpd.read_parquet(p) if suffix in (".parquet", ".geoparquet") else gpd.read_file(p)
    except Exception as exc:
        raise UsageError(f"cannot read FEATURES {path!r}: {_first_line(exc)}") from exc
    if gdf.crs is None:
        raise UsageError(
            f"FEATURES {path!r} have no CRS: set one in the file (for a Shapefile, its .prj), "
            "e.g. gdf.set_crs('EPSG:4326').to_file(...)."
        )
    if len(gdf) == 0:
        raise UsageError(f"FEATURES {path!r} hold no feature.")
    return gdf


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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


def _max_values(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise UsageError(f"--max-values must be a whole number or 'none'; got {text!r}.") from exc


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

    from xr_getregion.api import get_region
    from xr_getregion.errors import GetRegionError
    from xr_getregion.output import write_table

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"--out {args.out!r} must end in .parquet or .csv.")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {args.out!r} exists; remove it or pass --overwrite.")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: {str(out.parent)!r} is not a directory.")
    crs_transform = _crs_transform(args.crs_transform)
    max_values = _max_values(args.max_values)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1; got {args.workers}.")
    cube = open_cube(args.cube, args.variable)
    features = read_feature_file(args.geometry)
    start = time.perf_counter()
    try:
        table = get_region(
            cube, features, args.scale, args.crs, crs_transform,
            max_values=max_values, id_column=args.id_column, lazy=True,
        )  # fmt: skip
    except GetRegionError as exc:
        raise UsageError(str(exc)) from exc
    with _scheduler(args.scheduler, args.workers) as client:
        if args.progress and client is None:
            from dask.diagnostics import ProgressBar

            progress: Any = ProgressBar()
        else:
            progress = contextlib.nullcontext()
        with progress, dask.config.set(scheduler=client or "threads"):
            try:
                written = write_table(table, out, overwrite=args.overwrite, progress=args.progress)
            except (GetRegionError, OSError) as exc:
                raise UsageError(f"cannot write --out {args.out!r}: {_first_line(exc)}") from exc
    elapsed = time.perf_counter() - start
    print(
        f"wrote {written} ({table.npartitions} partitions) from {len(features)} features "
        f"in {elapsed:.1f} s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xr-getregion`` and ``python -m xr_getregion``."""
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
        description="Extract every feature of FEATURES from CUBE (Zarr, NetCDF or GeoTIFF) "
        "into TABLE (.parquet or .csv), reading only the chunks the features cover.",
    )
    run.add_argument("cube", metavar="CUBE", help="Zarr store, NetCDF file or GeoTIFF")
    run.add_argument("--geometry", required=True, metavar="FEATURES",
                     help="GeoJSON, GeoPackage, Shapefile or GeoParquet features")  # fmt: skip
    run.add_argument("--out", required=True, metavar="TABLE", help="output .parquet or .csv")
    run.add_argument("--scale", type=float, help="working grid scale in metres (EE's scale)")
    run.add_argument("--crs", default="native",
                     help="working grid CRS (default: the cube's own grid)")  # fmt: skip
    run.add_argument("--crs-transform", metavar="a,b,c,d,e,f", help="working grid transform")
    run.add_argument("--variable", metavar="NAME", help="one data variable of the cube")
    run.add_argument("--id-column", metavar="COL", help="feature column naming each feature")
    run.add_argument("--max-values", default="none", metavar="N|none",
                     help="refuse more values than N (default: none, no limit)")  # fmt: skip
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a dask.distributed scheduler")
    where.add_argument("--workers", type=int, metavar="N",
                       help="start a local cluster of N worker processes")  # fmt: skip
    run.add_argument("--progress", action="store_true", help="show a progress bar")
    run.add_argument("--overwrite", action="store_true", help="replace an existing TABLE")
    run.set_defaults(func=extract)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"xr-getregion: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
