"""One run of ``benchmarks.cogs`` in a fresh process: ``python -m benchmarks._cogs_case
MODE CASE WHO BASE_URL``, WHO a loader (``stackstac``, ``odc-stac``, ``rioxarray``) or
``tile reader``.

A loader run builds the cube from the STAC items (or the files' URLs) as users do, with the
loader's default chunks, and times ``cube.ee.get_region`` on the cube's own grid. After the
clock stops, a sample of the table's rows is checked against rasterio reads of the local files
(the pixel under each row's centre). The tile reader reads exactly the covered 512-tiles of
every file over ``/vsicurl/``, tile by tile, in 8 threads. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cogs import (
    FULL,
    ITEMS,
    NODATA,
    QUICK,
    TILE,
    UTM,
    Stack,
    covered_pixels,
    covered_tiles,
    geometries,
)

#: Threads of the tile-by-tile reader.
READER_THREADS = 8
#: Table rows checked against rasterio per run (all of them when fewer).
CHECKED_ROWS = 300


def load_items(folder: Path, base: str) -> list[Any]:
    import pystac

    # migrate=False: pystac's migration to projection v2 drops proj:epsg, the only field
    # stackstac 0.5.1 takes the items' CRS from (items from a STAC API keep it).
    features = json.loads((folder / ITEMS).read_text())["features"]
    items = [pystac.Item.from_dict(feature, migrate=False) for feature in features]
    for item in items:
        for asset in item.assets.values():
            asset.href = f"{base}/{asset.href}"
    return items


def stackstac_cube(stack: Stack, folder: Path, base: str) -> Any:
    import stackstac

    # As users call it: the items' own grid, default chunks (1024), float64 with NaN.
    return stackstac.stack(load_items(folder, base))


def odc_stac_cube(stack: Stack, folder: Path, base: str) -> Any:
    import odc.stac

    # chunks={}: dask with odc-stac's default chunk shape, the documented way to go lazy.
    return odc.stac.load(load_items(folder, base), chunks={})


def rioxarray_cube(stack: Stack, folder: Path, base: str) -> Any:
    import pandas as pd
    import rioxarray
    import xarray as xr

    images = []
    for t in range(stack.dates):
        layers = [
            rioxarray.open_rasterio(f"{base}/{stack.file_name(t, band)}", chunks=True).squeeze(
                "band", drop=True
            )
            for band in stack.band_names
        ]
        images.append(xr.concat(layers, dim=pd.Index(stack.band_names, name="band")))
    times = pd.DatetimeIndex([w.replace(tzinfo=None) for w in stack.times], name="time")
    return xr.concat(images, dim=times).transpose("time", "band", "y", "x")


LOADERS = {"stackstac": stackstac_cube, "odc-stac": odc_stac_cube, "rioxarray": rioxarray_cube}


def chunk_shape(cube: Any) -> str:
    data = cube if not hasattr(cube, "data_vars") else next(iter(cube.data_vars.values()))
    chunks = getattr(data.data, "chunksize", None)
    if not chunks:
        return "not dask"
    return ", ".join(f"{dim} {size}" for dim, size in zip(data.dims, chunks, strict=True))


def check_rows(stack: Stack, folder: Path, table: Any) -> tuple[int, list[str]]:
    """Compare a sample of the table's rows with rasterio reads of the local files: the row's
    (longitude, latitude) must be a pixel centre and its band values the file's there."""
    import pandas as pd
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import Window

    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    rng = np.random.default_rng(7)
    take = np.sort(rng.choice(len(table), min(CHECKED_ROWS, len(table)), replace=False))
    sample = table.iloc[take]
    times = {pd.Timestamp(w): t for t, w in enumerate(stack.times)}
    xs, ys = to_utm.transform(sample["longitude"].to_numpy(), sample["latitude"].to_numpy())
    wrong: list[str] = []
    for band in stack.band_names:
        for t in range(stack.dates):
            with rasterio.open(folder / stack.file_name(t, band)) as src:
                inverse = ~src.transform
                for i, (when, x, y) in enumerate(zip(sample["time"], xs, ys, strict=True)):
                    if times.get(pd.Timestamp(when)) != t:
                        continue
                    col_f, row_f = inverse * (x, y)
                    if abs(col_f % 1 - 0.5) > 1e-6 or abs(row_f % 1 - 0.5) > 1e-6:
                        wrong.append(f"row {take[i]}: ({x:.3f}, {y:.3f}) is no pixel centre")
                        continue
                    row, col = int(row_f), int(col_f)
                    value = int(src.read(1, window=Window(col, row, 1, 1))[0, 0])
                    got = sample[band].iloc[i]
                    ok = pd.isna(got) if value == NODATA else (not pd.isna(got) and got == value)
                    if not ok:
                        wrong.append(
                            f"row {take[i]} {band} at ({row}, {col}) image {t}: "
                            f"got {got!r}, rasterio reads {value}"
                        )
    unknown = int((~sample["time"].map(lambda w: pd.Timestamp(w) in times)).sum())
    if unknown:
        wrong.append(f"{unknown} rows with a time no item has")
    return len(sample), wrong


def run_loader(stack: Stack, folder: Path, case: str, who: str, base: str) -> dict[str, Any]:
    import xr_getregion  # noqa: F401  (registers .ee)

    geoms = geometries(stack, case)
    start = time.perf_counter()
    cube = LOADERS[who](stack, folder, base)
    built = time.perf_counter()
    # The extraction alone is timed against the tile reader, which is handed its tiles;
    # building the cube (parsing items, the loader's own set-up) is reported apart.
    table = cube.ee.get_region(geoms, max_values=None)
    wall = time.perf_counter() - built
    checked, wrong = check_rows(stack, folder, table)
    return {
        "wall_s": wall,
        "cube_s": built - start,
        "rows": len(table),
        "checked": checked,
        "wrong": wrong[:5],
        "n_wrong": len(wrong),
        "chunks": chunk_shape(cube),
    }


def run_tile_reader(stack: Stack, folder: Path, case: str, base: str) -> dict[str, Any]:
    import rasterio
    from rasterio.windows import Window

    tiles = covered_tiles(covered_pixels(folder / stack.files()[0], geometries(stack, case)))
    jobs = [(name, tile) for name in stack.files() for tile in tiles]
    local = threading.local()

    def read(job: tuple[str, tuple[int, int]]) -> int:
        name, (row, col) = job
        # One dataset per thread and file: a rasterio dataset is not shared between threads.
        opened = local.__dict__.setdefault("datasets", {})
        if name not in opened:
            opened[name] = rasterio.open(f"{base}/{name}")
        src = opened[name]
        window = Window(col * TILE, row * TILE, TILE, TILE).intersection(
            Window(0, 0, src.width, src.height)
        )
        return int(src.read(1, window=window).size)

    start = time.perf_counter()
    with ThreadPoolExecutor(READER_THREADS) as pool:
        pixels = sum(pool.map(read, jobs))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tiles": len(jobs), "pixels": pixels}


def main() -> None:
    mode, case, who, base = sys.argv[1:5]
    stack = QUICK if mode == "quick" else FULL
    folder = stack.folder
    # odc-geo (under odc-stac) still calls shapely.ops.transform; stackstac warns on
    # numpy casts: neither is this benchmark's business.
    warnings.simplefilter("ignore")
    if who == "tile reader":
        result = run_tile_reader(stack, folder, case, base)
    else:
        result = run_loader(stack, folder, case, who, base)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
