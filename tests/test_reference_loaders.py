"""Independent reference: real stackstac and odc-stac cubes, checked against rasterio reads.

The tests write small Cloud-Optimised GeoTIFFs (3 dates x 2 bands, 64 x 64 pixels of 30 m in
EPSG:32615, int16 with a nodata value, 16 x 16 tiles, deflate; each value says where it is),
describe them as STAC items with pystac, and load them with the real ``stackstac.stack`` and
``odc.stac.load``. Every value of the table is then compared with what rasterio reads from the
file: the pixel containing a point (``dataset.index``), the pixels GDAL's rasterizer puts in a
polygon (``rasterio.features.geometry_mask`` on the file's own grid), their centres from
``dataset.xy``, ids and times from the items. Nothing here comes from xr_getregion but the
table under test: this reference shares no code and no reading of the rules with it.

Two stackstac facts these cubes show (stackstac 0.5.1): it labels pixel top-left corners by
default, and it says so only in ``attrs['transform']``. Its ``proj:transform`` coordinate
describes the items' grid, stored as a Python ``set`` when the items share it (order lost).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import shapely
import xarray as xr
from pyproj import Transformer

stackstac = pytest.importorskip("stackstac")
odc_stac = pytest.importorskip("odc.stac")
pystac = pytest.importorskip("pystac")

from pystac.extensions.projection import ProjectionExtension  # noqa: E402

from tests.helpers import write_geotiff  # noqa: E402
from xr_getregion import CubeError, GetRegionWarning, get_region, getRegion  # noqa: E402
from xr_getregion.cli import main  # noqa: E402

# odc-geo (under odc-stac) still calls shapely.ops.transform.
pytestmark = pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")

UTM = "EPSG:32615"
RES = 30.0
SIZE = 64
# The files' top-left corner: a multiple of the resolution, so stackstac's grid (snapped to
# multiples of the resolution) and odc-stac's are the files' own, and nearest-neighbour
# loading copies pixels unchanged.
X0, Y0 = 600_000.0, 4_200_000.0
NODATA = -9999
BANDS = ("B0", "B1")
DATES = [dt.datetime(2021, 3, d, 16, 30, tzinfo=dt.UTC) for d in (1, 9, 17)]
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)


def pixel_values(t: int, b: int) -> np.ndarray:
    """t*10000 + b*5000 + row*64 + col, with a nodata block that moves with the date."""
    row, col = np.mgrid[0:SIZE, 0:SIZE]
    values = (t * 10_000 + b * 5_000 + row * SIZE + col).astype("int16")
    values[20 + t : 24 + t, 30:34] = NODATA
    return values


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[Any]:
    return write_items(tmp_path_factory.mktemp("cogs"))


def write_items(root: Path) -> list[Any]:
    """The files under ``root`` and their STAC items, one per date, one asset per band."""
    transform = rasterio.transform.from_origin(X0, Y0, RES, RES)
    bbox_utm = [X0, Y0 - SIZE * RES, X0 + SIZE * RES, Y0]
    lon, lat = TO_LONLAT.transform(bbox_utm[::2] * 2, [bbox_utm[1]] * 2 + [bbox_utm[3]] * 2)
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    out = []
    for t, when in enumerate(DATES):
        item = pystac.Item(
            id=f"S2X_{when:%Y%m%d}_T15",
            geometry=shapely.geometry.mapping(shapely.box(*bbox)),
            bbox=bbox,
            datetime=when,
            properties={},
        )
        for b, band in enumerate(BANDS):
            path = root / f"{item.id}_{band}.tif"
            write_geotiff(path, pixel_values(t, b), transform, crs=UTM, nodata=NODATA, tile=16)
            item.add_asset(band, pystac.Asset(href=str(path), media_type=pystac.MediaType.COG))
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.epsg = 32615
        proj.transform = list(transform)[:6]
        proj.shape = [SIZE, SIZE]
        proj.bbox = bbox_utm
        # pystac writes the projection extension v2 (proj:code); stackstac 0.5.1 reads the
        # items' own grid only from v1's proj:epsg, and otherwise pads it from the lon/lat bbox.
        item.properties["proj:epsg"] = 32615
        out.append(item)
    return out


# --- the reference: rasterio on the files, nothing else -------------------------------------


@functools.lru_cache(maxsize=64)
def read_file(href: str) -> np.ma.MaskedArray:
    with rasterio.open(href) as src:
        return src.read(1, masked=True)


def read_at(items: list[Any], t: int, band: str, row: int, col: int) -> int | None:
    data = read_file(items[t].assets[band].href)
    return None if data.mask[row, col] else int(data[row, col])


def index_of(items: list[Any], x: float, y: float) -> tuple[int, int] | None:
    """The (row, col) of the file pixel containing (x, y) in the file's CRS, or None."""
    with rasterio.open(items[0].assets[BANDS[0]].href) as src:
        row, col = src.index(x, y)
        return (row, col) if 0 <= row < src.height and 0 <= col < src.width else None


def centre_lonlat(items: list[Any], row: int, col: int) -> tuple[float, float]:
    with rasterio.open(items[0].assets[BANDS[0]].href) as src:
        x, y = src.xy(row, col)
    return TO_LONLAT.transform(x, y)


def polygon_pixels(items: list[Any], polygon: shapely.Polygon) -> list[tuple[int, int]]:
    """The pixels GDAL's rasterizer puts in ``polygon`` (centre inside), on the file grid."""
    with rasterio.open(items[0].assets[BANDS[0]].href) as src:
        inside = rasterio.features.geometry_mask(
            [polygon], out_shape=(src.height, src.width), transform=src.transform, invert=True
        )
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(inside), strict=True)]


def millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def same(got: Any, expected: int | None) -> bool:
    if expected is None:
        return got is None or (isinstance(got, float) and math.isnan(got)) or got is pd.NA
    return got is not None and got is not pd.NA and not pd.isna(got) and got == expected


class Check:
    """Counts the table's wrong values against the reference, with the first few named."""

    def __init__(self) -> None:
        self.total = 0
        self.wrong: list[str] = []

    def value(self, what: str, got: Any, expected: int | None) -> None:
        self.total += 1
        if not same(got, expected):
            self.wrong.append(f"{what}: got {got!r}, rasterio reads {expected!r}")

    def missing(self, what: str, n: int) -> None:
        self.total += n
        self.wrong.extend([f"{what}: no row"] * n)

    def passed(self) -> bool:
        return not self.wrong

    def report(self) -> str:
        return f"{len(self.wrong)} of {self.total} values wrong: {self.wrong[:4]}"


def check_polygon_table(
    table: list[list], items: list[Any], ids: list[str], polygon: shapely.Polygon
) -> Check:
    """Every row of a getRegion table on the files' grid against the rasterized polygon."""
    check = Check()
    assert table[0] == ["id", "longitude", "latitude", "time", *BANDS]
    expected = {
        (ids[t], rc): (millis(when), [read_at(items, t, b, *rc) for b in BANDS])
        for t, when in enumerate(DATES)
        for rc in polygon_pixels(items, polygon)
    }
    with rasterio.open(items[0].assets[BANDS[0]].href) as src:
        inverse = ~src.transform
    seen = set()
    for image_id, lon, lat, time, *values in table[1:]:
        col_f, row_f = inverse * TO_UTM.transform(lon, lat)
        key = (image_id, (math.floor(row_f), math.floor(col_f)))
        centred = abs(col_f % 1 - 0.5) < 1e-6 and abs(row_f % 1 - 0.5) < 1e-6
        if not centred or key not in expected or key in seen:
            # A row off the pixel centres or outside the polygon: all its values are wrong.
            check.total += len(BANDS)
            check.wrong.extend([f"row {image_id} ({lon}, {lat}) is not a covered centre"] * 2)
            continue
        seen.add(key)
        when, reference = expected[key]
        assert time == when
        for band, got, ref in zip(BANDS, values, reference, strict=True):
            check.value(f"{key} {band}", got, ref)
    for key in expected.keys() - seen:
        check.missing(str(key), len(BANDS))
    return check


# Points in file pixel units (col, row), off every pixel edge: two in nodata blocks, one
# outside the files (no row), the rest spread over the grid.
POINTS_PX = [(31.3, 21.6), (32.8, 24.4), (-0.4, 10.2), (63.9, 63.8), (0.1, 0.2)] + [
    (float(c), float(r))
    for c, r in np.round(np.random.default_rng(12).uniform(1.05, 62.95, (11, 2)), 2)
]
POINTS_UTM = [shapely.Point(X0 + RES * c, Y0 - RES * r) for c, r in POINTS_PX]
POLYGON_UTM = shapely.Polygon(
    [
        (X0 + RES * c, Y0 - RES * r)
        for c, r in [(3.3, 4.1), (40.7, 2.2), (55.2, 30.6), (30.1, 58.3), (8.4, 41.9)]
    ],
    [[(X0 + RES * c, Y0 - RES * r) for c, r in [(20.3, 20.2), (30.6, 21.1), (25.2, 33.7)]]],
)


def check_point_frame(frame: pd.DataFrame, items: list[Any], ids: list[str]) -> Check:
    """A get_region table of POINTS_UTM (one feature each) against rasterio reads."""
    check = Check()
    for feature, point in enumerate(POINTS_UTM):
        rows = frame[frame["feature"] == feature]
        rc = index_of(items, point.x, point.y)
        if rc is None:
            # Outside the files: no row, or (where the cube's grid reaches further, as
            # stackstac's does from a lon/lat bbox) rows whose values are all missing.
            for band in BANDS:
                for t, got in enumerate(rows[band]):
                    check.value(f"point {feature} image {t} {band} (outside)", got, None)
            continue
        if len(rows) != len(items):
            check.missing(f"point {feature}", len(BANDS) * (len(items) - len(rows)))
        lon, lat = centre_lonlat(items, *rc)
        for t, row in enumerate(rows.itertuples(index=False)):
            assert str(row.id) == ids[t]
            assert row.time == pd.Timestamp(DATES[t])
            for band in BANDS:
                off = abs(row.longitude - lon) > 1e-9 or abs(row.latitude - lat) > 1e-9
                got = "off the pixel centre" if off else getattr(row, band)
                check.value(f"point {feature} image {t} {band}", got, read_at(items, t, band, *rc))
    return check


# --- the loaders ----------------------------------------------------------------------------


def stack(items: list[Any], **kwargs: Any) -> xr.DataArray:
    return stackstac.stack(items, resolution=RES, epsg=32615, **kwargs)


def without_proj_epsg(item: Any) -> Any:
    clone = item.clone()
    del clone.properties["proj:epsg"]
    return clone


def stackstac_to_zarr(cube: xr.DataArray, path: Path, attrs: dict[str, Any]) -> xr.Dataset:
    """What users write to Zarr: attrs replaced (stackstac's RasterSpec cannot be written),
    the object-valued STAC coordinates dropped (they cannot either), one variable per band."""
    stac = [k for k in cube.coords if str(k).startswith("proj:")]
    cube.drop_vars(stac).drop_attrs().assign_attrs(attrs).to_dataset(dim="band").to_zarr(path)
    return xr.open_zarr(path)


def kept_transform(cube: xr.DataArray) -> dict[str, Any]:
    return {"transform": tuple(cube.attrs["transform"])}


def corner_statement(cube: xr.DataArray) -> tuple[float, ...]:
    """The transform a user states for corner labels: its origin is the first labels."""
    return (RES, 0.0, float(cube.x[0]), 0.0, -RES, float(cube.y[0]))


def centre_statement(cube: xr.DataArray) -> tuple[float, ...]:
    return (RES, 0.0, float(cube.x[0]) - RES / 2, 0.0, -RES, float(cube.y[0]) + RES / 2)


def floats(items: list[Any], **kwargs: Any) -> xr.DataArray:
    return stack(items, dtype="float64", fill_value=np.nan, **kwargs)


def restated(cube: xr.DataArray, statement: Any) -> xr.DataArray:
    """The cube with its attrs lost, then the transform stated as the refusal says."""
    return cube.drop_attrs().assign_attrs(transform=statement(cube))


LOADERS = {
    "stackstac-topleft": lambda items, tmp: floats(items),
    "stackstac-center": lambda items, tmp: floats(items, xy_coords="center"),
    # stackstac 0.5.1 checks np.can_cast(type(fill_value), dtype): a Python int is int64
    # and refused for int16 under numpy 2, a numpy int16 passes. Its integer cube declares
    # no missing value: the user states it.
    "stackstac-int16-rescale-False": lambda items, tmp: stack(
        items, dtype="int16", fill_value=np.int16(NODATA), rescale=False
    ).assign_attrs(nodata=NODATA),
    # Items with proj:code alone: stackstac pads its grid by a pixel on each side.
    "stackstac-proj-code-only": lambda items, tmp: floats([without_proj_epsg(i) for i in items]),
    "stackstac-dask-chunks": lambda items, tmp: floats(items, chunksize=16),
    # xarray keeps attrs through arithmetic from 2025.11 (the lowest version allowed).
    "stackstac-topleft-arithmetic": lambda items, tmp: floats(items) * 1.0,
    "stackstac-zarr-transform-kept": lambda items, tmp: stackstac_to_zarr(
        floats(items), tmp / "kept.zarr", kept_transform(floats(items))
    ),
    "stackstac-topleft-attrs-lost-corners-stated": lambda items, tmp: restated(
        floats(items), corner_statement
    ),
    "stackstac-center-attrs-lost-centres-stated": lambda items, tmp: restated(
        floats(items, xy_coords="center"), centre_statement
    ),
    "odc-stac": lambda items, tmp: odc_stac.load(
        items, bands=list(BANDS), chunks={"x": 32, "y": 32}
    ),
}


def item_ids(name: str, items: list[Any]) -> list[str]:
    # odc-stac keeps no item ids: EE's ids of computed images, the positions, apply.
    return [str(i) for i in range(len(items))] if name == "odc-stac" else [i.id for i in items]


@pytest.mark.parametrize("name", list(LOADERS))
def test_loaded_cube_table_equals_rasterio_reads(name, items, tmp_path):
    cube = LOADERS[name](items, tmp_path)
    ids = item_ids(name, items)
    # The point outside the files gives no row, and the package warns of it, except where
    # the loader pads its grid (stackstac with proj:code only) and the point gets NaNs.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "1 of 16 features miss the cube", GetRegionWarning)
        frame = get_region(cube, POINTS_UTM, geometry_crs=UTM)
    points = check_point_frame(frame, items, ids)
    assert points.passed(), points.report()
    table = getRegion(cube, POLYGON_UTM, crs="native", geometry_crs=UTM)
    polygon = check_polygon_table(table, items, ids, POLYGON_UTM)
    assert polygon.passed(), polygon.report()
    assert polygon.total > 2 * 3 * 1000  # the polygon covers over a thousand pixels


@pytest.mark.parametrize("name", ["stackstac-topleft", "stackstac-center", "odc-stac"])
def test_ee_working_grid_values_are_the_files_pixels_under_each_centre(name, items, tmp_path):
    # getRegion at scale=30 resamples to EE's EPSG:4326 grid: each row's value is the file
    # pixel containing the row's centre (nearest neighbour).
    cube = LOADERS[name](items, tmp_path)
    ids = item_ids(name, items)
    inner = [TO_LONLAT.transform(p.x, p.y) for p in POINTS_UTM[5:]]
    table = getRegion(cube, shapely.MultiPoint(inner), scale=30)
    check = Check()
    for image_id, lon, lat, time, *values in table[1:]:
        t = ids.index(image_id)
        assert time == millis(DATES[t])
        rc = index_of(items, *TO_UTM.transform(lon, lat))
        assert rc is not None
        for band, got in zip(BANDS, values, strict=True):
            check.value(f"{image_id} ({lon}, {lat}) {band}", got, read_at(items, t, band, *rc))
    assert len(table) - 1 == 3 * len(inner)
    assert check.passed(), check.report()


# --- lost registration: refused, with the statement that fixes it -------------------------


@pytest.mark.parametrize(
    ("xy_coords", "statement"),
    [("topleft", corner_statement), ("center", centre_statement)],
)
def test_stackstac_cube_without_its_transform_is_refused_naming_the_statement(
    xy_coords, statement, items
):
    # Clearing attrs (to write Zarr) loses what told corners from centres. Read as centres,
    # every corner-labelled value would come from the neighbouring pixel: refused instead.
    cube = stack(items, dtype="float64", fill_value=np.nan, xy_coords=xy_coords).drop_attrs()
    label = "corner" if xy_coords == "topleft" else "centre"
    expected = re.escape(f"for {label} labels cube.attrs['transform'] = {statement(cube)!r}")
    with pytest.raises(CubeError, match=expected):
        getRegion(cube, POLYGON_UTM, crs="native", geometry_crs=UTM)


def test_arithmetic_that_drops_attrs_is_refused_not_shifted(items):
    # xarray before 2025.11 dropped attrs in arithmetic by default; keep_attrs=False still does.
    cube = stack(items, dtype="float64", fill_value=np.nan)
    with xr.set_options(keep_attrs=False):
        scaled = cube * 1.0
    assert "transform" not in scaled.attrs
    with pytest.raises(CubeError, match=r"looks like stackstac output \(its name 'stackstac-"):
        get_region(scaled, POINTS_UTM, geometry_crs=UTM)


def test_zarr_store_of_a_stackstac_cube_without_its_transform_is_refused(items, tmp_path):
    cube = stack(items, dtype="float64", fill_value=np.nan)
    store = stackstac_to_zarr(cube, tmp_path / "lost.zarr", {})
    with pytest.raises(CubeError, match=r"its 'epsg' coordinate.*ds\.attrs\['transform'\]"):
        get_region(store, POINTS_UTM, geometry_crs=UTM)


def write_points(path: Path) -> Path:
    lonlat = [shapely.Point(TO_LONLAT.transform(p.x, p.y)) for p in POINTS_UTM]
    features = [
        {
            "type": "Feature",
            "properties": {"name": f"p{i}"},
            "geometry": shapely.geometry.mapping(p),
        }
        for i, p in enumerate(lonlat)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_extract_on_the_zarr_of_a_stackstac_cube(items, tmp_path, capsys):
    cube = stack(items, dtype="float64", fill_value=np.nan)
    points = write_points(tmp_path / "points.geojson")
    lost = tmp_path / "lost.zarr"
    stackstac_to_zarr(cube, lost, {})
    out = tmp_path / "lost.csv"
    assert main(["extract", str(lost), "--geometry", str(points), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "looks like stackstac output" in err and "attrs['transform'] = (30.0" in err
    assert not out.exists()
    # The same store written with the transform kept, as the message says: the right table.
    kept = tmp_path / "kept.zarr"
    stackstac_to_zarr(cube, kept, kept_transform(cube))
    out = tmp_path / "kept.csv"
    assert main(["extract", str(kept), "--geometry", str(points), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    check = check_point_frame(frame, items, [i.id for i in items])
    assert check.passed(), check.report()
