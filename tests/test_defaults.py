"""One default for the functions that plan, extract or draw get_region's pixels."""

from __future__ import annotations

import dataclasses
import inspect
import typing
import warnings

import pytest

import xr_getregion
from xr_getregion import Geometry, GetRegionWarning, api, plot
from xr_getregion.accessor import EEAccessor
from xr_getregion.options import FeatureOptions, Options, PlanOptions, RegionOptions
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


def test_each_keyword_is_declared_once_with_one_type() -> None:
    # The typed dicts callers' type checkers read hold Options' own names and types; the
    # defaults are Options' alone, and the positional grid's match get_region's signature.
    declared = {f.name: f for f in dataclasses.fields(Options)}
    types = typing.get_type_hints(Options)
    for typed in (RegionOptions, PlanOptions, FeatureOptions):
        for name, annotation in typing.get_type_hints(typed).items():
            assert annotation == types[name], (typed.__name__, name)
    assert set(FeatureOptions.__annotations__) == set(declared) - {*SHARED[:3]}
    want = inspect.signature(api.get_region).parameters
    for name in SHARED[:3]:
        assert declared[name].default == want[name].default, name


@pytest.mark.parametrize(
    ("func", "keyword"),
    [
        (api.plan, "id_column"),
        (api.getRegion, "properties"),
        (api.get_region, "overwrite"),
        (plot.region_map, "max_values"),
        (to_parquet, "lazy"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_a_keyword_a_function_does_not_take_is_pythons_type_error(func, keyword) -> None:
    col = xr_getregion.sample_cube()
    args = (col, ROI, "out.parquet") if func is to_parquet else (col, ROI)
    with pytest.raises(TypeError, match=rf"^{func.__name__}\(\) got an unexpected keyword "):
        func(*args, **{keyword: None})
