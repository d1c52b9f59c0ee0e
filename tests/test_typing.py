"""The typed public API: PEP 561 marker, the version's one source, get_region's overloads."""

from __future__ import annotations

import importlib.metadata
import typing
from pathlib import Path

import pytest

import xr_getregion
from xr_getregion import api
from xr_getregion.accessor import EEAccessor


def test_package_ships_py_typed() -> None:
    assert (Path(xr_getregion.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'xr_getregion = ["py.typed"]' in pyproject


def test_version_comes_from_the_installed_metadata() -> None:
    assert xr_getregion.__version__ == importlib.metadata.version("xr_getregion")


def _lazy_to_return(func: typing.Callable[..., object]) -> dict[str, str]:
    overloads = typing.get_overloads(func)
    return {o.__annotations__["lazy"]: o.__annotations__["return"] for o in overloads}


def test_get_region_return_type_follows_lazy() -> None:
    expected = {
        "Literal[False]": "pd.DataFrame",
        "Literal[True]": "dd.DataFrame",
        "bool": "pd.DataFrame | dd.DataFrame",
    }
    assert _lazy_to_return(api.get_region) == expected
    assert _lazy_to_return(EEAccessor.get_region) == expected


# Calls a type checker sees through the shared keywords (xr_getregion.options): each line's
# comment is what mypy must say about it, a revealed type or the start of an error.
CALLS = """
import xarray as xr

import xr_getregion
from xr_getregion import Geometry
from xr_getregion.accessor import EEAccessor
from xr_getregion.plot import region_map

cube: xr.DataArray = xr_getregion.sample_cube()
ee = EEAccessor(cube)
roi = Geometry.Point(-90.49, 34.85)
flag = bool(len(cube))
reveal_type(xr_getregion.get_region(cube, roi, lazy=True))  # dask DataFrame
reveal_type(xr_getregion.get_region(cube, roi, 30, max_values=10))  # pandas DataFrame
reveal_type(ee.get_region(roi, geometry_crs=4326, lazy=True))  # dask DataFrame
reveal_type(ee.get_region(roi, lazy=False, pyramiding="sample"))  # pandas DataFrame
reveal_type(ee.get_region(roi, lazy=flag))  # either
ee.get_region(roi, max_values="many")  # error: No overload variant
xr_getregion.plan(cube, roi, id_column="name")  # error: Unexpected keyword argument
ee.to_parquet(roi, "x.parquet", overwrite=True, id_column=3)  # error: Argument "id_column"
ee.getRegion(roi, 30, properties=["a"])  # error: Unexpected keyword argument
region_map(cube, roi, max_values=3)  # error: Unexpected keyword argument
"""
# The package of each DataFrame in a revealed type (dask's module path moves between releases).
REVEALED = {
    "dask DataFrame": ["dask"],
    "pandas DataFrame": ["pandas"],
    "either": ["pandas", "dask"],
}


def test_mypy_checks_the_shared_keywords_and_the_lazy_overloads(tmp_path: Path) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    root = Path(__file__).parent.parent
    (tmp_path / "calls.py").write_text(CALLS)
    out, _, _ = mypy_api.run(
        [
            str(tmp_path / "calls.py"),
            "--config-file",
            str(root / "pyproject.toml"),
            # The cache `mypy xr_getregion` keeps; mypy ignores it in git by itself.
            "--cache-dir",
            str(root / ".mypy_cache"),
            "--no-error-summary",
        ]
    )
    said: dict[int, list[str]] = {}
    for line in out.splitlines():
        path, _, rest = line.partition(".py:")
        number, _, message = rest.partition(": ")
        if path.endswith("calls") and number.isdigit():
            said.setdefault(int(number), []).append(message)
    for number, line in enumerate(CALLS.splitlines(), start=1):
        _, _, want = line.partition("  # ")
        if not want:
            assert not said.get(number), (line, said.get(number))
        elif want in REVEALED:
            [note] = said[number]
            revealed = note.removeprefix('note: Revealed type is "').removesuffix('"')
            parts = revealed.split(" | ")
            assert [p.split(".")[0] for p in parts] == REVEALED[want], (line, note)
            assert all(p.endswith(".DataFrame") for p in parts), (line, note)
        else:
            assert said.get(number, [""])[0].startswith(want), (line, said.get(number))
