"""One benchmark run: ``python -m benchmarks._case CUBE CASE CONTENDER SCALE``, in a fresh process.

Prints one JSON line: wall time, rows, peak RSS and an answer digest (the sorted values of the
first band, hashed) that the runner compares between contenders whose semantics agree.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

import xr_getregion

try:
    import xvec
except ImportError:  # the bench extra is not installed
    xvec = None

UTM = "EPSG:32615"
#: The coarse case: EE's lon/lat grid at 1 km over the 30 m cube, read at pyramid level 5
#: (32x32 blocks of 960 m, mask-weighted means).
COARSE_SCALE = 1000.0
#: Extra get_region arguments of the case being run (set by main).
EXTRA: dict = {}


def geometries(cube: xr.DataArray, case: str, scale: float) -> gpd.GeoSeries:
    """The case's geometries, placed inside the cube, deterministic."""
    x0, y1 = float(cube.x[0]) - 15, float(cube.y[0]) + 15
    width, height = cube.sizes["x"] * 30.0, cube.sizes["y"] * 30.0
    cx, cy = x0 + width * 0.37, y1 - height * 0.41
    rng = np.random.default_rng(42)

    def blob(x, y, area, k=40):
        angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
        wobble = 1 + 0.2 * np.sin(3 * angles + rng.uniform(0, 6))
        r = np.sqrt(area / np.pi) * wobble / np.sqrt(np.mean(wobble**2))
        return shapely.Polygon(np.column_stack([x + r * np.cos(angles), y + r * np.sin(angles)]))

    if case == "scan":
        shapes = []
    elif case == "point":
        shapes = [shapely.Point(cx + 7, cy + 11)]
    elif case == "points":
        n = int(1000 * scale)
        shapes = list(
            gpd.points_from_xy(rng.uniform(x0, x0 + width, n), rng.uniform(y1 - height, y1, n))
        )
    elif case == "polygon_1km2":
        shapes = [blob(cx, cy, 1e6)]
    elif case in ("polygon_100km2", "coarse_100km2"):
        side = min(width, height) * 0.45
        shapes = [blob(x0 + width / 2, y1 - height / 2, min(1e8, side * side))]
    elif case == "line_10km":
        length = min(10_000.0, width * 0.8)
        shapes = [
            shapely.LineString([(cx - length / 2, cy - 900), (cx, cy + 500), (cx + length / 2, cy)])
        ]
    elif case == "fields":
        n = int(1000 * scale)
        xs = rng.uniform(x0 + 300, x0 + width - 300, n)
        ys = rng.uniform(y1 - height + 300, y1 - 300, n)
        shapes = [blob(x, y, rng.uniform(1e4, 6e4), 12) for x, y in zip(xs, ys, strict=True)]
    else:
        raise SystemExit(f"unknown case {case}")
    return gpd.GeoSeries(shapes, crs=UTM)


def digest(values: np.ndarray) -> str:
    values = np.sort(np.asarray(values, dtype=np.float32).ravel())
    return hashlib.sha1(values.tobytes()).hexdigest()[:16]


def first_band(cube: xr.DataArray) -> str:
    return str(cube.band.values[0])


# --- contenders: each returns (rows, its first band's values or None[, own wall time]) ---------
# The runner digests those values after the clock stops: the check is not the contender's cost.


def getregion(cube, geoms, out):
    features = geoms if len(geoms) > 1 else geoms.iloc[0]
    kwargs = {"max_values": None} if len(geoms) > 1 else {"max_values": None, "geometry_crs": UTM}
    df = cube.ee.get_region(features, **kwargs, **EXTRA)
    return len(df), df[first_band(cube)]


def getregion_parquet(cube, geoms, out):
    features = geoms if len(geoms) > 1 else geoms.iloc[0]
    kwargs = {"max_values": None} if len(geoms) > 1 else {"max_values": None, "geometry_crs": UTM}
    start = time.perf_counter()
    path = xr_getregion.to_parquet(cube, features, out, overwrite=True, **kwargs, **EXTRA)
    wall = time.perf_counter() - start
    # Reading a column back is the cross-check's cost, not the contender's.
    df = pd.read_parquet(path, columns=[first_band(cube)])
    return len(df), df[first_band(cube)], wall


def reference(cube, geoms, out):
    """The floor: read the bounding window of the covered pixels in each covered chunk."""
    if EXTRA:
        return coarse_reference(cube, geoms, out)
    plan = cube.ee.plan(shapely.GeometryCollection(list(geoms)), crs="native", geometry_crs=UTM)
    iy, ix = plan.iy, plan.ix
    data = cube.data
    yb = np.cumsum((0, *data.chunks[2]))
    xb = np.cumsum((0, *data.chunks[3]))
    key = (np.searchsorted(yb, iy, "right") - 1) * len(xb) + np.searchsorted(xb, ix, "right") - 1
    start = time.perf_counter()
    windows = []
    for k in np.unique(key):
        sel = key == k
        y0, x0 = iy[sel].min(), ix[sel].min()
        window = data[:, :, y0 : iy[sel].max() + 1, x0 : ix[sel].max() + 1]
        # Take the pixels chunk by chunk, so memory holds pixels, not windows.
        chunks = (*data.chunks[:2], (int(sel.sum()),))
        windows.append(
            window.map_blocks(
                lambda b, yy, xx: b[:, :, yy, xx],
                iy[sel] - y0,
                ix[sel] - x0,
                drop_axis=[2, 3],
                new_axis=[2],
                dtype=data.dtype,
                chunks=chunks,
            )
        )
    dask.compute(*windows)
    # The planning above is not the floor's cost: time the reads only.
    return len(iy) * cube.sizes["time"], None, time.perf_counter() - start


def coarse_reference(cube, geoms, out):
    """The floor of a coarse scale: plain dask over the bounding window of the level-k blocks
    the working pixels fall in (aligned to the cube's origin), ``coarsen`` to their NaN-mean,
    each working pixel then taking its block's mean. The plan (which blocks) is not timed."""
    plan = cube.ee.plan(geoms.iloc[0], geometry_crs=UTM, max_values=None, **EXTRA)
    s = 2**plan.level
    by, bx = plan.iy // s, plan.ix // s
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    r0, r1 = int(by.min()) * s, min((int(by.max()) + 1) * s, ny)
    c0, c1 = int(bx.min()) * s, min((int(bx.max()) + 1) * s, nx)
    start = time.perf_counter()
    window = cube.data[:, :, r0:r1, c0:c1]
    means = da.coarsen(np.nanmean, window, {2: s, 3: s}, trim_excess=False, dtype=np.float64)
    means = means.compute()
    values = means[:, 0, by - r0 // s, bx - c0 // s]
    wall = time.perf_counter() - start
    return values.size, values.ravel(), wall


def full_scan(cube, geoms, out):
    total = cube.data.sum().compute()
    return int(np.isfinite(total)), None


def _nearest(cube, geoms):
    xs, ys = geoms.x.to_numpy(), geoms.y.to_numpy()
    return cube.sel(x=xr.DataArray(xs, dims="p"), y=xr.DataArray(ys, dims="p"), method="nearest")


def sel_nearest_lazy(cube, geoms, out):
    df = _nearest(cube, geoms).to_dataset("band").to_dataframe()
    return len(df), df[first_band(cube)]


def sel_nearest_computed(cube, geoms, out):
    df = _nearest(cube, geoms).compute().to_dataset("band").to_dataframe()
    return len(df), df[first_band(cube)]


def _xvec(cube, geoms):
    return cube.xvec.extract_points(geoms.values, x_coords="x", y_coords="y", crs=UTM)


def xvec_lazy(cube, geoms, out):
    df = (
        _xvec(cube, geoms)
        .drop_vars("spatial_ref", errors="ignore")
        .to_dataset("band")
        .to_dataframe()
    )
    return len(df), df[first_band(cube)]


def xvec_computed(cube, geoms, out):
    sel = _xvec(cube, geoms).compute().drop_vars("spatial_ref", errors="ignore")
    df = sel.to_dataset("band").to_dataframe()
    return len(df), df[first_band(cube)]


def _clip(cube, geom, computed, all_touched):
    clipped = cube.rio.clip([geom], crs=UTM, all_touched=all_touched, drop=True)
    if computed:
        clipped = clipped.compute()
    df = clipped.drop_vars("spatial_ref").to_dataset("band").to_dataframe().dropna()
    return df


def _clip_all(cube, geoms, computed):
    line = geoms.iloc[0].geom_type == "LineString"
    frames = [_clip(cube, g, computed, all_touched=line) for g in geoms]
    df = pd.concat(frames)
    return len(df), None if line else df[first_band(cube)]


def clip_lazy(cube, geoms, out):
    return _clip_all(cube, geoms, computed=False)


def clip_computed(cube, geoms, out):
    return _clip_all(cube, geoms, computed=True)


def where_stack(cube, geoms, out):
    from rasterio.features import geometry_mask

    mask = ~geometry_mask(
        list(geoms), out_shape=(cube.sizes["y"], cube.sizes["x"]), transform=cube.rio.transform()
    )
    masked = cube.where(xr.DataArray(mask, dims=("y", "x")))
    df = masked.stack(pixel=("y", "x")).to_dataset("band").to_dataframe().dropna()
    return len(df), df[first_band(cube)]


def exactextract_cells(cube, geoms, out):
    from exactextract import exact_extract

    stacked = cube.stack(layer=("time", "band")).transpose("layer", "y", "x")
    stacked = stacked.drop_vars(["layer", "time", "band"]).rio.write_crs(UTM)
    cells = exact_extract(
        stacked,
        gpd.GeoDataFrame(geometry=geoms),
        ["center_x", "center_y", "values"],
        output="pandas",
    )
    rows, firsts = 0, []
    n_bands = cube.sizes["band"]
    for poly, (_, row) in zip(geoms, cells.iterrows(), strict=True):
        cx, cy = np.asarray(row["band_1_center_x"]), np.asarray(row["band_1_center_y"])
        inside = shapely.contains_xy(poly, cx, cy)
        rows += int(inside.sum()) * cube.sizes["time"]
        # Layers are (time, band) pairs, time-major: the first band of each image.
        for t in range(cube.sizes["time"]):
            firsts.append(np.asarray(row[f"band_{t * n_bands + 1}_values"])[inside])
    return rows, np.concatenate(firsts) if firsts else None


def rasterstats_layers(cube, geoms, out):
    """rasterstats' per-pixel output (``raster_out``), one (image, band) layer at a time."""
    from rasterstats import zonal_stats

    transform = cube.rio.transform()
    rows, firsts = 0, []
    for t in range(cube.sizes["time"]):
        for b in range(cube.sizes["band"]):
            layer = cube.isel(time=t, band=b).values
            stats = zonal_stats(
                list(geoms),
                layer,
                affine=transform,
                stats=["count"],
                raster_out=True,
                all_touched=False,
                nodata=-9999,
            )
            for s in stats:
                cells = s["mini_raster_array"].compressed()
                if b == 0:
                    rows += cells.size
                    firsts.append(cells)
    return rows, np.concatenate(firsts) if firsts else None


CONTENDERS = {
    "xr_getregion": getregion,
    "xr_getregion parquet": getregion_parquet,
    "reference": reference,
    "full scan": full_scan,
    "sel nearest (lazy)": sel_nearest_lazy,
    "sel nearest (computed)": sel_nearest_computed,
    "xvec (lazy)": xvec_lazy,
    "xvec (computed)": xvec_computed,
    "rioxarray clip (lazy)": clip_lazy,
    "rioxarray clip (computed)": clip_computed,
    "where + stack": where_stack,
    "exactextract": exactextract_cells,
    "rasterstats (per layer)": rasterstats_layers,
}


def main() -> None:
    path, case, contender, scale = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cube = xr.open_zarr(path, decode_coords="all")["reflectance"]
    geoms = geometries(cube, case, scale)
    if case == "coarse_100km2":
        EXTRA.update(scale=COARSE_SCALE)
    out = Path(path).parent / f"out-{case}.parquet"
    start = time.perf_counter()
    rows, values, *own_wall = CONTENDERS[contender](cube, geoms, out)
    wall = own_wall[0] if own_wall else time.perf_counter() - start
    answer = None if values is None else digest(values)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall_s": wall, "rows": rows, "peak_rss": peak, "answer": answer}))


if __name__ == "__main__":
    main()
