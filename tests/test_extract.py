"""The ``extract`` batch command, end to end on files the tests write."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rioxarray

import xr_getregion
from tests.helpers import random_fields, write_cube_files
from xr_getregion.cli import main

KEY = ["feature", "id", "latitude", "longitude"]


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    cube = xr_getregion.sample_cube(chunks=(1, 7, 64, 64)).isel(x=slice(700, 900), y=slice(0, 160))
    cube = cube.sel(band=["B2", "B3", "B4"]).chunk({"time": 1, "band": 1, "y": 64, "x": 64})
    write_cube_files(cube, root)
    cube.to_dataset(name="reflectance").to_zarr(root / "stacked.zarr")
    cube.isel(time=0, drop=True).to_dataset("band").to_zarr(root / "notime.zarr")
    fields = random_fields(
        cube, 5, boxes=40, box=(200, 150), box_span=(5500, 4500), points=60, point_span=(5900, 4700)
    )
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
    assert (
        run(
            root / "stacked.zarr",
            "--variable",
            "reflectance",
            "--geometry",
            root / "fields.gpkg",
            "--out",
            out,
            "--scale",
            "30",
            "--crs",
            "EPSG:4326",
            "--id-column",
            "name",
        )
        == 0
    )
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
    assert (
        run(
            root / "cube.zarr",
            "--geometry",
            root / "fields.geojson",
            "--out",
            out,
            "--workers",
            "2",
            "--progress",
        )
        == 0
    )
    expected = cube.ee.get_region(fields, max_values=None)
    pd.testing.assert_frame_equal(
        ordered(pd.read_parquet(out)), ordered(expected), check_dtype=False
    )


def test_the_command_runs_as_a_program(files):
    root, _, _ = files
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xr_getregion",
            "extract",
            str(root / "cube.zarr"),
            "--geometry",
            str(root / "fields.gpkg"),
            "--out",
            str(root / "f.csv"),
            "--progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.zarr", "--geometry", "fields.geojson", "--out", "x.parquet"], "does not exist"),
        (["cube.zarr", "--geometry", "missing.gpkg", "--out", "x.parquet"], "does not exist"),
        (["garbage.nc", "--geometry", "fields.geojson", "--out", "x.parquet"], "not a NetCDF-4"),
        (
            # A .json or .geojson CUBE is read as STAC items: plain features are not that.
            ["fields.geojson", "--geometry", "fields.geojson", "--out", "x.parquet"],
            "a .json CUBE holds STAC items, and entry 0 is not a STAC Item",
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


# --- hostile input files --------------------------------------------------------------------

NETCDF3 = b"CDF\x01" + bytes(28)
VRT = b'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand band="1"/></VRTDataset>'


def _zarr_dir(text: str, name: str = "zarr.json"):
    def make(path):
        path.mkdir()
        (path / name).write_text(text)

    return make


def _write(content: bytes):
    return lambda path: path.write_bytes(content)


def _plain_parquet(path):
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)


def _tiff_without_georeferencing(path):
    """A real TIFF whose reader warns (no georeferencing) before the CRS check refuses it."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "uint8"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.ones((1, 4, 4), np.uint8))


def _stderr_line(capfd) -> str:
    """The one line the command wrote to file descriptor 2 (warnings and GDAL's C messages
    included, which capsys would miss)."""
    err = capfd.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("xr-getregion: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("role", "name", "make", "expected"),
    [
        ("cube", "x.zarr", _zarr_dir("this is text"), "as Zarr: zarr.json is not JSON"),
        ("cube", "x.zarr", _zarr_dir("{ not json", ".zgroup"), "as Zarr: .zgroup is not JSON"),
        ("cube", "x.zarr", _zarr_dir("just notes", "notes.txt"), "is not a Zarr store"),
        ("cube", "x.zarr", _write(b"text, not a directory"), "is not a Zarr store"),
        ("cube", "x.nc", _write(b"this is text\n"), "is not a NetCDF-4 file"),
        ("cube", "x.nc", _write(NETCDF3), "is a NetCDF-3 (classic) file"),
        ("cube", "x.h5", _write(b""), "is not a NetCDF-4 file: there is no HDF5 signature; it is"),
        ("cube", "x.tif", _write(b"this is text\n"), "is not a GeoTIFF"),
        # GDAL would open a VRT whatever its name, and a VRT can point at other files or URLs.
        ("cube", "x.tif", _write(VRT), "is not a GeoTIFF"),
        ("cube", "x.tif", _write(b"II*\x00" + bytes(4)), "as GeoTIFF"),
        ("cube", "x.tif", _tiff_without_georeferencing, "CRS"),
        ("features", "x.geojson", _write(b"this is text\n"), "is not GeoJSON"),
        (
            "features",
            "x.json",
            _write(b'{"type": "FeatureCollection", "features": ['),
            "as GeoJSON",
        ),
        ("features", "x.parquet", _write(b"this is text\n"), "is not a Parquet file"),
        ("features", "x.parquet", _plain_parquet, "as GeoParquet: Missing geo metadata"),
        ("features", "x.gpkg", _write(b"this is text\n"), "is not a GeoPackage"),
        ("features", "x.shp", _write(b"this is text\n"), "is not a Shapefile"),
    ],
)
def test_content_other_than_the_extension_is_one_line_naming_path_and_format(
    files, capfd, tmp_path, role, name, make, expected
):
    root, _, _ = files
    bad = tmp_path / name
    make(bad)
    cube, features = (bad, root / "fields.geojson") if role == "cube" else (root / "cube.zarr", bad)
    capfd.readouterr()
    assert run(cube, "--geometry", features, "--out", tmp_path / "o.parquet") == 2
    err = _stderr_line(capfd)
    if expected != "CRS":  # that one is the cube's own message, about the cube
        assert repr(str(bad)) in err
    assert expected in err
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    ("role", "name", "accepted"),
    [
        ("cube", "x.txt", [".zarr", ".nc", ".nc4", ".h5", ".tif", ".tiff", ".json"]),
        ("cube", "x.pkl", [".zarr", ".nc", ".tif"]),
        ("features", "x.kml", [".geojson", ".json", ".gpkg", ".shp", ".parquet"]),
        ("features", "x.pickle", [".geojson", ".gpkg", ".shp", ".parquet"]),
        ("features", "x.csv", [".geojson", ".gpkg", ".shp", ".parquet"]),
    ],
)
def test_unknown_extension_is_refused_naming_the_accepted_ones(
    files, capfd, tmp_path, role, name, accepted
):
    root, _, _ = files
    bad = tmp_path / name
    bad.write_bytes(b"anything")
    cube, features = (bad, root / "fields.geojson") if role == "cube" else (root / "cube.zarr", bad)
    capfd.readouterr()
    assert run(cube, "--geometry", features, "--out", tmp_path / "o.csv") == 2
    err = _stderr_line(capfd)
    assert f"{role.upper()} {str(bad)!r}: unknown format {bad.suffix!r}" in err
    assert all(suffix in err for suffix in accepted)


@pytest.mark.parametrize("which", ["cube", "features", "both"])
def test_missing_path_is_one_line_and_exit_2_before_anything_is_read(
    files, capfd, tmp_path, monkeypatch, which
):
    root, _, _ = files
    cube = tmp_path / "nope.zarr" if which != "features" else root / "cube.zarr"
    features = tmp_path / "nope.gpkg" if which != "cube" else root / "fields.geojson"
    opened = []
    monkeypatch.setattr("xr_getregion.cli.open_cube", lambda *a: opened.append(a))
    capfd.readouterr()
    assert run(cube, "--geometry", features, "--out", tmp_path / "o.csv") == 2
    err = _stderr_line(capfd)
    missing = cube if which != "features" else features
    assert f"{str(missing)!r} does not exist." in err
    assert opened == []  # a typo costs no read of the other file


def test_a_real_process_prints_one_line_for_a_missing_or_misnamed_input(files, tmp_path):
    """The same, as a program: nothing (warning, log, traceback) reaches stderr but the line."""
    root, _, _ = files
    (tmp_path / "text.tif").write_text("this is text\n")
    for cube, expected in [
        (tmp_path / "nope.zarr", "does not exist"),
        (tmp_path / "text.tif", "is not a GeoTIFF"),
    ]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "xr_getregion",
                "extract",
                str(cube),
                "--geometry",
                str(root / "fields.gpkg"),
                "--out",
                str(tmp_path / "o.csv"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
        assert done.stdout == ""


def test_a_zarr_store_with_the_pickle_codec_is_refused_unread(files, capfd, tmp_path):
    """numcodecs' pickle codec unpickles chunk bytes (zarr 2 does it for object arrays): a
    crafted store could run code. The store is refused from its metadata; nothing is decoded."""
    root, _, _ = files
    store = tmp_path / "evil.zarr"
    (store / "v").mkdir(parents=True)
    (store / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    meta = {
        "zarr_format": 2,
        "shape": [1],
        "chunks": [1],
        "dtype": "|O",
        "order": "C",
        "compressor": None,
        "fill_value": None,
        "filters": [{"id": "pickle"}],
    }
    (store / "v" / ".zarray").write_text(json.dumps(meta))
    (store / "v" / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["time"]}))
    # Not a pickle at all: if anything tried to decode it, the read would fail differently.
    (store / "v" / "0").write_bytes(b"not decoded")
    capfd.readouterr()
    assert run(store, "--geometry", root / "fields.geojson", "--out", tmp_path / "o.csv") == 2
    err = _stderr_line(capfd)
    assert "array 'v' is stored with the 'pickle' codec" in err and repr(str(store)) in err


def test_a_v3_store_with_a_pickle_codec_in_consolidated_metadata_is_refused(files, capfd, tmp_path):
    root, _, _ = files
    store = tmp_path / "evil3.zarr"
    store.mkdir()
    array = {
        "zarr_format": 3,
        "node_type": "array",
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {"codecs": [{"name": "bytes"}, {"name": "numcodecs.pickle"}]},
            }
        ],
    }
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "consolidated_metadata": {"kind": "inline", "metadata": {"v": array}},
    }
    (store / "zarr.json").write_text(json.dumps(group))
    capfd.readouterr()
    assert run(store, "--geometry", root / "fields.geojson", "--out", tmp_path / "o.csv") == 2
    assert "'numcodecs.pickle' codec" in _stderr_line(capfd)


def test_a_chunk_that_cannot_be_decoded_fails_the_job_in_one_line_leaving_out_alone(
    files, capfd, tmp_path
):
    """The store's metadata is fine, one band's chunks are garbage: the failure shows only
    when the job runs. One line, exit status 1 (the job failed, the command was right), no
    table and no temporary beside it; with --overwrite the previous table is kept as it was."""
    root, _, _ = files
    store = tmp_path / "damaged.zarr"
    shutil.copytree(root / "cube.zarr", store)
    chunks = [f for f in (store / "B3").rglob("*") if f.is_file() and f.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"garbage")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["--geometry", root / "fields.geojson", "--out", out_dir / "t.parquet"]
    capfd.readouterr()
    assert run(store, *args) == 1
    err = _stderr_line(capfd)
    assert "extract failed and nothing was written at --out" in err
    assert list(out_dir.iterdir()) == []
    assert run(root / "cube.zarr", *args) == 0
    before = pd.read_parquet(out_dir / "t.parquet")
    capfd.readouterr()
    assert run(store, *args, "--overwrite") == 1
    assert "extract failed and the old table is kept at --out" in _stderr_line(capfd)
    assert [p.name for p in out_dir.iterdir()] == ["t.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out_dir / "t.parquet"), before)


def test_ctrl_c_after_every_partition_is_written_leaves_no_table(
    files, capfd, tmp_path, monkeypatch
):
    """Ctrl-C arrives when the whole table is in the temporary directory but not yet renamed:
    no TABLE, no temporary, one line, exit status 130 (the shell's code for SIGINT)."""
    from xr_getregion import output

    real_run = output._run

    def run_then_interrupt(pending, progress):
        real_run(pending, progress)
        assert any(tmp_path.rglob("part.*.parquet"))  # the table was there, complete
        raise KeyboardInterrupt

    monkeypatch.setattr(output, "_run", run_then_interrupt)
    root, _, _ = files
    out = tmp_path / "t.parquet"
    capfd.readouterr()
    assert run(root / "cube.zarr", "--geometry", root / "fields.geojson", "--out", out) == 130
    assert capfd.readouterr().err == "xr-getregion: interrupted; no table was written.\n"
    assert list(tmp_path.iterdir()) == []


def test_the_package_reads_files_only_with_format_readers():
    """No pickle, marshal, eval or exec anywhere in the package, no ``allow_pickle``; xarray is
    always told its engine, so it never picks a reader from the file's content."""
    unsafe_modules = {"pickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
    unsafe_builtins = {"eval", "exec", "compile", "__import__"}
    unsafe_loaders = {"np", "numpy", "pickle", "marshal", "dill", "joblib", "yaml", "torch"}
    package = Path(xr_getregion.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert any(s.name == "cli.py" for s in sources)
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            where = f"{source.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {n.split(".")[0] for n in names} & unsafe_modules, where
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name):
                assert func.id not in unsafe_builtins, where
                continue
            if not isinstance(func, ast.Attribute):
                continue
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            assert func.attr != "read_pickle", where
            assert not (func.attr in ("load", "loads") and owner in unsafe_loaders), where
            assert all(k.arg != "allow_pickle" for k in node.keywords), where
            if func.attr in ("open_dataset", "open_mfdataset", "load_dataset"):
                assert any(k.arg == "engine" for k in node.keywords), where


def _calendar_cube(tmp_path: Path, calendar: str, days: list[int]) -> Path:
    """A CF NetCDF cube, 2 x 2 lat/lon pixels, with times in ``calendar``."""
    import xarray as xr

    times = xr.DataArray(
        days, dims="time", attrs={"units": "days since 2001-02-28", "calendar": calendar}
    )
    cube = xr.Dataset(
        {"b": (("time", "lat", "lon"), np.arange(4.0 * len(days)).reshape(-1, 2, 2))},
        coords={"time": times, "lat": [1.5, 0.5], "lon": [10.5, 11.5]},
    )
    path = tmp_path / f"{calendar}.nc"
    cube.to_netcdf(path, engine="h5netcdf")  # encoded: the reader decodes the calendar
    (tmp_path / "p.geojson").write_text(json.dumps({"type": "Point", "coordinates": [10.5, 1.5]}))
    return path


def test_a_360_day_date_without_a_real_date_is_one_line_naming_convert_calendar(tmp_path, capsys):
    cube = _calendar_cube(tmp_path, "360_day", [0, 2])  # 2001-02-28, 2001-02-30
    out = tmp_path / "o.csv"
    assert run(cube, "--geometry", tmp_path / "p.geojson", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "2001-02-30 00:00:00 in the '360_day' calendar" in err
    assert 'cube.convert_calendar("standard", align_on="date")' in err
    assert not out.exists()


def test_a_noleap_cube_extracts_exact_times_without_a_calendar_warning(tmp_path, capsys):
    cube = _calendar_cube(tmp_path, "noleap", [0, 1])  # 2001-02-28, 2001-03-01
    out = tmp_path / "o.csv"
    assert run(cube, "--geometry", tmp_path / "p.geojson", "--out", out) == 0
    assert "Warning" not in capsys.readouterr().err
    table = pd.read_csv(out)
    assert list(pd.to_datetime(table["time"])) == [
        pd.Timestamp("2001-02-28", tz="UTC"),
        pd.Timestamp("2001-03-01", tz="UTC"),
    ]
