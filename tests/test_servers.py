"""The test servers themselves: moto's S3 answers boto3, s3fs and GDAL; the range server
answers ranges exactly and counts them; Azurite's install fails loudly without npm."""

from __future__ import annotations

import fsspec
import pytest


def test_s3_server_answers_boto3_s3fs_and_gdal(s3_server, s3_bucket) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    s3_server.client().put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    assert fs.cat(f"{s3_bucket}/a/b.txt") == b"hello"
    with fs.open(f"{s3_bucket}/x.tif", "wb") as f, rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=3, height=2, count=1, dtype="uint8",
                      crs="EPSG:32615", transform=from_origin(0, 60, 30, 30)) as ds:  # fmt: skip
            ds.write(np.arange(6, dtype="uint8").reshape(1, 2, 3))
        f.write(mem.read())
    with rasterio.open(f"/vsis3/{s3_bucket}/x.tif") as ds:
        assert ds.read(1).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_range_server_serves_ranges_and_counts_them(range_server) -> None:
    (range_server.root / "f.bin").write_bytes(bytes(range(100)))
    range_server.reset()
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    url = f"{range_server.url}/f.bin"
    with fs.open(url, "rb", block_size=10, cache_type="none") as f:
        f.seek(20)
        assert f.read(5) == bytes(range(20, 25))
    got = [r for r in range_server.requests() if r["method"] == "GET"]
    assert got and all(r["status"] == 206 for r in got)
    assert sum(r["bytes"] for r in got) < 100
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{range_server.url}/missing.bin")


def test_range_server_waits_its_latency_before_each_answer(tmp_path) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tests.processes import serve_ranges

    (tmp_path / "f.bin").write_bytes(bytes(range(100)))
    with serve_ranges(tmp_path, tmp_path / "log.jsonl", latency_ms=300) as server:
        fs = fsspec.filesystem("http", skip_instance_cache=True)
        url = f"{server.url}/f.bin"
        start = time.perf_counter()
        assert fs.cat_file(url, start=10, end=15) == bytes(range(10, 15))
        assert time.perf_counter() - start >= 0.3
        server.reset()
        # Four requests in flight wait side by side, not one after another.
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda i: fs.cat_file(url, start=i, end=i + 1), range(4)))
        assert got == [bytes([i]) for i in range(4)]
        assert 0.3 <= time.perf_counter() - start < 1.2
        assert [r["bytes"] for r in server.requests() if r["method"] == "GET"] == [1, 1, 1, 1]


def test_without_npm_azurite_is_a_failure_naming_the_command(tmp_path, monkeypatch) -> None:
    """The Azure tests fail, never skip, on a machine without npm: the message says what to
    install and the command that installs Azurite; nothing is left in the cache."""
    from tests.processes import AZURITE_VERSION, azurite_blob

    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(RuntimeError) as failure:
        azurite_blob(cache=tmp_path / "cache")
    message = str(failure.value)
    assert "npm is not on PATH" in message
    assert f"npm install --no-save --prefix {tmp_path / 'cache' / AZURITE_VERSION}" in message
    assert f"azurite@{AZURITE_VERSION}" in message
    assert not (tmp_path / "cache").exists()
