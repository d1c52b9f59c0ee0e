"""Reading cubes as collections (docs/semantics.md section 1), from metadata alone."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from conftest import make_cube, raise_if_dask_computes
from pyproj import CRS

from xr_getregion import CubeError, EmptyCollectionError, MissingCRSError
from xr_getregion.cube import read_cube


def test_dataarray_time_band_y_x_in_any_order(cube):
    for order in [
        ("time", "band", "y", "x"),
        ("x", "band", "time", "y"),
        ("y", "x", "band", "time"),
    ]:
        info = read_cube(cube.transpose(*order))
        assert info.image_dim == "time"
        assert info.band_names == ["a", "b"]
        assert info.grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
        assert info.grid.shape == (20, 30)


def test_reading_a_dask_cube_computes_nothing(cube):
    lazy = cube.chunk({"time": 1, "y": 5})
    with raise_if_dask_computes():
        info = read_cube(lazy)
    assert info.n_images == 3


def test_ids_from_system_index_then_id_then_positions(cube):
    assert read_cube(cube).ids == ("0", "1", "2")
    with_id = cube.assign_coords(id=("time", ["s1", "s2", "s3"]))
    assert read_cube(with_id).ids == ("s1", "s2", "s3")
    both = with_id.assign_coords({"system:index": ("time", ["e1", "e2", "e3"])})
    assert read_cube(both).ids == ("e1", "e2", "e3")


def test_time_start_from_time_coord_in_ms_utc_or_system_time_start(cube):
    info = read_cube(cube)
    assert info.times_ms == (1609459200000, 1610879400000, 1612224001500)
    explicit = cube.assign_coords({"system:time_start": ("time", [1, 2, 3])})
    assert read_cube(explicit).times_ms == (1, 2, 3)


def test_no_time_dim_is_one_image_keeping_a_scalar_time(cube):
    one = cube.isel(time=1)
    info = read_cube(one)
    assert info.image_dim is None and info.n_images == 1
    assert info.times_ms == (1610879400000,)
    assert read_cube(one.drop_vars("time")).times_ms == (None,)


def test_band_names_without_band_dim_and_without_name(cube):
    single = cube.isel(band=0, drop=True)
    assert read_cube(single).band_names == ["v"]
    assert read_cube(single.rename(None)).band_names == ["b0"]
    unnamed = cube.drop_vars("band")
    assert read_cube(unnamed).band_names == ["b0", "b1"]
    numeric = cube.assign_coords(band=[1, 2])
    assert read_cube(numeric).band_names == ["1", "2"]


def test_dataset_variables_are_bands_and_others_are_ignored(cube):
    ds = cube.to_dataset("band")
    ds["time_bnds"] = ("time", np.arange(3))
    info = read_cube(ds)
    assert info.band_names == ["a", "b"]
    assert info.image_dim == "time"


def test_dataset_bands_with_different_dims_are_refused_by_name(cube):
    ds = cube.to_dataset("band")
    ds["c"] = ds["a"].isel(time=0, drop=True)
    with pytest.raises(CubeError, match=r"'c' has \['y', 'x'\].*drop_vars\('c'\)"):
        read_cube(ds)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c.isel(time=slice(0, 0)),
        lambda c: c.isel(band=slice(0, 0)),
        lambda c: c.to_dataset("band").drop_vars(["a", "b"]),
    ],
    ids=["no-images", "no-bands", "empty-dataset"],
)
def test_empty_collection_has_ees_message(cube, make):
    with pytest.raises(
        EmptyCollectionError, match=r"^ImageCollection.getRegion: No bands in collection.$"
    ):
        read_cube(make(cube))


def test_crs_conventions_are_all_read_and_compared_with_pyproj():
    base = make_cube(crs=None)
    assert read_cube(base.rio.write_crs("EPSG:32615")).grid.crs == CRS.from_epsg(32615)
    assert read_cube(base.assign_attrs(crs="EPSG:32615")).grid.crs == CRS.from_epsg(32615)
    # stackstac's 'epsg' coordinate comes with the transform attribute that tells labels
    # corners or centres (here centres); without it the cube is refused (see below).
    centres = {"transform": (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)}
    stac = base.assign_attrs(centres)
    assert read_cube(stac.assign_coords(epsg=32615)).grid.crs == CRS.from_epsg(32615)
    per_image = stac.assign_coords(epsg=("time", [32615, 32615, 32615]))
    assert read_cube(per_image).grid.crs == CRS.from_epsg(32615)
    # Same CRS written as WKT and as an EPSG code: equal for pyproj, so no conflict.
    wkt = base.rio.write_crs("EPSG:32615").assign_attrs(crs=CRS.from_epsg(32615).to_wkt())
    assert read_cube(wkt).grid.crs == CRS.from_epsg(32615)


def test_conflicting_crs_conventions_are_refused():
    cube = make_cube().assign_coords(epsg=32616)
    with pytest.raises(CubeError, match="disagree"):
        read_cube(cube)
    mixed = make_cube(crs=None).assign_coords(epsg=("time", [32615, 32616, 32615]))
    with pytest.raises(CubeError, match="several CRSs"):
        read_cube(mixed)


def test_missing_crs_says_how_to_set_one():
    with pytest.raises(MissingCRSError, match=r"rio\.write_crs"):
        read_cube(make_cube(crs=None))


def test_lat_lon_dims_mean_epsg4326_without_writing_it():
    cube = make_cube(crs=None, x0=-91, y0=35, res=0.01).rename(y="lat", x="lon")
    info = read_cube(cube)
    assert info.grid.crs == CRS.from_epsg(4326)
    assert "spatial_ref" not in cube.coords


def test_south_up_grid_has_positive_y_step():
    info = read_cube(make_cube(south_up=True))
    assert info.grid.transform[4] == 30.0
    assert info.grid.transform[5] == 4_000_000.0


def test_no_spatial_dims_or_too_many_dims_are_refused(cube):
    with pytest.raises(CubeError, match="no spatial dims"):
        read_cube(cube.rename(x="easting"))
    extra = cube.expand_dims(member=2)
    with pytest.raises(CubeError, match="non-spatial dims"):
        read_cube(extra)
    with pytest.raises(CubeError, match="DataArray or Dataset"):
        read_cube(np.zeros((2, 2)))


def test_irregular_coordinates_are_refused(cube):
    x = cube.x.values.copy()
    x[5] += 7
    with pytest.raises(CubeError, match="not regular"):
        read_cube(cube.assign_coords(x=x))


def test_one_pixel_wide_cube_uses_the_written_transform(cube):
    one = cube.isel(x=[4]).rio.write_transform(cube.rio.transform())
    info = read_cube(one)
    assert info.grid.transform[0] == 30.0
    with pytest.raises(CubeError, match="write_transform"):
        read_cube(
            xr.DataArray(
                np.zeros((1, 1)), dims=("y", "x"), coords={"y": [0.0], "x": [0.0]}
            ).rio.write_crs(4326)
        )


def test_nodata_attributes_are_read(cube):
    # Every declared value, as a number of the band's dtype.
    ints = cube.astype(np.int16).assign_attrs(_FillValue=-9999, missing_value=[0, -9999])
    nodata = read_cube(ints).bands[0].nodata
    assert nodata == (-9999, 0) and all(type(v) is np.int16 for v in nodata)
    assert read_cube(cube.assign_attrs(nodata="0")).bands[1].nodata == (0.0,)
    assert read_cube(cube).bands[0].nodata == ()


def test_a_cf_grid_mapping_coordinate_named_crs_is_read_from_its_attributes():
    cube = make_cube(crs=None).rio.write_crs("EPSG:32615", grid_mapping_name="crs")
    assert int(cube.coords["crs"].values) == 0  # a dummy value, the CRS is in the attributes
    assert read_cube(cube).grid.crs == CRS.from_epsg(32615)


def test_regular_float32_coordinates_are_regular():
    lon = (np.arange(7200) * 0.05 - 179.975).astype(np.float32)
    lat = (89.975 - np.arange(40) * 0.05).astype(np.float32)
    cube = xr.DataArray(
        np.zeros((40, 7200), np.float32), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    a, _, _, _, e, _ = read_cube(cube).grid.transform
    # Within float32 precision of the stored coordinates.
    assert a == pytest.approx(0.05, rel=1e-5) and e == pytest.approx(-0.05, rel=1e-5)


def test_stac_item_crs_coordinates_do_not_override_the_cubes_own():
    # stackstac reprojecting items to one grid keeps each item's proj:epsg (its source CRS)
    # next to the cube's own 'epsg': the cube's wins; proj:epsg alone still counts.
    cube = make_cube(4, 5, 3).assign_coords({"proj:epsg": ("time", [4326, 32616, 32615])})
    assert read_cube(cube).grid.crs == CRS.from_epsg(32615)
    # Without a grid mapping these look like stackstac output: the transform says centres.
    centres = {"transform": (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)}
    bare = make_cube(4, 5, 3, crs=None).assign_coords(
        {"epsg": 32615, "proj:epsg": ("time", [32616, 32616, 32616])}
    )
    assert read_cube(bare.assign_attrs(centres)).grid.crs == CRS.from_epsg(32615)
    items_only = make_cube(4, 5, 3, crs=None).assign_coords({"proj:epsg": 32615})
    assert read_cube(items_only.assign_attrs(centres)).grid.crs == CRS.from_epsg(32615)


def test_stackstac_cube_that_lost_its_transform_is_refused_with_both_statements():
    # stackstac labels corners by default and says so only in attrs['transform']; once it is
    # gone (attrs cleared for Zarr, arithmetic on older xarray) the labels could be either.
    corners = make_cube(4, 5, 3, crs=None).assign_coords(
        x=500_000.0 + 30 * np.arange(5), y=4_000_000.0 - 30 * np.arange(4), epsg=32615
    )
    lost = corners.rename("stackstac-4f2a")
    with pytest.raises(CubeError) as info:
        read_cube(lost)
    message = str(info.value)
    assert "its name 'stackstac-4f2a', its 'epsg' coordinate" in message
    assert (
        "for corner labels cube.attrs['transform'] = (30.0, 0.0, 500000.0, 0.0, -30.0, "
        "4000000.0); for centre labels cube.attrs['transform'] = (30.0, 0.0, 499985.0, 0.0, "
        "-30.0, 4000015.0)"
    ) in message
    # Either statement is read as stated: corners put the centres half a pixel in.
    stated = lost.assign_attrs(transform=(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0))
    assert read_cube(stated).grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
    centres = lost.assign_attrs(transform=(30.0, 0.0, 499_985.0, 0.0, -30.0, 4_000_015.0))
    assert read_cube(centres).grid.transform == (30.0, 0.0, 499_985.0, 0.0, -30.0, 4_000_015.0)


def test_stackstac_marks_are_its_name_epsg_and_stac_coordinates_without_a_grid_mapping(cube):
    plain = make_cube(4, 5, 3, crs=None)
    for marked, mark in [
        (plain.rename("stackstac-0").rio.write_crs(32615), "its name 'stackstac-0'"),
        (plain.assign_coords(epsg=32615).to_dataset(dim="band"), "its 'epsg' coordinate"),
        (plain.assign_coords({"proj:epsg": 32615}), "its STAC coordinates ['proj:epsg']"),
    ]:
        holder = "ds" if isinstance(marked, xr.Dataset) else "cube"
        pattern = rf"\({re.escape(mark)}\).*{holder}\.attrs\['transform'\]"
        with pytest.raises(CubeError, match=pattern):
            read_cube(marked)
    # STAC coordinates on a cube with a rioxarray grid mapping (centre labels) are read.
    stac = cube.assign_coords({"proj:epsg": ("time", [32615] * 3)})
    assert read_cube(stac).grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)


def test_one_pixel_wide_stackstac_cube_gets_the_statement_in_words():
    one = make_cube(4, 1, 3, crs=None).assign_coords(epsg=32615)
    with pytest.raises(CubeError, match=r"\(xres, 0\.0, left, 0\.0, -yres, top\)"):
        read_cube(one)
