"""The batch job on object storage: ``python -m benchmarks.object_store [--quick]``.

A synthetic Zarr cube (UTM, 30 m, one variable per band, chunks of one image and
``CHUNK x CHUNK`` pixels) and a GeoPackage of small fields gathered in a few farms are uploaded
to moto's S3 server, started here as a subprocess on 127.0.0.1 inside a middleware that logs
every request with its bytes (:mod:`benchmarks._s3_server`). Then, each in a fresh process:

``xr_getregion s3``
    ``xr-getregion extract s3://bench/cube.zarr --geometry s3://bench/fields.gpkg
    --out s3://bench/out.parquet --workers 2`` (a ``LocalCluster`` of 2 worker processes),
``xr_getregion local``
    the same command on the local copies of both files, the table written locally,
``floor (xarray + s3fs)``
    what a user would do by hand knowing exactly which pixels to read: ``xr.open_zarr`` of
    the S3 URL and, on the same kind of cluster, a dask read of the bounding window of the
    covered pixels in each chunk holding some (the pixels come from ``cube.ee.plan``, not
    timed separately from the process, but reported apart as ``read_s``).

Wall times are of the whole process, as a user waits for it (imports, cluster start, planning,
reading, writing). Requests and bytes are counted by the server, which also says when it saw
the first chunk read, the last, and the table's writes. The server runs on the same cores as
the job and answers at once; ``--latency-ms 20`` makes it wait that long before each response,
a stand-in for a network round trip. The S3 table read back
(through its manifest) must equal the local one row for row, and the job must read exactly
the chunk objects the floor reads (the chunks holding covered pixels, each once): a
difference fails the run with exit status 1; a timing never does.

Writes ``benchmarks/results/object_store[-quick][-latency<MS>ms].json`` and prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._cube import DATA, RESULTS
from tests.processes import free_port, stop, wait_for

X0, Y0, RES = 600_000.0, 4_000_000.0, 30.0
UTM = "EPSG:32615"
BUCKET = "bench"
# (images, bands, side in pixels, chunk side, fields, farms)
SIZES = {"quick": (3, 3, 1024, 256, 100, 3), "full": (6, 4, 2048, 512, 1000, 8)}

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    # GDAL (pyogrio reads the GeoPackage through /vsis3/): no directory listing per open.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}

FLOOR = r"""
import json, sys, time
import dask, distributed, fsspec, geopandas as gpd, numpy as np, xarray as xr
import xr_getregion  # noqa: F401  (the .ee accessor, for the plan)
cube_url, fields_url = sys.argv[1:3]
with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, distributed.Client(cluster):
    ds = xr.open_zarr(cube_url, decode_coords="all")
    bands = sorted(name for name in ds.data_vars if str(name).startswith("B"))
    cube = ds[bands].to_dataarray("band").transpose("time", "band", "y", "x")
    with fsspec.open(fields_url, "rb") as f:
        fields = gpd.read_file(f)
    plan = cube.ee.plan(fields)
    iy, ix = plan.iy, plan.ix
    data = cube.data
    yb, xb = np.cumsum((0, *data.chunks[2])), np.cumsum((0, *data.chunks[3]))
    key = (np.searchsorted(yb, iy, "right") - 1) * len(xb) + np.searchsorted(xb, ix, "right") - 1
    start = time.perf_counter()
    windows = []
    for k in np.unique(key):
        sel = key == k
        y0, x0 = iy[sel].min(), ix[sel].min()
        window = data[:, :, y0 : iy[sel].max() + 1, x0 : ix[sel].max() + 1]
        windows.append(
            window.map_blocks(
                lambda b, yy, xx: b[:, :, yy, xx], iy[sel] - y0, ix[sel] - x0,
                drop_axis=[2, 3], new_axis=[2], dtype=data.dtype,
                chunks=(*data.chunks[:2], (int(sel.sum()),)),
            )
        )
    values = dask.compute(*windows)
    read = time.perf_counter() - start
print(json.dumps({"rows": int(sum(v.shape[0] * v.shape[2] for v in values)), "read_s": read}))
"""


# --- inputs --------------------------------------------------------------------------------


def make_inputs(size: str) -> Path:
    """The cube and the fields of ``size`` under ``benchmarks/_data/``, made on first use."""
    import dask.array as da
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import rioxarray  # noqa: F401  (registers .rio)
    import shapely
    import xarray as xr

    nt, nb, side, chunk, n_fields, n_farms = SIZES[size]
    root = DATA / f"object_store_{nt}x{nb}x{side}_c{chunk}_f{n_fields}"
    if (root / "fields.gpkg").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)

    def block(block_info: Any = None) -> Any:
        (t0, t1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        rng = np.random.default_rng([t0, r0, c0])
        rows, cols = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :]
        smooth = 0.15 + 0.1 * np.sin(rows / 97.0) * np.cos(cols / 131.0)
        noise = rng.normal(0, 0.01, (t1 - t0, r1 - r0, c1 - c0))
        return np.round(smooth + 0.03 * t0 + noise, 4).astype(np.float32)

    coords = {
        "time": pd.date_range("2023-01-01", periods=nt, freq="16D"),
        "y": Y0 - (np.arange(side) + 0.5) * RES,
        "x": X0 + (np.arange(side) + 0.5) * RES,
    }
    chunks = da.core.normalize_chunks((1, chunk, chunk), (nt, side, side))
    bands = {
        f"B{b + 1}": xr.DataArray(
            da.map_blocks(block, chunks=chunks, dtype=np.float32) + np.float32(0.02 * b),
            dims=("time", "y", "x"),
            coords=coords,
        )
        for b in range(nb)
    }
    cube = xr.Dataset(bands).rio.write_crs(UTM)
    cube.to_zarr(root / "cube.zarr", mode="w")

    # Fields of 1 to 6 ha gathered in farms of ~1.5 km radius: a job covers some chunks, not all.
    rng = np.random.default_rng(42)
    width = side * RES
    farms = rng.uniform(0.15 * width, 0.85 * width, (n_farms, 2))
    shapes = []
    for i in range(n_fields):
        fx, fy = farms[i % n_farms] + rng.normal(0, 700, 2)
        cx, cy = X0 + fx, Y0 - fy
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        wobble = 1 + 0.2 * np.sin(3 * angles + rng.uniform(0, 6))
        r = np.sqrt(rng.uniform(1e4, 6e4) / np.pi) * wobble
        shapes.append(
            shapely.Polygon(np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]))
        )
    fields = gpd.GeoDataFrame(
        {"name": [f"field{i:04d}" for i in range(n_fields)]}, geometry=shapes, crs=UTM
    )
    fields.to_crs(4326).to_file(root / "fields.gpkg", driver="GPKG")
    return root


# --- the counting S3 server ----------------------------------------------------------------


class Server:
    def __init__(self, port: int, log: Path, process: subprocess.Popen[bytes]) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self.port, self.log, self.process = port, log, process

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def settled(self) -> int:
        """The number of logged requests, once a last response's line has been written."""
        count = -1
        while True:
            now = len(self.log.read_text().splitlines())
            if now == count:
                return now
            count = now
            time.sleep(0.2)


@contextmanager
def s3_server(workdir: Path, latency_ms: float) -> Iterator[Server]:
    port = free_port()
    log = workdir / "requests.jsonl"
    log.write_text("")
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._s3_server", str(port), str(log), str(latency_ms)],
        env={**os.environ, "MOTO_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, process, "the S3 server")
        yield Server(port, log, process)
    finally:
        stop(process)


def _object_kind(path: str, query: str) -> str:
    """What a request is about: the cube's band chunks or metadata, the features, the table."""
    rest = path.removeprefix(f"/{BUCKET}").lstrip("/")
    if not rest:
        return "bucket (listing)"
    if rest.startswith("cube.zarr"):
        name = rest.rsplit("/", 1)[-1]
        if name in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata", "cube.zarr"):
            return "cube metadata"
        return "cube band chunks" if rest.startswith("cube.zarr/B") else "cube coordinates"
    if rest.startswith("fields"):
        return "features"
    return "table (stage, parts, manifest)"


def summarise(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests and body bytes, and the band chunk objects read (GETs under ``cube.zarr/B*``)."""
    chunk_gets = [
        e
        for e in entries
        if e["method"] == "GET"
        and e["path"].startswith(f"/{BUCKET}/cube.zarr/B")
        and not e["path"].endswith(("zarr.json", ".zarray", ".zattrs"))
        and e["status"] in (200, 206)
    ]
    by_method: dict[str, int] = {}
    by_object: dict[str, int] = {}
    for e in entries:
        by_method[e["method"]] = by_method.get(e["method"], 0) + 1
        kind = _object_kind(e["path"], e["query"])
        by_object[kind] = by_object.get(kind, 0) + 1
    # When the server saw what: from the first request to the first chunk read (opening and
    # checking the inputs, starting the cluster), the chunk reads, the table's writes (staging
    # to publishing).
    kinds = [_object_kind(e["path"], e["query"]) for e in entries]
    chunks_t = [
        e["t"] for e, kind in zip(entries, kinds, strict=True) if kind == "cube band chunks"
    ]
    table = [e for e, kind in zip(entries, kinds, strict=True) if kind.startswith("table")]
    # The table's phase starts with its first write: its requests before that are the checks
    # of --out at the command's start.
    first_write = next((i for i, e in enumerate(table) if e["method"] in ("PUT", "POST")), None)
    table_t = [e["t"] for e in table[first_write:]] if first_write is not None else []
    phases = {}
    if entries and chunks_t:
        phases["first request to first chunk"] = min(chunks_t) - entries[0]["t"]
        phases["chunk reads, first to last"] = max(chunks_t) - min(chunks_t)
    if table_t:
        phases["table, first write to last request"] = max(table_t) - min(table_t)
    return {
        "requests": len(entries),
        "server_phases_s": phases,
        "by_method": dict(sorted(by_method.items())),
        "by_object": dict(sorted(by_object.items())),
        "bytes_out": sum(e["bytes_out"] for e in entries),
        "bytes_in": sum(e["bytes_in"] for e in entries),
        "chunk_gets": len(chunk_gets),
        "chunk_bytes": sum(e["bytes_out"] for e in chunk_gets),
        "chunks": sorted({e["path"] for e in chunk_gets}),
    }


# --- runs ----------------------------------------------------------------------------------


def command(name: str, local: Path, tmp: Path, r: int) -> list[str]:
    """The argv of contender ``name`` in round ``r``."""
    cube, fields = f"s3://{BUCKET}/cube.zarr", f"s3://{BUCKET}/fields.gpkg"
    if name == "floor":
        return [sys.executable, "-c", FLOOR, cube, fields]
    out = f"s3://{BUCKET}/out{r}.parquet"
    if name == "local":
        cube, fields = str(local / "cube.zarr"), str(local / "fields.gpkg")
        out = str(tmp / f"out{r}.parquet")
    cli = [sys.executable, "-m", "xr_getregion", "extract"]
    return [*cli, cube, "--geometry", fields, "--out", out, "--workers", "2"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed ({done.returncode}):\n{done.stderr}")
    return wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small cube, 100 fields, 1 round")
    parser.add_argument("--rounds", type=int, help="runs of each contender (default 1 / 3)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the server waits this long before each response, as a network would",
    )
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    rounds = args.rounds or (1 if args.quick else 3)
    nt, nb, side, chunk, n_fields, _ = SIZES[size]
    local = make_inputs(size)

    import fsspec
    import pandas as pd

    from xr_getregion.storage import read_table

    results: dict[str, list[dict[str, Any]]] = {"s3": [], "local": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp, s3_server(Path(tmp), args.latency_ms) as server:
        env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": server.endpoint}
        env.pop("AWS_PROFILE", None)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "GDAL_"))})
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir(BUCKET)
        start = time.perf_counter()
        fs.put(str(local / "cube.zarr"), f"{BUCKET}/cube.zarr", recursive=True)
        fs.put_file(str(local / "fields.gpkg"), f"{BUCKET}/fields.gpkg")
        upload = {"wall_s": time.perf_counter() - start, **summarise(server.entries())}
        upload.pop("chunks")
        cube_bytes = sum(p.stat().st_size for p in (local / "cube.zarr").rglob("*") if p.is_file())
        for r in range(rounds):
            order = ["s3", "local", "floor"] if r % 2 == 0 else ["floor", "local", "s3"]
            for name in order:
                before = server.settled()
                argv = command(name, local, Path(tmp), r)
                wall, stdout = timed(argv, env)
                server.settled()
                run = {"wall_s": wall, **summarise(server.entries()[before:])}
                if name == "floor":
                    run.update(json.loads(stdout.strip().splitlines()[-1]))
                results[name].append(run)
                print(
                    f"  round {r + 1} {name}: {wall:.1f} s, {run['requests']} requests, "
                    f"{run['bytes_out'] / 1e6:.1f} MB out",
                    flush=True,
                )
        # The answers: every round's S3 table equals the local table of the first round.
        expected = pd.read_parquet(f"{tmp}/out0.parquet")
        failures = []
        for r in range(rounds):
            got = read_table(f"s3://{BUCKET}/out{r}.parquet")
            results["s3"][r]["rows"] = len(got)
            results["local"][r]["rows"] = len(pd.read_parquet(f"{tmp}/out{r}.parquet"))
            try:
                pd.testing.assert_frame_equal(got, expected)
            except AssertionError as exc:
                failures.append(f"round {r + 1}: the S3 table differs from the local one: {exc}")
        for r, (ours, floor) in enumerate(zip(results["s3"], results["floor"], strict=True)):
            if ours["chunks"] != floor["chunks"]:
                extra = sorted(set(ours["chunks"]) - set(floor["chunks"]))
                missing = sorted(set(floor["chunks"]) - set(ours["chunks"]))
                failures.append(
                    f"round {r + 1}: the job read chunks {extra[:3]}... beyond "
                    f"the floor's and not {missing[:3]}..."
                )
            if floor["rows"] != len(expected):
                failures.append(
                    f"round {r + 1}: the floor read {floor['rows']} values per band, "
                    f"the table has {len(expected)} rows"
                )
            # One request per chunk: no chunk read twice, no HEAD before each GET.
            if ours["by_object"].get("cube band chunks") != len(ours["chunks"]):
                failures.append(
                    f"round {r + 1}: {ours['by_object']['cube band chunks']} "
                    f"requests for {len(ours['chunks'])} chunk objects"
                )
        if expected["time"].nunique() != nt or len(expected) == 0:
            failures.append(f"the table has {expected['time'].nunique()} images, not {nt}")

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in results[name])

    n_chunks = nb * nt * math.ceil(side / chunk) ** 2
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    summary = {
        "size": size,
        "cube": {
            "images": nt,
            "bands": nb,
            "side": side,
            "chunk": chunk,
            "dtype": "float32",
            "chunk_objects": n_chunks,
            "stored_bytes": cube_bytes,
        },
        "fields": n_fields,
        "rounds": rounds,
        "latency_ms": args.latency_ms,
        "machine": machine,
        "upload": upload,
        "runs": {
            name: [{k: v for k, v in run.items() if k != "chunks"} for run in runs]
            for name, runs in results.items()
        },
        "chunks_read": len(results["s3"][0]["chunks"]),
        "ratio_s3_to_local": median("s3", "wall_s") / median("local", "wall_s"),
        "ratio_s3_to_floor": median("s3", "wall_s") / median("floor", "wall_s"),
        "failures": failures,
    }
    RESULTS.mkdir(exist_ok=True)
    latency = f"-latency{args.latency_ms:g}ms" if args.latency_ms else ""
    out = RESULTS / f"object_store{'-quick' if args.quick else ''}{latency}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")

    print(
        f"\nCube {nt} images x {nb} bands x {side} x {side} float32 in {n_chunks} chunk objects "
        f"of {chunk} x {chunk} ({cube_bytes / 1e6:.0f} MB stored); {n_fields} fields; "
        f"2 worker processes; {args.latency_ms:g} ms added per request; {machine}; "
        f"median of {rounds}\n"
    )
    print("| run | wall (s) | rows | requests | MB sent by S3 | MB received | chunk GETs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    labels = {
        "s3": "xr_getregion, S3 -> S3",
        "local": "xr_getregion, local -> local",
        "floor": "floor: xarray + s3fs, covered chunks",
    }
    for name in ("s3", "local", "floor"):
        first = results[name][0]
        s3 = name != "local"
        print(
            f"| {labels[name]} | {median(name, 'wall_s'):.1f} | {first['rows']:,} | "
            f"{first['requests'] if s3 else '-'} | "
            f"{first['bytes_out'] / 1e6 if s3 else 0:.1f} | "
            f"{first['bytes_in'] / 1e6 if s3 else 0:.2f} | "
            f"{first['chunk_gets'] if s3 else '-'} |"
        )
    print(
        f"\nS3/local {summary['ratio_s3_to_local']:.2f}x, S3/floor "
        f"{summary['ratio_s3_to_floor']:.2f}x; chunks read {summary['chunks_read']} of "
        f"{n_chunks}; results in {out.relative_to(RESULTS.parent.parent)}"
    )
    if failures:
        print("\n".join(["FAILED:", *failures]), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
