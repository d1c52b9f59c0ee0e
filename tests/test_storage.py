"""Tables on object storage, against moto's S3 server on 127.0.0.1: the staging-and-manifest
protocol of xr_getregion.storage, and URLs as inputs (ranged reads, not downloads)."""

from __future__ import annotations

import json
import time
from typing import Any

import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pytest

import xr_getregion
from xr_getregion.errors import OutputExistsError
from xr_getregion.output import write_table
from xr_getregion.storage import MANIFEST, read_table


def frame(n: int = 40, parts: int = 4, offset: int = 0) -> dd.DataFrame:
    pdf = pd.DataFrame({"id": [f"f{i + offset}" for i in range(n)], "v": np.arange(n) * 1.5})
    return dd.from_pandas(pdf, npartitions=parts)


def same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal row for row and column for column (string storage aside: dask's are pyarrow's)."""
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )
    numeric = [c for c in expected.columns if pd.api.types.is_numeric_dtype(expected[c])]
    assert got[numeric].dtypes.tolist() == expected[numeric].dtypes.tolist()


def test_parquet_to_s3_publishes_parts_then_manifest(s3_server, s3_bucket) -> None:
    url = f"s3://{s3_bucket}/out/t.parquet"
    assert write_table(frame(), url) == url
    keys = s3_server.keys(s3_bucket)
    # Nothing but the table: the stage is gone; 4 parts and the manifest.
    assert [k for k in keys if not k.startswith("out/t.parquet/")] == []
    manifest = json.loads(s3_server.client().get_object(
        Bucket=s3_bucket, Key=f"out/t.parquet/{MANIFEST}")["Body"].read())  # fmt: skip
    assert [p["path"] for p in manifest["parts"]] == [
        f"part.{i:06d}.{manifest['job']}.parquet" for i in range(4)
    ]
    assert len(keys) == 5
    same(read_table(url), frame().compute())
    # A second job without overwrite is refused before it computes; with it, replaces.
    with pytest.raises(OutputExistsError, match="exists"):
        write_table(frame(offset=100), url)
    write_table(frame(n=10, parts=2, offset=100), url, overwrite=True)
    got = read_table(url)
    assert got["id"].tolist() == [f"f{i}" for i in range(100, 110)]
    assert len(s3_server.keys(s3_bucket)) == 3  # the old parts were deleted


def test_csv_to_s3_is_one_object_published_whole(s3_server, s3_bucket) -> None:
    url = f"s3://{s3_bucket}/t.csv"
    write_table(frame(), url)
    assert s3_server.keys(s3_bucket) == ["t.csv"]
    same(read_table(url), frame().compute())
    with pytest.raises(OutputExistsError):
        write_table(frame(), url)
    write_table(frame(n=3, parts=1), url, overwrite=True)
    assert read_table(url)["id"].tolist() == ["f0", "f1", "f2"]


def _boom_after_parts(
    part: pd.DataFrame, server: Any, bucket: str, seen: list[int]
) -> pd.DataFrame:
    """Fail the last partition, but only once the job's other parts are in the stage (asked
    of the server), so the failure comes after partitions were written."""
    if (part["id"] == "f35").any():
        deadline = time.monotonic() + 20
        while len(server.keys(bucket, ".t")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(len(server.keys(bucket, ".t")))
        raise RuntimeError("boom in the last partition")
    return part


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_failed_task_leaves_no_table_and_no_stage(s3_server, s3_bucket, suffix) -> None:
    url = f"s3://{s3_bucket}/t{suffix}"
    seen: list[int] = []
    failing = frame().map_partitions(
        _boom_after_parts, s3_server, s3_bucket, seen, meta=frame()._meta
    )
    with pytest.raises(RuntimeError, match="boom"):
        write_table(failing, url)
    assert seen == [3]  # three parts were in the stage when the job failed
    assert s3_server.keys(s3_bucket) == []
    with pytest.raises(FileNotFoundError):
        read_table(url)
    # The same with a table there: overwrite that fails keeps the old one whole.
    write_table(frame(n=5, parts=1), url)
    before = s3_server.keys(s3_bucket)
    with pytest.raises(RuntimeError, match="boom"):
        write_table(failing, url, overwrite=True)
    assert s3_server.keys(s3_bucket) == before
    assert read_table(url)["id"].tolist() == [f"f{i}" for i in range(5)]


def test_parts_without_manifest_are_no_table(s3_server, s3_bucket) -> None:
    """What a job killed after copying parts but before its manifest leaves behind."""
    url = f"s3://{s3_bucket}/t.parquet"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    frame().compute().to_parquet(f"{s3_bucket}/t.parquet/part.000000.abc.parquet", filesystem=fs)
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_table(url)
    with pytest.raises(OutputExistsError):
        write_table(frame(), url)
    write_table(frame(n=2, parts=1), url, overwrite=True)
    assert read_table(url)["id"].tolist() == ["f0", "f1"]
    assert len(s3_server.keys(s3_bucket)) == 2


def test_overwrite_refuses_a_prefix_of_foreign_objects(s3_server, s3_bucket) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="t.parquet/notes.txt", Body=b"mine")
    with pytest.raises(OutputExistsError, match=r"notes\.txt"):
        write_table(frame(), f"s3://{s3_bucket}/t.parquet", overwrite=True)
    assert s3_server.keys(s3_bucket) == ["t.parquet/notes.txt"]


def test_http_is_not_writable(range_server) -> None:
    from xr_getregion.errors import ArgumentError

    with pytest.raises(ArgumentError, match="cannot be written"):
        write_table(frame(), f"{range_server.url}/t.parquet")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_of_two_racing_jobs_the_server_lets_one_publish(
    s3_server, s3_bucket, monkeypatch, suffix
) -> None:
    """Another job publishes NAME after this one's up-front check: the conditional PUT
    (If-None-Match: *) of the server refuses this one's manifest (or CSV upload); the other
    table stays whole and this job's parts are removed."""
    import xr_getregion.storage as storage

    url = f"s3://{s3_bucket}/t{suffix}"
    write_table(frame(n=6, parts=2, offset=500), url)  # the other job, already published
    before = s3_server.keys(s3_bucket)
    monkeypatch.setattr(storage, "check_remote_target", lambda *a, **k: None)
    with pytest.raises(OutputExistsError, match="written by another job"):
        write_table(frame(), url)
    assert s3_server.keys(s3_bucket) == before
    assert read_table(url)["id"].tolist() == [f"f{i}" for i in range(500, 506)]


def test_to_parquet_takes_an_s3_url(s3_server, s3_bucket, tmp_path) -> None:
    import shapely

    from tests.helpers import make_cube

    cube = make_cube().chunk({"time": 1, "band": 1, "y": 10, "x": 10})
    box = shapely.box(500_100, 3_999_500, 500_700, 3_999_950)
    url = f"s3://{s3_bucket}/c.parquet"
    assert xr_getregion.to_parquet(cube, box, url, geometry_crs=32615) == url
    # Row for row the table the same call writes to a local path.
    xr_getregion.to_parquet(cube, box, tmp_path / "c.parquet", geometry_crs=32615)
    pd.testing.assert_frame_equal(read_table(url), pd.read_parquet(tmp_path / "c.parquet"))
    assert len(read_table(url)) == 900
