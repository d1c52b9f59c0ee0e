"""The synthetic benchmark cube: generated once as Zarr, shared by every benchmark."""

from __future__ import annotations

import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
RESULTS = HERE / "results"
X0, Y0, RES = 600_000.0, 4_000_000.0, 30.0
BANDS = 7
CHUNK = 1024


def cube_shape(gigabytes: float) -> tuple[int, int, int, int]:
    """(time, band, y, x) of a float32 cube of about ``gigabytes`` (10^9 bytes), 24 images."""
    side = int(math.sqrt(gigabytes * 1e9 / (24 * BANDS * 4)))
    return 24, BANDS, side, side


def generate(path: Path, shape: tuple[int, int, int, int]) -> None:
    import dask.array as da
    import numpy as np
    import pandas as pd
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    def block(block_info=None):
        (t0, t1), (b0, b1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        rng = np.random.default_rng([t0, b0, r0, c0])
        rows = np.arange(r0, r1)[:, None]
        cols = np.arange(c0, c1)[None, :]
        smooth = 0.15 + 0.1 * np.sin(rows / 97.0) * np.cos(cols / 131.0)
        noise = rng.normal(0, 0.01, (t1 - t0, b1 - b0, r1 - r0, c1 - c0))
        return np.round(smooth + 0.02 * b0 + noise, 4).astype(np.float32)

    nt, nb, ny, nx = shape
    data = da.map_blocks(
        block,
        chunks=da.core.normalize_chunks((1, 1, CHUNK, CHUNK), shape),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    cube = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq="16D"),
            "band": [f"B{i + 1}" for i in range(nb)],
            "y": Y0 - (np.arange(ny) + 0.5) * RES,
            "x": X0 + (np.arange(nx) + 0.5) * RES,
        },
        name="reflectance",
    ).rio.write_crs("EPSG:32615")
    tmp = path.with_name(path.name + ".partial")
    cube.to_dataset().to_zarr(tmp, mode="w")
    tmp.rename(path)


def ensure_cube(shape: tuple[int, int, int, int]) -> Path:
    """The Zarr store of ``shape`` under ``benchmarks/_data``, generated on first use."""
    import time

    path = DATA / f"cube_{shape[0]}x{shape[1]}x{shape[2]}x{shape[3]}.zarr"
    legacy = DATA / f"cube_{shape[2]}x{shape[3]}.zarr"  # the first runs' name, 24 x 7 images
    if shape[:2] == (24, BANDS) and legacy.exists():
        return legacy
    DATA.mkdir(exist_ok=True)
    if not path.exists():
        start = time.perf_counter()
        print(f"generating {path.name}: {math.prod(shape) * 4 / 1e9:.1f} GB", flush=True)
        generate(path, shape)
        print(f"  generated in {time.perf_counter() - start:.0f} s", flush=True)
    return path
