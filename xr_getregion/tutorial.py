"""The tutorial cube: a built-in, generated Landsat-8-TOA-like cube over Earth Engine's
getRegion example (the module is named as xarray names its own, ``xarray.tutorial``).

Each value is a pure function of the pixel's global position, the image and the band, so the
cube is identical whatever its chunking, and nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from xr_getregion.errors import ArgumentError

__all__ = ["sample_cube"]

CRS_EPSG = 32615  # UTM zone 15N
PIXEL = 30.0
X_EDGE, Y_EDGE = 705_000.0, 3_863_010.0  # top-left corner, on Landsat's 30 m lattice
WIDTH, HEIGHT = 1000, 834  # 30 km x 25 km: the filter point and the example ROI
IDS = tuple(f"LC08_023036_2020{md}" for md in ("0709", "0725", "0810", "0826", "0911"))
_DAY_MS = 86_400_000
# Acquisitions 16 days apart, seconds of jitter as real scenes have.
TIMES_MS = tuple(
    1594303347000 + k * 16 * _DAY_MS + jitter
    for k, jitter in enumerate((0, 12_000, -7_000, 21_000, 5_000))
)
BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
# Typical TOA reflectance of green vegetation and of bare soil, B1..B7.
_VEG = np.array([0.11, 0.09, 0.08, 0.056, 0.35, 0.17, 0.08])
_SOIL = np.array([0.13, 0.12, 0.13, 0.15, 0.24, 0.30, 0.25])
# A cloud over the example ROI on the third image, so the demo shows masked values.
_ROI_XY = (728_930.0, 3_859_490.0)  # pyproj of (-90.49601, 34.85198)
_CLOUDY_IMAGE = 2


def _noise(*keys: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) noise from integer keys (a splitmix64-style hash): deterministic."""
    h = np.asarray(np.uint64(0x9E3779B97F4A7C15))
    for k in keys:
        h = (h ^ k.astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _values(t: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Reflectances for the outer product of image, band, row and column indices."""
    t = t[:, None, None, None]
    b = b[None, :, None, None]
    r = rows[None, None, :, None]
    c = cols[None, None, None, :]
    x = X_EDGE + (c + 0.5) * PIXEL
    y = Y_EDGE - (r + 0.5) * PIXEL
    with np.errstate(over="ignore"):
        # Fields: 600 m blocks, each with its own crop; the season greens them up over time.
        field = _noise(np.floor(x / 600).astype(np.int64), np.floor(y / 600).astype(np.int64))
        green = np.clip(field * (0.6 + 0.1 * t) + 0.1 * np.sin(x / 2500) * np.cos(y / 3100), 0, 1)
        value = green * _VEG[b] + (1 - green) * _SOIL[b]
        value = value + 0.01 * (_noise(r, c, t, b) - 0.5)
        # Clouds: smooth blobs that move between images, and one parked over the ROI.
        phase = t * 1.7
        cloud = np.sin(x / 1900 + phase) * np.sin(y / 2300 - phase) > 0.93
        near_roi = np.hypot(x - _ROI_XY[0], y - _ROI_XY[1]) < 400
        cloud = cloud | (near_roi & (t == _CLOUDY_IMAGE))
    value = np.round(value, 4).astype(np.float32)
    return np.where(np.broadcast_to(cloud, value.shape), np.float32(np.nan), value)


def _block(block_info: dict[Any, Any]) -> np.ndarray:
    (t0, t1), (b0, b1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    return _values(np.arange(t0, t1), np.arange(b0, b1), np.arange(r0, r1), np.arange(c0, c1))


def sample_cube(
    chunks: dict[str, int] | tuple[int, ...] | str | None = "default",
) -> xr.DataArray:
    """A Landsat-8-TOA-like cube over Earth Engine's getRegion reference example.

    UTM zone 15N (EPSG:32615), 30 m pixels, 1000 x 834 pixels (30 km x 25 km) covering the
    example's filter point (-90.70, 34.71) and its ROI near (-90.496, 34.852); 5 images from
    2020-07-09 to 2020-09-11 with EE-style ids; bands ``B1``..``B7`` as float32 reflectances
    (0.05-0.4) with cloud-masked (NaN) pixels, one cloud sitting on the ROI in the third image.

    Parameters
    ----------
    chunks
        ``"default"`` chunks like stackstac (one image, one band, 256 x 256 pixels); a dict or
        tuple of chunk sizes for ``(time, band, y, x)``; ``None`` for an in-memory numpy cube.
        The values are identical for every choice.

    Returns
    -------
    xarray.DataArray
        Dims ``(time, band, y, x)``, coordinates ``time``, ``id``, ``band``, ``y``, ``x`` and
        ``spatial_ref`` (rioxarray's CRS convention).

    Examples
    --------
    >>> import xr_getregion
    >>> cube = xr_getregion.sample_cube()
    >>> cube.sizes["time"], cube.sizes["band"], str(cube.rio.crs)
    (5, 7, 'EPSG:32615')
    """
    shape = (len(IDS), len(BANDS), HEIGHT, WIDTH)
    if chunks is None:
        data: Any = _values(*(np.arange(n) for n in shape))
    else:
        if isinstance(chunks, str):
            if chunks != "default":
                raise ArgumentError(
                    f"chunks must be 'default', a dict, a tuple or None; got {chunks!r}."
                )
            chunks = (1, 1, 256, 256)
        if isinstance(chunks, dict):
            chunks = tuple(chunks.get(d, -1) for d in ("time", "band", "y", "x"))
        norm = da.core.normalize_chunks(chunks, shape, dtype=np.float32)
        data = da.map_blocks(
            _block, chunks=norm, dtype=np.float32, meta=np.empty((0,) * 4, np.float32)
        )
    cube = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(TIMES_MS, dtype="datetime64[ms]"),
            "id": ("time", list(IDS)),
            "band": list(BANDS),
            "y": Y_EDGE - (np.arange(HEIGHT) + 0.5) * PIXEL,
            "x": X_EDGE + (np.arange(WIDTH) + 0.5) * PIXEL,
        },
        name="reflectance",
        attrs={"long_name": "top-of-atmosphere reflectance (synthetic)"},
    )
    return cube.rio.write_crs(CRS_EPSG)
