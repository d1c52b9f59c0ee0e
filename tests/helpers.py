"""Shared test helpers: small cubes, a chunk-read counter and a scheduler that forbids computes.

Imported as ``from tests.helpers import ...``; ``conftest.py`` holds the fixtures only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
import xarray as xr

import xr_getregion


class CountingScheduler:
    """A dask scheduler that counts computes and fails past ``max_computes`` (xarray's idea)."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many computes: {self.total_computes} > {self.max_computes} allowed."
            )
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Fail if dask computes more than ``max_computes`` times inside the block."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


class CountingArray:
    """A numpy array behind ``__getitem__`` that records every read, for ``da.from_array``."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.ndim = values.ndim
        self.reads: list[tuple[slice, ...]] = []
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._lock:
            self.reads.append(key)
        return self.values[key]

    def windows(self) -> set[tuple[int, int, int, int]]:
        """The ``(y0, y1, x0, x1)`` of every read, over images and bands."""
        return {(k[-2].start, k[-2].stop, k[-1].start, k[-1].stop) for k in self.reads}


def counting_dask(values: np.ndarray, chunks: Any) -> tuple[da.Array, CountingArray]:
    source = CountingArray(values)
    meta = np.empty((0,) * values.ndim, values.dtype)
    return da.from_array(source, chunks=chunks, meta=meta, asarray=False), source


def cube_values(nt: int, nb: int, ny: int, nx: int, dtype: Any = np.float32) -> np.ndarray:
    """Distinct values that encode their (t, b, y, x) position: t*1e6 + b*1e5 + y*300 + x."""
    t, b, y, x = np.meshgrid(
        np.arange(nt), np.arange(nb), np.arange(ny), np.arange(nx), indexing="ij"
    )
    return (t * 1_000_000 + b * 100_000 + y * 300 + x).astype(dtype)


def make_cube(
    ny: int = 20,
    nx: int = 30,
    nt: int = 3,
    bands: Sequence[str] = ("a", "b"),
    *,
    crs: str | None = "EPSG:32615",
    x0: float = 500_000.0,
    y0: float = 4_000_000.0,
    res: float = 30.0,
    south_up: bool = False,
    dtype: Any = np.float32,
    data: Any = None,
) -> xr.DataArray:
    """A (time, band, y, x) cube whose pixel (y, x) has edges x0 + res*x, y0 -/+ res*y."""
    values = cube_values(nt, len(bands), ny, nx, dtype) if data is None else data
    dy = res if south_up else -res
    cube = xr.DataArray(
        values,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(
                ["2021-01-01T00:00:00", "2021-01-17T10:30:00", "2021-02-02T00:00:01.5"][:nt]
                + [f"2021-03-{d:02d}" for d in range(1, max(nt - 3, 0) + 1)],
                dtype="datetime64[ms]",
            ),
            "band": list(bands),
            "y": y0 + dy * (np.arange(ny) + 0.5),
            "x": x0 + res * (np.arange(nx) + 0.5),
        },
        name="v",
    )
    if crs is not None:
        cube = cube.rio.write_crs(crs)
    return cube


CHUNKINGS = [
    None,  # numpy
    (1, 1, 7, 11),
    (2, 2, 20, 30),
    (3, 1, 4, 30),
    (1, 2, 20, 5),
]


def chunked(cube: xr.DataArray, chunks: Any) -> xr.DataArray:
    if chunks is None:
        return cube
    return cube.chunk(dict(zip(cube.dims, chunks, strict=True)))


def write_slow_job(root: Path) -> Path:
    """A Zarr cube (``root/cube.zarr``, variable ``r``) and 2,000 points over it
    (``root/points.geojson``): an ``extract`` of 100 partitions that takes a few seconds on 2
    cores, long enough to be signalled while its parts are written."""
    import geopandas as gpd

    cube = xr_getregion.sample_cube().isel(x=slice(0, 320), y=slice(0, 320))
    cube.chunk({"time": 1, "band": -1, "y": 32, "x": 32}).to_dataset(name="r").to_zarr(
        root / "cube.zarr"
    )
    x0, y0 = float(cube.x[0]), float(cube.y[0])
    rng = np.random.default_rng(5)
    points = gpd.points_from_xy(rng.uniform(x0, x0 + 9500, 2000), rng.uniform(y0 - 9500, y0, 2000))
    gpd.GeoDataFrame({"name": range(2000)}, geometry=points, crs=cube.rio.crs).to_file(
        root / "points.geojson"
    )
    return root


def write_cube_files(cube: xr.DataArray, root: Path) -> None:
    """The CLI's inputs: ``cube`` as ``cube.zarr``, as ``cube.nc`` (NetCDF holds no ``id``
    strings) and its first image as ``image.tif``."""
    cube.to_dataset("band").to_zarr(root / "cube.zarr")
    cube.to_dataset("band").drop_vars("id").to_netcdf(root / "cube.nc", engine="h5netcdf")
    cube.isel(time=0).rio.to_raster(root / "image.tif")


def random_fields(
    cube: xr.DataArray,
    seed: int,
    *,
    boxes: int,
    box: tuple[float, float],
    box_span: tuple[float, float],
    points: int,
    point_span: tuple[float, float],
) -> gpd.GeoDataFrame:
    """``boxes`` rectangles of ``box`` (width, height in metres) whose top-left corners lie
    within ``box_span`` of the cube's first pixel centre, then ``points`` points within
    ``point_span`` of it (east, south), named ``f0, f1, ...``; in lon/lat. ``cube`` is on a
    UTM grid (EPSG:32615, the sample cube's)."""
    x0, y0 = float(cube.x[0]), float(cube.y[0])
    rng = np.random.default_rng(seed)
    (w, h), (sx, sy), (px, py) = box, box_span, point_span
    corners = zip(rng.uniform(0, sx, boxes), rng.uniform(0, sy, boxes), strict=True)
    shapes = [shapely.box(x0 + a, y0 - b - h, x0 + a + w, y0 - b) for a, b in corners]
    shapes += list(
        gpd.points_from_xy(rng.uniform(x0, x0 + px, points), rng.uniform(y0 - py, y0, points))
    )
    names = [f"f{i}" for i in range(boxes + points)]
    return gpd.GeoDataFrame({"name": names}, geometry=shapes, crs="EPSG:32615").to_crs(4326)


def write_geotiff(
    path: Any,
    values: np.ndarray,
    transform: Any,
    *,
    crs: str = "EPSG:32615",
    nodata: Any = None,
    tile: int | None = None,
    cog: bool = False,
    compress: str | None = "deflate",
) -> None:
    """Write ``values`` (``(y, x)`` or ``(band, y, x)``) as a GeoTIFF with rasterio: tiled
    ``tile`` x ``tile`` when given, a Cloud-Optimized GeoTIFF without overviews with
    ``cog``. The tests read such files back with rasterio as their reference."""
    import rasterio

    stack = values[None] if values.ndim == 2 else values
    profile: dict[str, Any] = {
        "width": stack.shape[2],
        "height": stack.shape[1],
        "count": stack.shape[0],
        "dtype": stack.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if compress:
        profile["compress"] = compress
    if cog:
        profile.update(driver="COG", blocksize=tile or 512, overviews="none")
    else:
        profile["driver"] = "GTiff"
        if tile:
            profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(stack)
