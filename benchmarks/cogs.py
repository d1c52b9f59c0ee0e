"""Reads at the storage floor: ``python -m benchmarks.cogs [--quick] [--latency-ms 0,30]``.

Writes a stack of Cloud-Optimized GeoTIFFs once (full: 12 dates x 3 bands of 4096 x 4096;
quick: 3 dates x 2 bands of 2048 x 2048; int16 with nodata, 512 x 512 DEFLATE tiles, UTM 30 m)
and their STAC items (``proj:`` fields, so no loader opens a file to learn the grid), serves
them over HTTP from ``tests/range_server.py`` on 127.0.0.1 (every request logged with its
bytes, an optional latency added to each) and, per case and loader, runs
``cube.ee.get_region`` on the cube's own grid in a fresh process, the cube built as users
build it with the loader's default chunks:

- ``stackstac``: ``stackstac.stack(items)``, all bands (chunks of 1024 x 1024, float64);
- ``odc-stac``: ``odc.stac.load(items, chunks={})``, the documented way to load lazily with
  odc-stac's default chunks (0.5.3: one chunk per image here, 4096 x 4096 int16);
- ``rioxarray``: ``rioxarray.open_rasterio(url, chunks=True)`` per file (dask's auto chunks
  in multiples of the 512-tiles: one chunk per file here), concatenated into
  ``(time, band, y, x)``.

The table's "dask chunks" column shows each cube's chunks as measured.

The floor is computed without xr_getregion: the pixels each case covers from rasterio
(``dataset.index`` for points, ``geometry_mask`` for polygons), their 512-tiles, and those
tiles' byte counts from GDAL's TIFF metadata (``BLOCK_SIZE_x_y``), summed over every file.
Reported per case and loader: requests, bytes fetched as a ratio to the floor, and wall time
as a ratio to a tile-by-tile rasterio reader of exactly the covered tiles (8 threads, fresh
process) at each latency. Output: a Markdown table and ``benchmarks/results/cogs[-quick].json``.

Fails (exit 1) when a table's rows or sampled values disagree with rasterio reads of the files,
and (unless ``--no-assert``) when a loader fetches more than :data:`BYTES_TARGET` times the
tile reader's bytes: in ``--quick`` (CI) and in the full run, whose 1,000 points read every
image whole with odc-stac (36 images of 22 MB stored, more than GDAL fetches in one request
by default: see ``xr_getregion.loaders._odc_read_env``).
A timing never fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The GDAL options set in the environment this benchmark was started with, read before
#: anything imports rasterio (which sets GDAL_CURL_CA_BUNDLE for itself).
GIVEN_GDAL_ENV = {k: v for k, v in os.environ.items() if k.startswith(("GDAL_", "CPL_", "VSI_"))}

from benchmarks._cogs import FULL, QUICK, Stack, ensure_stack, floor, geometries  # noqa: E402
from benchmarks._cube import RESULTS  # noqa: E402
from tests.processes import serve_ranges  # noqa: E402

#: Bytes fetched may exceed what the tile reader fetches by this factor. The tile reader
#: reads exactly the covered tiles through GDAL, so its bytes are the floor any GDAL-based
#: reader meets: /vsicurl/ reads the first 16 KB of each file and rounds every range out to
#: 16 KB blocks, which puts the tile reader itself at 1.03-1.09x the covered tiles' bytes
#: (most on few tiles a file). Both ratios are reported.
BYTES_TARGET = 1.05
LOADERS = ("stackstac", "odc-stac", "rioxarray")
READER = "tile reader"
#: GDAL's usual settings for COGs in the cloud, in every fresh process.
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
}


#: A run is killed after this long (a hung reader, a stalled server).
TIMEOUT_S = 900


def gdal_env() -> dict[str, str]:
    """The GDAL options every run has, as the results record them: :data:`GDAL_ENV` over
    those the benchmark was started with (``CPL_VSIL_CURL_CACHE_SIZE=67108864 python -m
    benchmarks.cogs`` measures a larger cache of ranges)."""
    return {**GIVEN_GDAL_ENV, **GDAL_ENV}


def run_one(mode: str, case: str, who: str, base: str, log: Path) -> dict[str, Any]:
    """One run in a fresh process, with the requests and bytes the server logged for it."""
    log.write_text("")
    env = {**os.environ, **gdal_env()}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._cogs_case", mode, case, who, base],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {TIMEOUT_S} s"}
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Only the files' requests: the table reads nothing else over HTTP but the items, which
    # the runs read from disk.
    tifs = [json.loads(line) for line in log.read_text().splitlines() if '.tif"' in line]
    result.update(
        requests=len(tifs),
        bytes=sum(r["bytes"] for r in tifs),
        process_s=process_s,
        statuses=sorted({r["status"] for r in tifs}),
    )
    return result


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's counts with the median wall time of all (an error if any failed)."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    walls = [r["wall_s"] for r in results]
    return {
        **results[0],
        "wall_s": statistics.median(walls),
        "walls_s": walls,
        # odc-stac's reads vary by a few requests and kilobytes from run to run.
        "bytes_all": [r["bytes"] for r in results],
        "requests_all": [r["requests"] for r in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="xr_getregion's reads against the COG floor")
    parser.add_argument("--quick", action="store_true", help="a small stack (CI)")
    parser.add_argument(
        "--latency-ms",
        default=None,
        help="comma-separated latencies added to each request (full: 0,30; quick: 0)",
    )
    parser.add_argument(
        "--no-assert",
        action="store_true",
        help=f"report, but do not fail on bytes over {BYTES_TARGET}x the tile reader's",
    )
    parser.add_argument("--loader", action="append", choices=LOADERS, help="only this loader")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per case and contender; median wall time"
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=sorted({case for stack in (FULL, QUICK) for case, *_ in stack.cases}),
        help="only this case (of the stack run: full or --quick)",
    )
    args = parser.parse_args()
    stack: Stack = QUICK if args.quick else FULL
    cases = [c for c in stack.cases if not args.case or c[0] in args.case]
    if not cases:
        parser.error(f"--case: none of {args.case} is a case of the {stack.name} stack")
    mode = stack.name
    latencies = [float(v) for v in (args.latency_ms or ("0" if args.quick else "0,30")).split(",")]
    loaders = [name for name in LOADERS if not args.loader or name in args.loader]
    folder = ensure_stack(stack)
    files = stack.files()
    floors = {case: floor(folder, files, geometries(stack, case)) for case, *_ in cases}

    runs: dict[tuple[str, str, float], dict[str, Any]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        for latency in latencies:
            with serve_ranges(folder, log, latency) as server:
                base = server.url
                for case, label, *_ in cases:
                    contenders = (READER, *loaders)
                    done: dict[str, list[dict[str, Any]]] = {who: [] for who in contenders}
                    # Rounds, every other one in reverse, so a shared machine's slow spell
                    # falls on every contender alike.
                    for round_ in range(args.repeats):
                        for who in contenders if round_ % 2 == 0 else contenders[::-1]:
                            result = run_one(mode, case, who, base, log)
                            done[who].append(result)
                            shown = (
                                result["error"]
                                if "error" in result
                                else f"{result['wall_s']:7.2f} s "
                                f"{result['bytes'] / 1e6:8.1f} MB {result['requests']:5} req"
                            )
                            print(f"  {latency:4.0f} ms  {label:20} {who:12} {shown}", flush=True)
                    for who, results in done.items():
                        runs[case, who, latency] = summarise(results)
    total_s = time.perf_counter() - started

    failures, over = [], []
    results = []
    for case, label, *_ in cases:
        fl = floors[case]
        for who in (READER, *loaders):
            entry: dict[str, Any] = {
                "case": case,
                "label": label,
                "contender": who,
                "floor_bytes": fl["bytes"],
                "floor_tiles": len(fl["tiles"]) * len(files),
            }
            for latency in latencies:
                r = runs[case, who, latency]
                key = f"{latency:g}ms"
                if "error" in r:
                    entry[key] = {"error": r["error"]}
                    failures.append(f"{label} / {who} at {key}: {r['error']}")
                    continue
                entry[key] = r
                entry[key]["x_floor"] = r["bytes"] / fl["bytes"]
                ref = runs[case, READER, latency]
                if "wall_s" in ref:
                    entry[key]["x_reader"] = r["wall_s"] / ref["wall_s"]
                    entry[key]["x_reader_bytes"] = r["bytes"] / ref["bytes"]
                if who == READER:
                    continue
                expected = fl["rows_per_image"] * stack.dates
                if r["rows"] != expected:
                    failures.append(
                        f"{label} / {who}: {r['rows']} rows, rasterio covers "
                        f"{fl['rows_per_image']} pixels x {stack.dates} images "
                        f"= {expected}"
                    )
                if r["n_wrong"]:
                    failures.append(
                        f"{label} / {who}: {r['n_wrong']} of {r['checked']} sampled "
                        f"rows disagree with rasterio: {r['wrong']}"
                    )
                # Against what the tile reader fetched: GDAL's own floor (see BYTES_TARGET).
                reader_bytes = statistics.median(ref["bytes_all"])
                if max(r["bytes_all"]) / reader_bytes > BYTES_TARGET:
                    worst = max(r["bytes_all"]) / reader_bytes
                    over.append(f"{label} / {who} at {key}: {worst:.2f}x the tile reader's bytes")
            results.append(entry)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.mkdir(exist_ok=True)
    name = "cogs-quick.json" if args.quick else "cogs.json"
    if args.loader or args.case:
        name = "cogs-partial.json"
    summary = {
        "stack": {
            "dates": stack.dates,
            "bands": stack.bands,
            "size": stack.size,
            "tile": 512,
            "files": len(files),
        },
        "latencies_ms": latencies,
        "repeats": args.repeats,
        "gdal_env": gdal_env(),
        "machine": machine,
        "bytes_target": BYTES_TARGET,
        "total_s": total_s,
        "results": results,
    }
    (RESULTS / name).write_text(json.dumps(summary, indent=2))

    print(
        f"\n{len(files)} COGs ({stack.dates} dates x {stack.bands} bands), {stack.size} x "
        f"{stack.size} int16, 512-tiles, DEFLATE, served over HTTP on 127.0.0.1; {machine}; "
        f"median of {args.repeats} run(s); runs took {total_s:.0f} s\n"
    )
    walls = " | ".join(f"s @{v:g} ms | x reader @{v:g} ms" for v in latencies)
    print(
        f"| case | loader | dask chunks | requests | MB fetched | x floor | bytes x reader "
        f"| {walls} |"
    )
    print("|---|---|---|---:|---:|---:|---:|" + "---:|---:|" * len(latencies))
    for entry in results:
        first = entry[f"{latencies[0]:g}ms"]
        if "error" in first:
            print(f"| {entry['label']} | {entry['contender']} | {first['error']} |")
            continue
        chunks = first.get("chunks", f"{entry['floor_tiles']} tiles, 8 threads")
        cells = []
        for latency in latencies:
            r = entry[f"{latency:g}ms"]
            cells.append(
                f"{r['wall_s']:.2f} | {r.get('x_reader', float('nan')):.2f}"
                if "wall_s" in r
                else "failed | "
            )
        print(
            f"| {entry['label']} | {entry['contender']} | {chunks} | {first['requests']} | "
            f"{first['bytes'] / 1e6:.1f} | {first['x_floor']:.2f} | "
            f"{first.get('x_reader_bytes', float('nan')):.2f} | {' | '.join(cells)} |"
        )
    print(
        f"\nfloor: bytes of the 512-tiles holding covered pixels (GDAL's TIFF metadata), "
        f"summed over the {len(files)} files; target {BYTES_TARGET}x the tile reader's bytes"
    )
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        return 1
    print("\nEvery table has rasterio's rows, and its sampled values equal rasterio's reads.")
    if over:
        print(f"\nOver the bytes target ({BYTES_TARGET}x):\n" + "\n".join(over))
        if not args.no_assert:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
