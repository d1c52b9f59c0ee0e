"""xr_getregion: Earth Engine's ``ImageCollection.getRegion`` for time-stacked xarray cubes.

Importing the package registers the ``.ee`` accessor on ``xarray.DataArray`` and
``xarray.Dataset``.

>>> import xr_getregion
>>> from xr_getregion import Geometry
>>> col = xr_getregion.sample_cube()
>>> roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
>>> len(col.ee.getRegion(roi, scale=30))
11
"""

from __future__ import annotations

# First, before xarray and dask load: when this process is the xr-getregion command, Ctrl-C
# during those imports must be the command's one line, not a traceback.
from xr_getregion import _signals  # noqa: F401  # isort: skip

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

import rioxarray  # noqa: F401  (registers .rio, used to read CRSs)

from xr_getregion import (
    accessor,  # noqa: F401  (registers .ee)
    plot,
)
from xr_getregion.api import get_region, getRegion, plan
from xr_getregion.errors import (
    ArgumentError,
    CRSError,
    CubeError,
    EmptyCollectionError,
    GeometryError,
    GetRegionError,
    GetRegionWarning,
    GridError,
    MissingCRSError,
    OutputExistsError,
    TooManyValuesError,
)
from xr_getregion.geometry import Geometry
from xr_getregion.grid import METRES_PER_DEGREE, Grid
from xr_getregion.output import to_parquet, write_table
from xr_getregion.plan import MAX_VALUES, Plan
from xr_getregion.stac import stac_cube
from xr_getregion.storage import read_table
from xr_getregion.table import to_geodataframe
from xr_getregion.tutorial import sample_cube

try:
    # pyproject.toml holds the version; the installed metadata carries it here.
    __version__ = _version("xr_getregion")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "MAX_VALUES",
    "METRES_PER_DEGREE",
    "ArgumentError",
    "CRSError",
    "CubeError",
    "EmptyCollectionError",
    "Geometry",
    "GeometryError",
    "GetRegionError",
    "GetRegionWarning",
    "Grid",
    "GridError",
    "MissingCRSError",
    "OutputExistsError",
    "Plan",
    "TooManyValuesError",
    "__version__",
    "getRegion",
    "get_region",
    "plan",
    "plot",
    "read_table",
    "sample_cube",
    "stac_cube",
    "to_geodataframe",
    "to_parquet",
    "write_table",
]
