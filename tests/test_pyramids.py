"""EE's pyramids at coarse scales, checked against a numpy reference written from the rules.

The reference (:func:`reference_values`) shares no code with ``xr_getregion``: it takes each
table row's working pixel centre, finds the native pixel holding it by plain arithmetic on the
cube's coordinates, the level from ``native * 2**k <= working`` in metres, and computes the
policy over the native block ``[by*s, (by+1)*s) x [bx*s, (bx+1)*s)`` (numpy slicing clips it at
the cube's edge) with masks as weights: MEAN ``sum(valid) / count(valid)``, SAMPLE the top-left
pixel, MIN, MAX, MODE (ties: the smallest); no valid pixel gives a masked value.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pyproj
import pytest
import shapely
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xr_getregion
from tests.helpers import counting_dask, make_cube, raise_if_dask_computes
from xr_getregion.errors import ArgumentError

F = 111319.49079327357  # EE's metres per degree
NODATA = -9999


# --- the reference ----------------------------------------------------------------------------


def _level(native_m: float, working_m: float) -> int:
    k = 0
    while native_m * 2 ** (k + 1) <= working_m * (1 + 1e-9):
        k += 1
    return k


def _axis(coord: np.ndarray) -> tuple[float, float]:
    step = (coord[-1] - coord[0]) / (len(coord) - 1)
    return coord[0] - step / 2, step


def _mode(values: np.ndarray) -> Any:
    uniq, counts = np.unique(values, return_counts=True)
    return uniq[np.flatnonzero(counts == counts.max())[0]]  # np.unique sorts: the smallest


def reference_values(
    cube: xr.DataArray,
    table: list[list[Any]],
    working_crs: str,
    working_step: float,
    policies: dict[str, str | None],
    nodata: Any = None,
) -> list[list[Any]]:
    """``table`` (one image's rows are re-derived for all) with each band value recomputed
    from the definitions. ``working_step`` is the working grid's pixel size in its units,
    its origin (0, 0)."""
    crs = pyproj.CRS(cube.rio.crs)
    x0, dx = _axis(cube.x.values)
    y0, dy = _axis(cube.y.values)
    geographic = crs.is_geographic
    native_m = abs(dx) * (F if geographic else 1.0)
    working_m = working_step * (F if pyproj.CRS(working_crs).is_geographic else 1.0)
    k = _level(native_m, working_m)
    s = 2**k
    to_working = pyproj.Transformer.from_crs("EPSG:4326", working_crs, always_xy=True)
    to_cube = pyproj.Transformer.from_crs(working_crs, crs, always_xy=True)
    values = cube.transpose("time", "band", "y", "x").values
    bands = [str(b) for b in cube.band.values]
    out = [table[0]]
    for row in table[1:]:
        lon, lat = row[1], row[2]
        # The working pixel from its reported centre (mid-pixel: robust), then its exact
        # centre in the working CRS, then in the cube's.
        wx, wy = to_working.transform(lon, lat)
        col, rw = math.floor(wx / working_step), math.floor(wy / working_step)
        cx, cy = (col + 0.5) * working_step, (rw + 0.5) * working_step
        if working_crs != crs:
            cx, cy = to_cube.transform(cx, cy)
        ix, iy = math.floor((cx - x0) / dx), math.floor((cy - y0) / dy)
        t = list(cube.id.values).index(row[0]) if "id" in cube.coords else int(row[0])
        new = list(row[:4])
        for b, name in enumerate(bands):
            policy = policies.get(name, policies.get(".default", "mean"))
            if policy is None or k == 0:
                block = values[t, b, iy : iy + 1, ix : ix + 1]
                policy = "sample"
            else:
                by, bx = iy // s, ix // s
                block = values[t, b, by * s : (by + 1) * s, bx * s : (bx + 1) * s]
            flat = block.ravel()
            if policy == "sample":
                v = block[0, 0]
                masked = (np.isnan(v) if flat.dtype.kind == "f" else False) or v == nodata
                new.append(None if masked else v.item())
                continue
            valid = flat[~np.isnan(flat)] if flat.dtype.kind == "f" else flat
            if nodata is not None:
                valid = valid[valid != nodata]
            if not len(valid):
                new.append(None)
            elif policy == "mean":
                new.append(float(np.sum(valid.astype(np.float64)) / len(valid)))
            elif policy == "min":
                new.append(valid.min().item())
            elif policy == "max":
                new.append(valid.max().item())
            else:
                new.append(_mode(valid).item())
        out.append(new)
    return out


def assert_tables_equal(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert got[0] == want[0]
    assert len(got) == len(want)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert g[:4] == w[:4]
        for a, b in zip(g[4:], w[4:], strict=True):
            if a is None or b is None:
                assert a is b, (g, w)
            elif isinstance(b, float):
                # Sums are added in another order (per chunk, then combined): ulps apart.
                assert a == pytest.approx(b, rel=1e-12, abs=1e-9), (g, w)
            else:
                assert a == b and type(a) is type(b), (g, w)


# --- the property test ------------------------------------------------------------------------


@st.composite
def pyramid_cases(draw: st.DrawFn) -> tuple:
    geographic = draw(st.booleans())
    ny, nx = draw(st.integers(3, 24)), draw(st.integers(3, 24))
    nt, nb = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    integer = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Few distinct values, so MODE has real ties and repeats.
    values = rng.integers(0, draw(st.sampled_from([3, 50, 10_000])), (nt, nb, ny, nx))
    masked = rng.random((nt, nb, ny, nx)) < draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    if integer:
        values = np.where(masked, NODATA, values).astype(np.int32)
    else:
        values = np.where(masked, np.nan, values + 0.25).astype(np.float32)
    if geographic:
        res = draw(st.sampled_from([0.0003, 0.001, 0.00025]))
        cube = make_cube(ny, nx, nt, [f"b{i}" for i in range(nb)], crs="EPSG:4326",
                         x0=-90.5 + 0.0001 * draw(st.integers(0, 9)), y0=34.86, res=res,
                         south_up=draw(st.booleans()), data=values)  # fmt: skip
        cube_crs = "EPSG:4326"
        native_m = res * F
    else:
        res = draw(st.sampled_from([30.0, 20.0, 10.0]))
        cube = make_cube(ny, nx, nt, [f"b{i}" for i in range(nb)], crs="EPSG:32615",
                         x0=705_000.0 + draw(st.integers(0, 9)) * 7.0, y0=3_862_000.0,
                         res=res, south_up=draw(st.booleans()), data=values)  # fmt: skip
        cube_crs = "EPSG:32615"
        native_m = res
    if integer:
        cube.attrs["_FillValue"] = NODATA
    factor = draw(st.one_of(st.sampled_from([1.0, 2.0, 4.0, 8.0, 16.0]),
                            st.floats(0.6, 20.0)))  # fmt: skip
    scale = native_m * factor
    own_crs = draw(st.booleans())
    policy = draw(st.one_of(
        st.sampled_from(["mean", "sample", "min", "max", "mode", None]),
        st.fixed_dictionaries({"b0": st.sampled_from(["sample", "mode", "max"])},
                              optional={".default": st.sampled_from(["mean", "min"])}),
    ))  # fmt: skip
    chunks = draw(st.sampled_from([None, (1, 1, 5, 7), (1, 2, 4, 3), (2, 2, 24, 24)]))
    return cube, cube_crs, scale, own_crs, policy, chunks, integer


@settings(max_examples=60)
@given(pyramid_cases())
def test_table_matches_block_reference(case: tuple) -> None:
    cube, cube_crs, scale, own_crs, policy, chunks, integer = case
    if chunks is not None:
        cube = cube.chunk(dict(zip(cube.dims, chunks, strict=True)))
    # The whole cube, a little inside its edges, in its own CRS.
    xs, ys = cube.x.values, cube.y.values
    roi = shapely.box(xs.min(), ys.min(), xs.max(), ys.max())
    crs = cube_crs if own_crs else None
    working_crs = cube_crs if own_crs else "EPSG:4326"
    step = scale / F if pyproj.CRS(working_crs).is_geographic else scale
    kwargs = dict(scale=scale, crs=crs, geometry_crs=cube_crs, max_values=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr_getregion.getRegion(cube, roi, pyramiding=policy, **kwargs)
        plain = xr_getregion.getRegion(cube, roi, pyramiding=None, **kwargs)
    # Pyramids change values, never which rows there are.
    assert [r[:4] for r in got] == [r[:4] for r in plain]
    policies = policy if isinstance(policy, dict) else {".default": policy}
    want = reference_values(cube.compute(), got, working_crs, step, policies,
                            NODATA if integer else None)  # fmt: skip
    assert_tables_equal(got, want)


# --- level 0 is today ----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [30, 45, 59.99])
def test_level_zero_is_bit_identical(scale: float) -> None:
    col = xr_getregion.sample_cube()
    roi = xr_getregion.Geometry.BBox(-90.50, 34.85, -90.495, 34.854)
    mean = col.ee.getRegion(roi, scale=scale, max_values=None)
    assert col.ee.plan(roi, scale=scale).level == 0
    assert mean == col.ee.getRegion(roi, scale=scale, max_values=None, pyramiding=None)
    frame = col.ee.get_region(roi, scale=scale)
    assert frame.equals(col.ee.get_region(roi, scale=scale, pyramiding=None))


# --- the level choice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "level"),
    [(30, 0), (59.9, 0), (60, 1), (60 * (1 - 1e-10), 1), (60 * (1 - 1e-8), 0), (119.9, 1),
     (120, 2), (239.99, 2), (240, 3), (480, 4), (500, 4), (959, 4), (960, 5), (1000, 5),
     (30720, 10)],
)  # fmt: skip
def test_level_at_and_around_powers_of_two_utm(scale: float, level: int) -> None:
    cube = make_cube(40, 40, 1, ["a"])  # 30 m UTM
    roi = shapely.box(500_100, 3_999_000, 500_900, 3_999_900)
    kw = dict(crs="EPSG:32615", geometry_crs="EPSG:32615")
    assert xr_getregion.plan(cube, roi, scale, **kw).level == level
    # EE's lon/lat grid: degrees x 111319.49... metres, the same levels.
    assert xr_getregion.plan(cube, roi, scale, None, geometry_crs="EPSG:32615").level == level


@pytest.mark.parametrize(
    ("factor", "level"), [(1, 0), (2, 1), (2 * (1 - 1e-10), 1), (3.99, 1), (4, 2), (16, 4)]
)
def test_level_on_a_geographic_cube(factor: float, level: int) -> None:
    res = 0.00025  # 27.8 m at EE's factor
    cube = make_cube(40, 40, 1, ["a"], crs="EPSG:4326", x0=-90.5, y0=34.86, res=res)
    roi = shapely.box(-90.499, 34.852, -90.492, 34.859)
    assert xr_getregion.plan(cube, roi, res * F * factor).level == level


def test_lonlat_grid_over_a_30m_utm_cube_at_500_and_1000() -> None:
    col = xr_getregion.sample_cube()
    roi = xr_getregion.Geometry.BBox(-90.52, 34.84, -90.48, 34.87)
    assert col.ee.plan(roi, scale=500).level == 4  # 480 m
    assert col.ee.plan(roi, scale=1000).level == 5  # 960 m
    assert col.ee.plan(roi, scale=500, pyramiding=None).level == 0
    sub = col.isel(time=[0]).sel(band=["B4"])
    for scale in (500, 1000):
        got = sub.ee.getRegion(roi, scale=scale)
        want = reference_values(sub.compute(), got, "EPSG:4326", scale / F, {".default": "mean"})
        assert_tables_equal(got, want)
        plain = sub.ee.getRegion(roi, scale=scale, pyramiding=None)
        assert [r[:4] for r in got] == [r[:4] for r in plain]
        assert got[1][4] != plain[1][4]  # a 16x16 or 32x32 mean, not the nearest pixel


# --- policies, masks, edges -------------------------------------------------------------------


def test_per_band_policies_and_masked_blocks() -> None:
    q = (np.arange(64, dtype=np.int16).reshape(8, 8) % 5).astype(np.int16)
    q[:4, 4:] = 0  # an all-nodata block
    r = np.arange(64, dtype=np.float32).reshape(8, 8)
    r[:4, :4] = np.nan  # an all-NaN block
    r[5, 5] = np.nan
    ds = xr.Dataset(
        {"q": (("y", "x"), q, {"_FillValue": 0}), "r": (("y", "x"), r)},
        coords={
            "y": 4_000_000 - 30 * (np.arange(8) + 0.5),
            "x": 500_000 + 30 * (np.arange(8) + 0.5),
        },
    ).rio.write_crs("EPSG:32615")
    roi = shapely.box(500_000, 3_999_760, 500_240, 4_000_000)
    kw = dict(scale=120, crs="EPSG:32615", geometry_crs="EPSG:32615")
    table = xr_getregion.getRegion(ds, roi, pyramiding={"q": "mode", ".default": "mean"}, **kw)
    # Working pixels of 120 m from origin 0: the cube's 240 m spans two of them each way,
    # on a level-2 block grid (4x4 native pixels) aligned to the cube's corner.
    got = [r[4:] for r in table[1:]]
    assert len(got) == 4
    # By the definitions: each block's q mode (ties smallest, 0 masked), r mask-weighted mean.
    want = []
    for by in (0, 1):
        for bx in (0, 1):
            qb = q[4 * by : 4 * by + 4, 4 * bx : 4 * bx + 4].ravel()
            qb = qb[qb != 0]
            rb = r[4 * by : 4 * by + 4, 4 * bx : 4 * bx + 4].ravel()
            rb = rb[~np.isnan(rb)]
            qm = None if not len(qb) else int(_mode(qb))
            rm = None if not len(rb) else float(rb.astype(np.float64).mean())
            want.append([qm, rm])
    assert sorted(map(repr, got)) == sorted(map(repr, want))
    # The all-masked blocks are None (not NaN, not 0): q's top-right, r's top-left.
    assert sum(v[0] is None for v in got) == 1 and sum(v[1] is None for v in got) == 1
    assert all(type(v[0]) is int for v in got if v[0] is not None)
    # The DataFrame: mean in float64, the mode band keeps its dtype with pd.NA.
    frame = xr_getregion.get_region(ds, roi, pyramiding={"q": "mode"}, **kw)
    assert str(frame["r"].dtype) == "float64" and str(frame["q"].dtype) == "Int16"
    assert frame["q"].isna().sum() == 1 and frame["r"].isna().sum() == 1


def test_block_across_the_cube_edge_counts_only_its_inside() -> None:
    # 6x6 pixels of 30 m; level 2 blocks of 4x4: the blocks at row/col 1 hold 2x2, 2x4, 4x2.
    values = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)
    cube = make_cube(6, 6, 1, ["a"], data=values)
    # A 120 m working grid whose centres fall on native pixels (0, 0), (0, 4), (4, 0), (4, 4).
    roi = shapely.box(499_990, 3_999_870, 500_130, 4_000_010)
    grid = [120, 0, 499_940, 0, -120, 4_000_060]
    kw = dict(crs="EPSG:32615", geometry_crs="EPSG:32615", max_values=None)
    assert xr_getregion.plan(cube, roi, crs_transform=grid, **kw).level == 2
    table = xr_getregion.getRegion(cube, roi, crsTransform=grid, **kw)
    a = values[0, 0]
    means = [r[4] for r in table[1:]]
    assert means == [a[:4, :4].mean(), a[:4, 4:].mean(), a[4:, :4].mean(), a[4:, 4:].mean()]
    # MIN/MAX/SAMPLE of the corner block: its 2x2 inside.
    for policy, expect in (("min", 28.0), ("max", 35.0), ("sample", 28.0)):
        got = xr_getregion.getRegion(cube, roi, crsTransform=grid, pyramiding=policy, **kw)
        assert expect in [r[4] for r in got[1:]]


def test_bad_policies_are_refused_before_any_read() -> None:
    cube = make_cube(8, 8, 1, ["a", "b"])
    roi = shapely.box(500_000, 3_999_760, 500_240, 4_000_000)
    kw = dict(scale=120, geometry_crs="EPSG:32615")
    with pytest.raises(ArgumentError, match="'median'"):
        xr_getregion.getRegion(cube, roi, pyramiding="median", **kw)
    with pytest.raises(ArgumentError, match=r"\['c'\]"):
        xr_getregion.getRegion(cube, roi, pyramiding={"c": "mean"}, **kw)
    with pytest.raises(ArgumentError, match="pyramiding must be"):
        xr_getregion.getRegion(cube, roi, pyramiding=3, **kw)
    # EE's upper-case names are accepted.
    assert xr_getregion.plan(cube, roi, pyramiding="MEAN", **kw).policies == ("mean", "mean")


# --- reads stay at the floor ------------------------------------------------------------------


def test_plan_and_limit_compute_nothing_and_each_chunk_is_read_once() -> None:
    values = np.random.default_rng(1).random((2, 1, 64, 64)).astype(np.float32)
    arr, source = counting_dask(values, (1, 1, 24, 24))
    cube = make_cube(64, 64, 2, ["a"]).copy(data=arr)
    roi = shapely.box(500_000, 3_998_080, 501_920, 4_000_000)
    kw = dict(scale=480, crs="EPSG:32615", geometry_crs="EPSG:32615")
    with raise_if_dask_computes():
        p = xr_getregion.plan(cube, roi, **kw)
        assert p.level == 4 and p.n_pixels == 16  # working pixels, not 4**k native ones
        with pytest.raises(xr_getregion.TooManyValuesError, match="16 points x 1 bands x 2"):
            xr_getregion.getRegion(cube, roi, max_values=31, **kw)
        lazy = xr_getregion.get_region(cube, roi, lazy=True, **kw)
    assert not source.reads
    with raise_if_dask_computes(1):
        table = xr_getregion.getRegion(cube, roi, **kw)
    # 64/24 -> 3x3 chunks x 2 images, each read once though 16x16 blocks straddle them.
    assert len(source.reads) == 18
    want = reference_values(cube.compute(), table, "EPSG:32615", 480.0, {".default": "mean"})
    assert_tables_equal(table, want)
    source.reads.clear()
    frame = lazy.compute()
    assert len(source.reads) == 18
    eager = xr_getregion.get_region(cube, roi, **kw)
    assert len(frame) == len(eager) == 32
    key = ["id", "longitude", "latitude"]
    merged = frame.merge(eager, on=key, suffixes=("", "_e"))
    np.testing.assert_allclose(merged["a"], merged["a_e"], rtol=1e-12)


def test_task_outputs_grow_with_blocks_not_pixels() -> None:
    from xr_getregion.pyramid import BandRule, reduce_blocks

    window = np.arange(64 * 64, dtype=np.float32).reshape(1, 1, 64, 64)
    rules = (BandRule("mean", (), np.dtype(np.float32)),)
    (parts,) = reduce_blocks(window, 0, 0, 32, np.array([0, 1]), np.array([1, 0]), rules)
    assert [p.shape for p in parts] == [(1, 2), (1, 2)]
    assert parts[1].tolist() == [[1024, 1024]]


def test_dask_and_numpy_cubes_agree_everywhere(tmp_path: Any) -> None:
    cube = make_cube(40, 40, 2, ["a", "b"])
    roi = shapely.box(500_000, 3_998_800, 501_200, 4_000_000)
    kw = dict(scale=250, geometry_crs="EPSG:32615")
    eager = xr_getregion.get_region(cube, roi, **kw)
    chunked = cube.chunk({"y": 13, "x": 9})
    for c in (cube, chunked):
        assert xr_getregion.get_region(c, roi, **kw).equals(eager)
        lazy = xr_getregion.get_region(c, roi, lazy=True, **kw).compute()
        key = ["id", "longitude", "latitude"]
        m = lazy.merge(eager, on=key, suffixes=("", "_e"))
        assert len(m) == len(eager)
        np.testing.assert_allclose(m[["a", "b"]].values, m[["a_e", "b_e"]].values, rtol=1e-12)
    path = xr_getregion.to_parquet(chunked, roi, tmp_path / "t.parquet", **kw)
    import pandas as pd

    back = pd.read_parquet(path)
    assert len(back) == len(eager)
    assert sorted(back["a"].round(6)) == sorted(eager["a"].round(6))


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_pyramiding(tmp_path: Any, capsys: Any) -> None:
    import pandas as pd

    from xr_getregion.cli import main

    cube = xr_getregion.sample_cube().isel(time=[0, 1], x=slice(0, 96), y=slice(0, 96))
    cube = cube.sel(band=["B2", "B4"]).chunk({"y": 32, "x": 32})
    cube.to_dataset("band").to_zarr(tmp_path / "cube.zarr")
    x0, y0 = float(cube.x[0]), float(cube.y[0])
    roi = shapely.box(x0, y0 - 2500, x0 + 2500, y0)
    import geopandas as gpd

    gpd.GeoDataFrame({"name": ["a"]}, geometry=[roi], crs="EPSG:32615").to_file(
        tmp_path / "f.geojson", driver="GeoJSON"
    )
    out = tmp_path / "t.parquet"
    argv = ["extract", str(tmp_path / "cube.zarr"), "--geometry", str(tmp_path / "f.geojson"),
            "--scale", "250", "--out", str(out),
            "--pyramiding", "B2=sample,.default=mean"]  # fmt: skip
    assert main(argv) == 0
    got = pd.read_parquet(out).sort_values(["id", "longitude", "latitude"])
    policy = {"B2": "sample", ".default": "mean"}
    fields = gpd.read_file(tmp_path / "f.geojson")
    want = cube.ee.get_region(fields, 250, pyramiding=policy).sort_values(
        ["id", "longitude", "latitude"]
    )
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got["B4"], want["B4"], rtol=1e-12)
    np.testing.assert_array_equal(got["B2"], want["B2"])
    assert not np.array_equal(
        got["B4"], cube.ee.get_region(fields, 250, pyramiding=None).sort_values(
            ["id", "longitude", "latitude"])["B4"]
    )  # fmt: skip
    capsys.readouterr()
    argv[argv.index(str(out))] = str(tmp_path / "u.parquet")
    assert main([*argv[:-1], "B2=median"]) == 2
    err = capsys.readouterr().err
    assert "'median' is no policy" in err and err.count("\n") == 1


# --- region_map ---------------------------------------------------------------------------------


def test_region_map_draws_each_pixels_block() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.path import Path

    from xr_getregion.plot import BLOCKS_GID, PIXELS_GID, region_map

    col = xr_getregion.sample_cube().sel(band=["B2", "B3", "B4"])
    field = xr_getregion.Geometry.BBox(-90.4990, 34.8500, -90.4935, 34.8540)
    ax = region_map(col, field, scale=250)
    gids = {c.get_gid(): c for c in ax.collections}
    blocks = [Path(p.vertices) for p in gids[BLOCKS_GID].get_paths()]
    pixels = gids[PIXELS_GID].get_paths()
    assert len(pixels) == 4 and len(blocks) == 4  # level 3: 240 m blocks of 8x8 pixels
    for block in blocks:
        (x0, y0), (x1, y1) = block.vertices.min(0), block.vertices.max(0)
        assert x1 - x0 == pytest.approx(240) and y1 - y0 == pytest.approx(240)
    # Every working pixel's centre lies in exactly one drawn block.
    for pixel in pixels:
        centre = pixel.vertices[:4].mean(0)
        assert sum(b.contains_point(centre) for b in blocks) == 1
    assert "pyramid level 3" in ax.get_title()
    plt.close(ax.figure)
    ax = region_map(col, field, scale=250, pyramiding=None)
    assert BLOCKS_GID not in {c.get_gid() for c in ax.collections}
    plt.close(ax.figure)


def test_a_band_of_dates_needs_sample_at_a_coarse_scale() -> None:
    dates = np.full((1, 1, 8, 8), np.datetime64("2021-01-01", "ms"))
    cube = make_cube(8, 8, 1, ["d"], data=dates)
    roi = shapely.box(500_000, 3_999_760, 500_240, 4_000_000)
    kw = dict(scale=120, crs="EPSG:32615", geometry_crs="EPSG:32615")
    with pytest.raises(ArgumentError, match=r"pyramiding=\{'d': 'sample'"):
        xr_getregion.plan(cube, roi, **kw)
    table = xr_getregion.getRegion(cube, roi, pyramiding={"d": "sample"}, **kw)
    assert len(table) == 5
