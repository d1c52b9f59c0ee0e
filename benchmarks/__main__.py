"""The peers, side by side: ``python -m benchmarks [--quick]``.

Generates a synthetic time-stacked Zarr cube (UTM, 30 m, ``(time, band, y, x)``, chunks of one
image, one band and 1024 x 1024 pixels, as stackstac makes them) and times every contender on
every case it applies to, each run in a fresh process watched for memory. Runs go in rounds
(each contender once per round, every other round in reverse order), so that a shared
machine's drift falls on all contenders alike. Reports median and min-max wall time, peak
RSS, rows, and each contender's ratio to xr_getregion and to the reference (reading only the
windows of the covered chunks: the floor), as a Markdown table and
``benchmarks/results/peers[-quick].json``.

Answers are cross-checked where the semantics agree (the cube's own grid): rioxarray
``clip(all_touched=False)``, exactextract's cells with centre inside, ``sel(method="nearest")``
and xvec must return the same values as xr_getregion. A disagreement fails the run (exit 1);
a slow timing never does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from benchmarks._cube import RESULTS, ensure_cube

OURS = ["xr_getregion", "reference"]
POINT_PEERS = ["sel nearest (lazy)", "sel nearest (computed)", "xvec (lazy)", "xvec (computed)"]
CLIP = ["rioxarray clip (lazy)", "rioxarray clip (computed)"]
POLYGON_PEERS = [*CLIP, "exactextract", "rasterstats (per layer)", "where + stack"]
PARQUET = "xr_getregion parquet"
CASES = {
    "point": ("1 point", [*OURS, *POINT_PEERS]),
    "points": ("1,000 points", [*OURS, PARQUET, *POINT_PEERS]),
    "polygon_1km2": ("~1 km2 polygon", [*OURS, *POLYGON_PEERS]),
    "polygon_100km2": ("~100 km2 polygon", [*OURS, PARQUET, *POLYGON_PEERS]),
    "line_10km": ("10 km line", [*OURS, *CLIP]),
    "fields": ("1,000 fields", [*OURS, PARQUET, "rioxarray clip (computed)", "exactextract"]),
    "coarse_100km2": ("~100 km2 at scale=1000", [*OURS, PARQUET]),
    "scan": ("full-cube scan", ["full scan"]),
}
# Contenders whose answers must equal xr_getregion's, per case (the line's rules differ).
CHECKED = {
    "point": set(POINT_PEERS),
    "points": {*POINT_PEERS, PARQUET},
    "polygon_1km2": set(POLYGON_PEERS),
    "polygon_100km2": {*POLYGON_PEERS, PARQUET},
    "fields": {"rioxarray clip (computed)", "exactextract", PARQUET},
    # Pyramid means (level 5) against plain dask coarsen over the same blocks.
    "coarse_100km2": {"reference", PARQUET},
}


# A contender stops repeating once its runs add up to this long: medians of 5 matter for the
# ~1 s cases, where a shared 2-core machine's noise is +-10%, not for the minute-long ones.
REPEAT_BUDGET_S = 60.0


def sum_wall(runs: list[dict]) -> float:
    return sum(r.get("wall_s", 0.0) for r in runs)


def run_one(path, case, contender, scale, cap_bytes, timeout):
    """Run one contender in a fresh process; kill it past ``cap_bytes`` of RSS."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._case", str(path), case, contender, str(scale)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = psutil.Process(proc.pid)
    start, peak, killed = time.perf_counter(), 0, None
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if peak > cap_bytes:
            killed = f"killed past {cap_bytes / 2**30:.0f} GiB"
        elif time.perf_counter() - start > timeout:
            killed = f"killed after {timeout:.0f} s"
        if killed:
            proc.kill()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    if killed:
        return {"error": killed, "peak_rss": peak}
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["failed"])[-1][:120], "peak_rss": peak}
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description="xr_getregion against its peers")
    parser.add_argument("--quick", action="store_true", help="small cube, 2 repeats (CI)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per contender (full mode: 5, fewer past 60 s of runs)",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=list(CASES),
        help="run only this case (repeatable); results go to peers-partial.json",
    )
    parser.add_argument(
        "--contender",
        action="append",
        help="run only this contender (repeatable), for example --contender reference",
    )
    args = parser.parse_args()
    known = {c for _, contenders in CASES.values() for c in contenders}
    unknown = sorted(set(args.contender or ()) - known)
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; choose from {sorted(known)}")
    if args.quick:
        shape, scale, repeats, cap, timeout = (4, 3, 1536, 1536), 0.2, 2, 3 * 2**30, 120
    else:
        shape, scale, repeats, cap, timeout = (24, 7, 3450, 3450), 1.0, 5, 12 * 2**30, 300
    repeats = args.repeats or repeats
    path = ensure_cube(shape)
    results, wrong = [], []
    for case, (label, contenders) in CASES.items():
        if args.case and case not in args.case:
            continue
        contenders = [c for c in contenders if not args.contender or c in args.contender]
        # Rounds: every contender runs once per round, in turn, so a slow spell of a shared
        # machine falls on all of them alike and the ratios stay honest.
        runs: dict[str, list[dict]] = {c: [] for c in contenders}
        for round_ in range(repeats):
            # Every other round runs in reverse, so no contender always goes first.
            for contender in contenders if round_ % 2 == 0 else contenders[::-1]:
                done = runs[contender]
                if done and ("error" in done[-1] or sum_wall(done) > REPEAT_BUDGET_S):
                    continue  # died, ran out of time, or slow enough that noise is no matter
                done.append(run_one(path, case, contender, scale, cap, timeout))
        for contender in contenders:
            ok = [r for r in runs[contender] if "error" not in r]
            entry = {"case": case, "label": label, "contender": contender}
            if ok:
                walls = [r["wall_s"] for r in ok]
                entry.update(
                    median_s=statistics.median(walls),
                    min_s=min(walls),
                    max_s=max(walls),
                    peak_rss=max(r["peak_rss"] for r in ok),
                    rows=ok[0]["rows"],
                    answer=ok[0]["answer"],
                    runs=len(ok),
                )
            else:
                failed = runs[contender][-1]
                entry.update(error=failed["error"], peak_rss=failed.get("peak_rss", 0))
            results.append(entry)
            shown = f"{entry['median_s']:8.2f} s" if ok else entry["error"]
            print(f"  {label:18} {contender:26} {shown}", flush=True)
    # Ratios and cross-checks.
    by_case = {}
    for r in results:
        by_case.setdefault(r["case"], {})[r["contender"]] = r
    for case, entries in by_case.items():
        ours, ref = entries.get("xr_getregion"), entries.get("reference")
        for r in entries.values():
            if "median_s" in r and ours and "median_s" in ours:
                r["x_getregion"] = r["median_s"] / ours["median_s"]
            if "median_s" in r and ref and "median_s" in ref:
                r["x_reference"] = r["median_s"] / ref["median_s"]
            if r["contender"] in CHECKED.get(case, ()) and "answer" in r and ours:
                if (r["answer"], r["rows"]) != (ours["answer"], ours["rows"]):
                    wrong.append(
                        f"{r['label']}: {r['contender']} disagrees with xr_getregion "
                        f"({r['rows']} rows vs {ours['rows']})"
                    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.mkdir(exist_ok=True)
    name = "peers-quick.json" if args.quick else "peers.json"
    if args.case or args.contender:
        name = "peers-partial.json"  # a subset never overwrites the table the README shows
    (RESULTS / name).write_text(
        json.dumps(
            {"cube_shape": shape, "repeats": repeats, "machine": machine, "results": results},
            indent=2,
        )
    )
    gb = shape[0] * shape[1] * shape[2] * shape[3] * 4 / 1e9
    print(
        f"\nCube {shape} float32 ({gb:.1f} GB), chunks (1, 1, 1024, 1024); "
        f"{repeats} repeats; {machine}\n"
    )
    print(
        "| case | contender | median s (min-max) | x xr_getregion | x reference "
        "| peak RSS GiB | rows |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        if "median_s" in r:
            print(
                f"| {r['label']} | {r['contender']} | {r['median_s']:.2f} ({r['min_s']:.2f}-"
                f"{r['max_s']:.2f}) | {r.get('x_getregion', float('nan')):.2f} | "
                f"{r.get('x_reference', float('nan')):.2f} | {r['peak_rss'] / 2**30:.2f} | "
                f"{r['rows']:,} |"
            )
        else:
            print(
                f"| {r['label']} | {r['contender']} | {r['error']} | | | "
                f"{r['peak_rss'] / 2**30:.2f} | |"
            )
    if wrong:
        print("\nWRONG ANSWERS:\n" + "\n".join(wrong))
        return 1
    print("\nAll cross-checked answers agree with xr_getregion.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
