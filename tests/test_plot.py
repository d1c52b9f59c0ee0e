"""Pictures render headless and draw exactly the selected pixels; tables become GeoDataFrames."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import shapely

import xr_getregion
from tests.helpers import make_cube
from xr_getregion import ArgumentError, Geometry, GetRegionWarning
from xr_getregion.plot import PIXELS_GID, region_map, time_series

matplotlib.use("Agg")
import matplotlib.pyplot as plt

UTM = "EPSG:32615"
ROI = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def outlines(ax) -> int:
    (pixels,) = [c for c in ax.collections if c.get_gid() == PIXELS_GID]
    return len(pixels.get_paths())


@pytest.fixture(scope="module")
def col():
    return xr_getregion.sample_cube().ee.select("B[2-4]")


def test_region_map_outlines_the_two_pixels_of_the_reference_page(col):
    ax = region_map(col, ROI, scale=30, min=0.128, max=0.163)
    assert outlines(ax) == 2
    assert "2 pixels selected" in ax.get_title()
    ax.figure.canvas.draw()  # renders with the Agg backend


@pytest.mark.parametrize(
    ("geometry", "kwargs"),
    [
        (Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]]), {"scale": 30}),
        (Geometry.Rectangle([-90.5, 34.85, -90.498, 34.852]), {"scale": 30}),
        (Geometry.Rectangle([-90.5, 34.85, -90.498, 34.852]), {"crs": "native"}),
        (Geometry.Rectangle([-90.5, 34.85, -90.498, 34.852]), {"scale": 60, "crs": UTM}),
    ],
)
def test_region_map_draws_one_outline_per_planned_pixel(col, geometry, kwargs):
    ax = region_map(col, geometry, image="LC08_023036_20200810", bands=["B3"], **kwargs)
    assert outlines(ax) == col.ee.plan(geometry, **kwargs).n_pixels > 0
    assert ax.get_title().startswith("LC08_023036_20200810")


def test_region_map_on_a_south_up_cube_puts_the_top_row_at_the_highest_y():
    cube = make_cube(10, 10, 1, ["v"], south_up=True)
    box = shapely.box(500_100, 4_000_100, 500_200, 4_000_200)
    ax = region_map(cube, box, crs="native", geometry_crs=UTM, pad=0, min=0, max=3000)
    image = ax.get_images()[0]
    _, _, bottom, top = image.get_extent()
    assert top > bottom
    rgba = image.get_array()
    # Row 0 of the picture is the northmost cube row: its values are the largest.
    assert rgba[0, 0, 0] > rgba[-1, 0, 0]
    assert outlines(ax) == 4 * 4  # centres 500_105 ... 500_195 on both axes


def test_region_map_refuses_what_it_cannot_draw(col):
    with (
        pytest.warns(GetRegionWarning, match="misses the cube"),
        pytest.raises(ArgumentError, match="outside the cube"),
    ):
        region_map(col, Geometry.Point(0, 0), scale=30)
    with pytest.raises(ArgumentError, match="no band"):
        region_map(col, ROI, scale=30, bands=["B9", "B3", "B2"])
    with pytest.raises(ArgumentError, match="no image"):
        region_map(col, ROI, scale=30, image="nope")
    with pytest.raises(ArgumentError, match=r"selects [\d,]+ \(> 20,000\)"):
        region_map(col, Geometry.Rectangle([-90.7, 34.7, -90.4, 34.9]), scale=30)


def test_time_series_draws_a_line_per_pixel_and_band(col):
    table = col.ee.get_region(Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]]), scale=30)
    ax = time_series(table)
    assert len(ax.get_lines()) == 2 * 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["B2", "B3", "B4"]
    # EE's list of lists draws the same.
    rows = col.ee.getRegion(Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]]), scale=30)
    assert len(time_series(rows, bands=["B4"]).get_lines()) == 2
    ax.figure.canvas.draw()


def test_time_series_of_many_pixels_draws_the_median_and_a_band(col):
    table = col.ee.get_region(Geometry.Rectangle([-90.5, 34.85, -90.498, 34.852]), scale=30)
    ax = time_series(table, bands=["B2"])
    assert len(ax.get_lines()) == 1 and len(ax.collections) == 1
    median = table.groupby("time")["B2"].median().to_numpy()
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), median)


def test_time_series_names_a_missing_band(col):
    table = col.ee.get_region(ROI, scale=30)
    with pytest.raises(ArgumentError, match="no column"):
        time_series(table, bands=["NDVI"])


def test_to_geodataframe_from_both_tables(col):
    rows = col.ee.getRegion(ROI, scale=30)
    table = col.ee.get_region(ROI, scale=30)
    from_list = xr_getregion.to_geodataframe(rows)
    from_frame = xr_getregion.to_geodataframe(table)
    assert from_list.crs.to_epsg() == 4326 and len(from_list) == 10
    # The list holds plain Python numbers (float32 bands come back as float64): same values.
    pd.testing.assert_frame_equal(from_list.drop(columns="geometry"), table, check_dtype=False)
    assert from_frame.geometry.x.tolist() == table["longitude"].tolist()
    assert from_frame.geometry.y.tolist() == table["latitude"].tolist()


def test_to_geodataframe_refuses_a_lazy_table_and_odd_input(col):
    lazy = col.ee.get_region(ROI, scale=30, lazy=True)
    with pytest.raises(ArgumentError, match="compute"):
        xr_getregion.to_geodataframe(lazy)
    with pytest.raises(ArgumentError, match="header row"):
        xr_getregion.to_geodataframe([[1, 2, 3]])


def test_time_series_and_region_map_of_a_many_feature_table(col):
    fields = [ROI, Geometry.Point(-90.49, 34.85)]
    table = col.ee.get_region(fields, scale=30)
    ax = time_series(table)
    assert len(ax.get_lines()) == 3 * 3  # 3 bands x (2 ROI pixels + 1 point pixel)
    # Two copies of the ROI are one region to region_map, as to getRegion: 2 outlines.
    assert outlines(region_map(col, [ROI, ROI], scale=30)) == 2


def test_as_frame_gives_integer_bands_with_none_a_nullable_integer_dtype():
    from xr_getregion.table import as_frame

    rows = [
        ["id", "longitude", "latitude", "time", "qa"],
        ["a", 0.0, 0.0, 0, 3],
        ["a", 1.0, 0.0, 0, None],
    ]
    assert str(as_frame(rows)["qa"].dtype) == "Int64"
