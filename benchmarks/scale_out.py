"""Scale-out benchmark: 100,000 points and a 100 km2 polygon from an on-disk Zarr cube.

Generates a synthetic UTM cube (30 m, ``(time, band, y, x)``, stackstac-like chunks of one
image, one band and 1024 x 1024 pixels) once under ``benchmarks/_data/`` and reuses it. Each
case runs in a fresh subprocess, so the peak RSS reported is that case's own.

Usage::

    python -m benchmarks.scale_out                 # 8 GB cube (generated on first run)
    python -m benchmarks.scale_out --gigabytes 0.5 # a smaller cube, for a quick look

Prints a Markdown table and writes ``benchmarks/results/scale_out.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

from benchmarks._cube import CHUNK, DATA, RESULTS, cube_shape, ensure_cube

CASE = r"""
import json, resource, sys, time
import numpy as np, shapely, geopandas as gpd, xarray as xr
import xr_getregion
path, case, mode = sys.argv[1:4]
cube = xr.open_zarr(path, decode_coords="all")["reflectance"]
x0, y1 = float(cube.x[0]) - 15, float(cube.y[0]) + 15
width = cube.sizes["x"] * 30.0
height = cube.sizes["y"] * 30.0
if case == "points":
    rng = np.random.default_rng(0)
    xs = rng.uniform(x0, x0 + width, 100_000)
    ys = rng.uniform(y1 - height, y1, 100_000)
    geometry = gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs="EPSG:32615")
else:  # a 10 km x 10 km (100 km2) irregular polygon in the middle of the cube
    cx, cy = x0 + width / 2, y1 - height / 2
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    radius = 5_642 * (1 + 0.15 * np.sin(5 * angles))  # area ~ 100 km2
    ring = np.column_stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)])
    geometry = gpd.GeoSeries([shapely.Polygon(ring)], crs="EPSG:32615")
start = time.perf_counter()
if mode == "eager":
    table = cube.ee.get_region(geometry, max_values=None)
    rows = len(table)
else:
    out = sys.argv[4]
    xr_getregion.to_parquet(cube, geometry, out, max_values=None, overwrite=True)
    import pyarrow.parquet as pq
    rows = pq.ParquetDataset(out).read(columns=["id"]).num_rows
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"case": case, "mode": mode, "rows": rows, "wall_s": wall, "peak_rss": peak}))
"""


def run_case(path: Path, case: str, mode: str) -> dict:
    out = DATA / f"{case}.parquet"
    done = subprocess.run(
        [sys.executable, "-c", CASE, str(path), case, mode, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=8.0, help="uncompressed cube size")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    shape = cube_shape(args.gigabytes)
    path = ensure_cube(shape)
    size_gb = math.prod(shape) * 4 / 1e9
    results = []
    for case in ("points", "polygon"):
        for mode in ("eager", "parquet"):
            runs = [run_case(path, case, mode) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["wall_s"])
            best["wall_s_all"] = [r["wall_s"] for r in runs]
            results.append(best)
            print(
                f"  {case} {mode}: {best['wall_s']:.1f} s, {best['peak_rss'] / 2**30:.2f} GiB",
                flush=True,
            )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale_out.json").write_text(
        json.dumps(
            {"cube_shape": shape, "cube_gb": size_gb, "machine": machine, "results": results},
            indent=2,
        )
    )
    print(
        f"\nCube {shape} float32 = {size_gb:.1f} GB uncompressed, chunks (1, 1, {CHUNK}, "
        f"{CHUNK}); {machine}\n"
    )
    print("| case | output | rows | wall (s) | peak RSS (GiB) |")
    print("|---|---|---:|---:|---:|")
    labels = {"points": "100,000 points", "polygon": "100 km2 polygon"}
    for r in results:
        print(
            f"| {labels[r['case']]} | {r['mode']} | {r['rows']:,} | {r['wall_s']:.1f} | "
            f"{r['peak_rss'] / 2**30:.2f} |"
        )


if __name__ == "__main__":
    main()
