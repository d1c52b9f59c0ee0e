"""Adversarial checks of the read path: every value of the table against references that
share nothing with the package.

The references: the covered pixels are the cube's own coordinates tested with
``shapely.contains_xy`` (no centre lies on a boundary here), each row's pixel is the nearest
coordinate to its longitude/latitude taken back to the cube's CRS with pyproj, and its
values are numpy indexing of the array (or rasterio reads of the file behind it).
"""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import xarray as xr
from pyproj import Transformer

from tests.helpers import cube_values, make_cube, raise_if_dask_computes, write_geotiff
from xr_getregion import ArgumentError
from xr_getregion.errors import GetRegionWarning
from xr_getregion.loaders import reaches_storage

rioxarray = pytest.importorskip("rioxarray")

UTM = "EPSG:32615"
TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)


def box(col0: int, row0: int, col1: int, row1: int, x0=500_000.0, y0=4_000_000.0, res=30.0):
    """Covers the centres of cols col0..col1-1, rows row0..row1-1 of a north-up grid."""
    return shapely.box(
        x0 + res * col0 + 1, y0 - res * row1 + 1, x0 + res * col1 - 1, y0 - res * row0 - 1
    )


def planned(cube: xr.DataArray | xr.Dataset, geometry: shapely.Geometry) -> pd.DataFrame:
    """The eager table, after checking that planning and estimating its reads computes
    nothing (the estimate walks the same windows as the reads)."""
    with raise_if_dask_computes():
        estimates = cube.ee.plan(geometry, geometry_crs=UTM).reads()
    assert all(e.reads >= 1 and e.nbytes > 0 for e in estimates)
    return cube.ee.get_region(geometry, geometry_crs=UTM)


def same_lazy(cube: xr.DataArray | xr.Dataset, geometry: shapely.Geometry, eager: pd.DataFrame):
    """The lazy table holds the eager table's rows (its partitions follow chunks)."""
    lazy = cube.ee.get_region(geometry, geometry_crs=UTM, lazy=True).compute()
    keys = ["time", "latitude", "longitude"]
    pd.testing.assert_frame_equal(
        eager.sort_values(keys, ignore_index=True), lazy.sort_values(keys, ignore_index=True)
    )


def check(
    table: pd.DataFrame,
    values: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    bands: list[str],
    geometry: shapely.Geometry,
    times: np.ndarray | None = None,
) -> None:
    """``table`` holds exactly the pixels whose centre ``geometry`` holds, per image, with
    ``values[t, b, row, col]`` (``(time, band, y, x)`` numpy) in each band column."""
    if geometry.geom_type in ("Point", "MultiPoint"):
        xy = shapely.get_coordinates(geometry)
        rows = np.array([int(np.argmin(abs(ys - y))) for y in xy[:, 1]])
        cols = np.array([int(np.argmin(abs(xs - x))) for x in xy[:, 0]])
    else:
        gx, gy = np.meshgrid(xs, ys)
        rows, cols = np.nonzero(shapely.contains_xy(geometry, gx, gy))
    nt = values.shape[0]
    assert len(table) == nt * len(rows), (len(table), nt, len(rows))
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    # The coordinates are regular: the nearest one by arithmetic, checked to be that close.
    got_c = np.clip(np.rint((x - xs[0]) / (xs[1] - xs[0])).astype(int), 0, len(xs) - 1)
    got_r = np.clip(np.rint((y - ys[0]) / (ys[1] - ys[0])).astype(int), 0, len(ys) - 1)
    assert np.abs(xs[got_c] - x).max() < 1e-3 and np.abs(ys[got_r] - y).max() < 1e-3
    if times is None:
        got_t = np.zeros(len(table), int)
    else:
        t_ms = table["time"].dt.tz_localize(None).to_numpy().astype("datetime64[ms]")
        got_t = np.searchsorted(times.astype("datetime64[ms]"), t_ms)
    got = sorted(zip(got_t.tolist(), got_r.tolist(), got_c.tolist(), strict=True))
    want = sorted((t, int(r), int(c)) for t in range(nt) for r, c in zip(rows, cols, strict=True))
    assert got == want
    for b, band in enumerate(bands):
        expected = values[got_t, b, got_r, got_c]
        column = table[band].to_numpy(dtype="float64", na_value=np.nan)
        np.testing.assert_array_equal(column, expected.astype("float64"), err_msg=band)


# --- in-memory dask arrays: dim orders, chunkings, Datasets --------------------------------

NT, NB, NY, NX = 3, 2, 40, 50
BANDS = ["a", "b"]
VALUES = cube_values(NT, NB, NY, NX)
# An L-shape across chunks, a ring around an uncovered middle, scattered points.
L_SHAPE = shapely.union(box(3, 2, 45, 9), box(3, 9, 12, 38))
RING = shapely.difference(box(2, 3, 47, 37), box(17, 14, 33, 26))
SHAPES = {"L": L_SHAPE, "ring": RING}


def base_cube() -> xr.DataArray:
    return make_cube(NY, NX, NT, BANDS, data=VALUES.copy())


ORDERS = [
    ("time", "band", "y", "x"),
    ("band", "time", "y", "x"),
    ("y", "x", "band", "time"),
    ("time", "band", "x", "y"),
    ("x", "y", "time", "band"),
    ("band", "y", "time", "x"),
]
CHUNKS = [{"time": 1, "band": 1, "y": 7, "x": 11}, {"time": 2, "band": 2, "y": 13, "x": 4}]


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("chunks", range(len(CHUNKS)))
@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "".join(d[0] for d in o))
def test_any_dim_order_and_chunking_gives_the_numpy_values(order, chunks, shape):
    cube = base_cube()
    lazy = cube.transpose(*order).chunk(CHUNKS[chunks])
    geometry = SHAPES[shape]
    table = planned(lazy, geometry)
    check(table, VALUES, cube.x.values, cube.y.values, BANDS, geometry, cube.time.values)


def test_dataset_variables_with_different_chunkings():
    cube = base_cube()
    ds = cube.to_dataset(dim="band")
    ds = xr.Dataset(
        {
            "a": ds["a"].chunk({"time": 1, "y": 7, "x": 50}),
            "b": ds["b"].transpose("x", "time", "y").chunk({"time": 3, "y": 40, "x": 6}),
        }
    )
    table = planned(ds, RING)
    check(table, VALUES, cube.x.values, cube.y.values, BANDS, RING, cube.time.values)
    same_lazy(ds, RING, table)


def test_south_up_cube():
    values = cube_values(NT, NB, NY, NX)
    cube = make_cube(NY, NX, NT, BANDS, data=values, south_up=True)
    lazy = cube.chunk({"time": 1, "band": 2, "y": 9, "x": 12})
    # On a south-up cube row r spans y0 + 30 r .. y0 + 30 (r + 1).
    poly = shapely.union(
        shapely.box(
            500_000 + 30 * 4 + 1,
            4_000_000 + 30 * 5 + 1,
            500_000 + 30 * 40 - 1,
            4_000_000 + 30 * 11 - 1,
        ),
        shapely.box(
            500_000 + 30 * 4 + 1,
            4_000_000 + 30 * 11 + 1,
            500_000 + 30 * 9 - 1,
            4_000_000 + 30 * 33 - 1,
        ),
    )
    table = planned(lazy, poly)
    check(table, values, cube.x.values, cube.y.values, BANDS, poly, cube.time.values)


def test_points_on_chunk_boundaries_and_repeated_points():
    cube = base_cube()
    lazy = cube.chunk({"time": 1, "band": 1, "y": 10, "x": 10})
    xs, ys = cube.x.values, cube.y.values
    picks = [(9, 9), (9, 10), (10, 9), (10, 10), (0, 0), (39, 49), (19, 20), (20, 19)]
    points = [shapely.Point(xs[c], ys[r]) for r, c in picks]
    for p in points:  # one point at a time, as users pass them
        table = planned(lazy, p)
        check(table, VALUES, xs, ys, BANDS, p, cube.time.values)
    multi = shapely.MultiPoint(points)
    table = planned(lazy, multi)
    check(table, VALUES, xs, ys, BANDS, multi, cube.time.values)


def test_lazy_table_and_parquet_equal_the_eager_table(tmp_path):
    cube = base_cube().transpose("y", "x", "band", "time").chunk({"y": 7, "x": 11, "time": 1})
    eager = planned(cube, L_SHAPE)
    lazy = cube.ee.get_region(L_SHAPE, geometry_crs=UTM, lazy=True).compute()
    # Partitions follow chunks (documented), so the rows are compared in one order.
    keys = ["time", "latitude", "longitude"]
    pd.testing.assert_frame_equal(
        eager.sort_values(keys, ignore_index=True), lazy.sort_values(keys, ignore_index=True)
    )
    path = tmp_path / "t.parquet"
    cube.ee.to_parquet(L_SHAPE, path, geometry_crs=UTM)
    back = pd.read_parquet(path).sort_values(keys, ignore_index=True)
    ordered = eager.sort_values(keys, ignore_index=True)
    for column in ("longitude", "latitude", "a", "b"):
        np.testing.assert_array_equal(back[column].to_numpy(), ordered[column].to_numpy())


def test_plan_reads_never_compute():
    cube = base_cube().chunk({"time": 1, "band": 1, "y": 7, "x": 11})
    with raise_if_dask_computes():
        plan = cube.ee.plan(RING, geometry_crs=UTM)
        plan.reads()


@pytest.mark.parametrize("value", [0, "x", -3, None, 2.5, True, "2.5"])
def test_bad_io_threads_is_a_clear_error(value):
    cube = base_cube().chunk({"time": 1, "band": 1, "y": 7, "x": 11})
    with dask.config.set({"xr_getregion.io_threads": value}):
        with pytest.raises(
            ArgumentError, match=f"io_threads must be a positive integer; got {value!r}"
        ):
            cube.ee.get_region(L_SHAPE, geometry_crs=UTM)


def test_one_io_thread_gives_the_same_table():
    cube = base_cube().chunk({"time": 1, "band": 1, "y": 7, "x": 11})
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = planned(cube, RING)
    check(table, VALUES, cube.x.values, cube.y.values, BANDS, RING, cube.time.values)


# --- files: a tiled GeoTIFF read by rioxarray, its tiles not the chunks -----------------------

FY, FX, TILE = 700, 900, 256
FX0, FY0 = 500_000.0, 4_000_000.0


@pytest.fixture(scope="module")
def tiff(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiff") / "three.tif"
    rng = np.random.default_rng(3)
    values = rng.integers(-1000, 30000, (3, FY, FX)).astype("int16")
    values[:, 5:9, 300:320] = -9999  # nodata inside the polygons
    transform = rasterio.transform.from_origin(FX0, FY0, 30, 30)
    write_geotiff(path, values, transform, crs=UTM, nodata=-9999, tile=TILE)
    return path


def file_values(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(masked=True).astype("float64").filled(np.nan)  # (band, y, x)


def file_coords(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        t = ds.transform
        return t.c + t.a * (np.arange(ds.width) + 0.5), t.f + t.e * (np.arange(ds.height) + 0.5)


# A ring over 3 x 3 tiles whose middle tile holds no centre; an L across tile corners; points
# on both sides of tile boundaries.
FILE_RING = shapely.difference(box(200, 200, 560, 560), box(250, 250, 520, 520))
FILE_L = shapely.union(box(250, 3, 700, 20), box(250, 20, 262, 600))
FILE_POINTS = shapely.MultiPoint(
    [
        (FX0 + 30 * (c + 0.5), FY0 - 30 * (r + 0.5))
        for r, c in [(255, 255), (255, 256), (256, 255), (256, 256), (511, 512), (0, 0), (699, 899)]
    ]
)
FILE_SHAPES = {"ring": FILE_RING, "L": FILE_L, "points": FILE_POINTS}


def one_band_table(cube: xr.DataArray, geometry: shapely.Geometry) -> pd.DataFrame:
    return planned(cube, geometry)


@pytest.mark.parametrize("shape", sorted(FILE_SHAPES))
@pytest.mark.parametrize(
    "chunks", [{"x": 700, "y": 300}, {"x": 100, "y": 1000, "band": 1}, {"x": 256, "y": 256}]
)
def test_rioxarray_bands_with_chunks_not_multiples_of_the_tiles(tiff, chunks, shape):
    geometry = FILE_SHAPES[shape]
    cube = rioxarray.open_rasterio(tiff, chunks=chunks, masked=True)
    table = planned(cube, geometry)
    xs, ys = file_coords(tiff)
    check(table, file_values(tiff)[None], xs, ys, ["1", "2", "3"], geometry)


@pytest.mark.parametrize("shape", sorted(FILE_SHAPES))
def test_rioxarray_window_offset_from_the_tiles(tiff, shape):
    """A cube starting 3 columns and 5 rows into the file: tiles start at -3, -5."""
    geometry = FILE_SHAPES[shape]
    cube = rioxarray.open_rasterio(tiff, chunks={"x": 300, "y": 300}, masked=True)
    cube = cube.isel(x=slice(3, None), y=slice(5, None))
    table = planned(cube, geometry)
    xs, ys = file_coords(tiff)
    values = file_values(tiff)[:, 5:, 3:]
    if geometry.geom_type == "MultiPoint":  # a point outside the cube has no row
        xy = shapely.get_coordinates(geometry)
        inside = (xy[:, 0] > xs[3] - 15) & (xy[:, 1] < ys[5] + 15)
        geometry = shapely.MultiPoint(xy[inside])
    check(table, values[None], xs[3:], ys[5:], ["1", "2", "3"], geometry)


SELECTIONS = {
    "squeeze-isel0": (lambda c: c.isel(band=0), [0]),
    "isel-last": (lambda c: c.isel(band=-1), [2]),
    "sel-list": (lambda c: c.sel(band=[3, 1]), [2, 0]),
    "isel-step": (lambda c: c.isel(band=slice(None, None, -2)), [2, 0]),
    "astype": (lambda c: c.astype("float32"), [0, 1, 2]),
    "where": (lambda c: c.where(c > 0), [0, 1, 2]),
    "expand-time": (lambda c: c.expand_dims(time=[np.datetime64("2020-01-01")]), [0, 1, 2]),
    "expand-last": (lambda c: c.expand_dims("k", axis=3).squeeze("k"), [0, 1, 2]),
    "transpose": (lambda c: c.transpose("x", "band", "y"), [0, 1, 2]),
    "flip-y": (lambda c: c.isel(y=slice(None, None, -1)), [0, 1, 2]),
    "sortby-x-desc": (lambda c: c.sortby("x", ascending=False), [0, 1, 2]),
    "band-chunks": (lambda c: c.chunk({"band": 1}), [0, 1, 2]),
}


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_rioxarray_selections_and_steps(tiff, name):
    select, idx = SELECTIONS[name]
    cube = select(rioxarray.open_rasterio(tiff, chunks={"x": 300, "y": 500}, masked=True))
    table = planned(cube, FILE_RING)
    xs, ys = file_coords(tiff)
    values = file_values(tiff)[idx]
    if name == "where":
        values = np.where(values > 0, values, np.nan)
    bands = [c for c in table.columns if c not in ("id", "longitude", "latitude", "time")]
    assert len(bands) == len(idx)
    check(table, values[None], xs, ys, bands, FILE_RING)


def test_rioxarray_concat_along_time_of_two_files(tiff, tmp_path):
    other = tmp_path / "other.tif"
    with rasterio.open(tiff) as src:
        profile = src.profile
        data = src.read()
    with rasterio.open(other, "w", **profile) as dst:
        dst.write((data // 2).astype("int16"))
    arrays = [
        rioxarray.open_rasterio(p, chunks={"x": 512, "y": 300}, masked=True) for p in (tiff, other)
    ]
    times = np.array(["2020-01-01", "2020-02-01"], dtype="datetime64[ns]")
    cube = xr.concat(arrays, dim=xr.Variable("time", times))
    table = planned(cube, FILE_L)
    xs, ys = file_coords(tiff)
    values = np.stack([file_values(tiff), file_values(other)])
    check(table, values, xs, ys, ["1", "2", "3"], FILE_L, times)
    # Band picked after the concatenation: an integer index over the concatenation.
    picked = cube.isel(band=1)
    table = planned(picked, FILE_RING)
    check(table, values[:, [1]], xs, ys, [table.columns[-1]], FILE_RING, times)


# --- STAC stacks of local files: stackstac and odc-stac ---------------------------------------

stackstac = pytest.importorskip("stackstac")
odc_stac = pytest.importorskip("odc.stac")
pystac = pytest.importorskip("pystac")

SY, SX, HALF = 600, 900, 450
SBANDS = ["red", "nir"]
NODATA = -9999
# T2 shares T1's day and covers only the east half, where T1 holds nodata: odc-stac's
# groupby="solar_day" fuses them without a choice to make.
# Corners on multiples of the resolution: stackstac and odc-stac snap their grids to them.
SX0, SY0 = 600_000.0, 4_200_000.0
STAC_DATES = ["2022-05-03T10:00:00", "2022-05-13T10:00:00", "2022-05-13T10:05:00"]


def sbox(col0: int, row0: int, col1: int, row1: int) -> shapely.Polygon:
    return box(col0, row0, col1, row1, x0=SX0, y0=SY0)


STAC_L = shapely.union(sbox(100, 10, 800, 30), sbox(430, 30, 470, 590))
STAC_RING = shapely.difference(sbox(200, 200, 560, 560), sbox(250, 250, 520, 520))
STAC_POINTS = shapely.MultiPoint(
    [
        (SX0 + 30 * (c + 0.5), SY0 - 30 * (r + 0.5))
        for r, c in [(255, 255), (255, 256), (256, 449), (256, 450), (511, 512), (0, 0), (599, 899)]
    ]
)
STAC_SHAPES = {"L": STAC_L, "ring": STAC_RING, "points": STAC_POINTS}


@pytest.fixture(scope="module")
def stac(tmp_path_factory) -> dict:
    """Items over local COG-like tiled files, and the full-grid reference of each item."""
    root = tmp_path_factory.mktemp("stac")
    rng = np.random.default_rng(7)
    items, grids = [], []
    for t, when in enumerate(STAC_DATES):
        col0, width = (HALF, SX - HALF) if t == 2 else (0, SX)
        transform = rasterio.transform.from_origin(SX0 + 30 * col0, SY0, 30, 30)
        x1, y1 = SX0 + 30 * (col0 + width), SY0 - 30 * SY
        lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(
            [SX0 + 30 * col0, x1, SX0 + 30 * col0, x1], [SY0, SY0, y1, y1]
        )
        bbox = [min(lon), min(lat), max(lon), max(lat)]
        item = pystac.Item(
            id=f"T{t}",
            geometry=shapely.geometry.mapping(shapely.box(*bbox)),
            bbox=bbox,
            datetime=pd.Timestamp(when, tz="UTC").to_pydatetime(),
            properties={},
        )
        grid = np.full((len(SBANDS), SY, SX), np.nan)
        for b, band in enumerate(SBANDS):
            values = rng.integers(0, 20000, (SY, width)).astype("int16")
            values[:4, :7] = NODATA
            if t == 1:
                values[:, HALF:] = NODATA
            path = root / f"{t}_{band}.tif"
            write_geotiff(path, values, transform, crs=UTM, nodata=NODATA, tile=256)
            with rasterio.open(path) as ds:  # the reference: rasterio's read of the file
                grid[b, :, col0 : col0 + width] = (
                    ds.read(1, masked=True).astype(float).filled(np.nan)
                )
            item.add_asset(band, pystac.Asset(href=str(path), media_type=pystac.MediaType.COG))
        proj = pystac.extensions.projection.ProjectionExtension.ext(item, add_if_missing=True)
        proj.epsg = 32615
        proj.transform = list(transform)[:6]
        proj.shape = [SY, width]
        # Without it stackstac derives bounds from the lon/lat bbox: another grid.
        proj.bbox = [SX0 + 30 * col0, y1, x1, SY0]
        item.properties["proj:epsg"] = 32615
        items.append(item)
        grids.append(grid)
    return {"items": items, "grids": np.stack(grids)}


def stac_coords() -> tuple[np.ndarray, np.ndarray]:
    return SX0 + 30 * (np.arange(SX) + 0.5), SY0 - 30 * (np.arange(SY) + 0.5)


def stac_times(idx: list[int]) -> np.ndarray:
    return np.array([STAC_DATES[i] for i in idx], dtype="datetime64[ms]")


def stackstac_cube(stac: dict, **kwargs) -> xr.DataArray:
    return stackstac.stack(
        stac["items"], dtype="int16", fill_value=np.int16(NODATA), rescale=False, **kwargs
    )


STACKSTAC_CASES = {
    "plain": (lambda c: c, {}, [0, 1, 2], [0, 1]),
    "small-chunks": (lambda c: c, {"chunksize": 300}, [0, 1, 2], [0, 1]),
    "deep-chunks": (lambda c: c, {"chunksize": (2, 2, 200, 700)}, [0, 1, 2], [0, 1]),
    "sel-band": (lambda c: c.sel(band=["nir"]), {"chunksize": 300}, [0, 1, 2], [1]),
    "sel-bands-reversed": (lambda c: c.sel(band=["nir", "red"]), {}, [0, 1, 2], [1, 0]),
    "isel-time": (lambda c: c.isel(time=slice(1, None)), {"chunksize": 300}, [1, 2], [0, 1]),
    "astype": (lambda c: c.astype("float32"), {"chunksize": 300}, [0, 1, 2], [0, 1]),
    "transposed": (lambda c: c.transpose("y", "x", "band", "time"), {}, [0, 1, 2], [0, 1]),
}


@pytest.mark.parametrize("shape", sorted(STAC_SHAPES))
@pytest.mark.parametrize("case", sorted(STACKSTAC_CASES))
def test_stackstac_cubes(stac, case, shape):
    select, kwargs, times, bands = STACKSTAC_CASES[case]
    cube = select(stackstac_cube(stac, **kwargs))
    geometry = STAC_SHAPES[shape]
    table = planned(cube, geometry)
    # stackstac records no missing value (no attribute holds its fill_value): the fill
    # and the files' nodata are data, as the contract says for undeclared values.
    values = np.nan_to_num(stac["grids"][times][:, bands], nan=NODATA)
    names = [SBANDS[b] for b in bands]
    check(table, values, *stac_coords(), names, geometry, stac_times(times))
    if shape == "ring":
        same_lazy(cube, geometry, table)


ODC_CASES = {
    "plain": ({"chunks": {}}, False),
    "chunks-512": ({"chunks": {"x": 512, "y": 512}}, False),
    "chunks-300-700": ({"chunks": {"x": 700, "y": 300}}, False),
    "solar-day": ({"chunks": {}, "groupby": "solar_day"}, True),
    "solar-day-512": ({"chunks": {"x": 512, "y": 512}, "groupby": "solar_day"}, True),
    "time-chunks": ({"chunks": {"time": 2, "x": 512, "y": 512}}, False),
}


@pytest.mark.parametrize("shape", sorted(STAC_SHAPES))
@pytest.mark.parametrize("case", sorted(ODC_CASES))
def test_odc_stac_cubes(stac, case, shape):
    kwargs, fused = ODC_CASES[case]
    cube = odc_stac.load(stac["items"], **kwargs)
    geometry = STAC_SHAPES[shape]
    table = planned(cube, geometry)
    grids = stac["grids"]
    if fused:  # T1 where it holds a value, else T2 (which covers only T1's nodata)
        day = np.where(np.isnan(grids[1]), grids[2], grids[1])
        values = np.stack([grids[0], day])
        times = cube.time.values.astype("datetime64[ms]")
    else:
        values, times = grids, stac_times([0, 1, 2])
    check(table, values, *stac_coords(), SBANDS, geometry, times)
    if shape == "ring":
        same_lazy(cube, geometry, table)


# --- Zarr stores opened by xarray ---------------------------------------------------------------


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zarr") / "cube.zarr"
    cube = make_cube(300, 400, 2, BANDS, data=cube_values(2, 2, 300, 400))
    cube.to_dataset(dim="band").chunk({"time": 1, "y": 64, "x": 64}).to_zarr(path)
    return path


ZARR_RING = shapely.difference(box(20, 30, 390, 290), box(90, 90, 300, 250))


def test_zarr_dataset_stacked_by_to_array_is_read(zarr_store):
    """``Dataset.to_array`` stacks with ``da.stack``, whose chunks are old-style task tuples
    ``(getitem, key, (None, slice(None), ...))``: looking such a tuple up as a key raised
    ``TypeError: unhashable type: 'slice'`` before any read."""
    values = cube_values(2, 2, 300, 400)
    ds = xr.open_zarr(zarr_store, chunks={"y": 200, "x": 300})
    for cube in (ds.to_array("band"), ds[BANDS].to_array("band")):
        cube = cube.rio.write_crs(UTM)
        table = planned(cube, ZARR_RING)
        names = [str(b) for b in cube.band.values]
        full = (
            values
            if len(names) == 2
            else np.concatenate([values, np.zeros_like(values[:, :1])], axis=1)
        )
        check(table, full, *zarr_coords(), names, ZARR_RING, ds.time.values)
    # Below the stacking each band's chunk is a getter of the store, which a window reaches
    # (to_array drops the encoding, so the store's chunks are unknown: only small windows).
    assert reaches_storage(ds[BANDS].to_array("band").variable.data)


def zarr_coords() -> tuple[np.ndarray, np.ndarray]:
    cube = make_cube(300, 400, 1, ["a"])
    return cube.x.values, cube.y.values


@pytest.mark.parametrize(
    "select",
    [
        lambda d: d,
        lambda d: d.isel(x=slice(10, None), y=slice(7, None)),
        lambda d: d.transpose("x", "y", "time"),
        lambda d: d.isel(time=[1, 0]),
    ],
    ids=["plain", "offset", "transposed", "time-list"],
)
def test_zarr_dataset_selections(zarr_store, select):
    values = cube_values(2, 2, 300, 400)
    ds = select(xr.open_zarr(zarr_store, chunks={"y": 200, "x": 300}))
    table = planned(ds, ZARR_RING)
    order = np.argsort(ds.time.values)
    check(
        table,
        values[np.argsort(order)][order],
        *zarr_coords(),
        BANDS,
        ZARR_RING,
        ds.time.values[order],
    )


# --- more layouts: no band dim, 2-D, big-endian, numpy next to dask, integer nodata ----------


def test_single_band_cubes_without_a_band_dim():
    cube = base_cube()
    one = cube.isel(band=1, drop=True).rename("b")
    yxt = one.transpose("y", "x", "time").chunk({"y": 9, "x": 13, "time": 2})
    table = planned(yxt, RING)
    check(table, VALUES[:, [1]], cube.x.values, cube.y.values, ["b"], RING, cube.time.values)
    flat = one.isel(time=2, drop=True).transpose("x", "y").chunk({"y": 11, "x": 6})
    table = planned(flat, L_SHAPE)
    check(table, VALUES[2:, [1]], cube.x.values, cube.y.values, ["b"], L_SHAPE)


def test_big_endian_and_mixed_numpy_and_dask_variables():
    cube = base_cube()
    ds = cube.to_dataset(dim="band")
    ds["a"] = ds["a"].astype(">f4").chunk({"time": 1, "y": 7, "x": 11})  # b stays numpy
    table = planned(ds, L_SHAPE)
    assert table["a"].dtype == np.float32
    check(table, VALUES, cube.x.values, cube.y.values, BANDS, L_SHAPE, cube.time.values)


def test_integer_file_bands_keep_nodata_as_missing(tiff):
    cube = rioxarray.open_rasterio(tiff, chunks={"x": 700, "y": 300})  # int16, not masked
    poly = box(290, 0, 330, 12)  # holds the nodata block rows 5-8, cols 300-319
    table = planned(cube, poly)
    assert str(table["1"].dtype) == "Int16"
    assert table["1"].isna().sum() == 4 * 20
    check(table, file_values(tiff)[None], *file_coords(tiff), ["1", "2", "3"], poly)


def test_several_overlapping_features_lazy_and_eager_per_feature(tiff):
    """Each feature's rows are its own pixels; a pixel two features cover appears twice."""
    import geopandas as gpd

    shapes = [FILE_RING, box(180, 180, 300, 300), FILE_L]
    frame = gpd.GeoDataFrame(geometry=shapes, crs=UTM)
    cube = rioxarray.open_rasterio(tiff, chunks={"x": 700, "y": 300}, masked=True)
    eager = cube.ee.get_region(frame)
    lazy = cube.ee.get_region(frame, lazy=True).compute()
    values, (xs, ys) = file_values(tiff)[None], file_coords(tiff)
    for table in (eager, lazy):
        for k, shape in enumerate(shapes):
            rows = table[table["feature"] == k].drop(columns="feature")
            check(rows.reset_index(drop=True), values, xs, ys, ["1", "2", "3"], shape)


def test_odc_stac_more_layouts(stac):
    grids = stac["grids"]
    times = stac_times([0, 1, 2])
    xs, ys = stac_coords()
    ds = odc_stac.load(stac["items"], chunks={"x": 300, "y": 200}, bands=["nir"], dtype="float32")
    table = planned(ds, STAC_L)
    check(table, grids[:, [1]], xs, ys, ["nir"], STAC_L, times)
    arr = odc_stac.load(stac["items"], chunks={"x": 300, "y": 200}).to_array("band")
    table = planned(arr, STAC_RING)
    check(table, grids, xs, ys, SBANDS, STAC_RING, times)
    picked = odc_stac.load(stac["items"], chunks={"x": 512, "y": 512}).isel(time=[2, 0])
    table = planned(picked, STAC_POINTS)
    check(table, grids[[0, 2]], xs, ys, SBANDS, STAC_POINTS, stac_times([0, 2]))


def test_stackstac_stacks_concatenated_along_time(stac):
    first = stackstac_cube(stac, chunksize=300).isel(time=[0])
    rest = stackstac_cube(stac, chunksize=(1, 1, 256, 512)).isel(time=slice(1, None))
    cube = xr.concat([rest, first], dim="time")
    table = planned(cube, STAC_RING)
    values = np.nan_to_num(stac["grids"][[1, 2, 0]], nan=NODATA)
    order = np.argsort(stac_times([1, 2, 0]))
    check(table, values[order], *stac_coords(), SBANDS, STAC_RING, stac_times([0, 1, 2]))


def test_rioxarray_mosaic_of_two_files_side_by_side(tiff, tmp_path):
    """The right file starts 900 columns east: its tiles are not the left file's."""
    right = tmp_path / "right.tif"
    with rasterio.open(tiff) as src:
        profile = dict(src.profile, transform=src.transform * rasterio.Affine.translation(FX, 0))
        data = src.read()
    with rasterio.open(right, "w", **profile) as dst:
        dst.write((data[:, :, ::-1] // 3).astype("int16"))
    left = rioxarray.open_rasterio(tiff, chunks={"x": 400, "y": 300}, masked=True)
    east = rioxarray.open_rasterio(right, chunks={"x": 500, "y": 300}, masked=True)
    cube = xr.concat([left, east], dim="x")
    poly = shapely.union(box(850, 250, 1000, 270), box(100, 500, 1500, 520))
    table = planned(cube, poly)
    xs = FX0 + 30 * (np.arange(2 * FX) + 0.5)
    ys = file_coords(tiff)[1]
    values = np.concatenate([file_values(tiff), file_values(right)], axis=2)
    check(table, values[None], xs, ys, ["1", "2", "3"], poly)


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_odc_stac_resampled_windows_equal_whole_chunk_loads(stac, resampling):
    """On a grid other than the files' (45 m), odc-stac resamples: a window handed to its
    reader must give the values a whole chunk's load gives (kernels reach past the window)."""
    ds = odc_stac.load(
        stac["items"], chunks={"x": 256, "y": 256}, resolution=45, resampling=resampling
    )
    reference = np.stack([ds[b].values for b in SBANDS], axis=1).astype("float64")
    x0, y0 = float(ds.x[0]) - 22.5, float(ds.y[0]) + 22.5
    small = box(40, 40, 52, 47, x0=x0, y0=y0, res=45)  # a window of one chunk
    edge = box(250, 100, 262, 110, x0=x0, y0=y0, res=45)  # across a chunk edge
    for geometry in (small, edge):
        table = planned(ds, geometry)
        check(
            table,
            reference,
            ds.x.values,
            ds.y.values,
            SBANDS,
            geometry,
            ds.time.values.astype("datetime64[ms]"),
        )


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_stackstac_resampled_windows_equal_whole_chunk_loads(stac, resampling):
    cube = stackstac.stack(
        stac["items"],
        dtype="float64",
        rescale=False,
        resolution=45,
        resampling=getattr(rasterio.enums.Resampling, resampling),
        chunksize=256,
        xy_coords="center",
    )
    reference = cube.transpose("time", "band", "y", "x").values.astype("float64")
    x0, y0 = float(cube.x[0]) - 22.5, float(cube.y[0]) + 22.5
    small = box(40, 40, 52, 47, x0=x0, y0=y0, res=45)
    edge = box(250, 100, 262, 110, x0=x0, y0=y0, res=45)
    for geometry in (small, edge):
        table = planned(cube, geometry)
        check(
            table,
            reference,
            cube.x.values,
            cube.y.values,
            SBANDS,
            geometry,
            cube.time.values.astype("datetime64[ms]"),
        )


def test_loader_cubes_with_an_integer_index(stac):
    xs, ys = stac_coords()
    grids = stac["grids"]
    one = stackstac_cube(stac, chunksize=300).isel(band=1)
    table = planned(one, STAC_RING)
    values = np.nan_to_num(grids[:, [1]], nan=NODATA)
    check(table, values, xs, ys, [table.columns[-1]], STAC_RING, stac_times([0, 1, 2]))
    first = odc_stac.load(stac["items"], chunks={"x": 300, "y": 200}).isel(time=-1)
    table = planned(first, STAC_L)
    check(table, grids[[2]], xs, ys, SBANDS, STAC_L)


def test_window_reads_on_a_distributed_cluster_of_processes(stac, tiff):
    """The window tasks (odc-stac's cut GeoBox, stackstac's window, xarray's narrowed getter
    with its axes restored) pickle to worker processes and read the same values."""
    distributed = pytest.importorskip("distributed")
    xs, ys = stac_coords()
    with distributed.Client(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
    ):
        ds = odc_stac.load(stac["items"], chunks={"x": 512, "y": 512})
        check(
            planned(ds, STAC_RING), stac["grids"], xs, ys, SBANDS, STAC_RING, stac_times([0, 1, 2])
        )
        cube = stackstac_cube(stac, chunksize=300)
        values = np.nan_to_num(stac["grids"], nan=NODATA)
        check(planned(cube, STAC_L), values, xs, ys, SBANDS, STAC_L, stac_times([0, 1, 2]))
        rio = rioxarray.open_rasterio(tiff, chunks={"x": 700, "y": 300}, masked=True)
        rio = rio.expand_dims(time=[np.datetime64("2020-01-01")])
        table = planned(rio, FILE_RING)
        check(table, file_values(tiff)[None], *file_coords(tiff), ["1", "2", "3"], FILE_RING)


@pytest.mark.parametrize("chunks", [{"x": 700, "y": 300}, {"x": 512, "y": 512}])
def test_many_pixels_whole_chunks_and_tiles(tiff, chunks):
    """300,000 pixels: most chunks read whole, the rest by rectangles of tiles."""
    poly = box(100, 50, 700, 550)
    cube = rioxarray.open_rasterio(tiff, chunks=chunks, masked=True)
    check(planned(cube, poly), file_values(tiff)[None], *file_coords(tiff), ["1", "2", "3"], poly)


def test_south_up_tiled_file(tmp_path):
    """A GeoTIFF whose rows run north (positive y step): its tiles and windows on the cube."""
    path = tmp_path / "south_up.tif"
    values = np.random.default_rng(5).integers(0, 30000, (2, 600, 500)).astype("int16")
    transform = rasterio.Affine(30, 0, FX0, 0, 30, FY0)
    write_geotiff(path, values, transform, crs=UTM, tile=128, compress=None)
    with rasterio.open(path) as ds:
        reference = ds.read().astype("float64")
    xs = FX0 + 30 * (np.arange(500) + 0.5)
    ys = FY0 + 30 * (np.arange(600) + 0.5)
    # Rows 100-399 (going north) and cols 50-449, minus a hole over rows 200-299.
    poly = shapely.difference(
        shapely.box(FX0 + 30 * 50 + 1, FY0 + 30 * 100 + 1, FX0 + 30 * 450 - 1, FY0 + 30 * 400 - 1),
        shapely.box(FX0 + 30 * 130 + 1, FY0 + 30 * 200 + 1, FX0 + 30 * 400 - 1, FY0 + 30 * 300 - 1),
    )
    cube = rioxarray.open_rasterio(path, chunks={"x": 300, "y": 300})
    (read,) = cube.ee.plan(poly, geometry_crs=UTM).reads()
    assert read.granularity.startswith("storage blocks 128 x 128")
    check(planned(cube, poly), reference[None], xs, ys, ["1", "2"], poly)


def test_integral_io_threads_values_are_taken():
    cube = base_cube().chunk({"time": 1, "band": 1, "y": 7, "x": 11})
    for value in (3, 3.0, "3"):
        with dask.config.set({"xr_getregion.io_threads": value}):
            table = cube.ee.get_region(RING, geometry_crs=UTM)
        check(table, VALUES, cube.x.values, cube.y.values, BANDS, RING, cube.time.values)


def test_empty_regions_of_loader_cubes(stac):
    outside = shapely.box(SX0 - 9000, SY0 + 1000, SX0 - 8000, SY0 + 2000)
    for cube in (stackstac_cube(stac), odc_stac.load(stac["items"], chunks={})):
        with pytest.warns(GetRegionWarning, match="misses the cube"):
            with raise_if_dask_computes():
                reads = cube.ee.plan(outside, geometry_crs=UTM).reads()
            assert [r.reads for r in reads] == [0] * len(reads)
            assert len(cube.ee.get_region(outside, geometry_crs=UTM)) == 0
            assert len(cube.ee.get_region(outside, geometry_crs=UTM, lazy=True).compute()) == 0


# --- _rectangles against brute force ----------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    blocks=st.lists(st.tuples(st.integers(-2, 5), st.integers(-2, 5)), min_size=1, max_size=30),
    repeats=st.integers(1, 3),
)
def test_rectangles_tile_the_blocks_holding_pixels_exactly(blocks, repeats):
    from xr_getregion.reads import _rectangles

    ty = np.array([b[0] for b in blocks] * repeats)
    tx = np.array([b[1] for b in blocks] * repeats)
    groups = _rectangles(ty, tx)
    seen = np.concatenate(groups)
    assert sorted(seen.tolist()) == list(range(len(ty)))  # every pixel in one rectangle
    held = set(blocks)
    covered: set[tuple[int, int]] = set()
    for group in groups:
        r0, r1, c0, c1 = ty[group].min(), ty[group].max(), tx[group].min(), tx[group].max()
        span = {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
        assert span <= held  # the rectangle's window reads no block without pixels
        assert not span & covered  # and no block twice
        covered |= span
    assert covered == held


@pytest.mark.parametrize("lock", [False, None])
def test_many_concurrent_window_reads_of_one_file(tiff, lock):
    """16 reads in flight on one file (rioxarray's lock=False: a handle per thread)."""
    cube = rioxarray.open_rasterio(tiff, chunks={"x": 128, "y": 128}, masked=True, lock=lock)
    points = shapely.MultiPoint(
        [
            (FX0 + 30 * (c + 0.5), FY0 - 30 * (r + 0.5))
            for r in range(3, 700, 37)
            for c in range(5, 900, 41)
        ]
    )
    with dask.config.set({"xr_getregion.io_threads": 16}):
        for geometry in (points, FILE_RING):
            check(
                planned(cube, geometry),
                file_values(tiff)[None],
                *file_coords(tiff),
                ["1", "2", "3"],
                geometry,
            )


def test_packed_netcdf_windows_are_decoded(tmp_path):
    """int16 packed with scale_factor/add_offset and a _FillValue, chunked on disk: a window
    narrowed into xarray's getter is decoded as the whole variable is."""
    h5py = pytest.importorskip("h5py")
    raw = cube_values(2, 1, 300, 400)[:, 0].astype("int16") % 30000
    raw[:, 40:44, 60:70] = -32767
    cube = make_cube(300, 400, 2, ["a"])
    ds = xr.Dataset(
        {"v": (("time", "y", "x"), np.where(raw == -32767, np.nan, raw * 0.5 + 10.0))},
        coords={"time": cube.time.values, "y": cube.y.values, "x": cube.x.values},
    )
    ds["v"].encoding = {
        "chunksizes": (1, 50, 64),
        "scale_factor": 0.5,
        "add_offset": 10.0,
        "_FillValue": np.int16(-32767),
        "dtype": "int16",
    }
    ds["v"].attrs["grid_mapping"] = "spatial_ref"
    ds = ds.rio.write_crs(UTM)
    path = tmp_path / "packed.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with h5py.File(path) as f:  # the reference: the stored integers, decoded by hand
        stored = f["v"][...]
    reference = np.where(stored == -32767, np.nan, stored * 0.5 + 10.0)[:, None]
    opened = xr.open_dataset(path, engine="h5netcdf", chunks={"y": 200, "x": 300})
    (read,) = opened.ee.plan(ZARR_RING, geometry_crs=UTM).reads()
    assert read.granularity.startswith("storage blocks 50 x 64")
    poly = shapely.union(ZARR_RING, box(55, 35, 80, 50))
    table = planned(opened, poly)
    assert table["v"].isna().sum() == 2 * 4 * 10
    check(table, reference, cube.x.values, cube.y.values, ["v"], poly, cube.time.values)


def test_rioxarray_band_as_variable(tiff):
    ds = rioxarray.open_rasterio(
        tiff, chunks={"x": 700, "y": 300}, masked=True, band_as_variable=True
    )
    table = planned(ds, FILE_RING)
    check(
        table,
        file_values(tiff)[None],
        *file_coords(tiff),
        ["band_1", "band_2", "band_3"],
        FILE_RING,
    )
