"""pytest configuration: the shared fixtures and the Hypothesis profiles.

Helpers the tests import live in :mod:`tests.helpers`.
"""

from __future__ import annotations

import pytest
import xarray as xr

from tests.helpers import make_cube
from tests.servers import (  # noqa: F401  (fixtures)
    az_container,
    azure_server,
    gcs_bucket,
    gcs_server,
    range_server,
    s3_bucket,
    s3_server,
)


@pytest.fixture
def cube() -> xr.DataArray:
    return make_cube()


# Hypothesis profiles. "ci" (the default) is reproducible and quick: the same examples on
# every run (derandomize), no example database, no deadline (first calls pay pyproj and dask
# warm-up). "thorough" explores ten times as many fresh random examples, failures saved in
# .hypothesis/: HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_brute_force.py
def _register_hypothesis_profiles() -> None:
    import os

    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow]
    settings.register_profile(
        "ci",
        settings.get_profile("ci"),
        max_examples=200,
        derandomize=True,
        deadline=None,
        suppress_health_check=slow,
    )
    settings.register_profile(
        "thorough", max_examples=2000, deadline=None, suppress_health_check=slow
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_register_hypothesis_profiles()
