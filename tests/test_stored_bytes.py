"""``plan().reads()``'s ``fetch_bytes`` for the stores whose blocks' stored sizes are known
without reading them: chunked netCDF4/HDF5 variables in local files (both of xarray's
engines) and sharded Zarr v3 arrays in a local directory.

The expected bytes never come from the package: for HDF5, h5py's own chunk index
(``get_chunk_info``, every chunk of the dataset) summed over the chunks holding the pixels
the table returns, found from the table's coordinates and the file's transform by
rasterio; for sharded Zarr, the bytes a counting store served while the extraction ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio.transform
import shapely
import xarray as xr
from pyproj import Transformer

import xr_getregion  # noqa: F401  (registers .ee)
from tests.helpers import raise_if_dask_computes

pytest.importorskip("h5py")

UTM = "EPSG:32615"
RES = 30.0
X0, Y0 = 600_000.0, 4_200_000.0
TRANSFORM = rasterio.transform.from_origin(X0, Y0, RES, RES)
TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
HEIGHT, WIDTH = 300, 400
#: HDF5 chunks, not square, so that swapped axes would count other chunks.
CHUNK = (1, 64, 48)


def make_dataset(n_times: int = 2) -> xr.Dataset:
    """``ndvi`` (noise, with a band of zeros that compresses to little, so that chunks
    differ in stored size) and ``flat``, on :data:`TRANSFORM`'s grid in :data:`UTM`."""
    rng = np.random.default_rng(11)
    values = rng.normal(size=(n_times, HEIGHT, WIDTH)).astype("float32")
    values[-1, : HEIGHT // 2] = 0
    dims = ("time", "y", "x")
    dataset = xr.Dataset(
        {"ndvi": (dims, values), "flat": (dims, values * 2)},
        coords={
            "time": np.datetime64("2022-05-03", "ns")
            + np.arange(n_times) * np.timedelta64(10, "D"),
            "y": Y0 - RES * (np.arange(HEIGHT) + 0.5),
            "x": X0 + RES * (np.arange(WIDTH) + 0.5),
        },
    ).rio.write_crs(UTM)
    for name in ("ndvi", "flat"):
        dataset[name].attrs["grid_mapping"] = "spatial_ref"  # CF: the variable names its CRS
    return dataset


def box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A rectangle from pixel column ``col0`` to ``col1`` and row ``row0`` to ``row1``."""
    return shapely.box(X0 + RES * col0, Y0 - RES * row1, X0 + RES * col1, Y0 - RES * row0)


def scattered_points(n: int, seed: int = 3) -> shapely.MultiPoint:
    rng = np.random.default_rng(seed)
    cols, rows = rng.uniform(0, WIDTH, n), rng.uniform(0, HEIGHT, n)
    return shapely.multipoints(np.c_[X0 + RES * cols, Y0 - RES * rows])


def table_pixels(table: Any) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of the file's pixels the table's rows are at (rasterio's
    reading of the transform)."""
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    rows, cols = rasterio.transform.rowcol(TRANSFORM, x, y)
    return np.asarray(rows), np.asarray(cols)


def hdf5_chunk_bytes(path: Path, name: str, rows: np.ndarray, cols: np.ndarray) -> int:
    """The stored bytes of the chunks of dataset ``name`` holding pixels ``(rows, cols)``,
    at every time, from h5py's listing of all of the dataset's chunks."""
    import h5py

    with h5py.File(path, "r") as f:
        dataset = f[name]
        assert dataset.chunks == CHUNK
        sizes = {}
        for i in range(dataset.id.get_num_chunks()):
            info = dataset.id.get_chunk_info(i)
            sizes[tuple(info.chunk_offset)] = info.size
        n_times = dataset.shape[0]
    _, ch, cw = CHUNK
    held = {(int(r) // ch * ch, int(c) // cw * cw) for r, c in zip(rows, cols, strict=True)}
    return sum(sizes[(t, r, c)] for t in range(n_times) for r, c in held)


CASES = {
    # Across a dask chunk's edge (row 128, column 96) and several HDF5 chunks on each side:
    # each read's window is a rectangle of the covered pixels, its chunks the covered ones.
    "polygon": (box(70.2, 100.2, 130.8, 150.8), {"y": 128, "x": 96}),
    # One dask chunk per HDF5 chunk ({} takes the file's chunks): each point read alone.
    "points": (scattered_points(40), {}),
}


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
@pytest.mark.parametrize("case", CASES)
def test_a_netcdf_file_reports_the_stored_bytes_of_the_chunks_read(tmp_path, engine, case):
    pytest.importorskip({"h5netcdf": "h5netcdf", "netcdf4": "netCDF4"}[engine])
    path = tmp_path / "cube.nc"
    encoding = {"ndvi": {"chunksizes": CHUNK, "zlib": True, "complevel": 4}, "flat": {}}
    make_dataset().to_netcdf(path, engine=engine, encoding=encoding)
    geometry, chunks = CASES[case]
    opened = xr.open_dataset(path, engine=engine, chunks=chunks, decode_coords="all")
    with raise_if_dask_computes(0):
        reads = {r.bands: r for r in opened.ee.plan(geometry, geometry_crs=UTM).reads()}
    table = opened.ee.get_region(geometry, geometry_crs=UTM)
    rows, cols = table_pixels(table)
    expected = hdf5_chunk_bytes(path, "ndvi", rows, cols)
    assert reads[("ndvi",)].fetch_bytes == expected
    assert f"storage blocks {CHUNK[1]} x {CHUNK[2]}" in reads[("ndvi",)].granularity
    # A contiguous variable: HDF5 reads runs of its bytes that its layout does not name.
    assert reads[("flat",)].fetch_bytes is None


def test_a_netcdf_file_changed_after_opening_reports_no_stored_bytes(tmp_path):
    # Transposed, a computed cube, or indexed before chunking: the chunk index's axes or
    # elements are no longer the cube's, or its storage is not behind the cube's chunks.
    path = tmp_path / "cube.nc"
    encoding = {"ndvi": {"chunksizes": CHUNK, "zlib": True}}
    make_dataset()[["ndvi"]].to_netcdf(path, engine="h5netcdf", encoding=encoding)
    geometry = box(70.2, 100.2, 130.8, 150.8)
    opened = xr.open_dataset(path, engine="h5netcdf", chunks={}, decode_coords="all")
    (known,) = opened.ee.plan(geometry, geometry_crs=UTM).reads()
    assert known.fetch_bytes is not None
    eager = xr.open_dataset(path, engine="h5netcdf", decode_coords="all")
    changed = {
        "transposed": opened.transpose("time", "x", "y"),
        "computed": (opened + 0).assign_attrs(opened.attrs),
        "indexed before chunking": eager.isel(y=slice(1, None)).chunk({}),
        "picked before chunking": eager.isel(time=[1, 0]).chunk({}),
    }
    for why, cube in changed.items():
        (estimate,) = cube.ee.plan(geometry, geometry_crs=UTM).reads()
        assert estimate.fetch_bytes is None, why


def test_a_netcdf_file_over_http_reports_no_stored_bytes(range_server):
    # Its chunk index lies behind requests of its own: not asked, unknown.
    fsspec = pytest.importorskip("fsspec")
    path = range_server.root / "remote.nc"
    encoding = {"ndvi": {"chunksizes": CHUNK, "zlib": True}}
    make_dataset()[["ndvi"]].to_netcdf(path, engine="h5netcdf", encoding=encoding)
    with fsspec.open(f"{range_server.url}/remote.nc", "rb") as f:
        remote = xr.open_dataset(f, engine="h5netcdf", chunks={}, decode_coords="all")
        (estimate,) = remote.ee.plan(box(70.2, 100.2, 130.8, 150.8), geometry_crs=UTM).reads()
    assert estimate.granularity.startswith(f"dask chunks {CHUNK[1]} x {CHUNK[2]}")
    assert estimate.fetch_bytes is None


@pytest.fixture
def served(monkeypatch) -> list[tuple[str, int]]:
    """The keys and bytes zarr's local stores serve from now on. Reads reach the store
    through its ``get`` (zarr 3.1 pickles the store into dask's graph, so a patched
    class, not one instance, sees them)."""
    from zarr.storage import LocalStore

    log: list[tuple[str, int]] = []
    get = LocalStore.get

    async def counting_get(self, key, prototype=None, byte_range=None):
        value = await get(self, key, prototype, byte_range)
        log.append((key, 0 if value is None else len(value)))
        return value

    monkeypatch.setattr(LocalStore, "get", counting_get)
    return log


SHARDED_CASES = {
    # Inside one shard, across inner-chunk rows 0-1 and columns 1-2, and a dask chunk's
    # edge (x 96): two reads, each reading the shard's index.
    "polygon": box(70.2, 100.2, 130.8, 150.8),
    "points": scattered_points(40),
    # Over a whole shard and more: a read of a whole dask chunk (a shard) fetches the
    # shard file in one request, index and inner chunks together.
    "large polygon": box(0.5, 0.5, 250.5, 150.5),
}


@pytest.mark.parametrize("case", SHARDED_CASES)
def test_a_sharded_zarr_store_reports_the_bytes_its_reads_fetch(tmp_path, served, case):
    pytest.importorskip("zarr", minversion="3")
    store = tmp_path / "sharded.zarr"
    dataset = make_dataset(n_times=3)[["ndvi"]]
    # Shards of 2 x 128 x 96 holding inner chunks of 1 x 64 x 48; three times, so that
    # the last time's shards are half empty.
    encoding = {"ndvi": {"chunks": CHUNK, "shards": (2, 128, 96)}}
    dataset.to_zarr(store, encoding=encoding, zarr_format=3, consolidated=False)
    opened = xr.open_zarr(
        store, chunks={"time": 2, "y": 128, "x": 96}, decode_coords="all", consolidated=False
    )
    geometry = SHARDED_CASES[case]
    with raise_if_dask_computes(0):
        (estimate,) = opened.ee.plan(geometry, geometry_crs=UTM).reads()
    assert estimate.granularity.startswith(f"storage blocks {CHUNK[1]} x {CHUNK[2]}")
    served.clear()
    table = opened.ee.get_region(geometry, geometry_crs=UTM)
    fetched = sum(n for key, n in served if key.startswith("ndvi/c/"))
    assert estimate.fetch_bytes == fetched
    shards = sum(f.stat().st_size for f in (store / "ndvi" / "c").rglob("*") if f.is_file())
    if case == "polygon":
        assert fetched < shards / 10  # inner chunks, not the shards
    rows, cols = table_pixels(table)
    values = dataset["ndvi"].to_numpy()
    times = table["time"].rank(method="dense").astype(int).to_numpy() - 1
    np.testing.assert_array_equal(table["ndvi"].to_numpy(), values[times, rows, cols])
