"""The extract command's rough edges a new user meets: band names of GeoTIFFs, ids a NetCDF
round trip turned into a data variable, --properties, the libraries' warnings, --help."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import xarray as xr
from rasterio.transform import from_origin

from xr_getregion.cli import main

X0, Y0, RES = 500_000.0, 4_000_000.0, 30.0


def run(*argv: object) -> int:
    return main(["extract", *map(str, argv)])


def write_tif(path, count: int, descriptions=None) -> np.ndarray:
    values = np.arange(count * 4 * 5, dtype="int16").reshape(count, 4, 5)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=5,
        height=4,
        count=count,
        dtype="int16",
        crs="EPSG:32615",
        transform=from_origin(X0, Y0, RES, RES),
    ) as dst:
        dst.write(values)
        for i, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, text)
    return values


@pytest.fixture
def point(tmp_path):
    """One point in pixel (row 2, col 3), with two properties."""
    path = tmp_path / "p.geojson"
    gpd.GeoDataFrame(
        {"name": ["a"], "crop": ["corn"], "year": [2021]},
        geometry=[shapely.Point(X0 + 3.5 * RES, Y0 - 2.5 * RES)],
        crs="EPSG:32615",
    ).to_file(path)
    return path


def test_a_single_band_geotiff_is_named_by_its_stem(tmp_path, point):
    values = write_tif(tmp_path / "ndvi.tif", 1)
    assert run(tmp_path / "ndvi.tif", "--geometry", point, "--out", tmp_path / "t.csv") == 0
    got = pd.read_csv(tmp_path / "t.csv")
    assert list(got.columns)[-1] == "ndvi" and got["ndvi"].tolist() == [values[0, 2, 3]]


def test_geotiff_band_descriptions_name_bands_and_variable_picks_one(tmp_path, point):
    values = write_tif(tmp_path / "s2.tif", 3, ["B02", "B03", "B04"])
    assert run(tmp_path / "s2.tif", "--geometry", point, "--out", tmp_path / "a.csv") == 0
    got = pd.read_csv(tmp_path / "a.csv")
    assert got[["B02", "B03", "B04"]].values.tolist() == [values[:, 2, 3].tolist()]
    assert run(tmp_path / "s2.tif", "--variable", "B03", "--geometry", point,
               "--out", tmp_path / "b.csv") == 0  # fmt: skip
    got = pd.read_csv(tmp_path / "b.csv")
    assert list(got.columns)[-1] == "B03" and "B02" not in got
    assert got["B03"].tolist() == [values[1, 2, 3]]


def test_system_index_saved_as_a_data_variable_gives_the_ids(tmp_path, point):
    data = np.arange(2 * 4 * 5, dtype="float32").reshape(2, 4, 5)
    ds = xr.Dataset(
        {"B1": (("time", "y", "x"), data),
         "system:index": ("time", np.array(["img_a", "img_b"]))},
        coords={"time": np.array(["2021-01-01", "2021-02-01"], dtype="datetime64[ns]"),
                "y": Y0 - RES * (np.arange(4) + 0.5), "x": X0 + RES * (np.arange(5) + 0.5)},
    ).rio.write_crs("EPSG:32615")  # fmt: skip
    ds.to_netcdf(tmp_path / "c.nc", engine="h5netcdf")
    assert "system:index" in xr.open_dataset(tmp_path / "c.nc", engine="h5netcdf").data_vars
    assert run(tmp_path / "c.nc", "--geometry", point, "--out", tmp_path / "t.csv") == 0
    got = pd.read_csv(tmp_path / "t.csv")
    assert got["id"].tolist() == ["img_a", "img_b"]
    assert got["B1"].tolist() == [data[0, 2, 3], data[1, 2, 3]]
    assert "system:index" not in got


def test_properties_are_copied_into_every_row(tmp_path, point):
    write_tif(tmp_path / "ndvi.tif", 1)
    assert run(tmp_path / "ndvi.tif", "--geometry", point, "--out", tmp_path / "t.csv",
               "--properties", "crop, year", "--id-column", "name") == 0  # fmt: skip
    got = pd.read_csv(tmp_path / "t.csv")
    assert list(got.columns[:3]) == ["feature", "crop", "year"]
    assert got[["feature", "crop", "year"]].values.tolist() == [["a", "corn", 2021]]


def test_library_warnings_only_with_verbose(tmp_path, point, monkeypatch, capsys):
    """A reader's warning (here one added to xarray's open_dataset) is dropped, and shown with
    --verbose; the table is the same."""
    import xr_getregion.cli as cli

    data = np.ones((1, 4, 5), dtype="float32")
    xr.Dataset(
        {"B1": (("time", "y", "x"), data)},
        coords={"time": np.array(["2021-01-01"], dtype="datetime64[ns]"),
                "y": Y0 - RES * (np.arange(4) + 0.5), "x": X0 + RES * (np.arange(5) + 0.5)},
    ).rio.write_crs("EPSG:32615").to_netcdf(tmp_path / "c.nc", engine="h5netcdf")  # fmt: skip
    real = xr.open_dataset

    def noisy(*args, **kwargs):
        warnings.warn("a reader's note", UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli.xr, "open_dataset", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        assert run(tmp_path / "c.nc", "--geometry", point, "--out", tmp_path / "a.csv") == 0
        assert "a reader's note" not in capsys.readouterr().err
        with pytest.warns(UserWarning, match="a reader's note"):
            assert run(tmp_path / "c.nc", "--geometry", point, "--out", tmp_path / "b.csv",
                       "--verbose") == 0  # fmt: skip


def test_help_shows_complete_examples(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "xr-getregion extract s3://bucket/cube.zarr --geometry s3://bucket/fields.gpkg" in out
    assert "--storage-options" in out and "--bands" in out and "--properties" in out
