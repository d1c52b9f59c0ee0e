"""The ``extract`` batch command, end to end on files the tests write."""

from __future__ import annotations

import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray
import shapely

import xr_getregion
from xr_getregion.cli import main

KEY = ["feature", "id", "latitude", "longitude"]


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    cube = xr_getregion.sample_cube(chunks=(1, 7, 64, 64)).isel(x=slice(700, 900), y=slice(0, 160))
    cube = cube.sel(band=["B2", "B3", "B4"]).chunk({"time": 1, "band": 1, "y": 64, "x": 64})
    cube.to_dataset("band").to_zarr(root / "cube.zarr")
    cube.to_dataset(name="reflectance").to_zarr(root / "stacked.zarr")
    cube.to_dataset("band").drop_vars("id").to_netcdf(root / "cube.nc", engine="h5netcdf")
    cube.isel(time=0).rio.to_raster(root / "image.tif")
    cube.isel(time=0, drop=True).to_dataset("band").to_zarr(root / "notime.zarr")
    x0, y0 = float(cube.x[0]), float(cube.y[0])
    rng = np.random.default_rng(5)
    shapes = [
        shapely.box(x0 + a, y0 - b - 150, x0 + a + 200, y0 - b)
        for a, b in zip(rng.uniform(0, 5500, 40), rng.uniform(0, 4500, 40), strict=True)
    ] + list(gpd.points_from_xy(rng.uniform(x0, x0 + 5900, 60), rng.uniform(y0 - 4700, y0, 60)))
    fields = gpd.GeoDataFrame(
        {"name": [f"f{i}" for i in range(100)]}, geometry=shapes, crs="EPSG:32615"
    ).to_crs(4326)
    fields.to_file(root / "fields.geojson", driver="GeoJSON")
    fields.to_file(root / "fields.gpkg", driver="GPKG")
    fields.iloc[:40].set_crs(None, allow_override=True).to_file(root / "nocrs.shp")
    (root / "nocrs.prj").unlink(missing_ok=True)
    (root / "garbage.nc").write_text("not a netcdf file")
    return root, cube, fields


def run(*argv: str) -> int:
    return main(["extract", *map(str, argv)])


def test_zarr_cube_geojson_features_to_parquet(files, capsys):
    root, cube, fields = files
    out = root / "a.parquet"
    assert run(root / "cube.zarr", "--geometry", root / "fields.geojson", "--out", out) == 0
    assert "wrote" in capsys.readouterr().out
    expected = cube.ee.get_region(fields, max_values=None)
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(ordered(got), ordered(expected), check_dtype=False)
    assert got["feature"].nunique() == 100


def test_variable_scale_crs_and_id_column(files):
    root, cube, fields = files
    out = root / "b.parquet"
    assert run(root / "stacked.zarr", "--variable", "reflectance", "--geometry",
               root / "fields.gpkg", "--out", out, "--scale", "30", "--crs", "EPSG:4326",
               "--id-column", "name") == 0  # fmt: skip
    got = pd.read_parquet(out)
    expected = cube.ee.get_region(fields, 30, "EPSG:4326", id_column="name", max_values=None)
    pd.testing.assert_frame_equal(ordered(got), ordered(expected), check_dtype=False)
    assert got["feature"].str.startswith("f").all()


def test_netcdf_and_geotiff_cubes_and_csv(files):
    root, cube, fields = files
    assert (
        run(root / "cube.nc", "--geometry", root / "fields.geojson", "--out", root / "c.csv") == 0
    )
    assert len(pd.read_csv(root / "c.csv")) == len(cube.ee.get_region(fields, max_values=None))
    out = root / "d.parquet"
    assert run(root / "image.tif", "--geometry", root / "fields.gpkg", "--out", out) == 0
    with rioxarray.open_rasterio(root / "image.tif") as image:
        expected = image.ee.get_region(fields, max_values=None)
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(ordered(got), ordered(expected), check_dtype=False)
    assert got["id"].unique().tolist() == ["0"]


def test_on_a_local_cluster_with_progress(files, capsys):
    root, cube, fields = files
    out = root / "e.parquet"
    assert run(root / "cube.zarr", "--geometry", root / "fields.geojson", "--out", out,
               "--workers", "2", "--progress") == 0  # fmt: skip
    expected = cube.ee.get_region(fields, max_values=None)
    pd.testing.assert_frame_equal(
        ordered(pd.read_parquet(out)), ordered(expected), check_dtype=False
    )


def test_the_command_runs_as_a_program(files):
    root, _, _ = files
    done = subprocess.run(
        [sys.executable, "-m", "xr_getregion", "extract", str(root / "cube.zarr"), "--geometry",
         str(root / "fields.gpkg"), "--out", str(root / "f.csv"), "--progress"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.zarr", "--geometry", "fields.geojson", "--out", "x.parquet"], "does not exist"),
        (["cube.zarr", "--geometry", "missing.gpkg", "--out", "x.parquet"], "does not exist"),
        (["garbage.nc", "--geometry", "fields.geojson", "--out", "x.parquet"], "cannot read CUBE"),
        (
            ["fields.geojson", "--geometry", "fields.geojson", "--out", "x.parquet"],
            "unknown format",
        ),
        (["notime.zarr", "--geometry", "fields.geojson", "--out", "x.parquet"], "no time dim"),
        (["cube.zarr", "--geometry", "nocrs.shp", "--out", "x.parquet"], "have no CRS"),
        (["cube.zarr", "--geometry", "garbage.nc", "--out", "x.parquet"], "unknown format"),
        (["cube.zarr", "--geometry", "fields.geojson", "--out", "x.txt"], "must end in .parquet"),
        (
            [
                "cube.zarr",
                "--geometry",
                "fields.geojson",
                "--out",
                "x.csv",
                "--crs-transform",
                "1,2",
            ],
            "6 numbers",
        ),
        (
            ["cube.zarr", "--geometry", "fields.geojson", "--out", "x.csv", "--max-values", "10"],
            "Too many values",
        ),
        (
            ["cube.zarr", "--geometry", "fields.geojson", "--out", "x.csv", "--variable", "B9"],
            "--variable 'B9' is not in CUBE",
        ),
        (
            ["cube.zarr", "--geometry", "fields.geojson", "--out", "x.csv", "--crs", "EPSG:0"],
            "not a CRS",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, capsys, monkeypatch, argv, message):
    root, _, _ = files
    monkeypatch.chdir(root)
    assert main(["extract", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-getregion: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(root.glob("x.*"))


def test_unreadable_zarr_is_one_line(files, capsys, tmp_path):
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{ not json")
    root, _, _ = files
    assert run(bad, "--geometry", root / "fields.geojson", "--out", tmp_path / "o.csv") == 2
    assert "cannot read CUBE" in capsys.readouterr().err


def test_output_problems_are_one_line(files, capsys, tmp_path):
    root, _, _ = files
    out = tmp_path / "o.csv"
    args = [root / "cube.zarr", "--geometry", root / "fields.geojson"]
    assert run(*args, "--out", out) == 0
    capsys.readouterr()
    assert run(*args, "--out", out) == 2
    assert "exists; remove it or pass --overwrite" in capsys.readouterr().err
    assert run(*args, "--out", out, "--overwrite") == 0
    assert run(*args, "--out", root / "fields.geojson" / "o.csv") == 2
    err = capsys.readouterr().err
    assert "is not a directory" in err and "Traceback" not in err
