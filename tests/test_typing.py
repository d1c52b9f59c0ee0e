"""The typed public API: PEP 561 marker, the version's one source, get_region's overloads."""

from __future__ import annotations

import importlib.metadata
import typing
from pathlib import Path

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
