"""The working grid: EE's rules for scale, crs and crsTransform (docs/semantics.md section 3)."""

from __future__ import annotations

import math

import pytest
from pyproj import CRS

from xr_getregion import METRES_PER_DEGREE, CRSError, GetRegionWarning, GridError
from xr_getregion.grid import Grid, working_grid

NATIVE = Grid((30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0), CRS.from_epsg(32615), (20, 30))


def test_ee_metres_per_degree_to_the_last_bit():
    assert 30 / METRES_PER_DEGREE == 0.00026949458523585647
    assert 1000 / METRES_PER_DEGREE == 0.008983152841195215
    # The obvious formula is one ulp off and does not reproduce EE's coordinates.
    assert 6378137 * math.pi / 180 != METRES_PER_DEGREE


def test_scale_only_is_epsg4326_from_origin_with_positive_y_step():
    grid = working_grid(NATIVE, scale=30)
    assert grid.crs == CRS.from_epsg(4326)
    assert grid.transform == (0.00026949458523585647, 0, 0, 0, 0.00026949458523585647, 0)
    assert grid.shape is None


def test_crs_and_scale_rescales_that_crs_from_its_origin():
    grid = working_grid(NATIVE, scale=10, crs="EPSG:32615")
    assert grid.crs == CRS.from_epsg(32615)
    assert grid.transform == (10.0, 0, 0, 0, 10.0, 0)


def test_geographic_crs_and_scale_converts_metres_to_degrees():
    grid = working_grid(NATIVE, scale=1000, crs="EPSG:4326")
    assert grid.transform[0] == 0.008983152841195215


def test_projected_crs_in_feet_converts_metres_to_feet():
    grid = working_grid(NATIVE, scale=0.3048, crs="EPSG:2227")  # California zone 3, US ft
    assert grid.transform[0] == pytest.approx(0.3048 / 0.30480060960121924)


def test_crs_and_transform_is_used_as_given():
    t = [30, 0, 499_980, 0, -30, 4_000_020]
    grid = working_grid(NATIVE, crs="EPSG:32615", crs_transform=t)
    assert grid.transform == tuple(float(v) for v in t)
    assert grid.crs == CRS.from_epsg(32615)


def test_transform_only_is_in_epsg4326():
    grid = working_grid(NATIVE, crs_transform=[0.5, 0, -180, 0, -0.5, 90])
    assert grid.crs == CRS.from_epsg(4326)
    assert grid.transform == (0.5, 0, -180, 0, -0.5, 90)


def test_scale_and_transform_are_mutually_exclusive():
    with pytest.raises(GridError, match="mutually exclusive"):
        working_grid(NATIVE, scale=30, crs_transform=[1, 0, 0, 0, 1, 0])


def test_nothing_given_is_one_degree_pixels_with_a_warning_naming_scale():
    with pytest.warns(GetRegionWarning, match="scale="):
        grid = working_grid(NATIVE)
    assert grid.transform == (1.0, 0, 0, 0, 1.0, 0)
    assert grid.crs == CRS.from_epsg(4326)


def test_native_is_the_cube_grid_itself():
    assert working_grid(NATIVE, crs="native") is NATIVE
    # With a scale, "native" is EE's unspecified crs: EPSG:4326.
    assert working_grid(NATIVE, scale=30, crs="native").crs == CRS.from_epsg(4326)


@pytest.mark.parametrize("scale", [0, -30, float("nan"), float("inf"), "30", True])
def test_bad_scale_is_refused_naming_the_value(scale):
    with pytest.raises(GridError, match="scale must be"):
        working_grid(NATIVE, scale=scale)


@pytest.mark.parametrize(
    ("transform", "match"),
    [
        ([1, 0, 0, 0, 1], "6 numbers"),
        ([1, 0, 0, 0, 0, 0], "not invertible"),
        ([1, 2, 0, 2, 4, 0], "not invertible"),
        ([1, 0, float("nan"), 0, 1, 0], "not finite"),
        ("abc", "6 numbers"),
    ],
)
def test_bad_transform_is_refused(transform, match):
    with pytest.raises(GridError, match=match):
        working_grid(NATIVE, crs_transform=transform)


def test_unknown_crs_is_refused_with_how_to_name_one():
    with pytest.raises(CRSError, match="EPSG:32615"):
        working_grid(NATIVE, scale=30, crs="EPSG:999999")


def test_pixel_round_trip_with_rotation():
    grid = Grid((20.0, 5.0, 100.0, -3.0, -25.0, 50.0), CRS.from_epsg(32615))
    x, y = grid.centres([0, 3, -2], [0, 7, 4])
    cols, rows = grid.to_pixel(x, y)
    assert cols.tolist() == pytest.approx([0.5, 3.5, -1.5])
    assert rows.tolist() == pytest.approx([0.5, 7.5, 4.5])


# --- one forward affine, one outline, a named transform ---------------------------------------


def test_to_crs_applies_the_forward_affine_and_inverts_to_pixel() -> None:
    grid = Grid((2.0, 1.0, 10.0, 0.5, -3.0, 20.0), CRS.from_epsg(32615))
    x, y = grid.to_crs([1.0, 0.0], [2.0, 0.0])
    assert x.tolist() == [14.0, 10.0]  # 2*1 + 1*2 + 10, then the origin
    assert y.tolist() == [14.5, 20.0]  # 0.5*1 - 3*2 + 20
    col, row = grid.to_pixel(x, y)
    assert col.tolist() == [1.0, 0.0] and row.tolist() == [2.0, 0.0]
    cx, cy = grid.centres([0], [0])
    assert (cx.tolist(), cy.tolist()) == ([11.5], [18.75])


def test_outline_walks_the_window_boundary_with_64_chords_a_side() -> None:
    grid = Grid((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), CRS.from_epsg(4326))
    x, y = grid.outline(0, 0, 2, 3)
    assert len(x) == 4 * 65
    corners = [(x[k], y[k]) for k in (0, 64, 65 + 64, 130 + 64, 195 + 64)]
    assert corners == [(0.0, 0.0), (2.0, 0.0), (2.0, 3.0), (0.0, 3.0), (0.0, 0.0)]


def test_transform_is_named_and_equal_to_the_plain_tuple() -> None:
    grid = Grid((30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0), CRS.from_epsg(32615))
    assert grid.transform.a == 30.0 and grid.transform.f == 4_000_000.0
    assert grid.transform == (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
