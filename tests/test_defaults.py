"""One default for the functions that plan, extract or draw get_region's pixels."""

from __future__ import annotations

import inspect
import warnings

import pytest

import xr_getregion
from xr_getregion import Geometry, GetRegionWarning, api, plot
from xr_getregion.accessor import EEAccessor
from xr_getregion.output import to_parquet

# The sample cube's reference region, about 2 km across: thousands of 30 m pixels.
ROI = Geometry.Rectangle([-90.51, 34.84, -90.49, 34.86])


def test_plan_defaults_to_the_grid_get_region_extracts_on() -> None:
    col = xr_getregion.sample_cube()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GetRegionWarning)  # no EE 1-degree default warning
        plan = col.ee.plan(ROI)
        table = col.ee.get_region(ROI)
    assert plan.grid.same_pixels(plan.cube.grid)  # the cube's own grid, as get_region's
    # Before, plan(roi) worked on EE's 1-degree grid: 0 pixels for these 4,510 per image.
    assert plan.n_pixels == 4510
    assert len(table) == 5 * 4510
    assert plan.n_values == 5 * 4510 * 7
    assert xr_getregion.plan(col, ROI).n_pixels == plan.n_pixels


def test_getregion_keeps_ees_default_grid_with_its_warning() -> None:
    col = xr_getregion.sample_cube()
    with pytest.warns(GetRegionWarning, match="1-degree"):
        plan = col.ee.plan(ROI, crs=None)
    assert plan.grid.transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert plan.n_pixels == 0


SHARED = ("scale", "crs", "crs_transform", "geometry_crs")


@pytest.mark.parametrize(
    "func",
    [
        api.plan,
        EEAccessor.plan,
        EEAccessor.get_region,
        to_parquet,
        plot.region_map,
        EEAccessor.to_parquet,
    ],
    ids=lambda f: f.__qualname__,
)
def test_shared_keywords_have_get_regions_defaults(func) -> None:
    want = inspect.signature(api.get_region).parameters
    got = inspect.signature(func).parameters
    for name in SHARED:
        if name in got:
            assert got[name].default == want[name].default, name
    assert got["crs"].default == "native"
