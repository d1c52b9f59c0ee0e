"""``extract`` on object storage and HTTP, end to end, against real local servers.

The cube, the features and the table live on moto's S3 server, on a GCS emulator or on
Azurite (Azure Storage's emulator), each a subprocess on 127.0.0.1, or the cube is a set of
COGs served by a Range-honouring HTTP server; each table read back must equal the one the
same command writes from and to local files, row for row, and values read from COGs must
equal rasterio's reads of the files.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import geopandas as gpd
import pandas as pd
import pyproj
import pytest
import shapely

import xr_getregion
from tests.helpers import random_fields, write_cube_files, write_slow_job
from xr_getregion.cli import main
from xr_getregion.storage import MANIFEST, read_table


def run(*argv: object) -> int:
    return main(["extract", *map(str, argv)])


def upload(local: Path, bucket: str, key: str) -> str:
    """Copy a file or a directory tree to s3://bucket/key, object by object."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        rel = "" if path == local else "/" + path.relative_to(local).as_posix()
        fs.put_file(str(path), f"{bucket}/{key}{rel}")
    return f"s3://{bucket}/{key}"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A small cube in every format and 30 fields, as local files."""
    root = tmp_path_factory.mktemp("cloud")
    cube = xr_getregion.sample_cube().isel(x=slice(700, 800), y=slice(0, 80))
    cube = cube.sel(band=["B2", "B3", "B4"]).chunk({"time": 1, "band": 1, "y": 40, "x": 40})
    write_cube_files(cube, root)
    fields = random_fields(
        cube, 7, boxes=15, box=(130, 100), box_span=(2700, 2100), points=15, point_span=(2900, 2300)
    )
    fields.to_file(root / "fields.gpkg", driver="GPKG")
    fields.to_file(root / "fields.geojson", driver="GeoJSON")
    fields.to_parquet(root / "fields.parquet")
    return root


@pytest.fixture
def bucket(local, s3_bucket):
    for name in ("cube.zarr", "cube.nc", "image.tif", "fields.gpkg", "fields.geojson",
                 "fields.parquet"):  # fmt: skip
        upload(local / name, s3_bucket, name)
    return s3_bucket


def local_table(local: Path, tmp_path: Path, cube: str, features: str, suffix: str) -> pd.DataFrame:
    out = tmp_path / f"local{suffix}"
    assert run(local / cube, "--geometry", local / features, "--out", out) == 0
    return pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)


def same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Row for row, in the same order (string storage aside)."""
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


def test_s3_zarr_and_gpkg_to_s3_parquet_on_two_workers_equals_the_local_run(
    local, bucket, s3_server, tmp_path, capsys
):
    out = f"s3://{bucket}/out.parquet"
    assert run(f"s3://{bucket}/cube.zarr", "--geometry", f"s3://{bucket}/fields.gpkg",
               "--out", out, "--workers", "2") == 0  # fmt: skip
    assert f"wrote {out}" in capsys.readouterr().out
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet"))
    assert_published(s3_server.keys(bucket))


def assert_published(keys: list[str]) -> None:
    """The objects of table ``out.parquet`` among ``keys`` are its parts and its manifest;
    no stage is left."""
    keys = [k for k in keys if k.startswith(("out.", ".out."))]
    assert f"out.parquet/{MANIFEST}" in keys
    parts = [k for k in keys if k != f"out.parquet/{MANIFEST}"]
    assert parts and all(k.startswith("out.parquet/part.") for k in parts)


def test_s3_zarr_to_s3_csv_equals_the_local_run(local, bucket, s3_server, tmp_path):
    out = f"s3://{bucket}/out.csv"
    assert run(f"s3://{bucket}/cube.zarr", "--geometry", f"s3://{bucket}/fields.geojson",
               "--out", out) == 0  # fmt: skip
    assert [k for k in s3_server.keys(bucket) if "out" in k] == ["out.csv"]
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.geojson", ".csv"))


def test_gcs_zarr_and_gpkg_to_gcs_parquet_on_two_workers_equals_the_local_run(
    local, gcs_server, gcs_bucket, tmp_path
):
    """The same job on Google Cloud Storage (gcp-storage-emulator): gcsfs for the cube, the
    features and the table, in this process and in the workers."""
    for name in ("cube.zarr", "fields.gpkg"):
        gcs_server.upload(local / name, gcs_bucket, name)
    root = f"gs://{gcs_bucket}"
    out = f"{root}/out.parquet"
    argv = [f"{root}/cube.zarr", "--geometry", f"{root}/fields.gpkg", "--out", out]
    assert run(*argv, "--workers", "2") == 0
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet"))
    keys = [k for k in gcs_server.keys(gcs_bucket) if k.startswith(("out.", ".out."))]
    assert f"out.parquet/{MANIFEST}" in keys
    assert all(k.startswith("out.parquet/part.") for k in keys if k != f"out.parquet/{MANIFEST}")


@pytest.fixture
def dask_scheduler(s3_server):
    """A ``dask scheduler`` and one ``dask worker`` (1 thread), each a subprocess on
    127.0.0.1 that inherits the S3 server's environment; the scheduler's address."""
    import distributed

    from tests.processes import free_port, stop, wait_for

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(port), *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        wait_for(port, scheduler, "the dask scheduler")
        worker_argv = ["-m", "distributed.cli.dask_worker", address, "--nthreads", "1", *common]
        worker = subprocess.Popen(
            [sys.executable, *worker_argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with distributed.Client(address, timeout="20s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in (worker, scheduler):
            if process is not None:
                stop(process)


def test_a_remote_scheduler_writes_the_s3_table_equal_to_the_local_run(
    local, bucket, dask_scheduler, tmp_path, capsys
):
    """--scheduler ADDRESS: the tasks run in a worker process the command did not start, which
    reads the cube from the S3 server and writes the parts there."""
    out = f"s3://{bucket}/out.parquet"
    cube = f"s3://{bucket}/cube.zarr"
    features = local / "fields.gpkg"
    assert run(cube, "--geometry", features, "--out", out, "--scheduler", dask_scheduler) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet"))


@pytest.mark.parametrize(
    "cube, features",
    [("cube.nc", "fields.parquet"), ("image.tif", "fields.gpkg")],
    ids=["netcdf+geoparquet", "geotiff+gpkg"],
)
def test_s3_netcdf_and_geotiff_cubes(local, bucket, tmp_path, cube, features):
    out = tmp_path / "remote.parquet"
    assert run(f"s3://{bucket}/{cube}", "--geometry", f"s3://{bucket}/{features}",
               "--out", out) == 0  # fmt: skip
    same(pd.read_parquet(out), local_table(local, tmp_path, cube, features, ".parquet"))


def test_https_geotiff_and_geojson_are_read_by_ranges(local, range_server, tmp_path):
    for name in ("image.tif", "fields.geojson"):
        (range_server.root / name).write_bytes((local / name).read_bytes())
    range_server.reset()
    out = tmp_path / "remote.parquet"
    assert run(f"{range_server.url}/image.tif", "--geometry",
               f"{range_server.url}/fields.geojson", "--out", out) == 0  # fmt: skip
    same(
        pd.read_parquet(out),
        local_table(local, tmp_path, "image.tif", "fields.geojson", ".parquet"),
    )
    tif = [r for r in range_server.requests() if r["path"] == "/image.tif" and r["bytes"]]
    assert tif and all(r["status"] == 206 for r in tif)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_zarr_store_over_http_equals_the_local_run(local, range_server, tmp_path, zarr_format):
    """A Zarr store served by a plain HTTP server (no listing): the table equals the local
    store's row for row, and every chunk object is fetched at most once."""
    import xarray as xr

    name = f"cube-v{zarr_format}.zarr"
    store = tmp_path / name
    cube = xr.open_zarr(local / "cube.zarr", decode_coords="all")
    for variable in cube.variables.values():
        variable.encoding = {}  # the v3 store's codecs, which a v2 store cannot take
    cube.to_zarr(store, zarr_format=zarr_format, consolidated=True)
    shutil.copytree(store, range_server.root / name)
    range_server.reset()
    out = tmp_path / "remote.parquet"
    url = f"{range_server.url}/{name}"
    assert run(url, "--geometry", local / "fields.gpkg", "--out", out) == 0
    expected = local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet")
    same(pd.read_parquet(out), expected)
    assert run(store, "--geometry", local / "fields.gpkg", "--out", tmp_path / "v.parquet") == 0
    same(pd.read_parquet(tmp_path / "v.parquet"), expected)
    requests = range_server.requests()
    assert requests and {r["status"] for r in requests} <= {200, 206, 404}
    bands = tuple(f"/{name}/{band}/" for band in ("B2", "B3", "B4"))
    metadata = ("zarr.json", ".zarray", ".zattrs")
    chunk_gets = [
        r["path"]
        for r in requests
        if r["method"] == "GET"
        and r["status"] == 200
        and r["path"].startswith(bands)
        and not r["path"].endswith(metadata)
    ]
    assert chunk_gets and len(chunk_gets) == len(set(chunk_gets))


def test_a_zarr_store_over_http_without_consolidated_metadata_is_refused_with_the_fix(
    local, range_server, tmp_path, capsys
):
    """HTTP has no listing: without consolidated metadata zarr finds no array there."""
    import xarray as xr

    store = range_server.root / "unconsolidated.zarr"
    xr.open_zarr(local / "cube.zarr").to_zarr(store, consolidated=False)
    url = f"{range_server.url}/unconsolidated.zarr"
    never = tmp_path / "never.parquet"
    capsys.readouterr()  # the set-up's own output (zarr's warnings, shown without pytest's)
    assert run(url, "--geometry", local / "fields.gpkg", "--out", never) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"CUBE {url!r} is a Zarr store without consolidated metadata" in err
    assert "zarr.consolidate_metadata(store)" in err
    assert not never.exists()


def test_a_remote_input_is_checked_by_a_ranged_read_not_a_download(range_server, local, capsys):
    """A 4 MB '.nc' that is not NetCDF is refused after reading a few bytes of it."""
    (range_server.root / "big.nc").write_bytes(b"<VRTDataset>" + bytes(4 * 2**20))
    range_server.reset()
    assert run(f"{range_server.url}/big.nc", "--geometry", local / "fields.geojson",
               "--out", local / "never.parquet") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a NetCDF-4 file" in err and "big.nc" in err
    sent = sum(r["bytes"] for r in range_server.requests())
    assert 0 < sent < 10_000


def test_a_zarr_store_on_s3_with_a_pickle_codec_is_refused(s3_bucket, local, capsys):
    import json

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.pipe_file(f"{s3_bucket}/evil.zarr/.zgroup", b'{"zarr_format": 2}')
    meta = {"zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "order": "C",
            "compressor": None, "fill_value": None, "filters": [{"id": "pickle"}]}  # fmt: skip
    fs.pipe_file(f"{s3_bucket}/evil.zarr/v/.zarray", json.dumps(meta).encode())
    assert run(f"s3://{s3_bucket}/evil.zarr", "--geometry", local / "fields.geojson",
               "--out", local / "never.parquet") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "'pickle' codec" in err and err.count("\n") == 1


def test_an_existing_s3_table_is_refused_before_the_cube_is_read(bucket, s3_server, capsys):
    s3_server.client().put_object(Bucket=bucket, Key="t.csv", Body=b"a\n1\n")
    assert run(f"s3://{bucket}/cube.zarr", "--geometry", f"s3://{bucket}/fields.gpkg",
               "--out", f"s3://{bucket}/t.csv") == 2  # fmt: skip
    assert "exists; remove it or pass --overwrite" in capsys.readouterr().err


def test_missing_remote_inputs_and_bad_storage_options_are_one_line(s3_bucket, local, capsys):
    assert run(f"s3://{s3_bucket}/nope.zarr", "--geometry", local / "fields.gpkg",
               "--out", local / "x.parquet") == 2  # fmt: skip
    assert capsys.readouterr().err == (
        f"xr-getregion: error: CUBE 's3://{s3_bucket}/nope.zarr' does not exist.\n"
    )
    assert run(local / "cube.zarr", "--geometry", local / "fields.gpkg", "--out",
               local / "x.parquet", "--storage-options", "[1]") == 2  # fmt: skip
    assert "--storage-options must be a JSON object" in capsys.readouterr().err


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory):
    """A local Zarr cube and 2,000 points: a job of 100 partitions that takes a few seconds,
    long enough to be signalled while its parts are written to the bucket."""
    return write_slow_job(tmp_path_factory.mktemp("slow-cloud"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_sigterm_mid_write_to_s3_leaves_nothing_then_overwrite_succeeds(
    slow_job, s3_server, s3_bucket, suffix
):
    sigterm_mid_write(slow_job, s3_server, s3_bucket, f"s3://{s3_bucket}", suffix)


def sigterm_mid_write(slow_job: Path, server: Any, container: str, root: str, suffix: str) -> None:
    """SIGTERM to a job writing ``root/t{suffix}`` on ``server`` once some parts are in the
    stage: exit 143 with one line, nothing left in ``container``, no table for a reader;
    then the same job with ``--overwrite`` succeeds."""
    out = f"{root}/t{suffix}"
    argv = [sys.executable, "-m", "xr_getregion", "extract", str(slow_job / "cube.zarr")]
    argv += ["--geometry", str(slow_job / "points.geojson"), "--out", out]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # Signalled once some parts are in the stage: the job is mid-write.
    while len(server.keys(container, f".t{suffix}.tmp-")) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "never saw the stage"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == "xr-getregion: stopped by SIGTERM; no table was written.\n"
    assert server.keys(container) == []
    with pytest.raises(FileNotFoundError):
        read_table(out)
    assert run(*argv[4:], "--overwrite") == 0
    assert len(read_table(out)) > 0


def test_a_task_failing_after_parts_were_written_leaves_no_s3_table(
    local, bucket, s3_server, capsys
):
    """One chunk of one band is garbage: the partitions that do not read it are written to
    the stage, the others fail (first on two worker processes). Exit status 1, nothing under
    --out and no stage; with a table there and --overwrite, the old table is kept whole; a
    good run with --overwrite succeeds."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    damaged = f"{bucket}/damaged.zarr"
    fs.copy(f"{bucket}/cube.zarr", damaged, recursive=True)
    chunks = [k for k in fs.find(f"{damaged}/B3") if k.endswith("/1/2")]
    assert chunks
    for key in chunks:
        fs.pipe_file(key, b"garbage")
    out = f"s3://{bucket}/t.parquet"
    args = ["--geometry", f"s3://{bucket}/fields.gpkg", "--out", out]
    # On a local cluster: the job's other tasks are cancelled and the stage removed twice.
    assert run(f"s3://{damaged}", *args, "--workers", "2") == 1
    assert "extract failed and nothing was written at --out" in capsys.readouterr().err
    assert [k for k in s3_server.keys(bucket) if k.startswith(("t.", ".t."))] == []
    old_table_outlives_a_failed_overwrite(
        s3_server, bucket, f"s3://{bucket}/cube.zarr", f"s3://{damaged}", args, capsys
    )


def old_table_outlives_a_failed_overwrite(
    server: Any, container: str, good: str, bad: str, args: list[str], capsys: Any
) -> None:
    """A good job writes table ``t.parquet`` (``args`` hold ``--out``); a failing job with
    ``--overwrite`` keeps it whole, objects and all; a good one with ``--overwrite``
    replaces its parts with new ones."""
    out = args[args.index("--out") + 1]
    assert run(good, *args) == 0
    before = read_table(out)
    keys = server.keys(container, "t.parquet/")
    assert run(bad, *args, "--overwrite") == 1
    assert "extract failed and the old table is kept at --out" in capsys.readouterr().err
    assert [k for k in server.keys(container) if k.startswith(("t.", ".t."))] == keys
    pd.testing.assert_frame_equal(read_table(out), before)
    assert run(good, *args, "--overwrite") == 0
    pd.testing.assert_frame_equal(read_table(out), before)
    assert server.keys(container, "t.parquet/") != keys  # new parts, the old ones deleted
    assert len(server.keys(container, "t.parquet/")) == len(keys)


# --- STAC items whose COGs are served over HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def stac_over_http(range_server):
    """test_reference_loaders' COGs (3 dates, bands B0 and B1, int16 with a nodata block)
    under the range server, and an ItemCollection JSON beside them with relative hrefs."""
    import pystac

    from tests.test_reference_loaders import write_items

    root = range_server.root / "stac"
    root.mkdir(exist_ok=True)
    items = write_items(root)
    for item in items:
        for asset in item.assets.values():
            asset.href = Path(asset.href).name
    collection = pystac.ItemCollection(items[::-1])  # out of time order on purpose
    (root / "items.json").write_text(json.dumps(collection.to_dict(transform_hrefs=False)))
    return root, items


def file_pixel_points(rows_cols):
    from tests.test_reference_loaders import RES, X0, Y0

    points = [
        shapely.Point(X0 + (c + 0.5) * RES + 7.0, Y0 - (r + 0.5) * RES - 4.0) for r, c in rows_cols
    ]
    return gpd.GeoDataFrame(
        {"name": [f"p{r}_{c}" for r, c in rows_cols]}, geometry=points, crs="EPSG:32615"
    )


def test_stac_items_over_http_equal_rasterio_reads_of_the_files(
    stac_over_http, range_server, tmp_path, capsys
):
    import rasterio

    from tests.test_reference_loaders import BANDS, DATES, NODATA

    root, items = stac_over_http
    rows_cols = [(0, 0), (5, 9), (21, 31), (22, 32), (40, 63), (63, 63), (63, 0)]
    file_pixel_points(rows_cols).to_file(tmp_path / "points.geojson")
    range_server.reset()
    out = tmp_path / "t.parquet"
    url = f"{range_server.url}/stac/items.json"
    assert run(url, "--geometry", tmp_path / "points.geojson", "--out", out,
               "--id-column", "name") == 0  # fmt: skip
    got = pd.read_parquet(out)
    # The reference: rasterio on each file, at the pixel each point falls in; one row per
    # point and item (a masked pixel gives missing values), at the pixel's centre.
    assert len(got) == len(rows_cols) * len(items)
    to_lonlat = pyproj.Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    for (r, c), rows in zip(rows_cols, [got[got["feature"] == f"p{r}_{c}"] for r, c in rows_cols],
                            strict=True):  # fmt: skip
        assert rows["id"].tolist() == [item.id for item in items]
        for t, row in enumerate(rows.itertuples(index=False)):
            assert row.time == pd.Timestamp(DATES[t])
            for band in BANDS:
                with rasterio.open(root / f"{items[t].id}_{band}.tif") as src:
                    value = int(src.read(1)[r, c])
                    lon, lat = to_lonlat.transform(*src.xy(r, c))
                got_value = getattr(row, band)
                if value == NODATA:
                    assert pd.isna(got_value), (r, c, t, band)
                else:
                    assert got_value == value, (r, c, t, band)
            assert abs(row.longitude - lon) < 1e-9 and abs(row.latitude - lat) < 1e-9
    # Items ordered by datetime whatever the collection's order; bands named by asset keys.
    assert set(BANDS) <= set(got.columns)
    tifs = [r for r in range_server.requests() if r["path"].endswith(".tif") and r["bytes"]]
    assert tifs and all(r["status"] == 206 for r in tifs)


def test_stac_cube_in_python_bands_and_a_refused_asset(
    stac_over_http, range_server, capsys, tmp_path
):
    root, items = stac_over_http
    cube = xr_getregion.stac_cube(f"{range_server.url}/stac/items.json", bands=["B1"])
    assert list(cube.data_vars) == ["B1"]
    assert cube["id"].values.tolist() == [i.id for i in items]
    assert cube.sizes == {"time": 3, "y": 64, "x": 64}
    # An asset that is not a TIFF (a VRT could make GDAL open other files) is refused unread.
    (root / "evil.vrt.tif").write_text("<VRTDataset rasterXSize='1'></VRTDataset>")
    doc = items[0].to_dict()
    doc["assets"]["B0"]["href"] = "evil.vrt.tif"
    (root / "evil.json").write_text(json.dumps([doc]))
    points = tmp_path / "p.geojson"
    file_pixel_points([(1, 1)]).to_file(points)
    assert run(f"{range_server.url}/stac/evil.json", "--geometry", points,
               "--out", tmp_path / "x.parquet") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "evil.vrt.tif" in err and "is not a GeoTIFF: no TIFF header" in err
    assert not [r for r in range_server.requests() if "evil.vrt" in r["path"] and r["bytes"] > 8]


# --- Azure Blob Storage: Azurite on 127.0.0.1 ------------------------------------------------


@pytest.fixture(scope="module")
def az_inputs(local, azure_server):
    """A container holding the cube, a COG and the features (uploaded with azure-storage-blob,
    not adlfs)."""
    container = azure_server.new_container()
    for name in ("cube.zarr", "fields.gpkg", "fields.geojson"):
        azure_server.upload(local / name, container, name)
    return container


def test_az_zarr_and_gpkg_to_az_parquet_on_two_workers_equals_the_local_run(
    local, az_inputs, azure_server, tmp_path, capsys
):
    """The S3 job on Azure: adlfs for the cube, the features and the table, in this process
    and in two worker processes, credentials from AZURE_STORAGE_CONNECTION_STRING."""
    root = f"az://{az_inputs}"
    out = f"{root}/out.parquet"
    argv = [f"{root}/cube.zarr", "--geometry", f"{root}/fields.gpkg", "--out", out]
    assert run(*argv, "--workers", "2") == 0
    assert f"wrote {out}" in capsys.readouterr().out
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet"))
    assert_published(azure_server.keys(az_inputs))


def test_abfs_zarr_to_abfs_csv_equals_the_local_run(local, az_inputs, azure_server, tmp_path):
    """abfs:// is the same store as az://; a CSV table is one blob."""
    root = f"abfs://{az_inputs}"
    out = f"{root}/out.csv"
    assert run(f"{root}/cube.zarr", "--geometry", f"{root}/fields.geojson", "--out", out) == 0
    assert [k for k in azure_server.keys(az_inputs) if "out.csv" in k] == ["out.csv"]
    same(read_table(out), local_table(local, tmp_path, "cube.zarr", "fields.geojson", ".csv"))


def test_az_netcdf_cube_and_geoparquet_features(local, azure_server, az_container, tmp_path):
    """NetCDF through h5netcdf on an adlfs file, GeoParquet features through pyarrow."""
    for name in ("cube.nc", "fields.parquet"):
        azure_server.upload(local / name, az_container, name)
    out = tmp_path / "remote.parquet"
    root = f"az://{az_container}"
    assert run(f"{root}/cube.nc", "--geometry", f"{root}/fields.parquet", "--out", out) == 0
    expected = local_table(local, tmp_path, "cube.nc", "fields.parquet", ".parquet")
    same(pd.read_parquet(out), expected)


def test_an_az_zarr_job_as_a_program_prints_nothing_on_stderr(local, az_inputs, tmp_path):
    """The command in its own process: zarr closes its event loop at exit, before adlfs
    closes the clients of the filesystems zarr opened on it (a traceback each, before the
    package closed them first)."""
    root = f"az://{az_inputs}"
    argv = [sys.executable, "-m", "xr_getregion", "extract", f"{root}/cube.zarr"]
    argv += ["--geometry", f"{root}/fields.gpkg", "--out", f"{root}/program.parquet"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    expected = local_table(local, tmp_path, "cube.zarr", "fields.gpkg", ".parquet")
    same(read_table(f"{root}/program.parquet"), expected)


@pytest.mark.parametrize(
    "url, vsi",
    [
        ("az://box/a/b.tif", "/vsiaz/box/a/b.tif"),
        ("abfs://box/b.tif", "/vsiaz/box/b.tif"),
        ("abfss://box@acct.dfs.core.windows.net/a/b.tif", "/vsiaz/box/a/b.tif"),
    ],
)
def test_azure_urls_name_the_container_and_key_to_gdal(url, vsi, monkeypatch):
    from xr_getregion.storage import gdal_path

    for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=acct;AccountKey=k")
    assert gdal_path(url) == vsi


def test_an_azure_url_naming_another_account_than_gdals_is_refused(monkeypatch):
    # GDAL's /vsiaz/ paths hold no account: it reads with the environment's. A URL naming
    # another would read the same container and key of that other account, silently.
    from xr_getregion import ArgumentError
    from xr_getregion.storage import gdal_path

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "devacct")
    with pytest.raises(ArgumentError, match=r"'prodacct'.*'devacct'"):
        gdal_path("abfs://data@prodacct.dfs.core.windows.net/cogs/a.tif")
    assert gdal_path("abfs://data@devacct.dfs.core.windows.net/a.tif") == "/vsiaz/data/a.tif"


def test_gdal_takes_adlfs_account_and_key_unless_its_own_or_a_connection_string_is_set(
    monkeypatch,
):
    """adlfs reads AZURE_STORAGE_ACCOUNT_NAME/_KEY, GDAL's /vsiaz/ AZURE_STORAGE_ACCOUNT and
    AZURE_STORAGE_ACCESS_KEY: the first pair is handed to GDAL when GDAL has neither its own
    nor the connection string both read."""
    from xr_getregion.storage import gdal_options

    gdal_own = ["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT"]
    for key in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", *gdal_own, "AZURE_STORAGE_ACCESS_KEY"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    assert gdal_options() == {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_ACCESS_KEY": "a2V5"}
    monkeypatch.setenv("AZURE_STORAGE_ACCESS_KEY", "b3du")
    assert gdal_options() == {"AZURE_STORAGE_ACCOUNT": "acct"}
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "own")
    assert gdal_options() == {}
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=acct;AccountKey=a2V5")
    assert gdal_options() == {}


@pytest.mark.parametrize(
    "base, href, url",
    [
        ("az://box/stac/items.json", "a.tif", "az://box/stac/a.tif"),
        ("s3://bucket/stac/items.json", "../cogs/a.tif", "s3://bucket/cogs/a.tif"),
        ("gs://bucket/items.json", "./a.tif", "gs://bucket/a.tif"),
        ("https://h.org/stac/items.json", "../a.tif", "https://h.org/a.tif"),
        ("az://box/stac/items.json", "https://h.org/a.tif", "https://h.org/a.tif"),
    ],
)
def test_relative_asset_hrefs_resolve_against_an_object_store_url(base, href, url):
    """urljoin leaves an href relative under schemes it does not list (s3, gs, az)."""
    from xr_getregion.stac import _absolute

    assert _absolute(href, base) == url


def test_a_cog_on_azure_read_through_vsiaz_equals_rasterio_reads_of_the_file(
    azure_server, az_container, tmp_path
):
    """A COG (int16, tiles of 16, a nodata block) on Azurite, as CUBE: GDAL's /vsiaz/ reads
    it with the same connection string; each point's value is rasterio's read of the local
    file."""
    import numpy as np
    import rasterio

    from tests.helpers import write_geotiff
    from tests.test_reference_loaders import NODATA, RES, UTM, X0, Y0, pixel_values

    path = tmp_path / "B1.tif"
    transform = rasterio.transform.from_origin(X0, Y0, RES, RES)
    write_geotiff(path, pixel_values(1, 1), transform, crs=UTM, nodata=NODATA, tile=16, cog=True)
    url = azure_server.upload(path, az_container, f"cogs/{path.name}")
    with rasterio.open(path) as src, rasterio.open(f"/vsiaz/{az_container}/cogs/B1.tif") as az:
        assert az.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert az.block_shapes == src.block_shapes == [(16, 16)]
        assert np.array_equal(az.read(1), src.read(1))
    rows_cols = [(0, 0), (5, 9), (21, 31), (22, 32), (40, 63), (63, 63), (63, 0)]
    file_pixel_points(rows_cols).to_file(tmp_path / "points.geojson")
    out = tmp_path / "t.parquet"
    argv = ["--geometry", tmp_path / "points.geojson", "--id-column", "name"]
    assert run(url, *argv, "--out", out) == 0
    got = pd.read_parquet(out)
    assert len(got) == len(rows_cols)
    band = "B1"  # a single band is named by the file's stem
    assert band in got.columns
    with rasterio.open(path) as src:  # the reference
        values = src.read(1)
    nodata = 0
    for (r, c), row in zip(rows_cols, got.itertuples(index=False), strict=True):
        assert row.feature == f"p{r}_{c}"
        if values[r, c] == NODATA:
            nodata += 1
            assert pd.isna(getattr(row, band)), (r, c)
        else:
            assert getattr(row, band) == values[r, c], (r, c)
    assert 0 < nodata < len(rows_cols)
    # The local file gives the same table.
    assert run(path, *argv, "--out", tmp_path / "local.parquet") == 0
    same(got, pd.read_parquet(tmp_path / "local.parquet"))


def test_stac_items_on_azure_with_relative_hrefs_equal_rasterio_reads_of_the_files(
    azure_server, az_container, tmp_path
):
    """An ItemCollection on Azurite whose COG hrefs are relative to it (resolved to
    az://container/stac/..., read by GDAL's /vsiaz/): each value is rasterio's read of the
    local file at the pixel of the point."""
    import pystac
    import rasterio

    from tests.test_reference_loaders import BANDS, NODATA, write_items

    root = tmp_path / "stac"
    root.mkdir()
    items = write_items(root)
    for item in items:
        for asset in item.assets.values():
            asset.href = Path(asset.href).name
    collection = pystac.ItemCollection(items)
    (root / "items.json").write_text(json.dumps(collection.to_dict(transform_hrefs=False)))
    azure_server.upload(root, az_container, "stac")
    rows_cols = [(0, 0), (21, 31), (22, 32), (63, 63)]
    file_pixel_points(rows_cols).to_file(tmp_path / "points.geojson")
    out = tmp_path / "t.parquet"
    argv = ["--geometry", tmp_path / "points.geojson", "--out", out, "--id-column", "name"]
    assert run(f"az://{az_container}/stac/items.json", *argv) == 0
    got = pd.read_parquet(out)
    assert len(got) == len(rows_cols) * len(items)
    masked = 0
    for r, c in rows_cols:
        rows = got[got["feature"] == f"p{r}_{c}"]
        assert rows["id"].tolist() == [item.id for item in items]
        for t, row in enumerate(rows.itertuples(index=False)):
            for band in BANDS:
                with rasterio.open(root / f"{items[t].id}_{band}.tif") as src:
                    value = int(src.read(1)[r, c])
                if value == NODATA:
                    masked += 1
                    assert pd.isna(getattr(row, band)), (r, c, t, band)
                else:
                    assert getattr(row, band) == value, (r, c, t, band)
    assert 0 < masked < len(got) * len(BANDS)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_sigterm_mid_write_to_azure_leaves_nothing_then_overwrite_succeeds(
    slow_job, azure_server, az_container, suffix
):
    sigterm_mid_write(slow_job, azure_server, az_container, f"az://{az_container}", suffix)


def test_a_task_failing_after_parts_were_written_leaves_no_azure_table(
    local, az_inputs, azure_server, tmp_path, capsys
):
    """As on S3: one chunk of one band is garbage. Nothing under --out and no stage; an old
    table is kept whole under --overwrite; a good run with --overwrite replaces it. (On the
    threaded scheduler: the cluster's cancellation does not depend on the store, and is
    tested on S3.)"""
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(local / "cube.zarr", damaged)
    chunks = [p for p in (damaged / "B3").rglob("*") if p.as_posix().endswith("/1/2")]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"garbage")
    root = f"az://{az_inputs}"
    bad = azure_server.upload(damaged, az_inputs, "damaged.zarr")
    out = f"{root}/t.parquet"
    args = ["--geometry", f"{root}/fields.gpkg", "--out", out]
    assert run(bad, *args) == 1
    assert "extract failed and nothing was written at --out" in capsys.readouterr().err
    assert [k for k in azure_server.keys(az_inputs) if k.startswith(("t.", ".t."))] == []
    old_table_outlives_a_failed_overwrite(
        azure_server, az_inputs, f"{root}/cube.zarr", bad, args, capsys
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_of_two_jobs_racing_for_an_azure_table_the_server_lets_one_publish(
    azure_server, az_container, monkeypatch, suffix
):
    """Another job publishes NAME after this one passed its up-front check and wrote its
    stage: this one's manifest (or CSV blob) is refused; the other table stays whole and
    this job's parts and stage are removed."""
    import dask.dataframe as dd

    import xr_getregion.storage as storage
    from xr_getregion.errors import OutputExistsError
    from xr_getregion.output import write_table

    def frame(n: int, parts: int, offset: int) -> dd.DataFrame:
        pdf = pd.DataFrame({"id": [f"f{i + offset}" for i in range(n)], "v": range(n)})
        return dd.from_pandas(pdf, npartitions=parts)

    url = f"az://{az_container}/t{suffix}"
    compute = storage._run
    other: list[list[str]] = []

    def compute_then_the_other_job_publishes(pending, progress):
        compute(pending, progress)
        if not other:
            other.append([])
            write_table(frame(6, 2, 500), url)
            other[0] = azure_server.keys(az_container, f"t{suffix}")  # not this job's stage

    monkeypatch.setattr(storage, "_run", compute_then_the_other_job_publishes)
    with pytest.raises(OutputExistsError, match="written by another job"):
        write_table(frame(40, 4, 0), url)
    assert other[0] and azure_server.keys(az_container) == other[0]
    assert read_table(url)["id"].tolist() == [f"f{i}" for i in range(500, 506)]


def test_adlfs_conditional_writes_are_refused_by_azurite_once_the_blob_exists(
    azure_server, az_container
):
    """What the race above rests on, without the check this package makes first: a blob
    upload opened with "xb" (committed with If-None-Match: *) and a ``pipe_file`` with
    ``mode="create"`` fail when another writer created the blob since they began."""
    fs = fsspec.filesystem("az", skip_instance_cache=True)
    key = f"{az_container}/t.csv"
    upload = fs.open(key, "xb")
    upload.write(b"mine\n")
    azure_server.container_client(az_container).upload_blob("t.csv", b"theirs\n")
    with pytest.raises(FileExistsError):
        upload.close()
    with pytest.raises(FileExistsError):
        fs.pipe_file(key, b"mine\n", mode="create")
    assert fs.cat_file(key) == b"theirs\n"
