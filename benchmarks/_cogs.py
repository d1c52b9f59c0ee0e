"""The COG stack of ``benchmarks.cogs``: its files, STAC items, cases and storage floor.

Shared by the runner (``benchmarks/cogs.py``) and its fresh processes
(``benchmarks/_cogs_case.py``), so both build the same geometries from the same seeds. Nothing
here calls xr_getregion: the floor is rasterio's reading of the files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._cube import DATA

UTM = "EPSG:32615"
EPSG = 32615
RES = 30.0
#: The files' top-left corner, a multiple of the resolution: stackstac's grid (snapped to
#: multiples of the resolution) and odc-stac's are then the files' own.
X0, Y0 = 600_000.0, 4_200_000.0
TILE = 512
NODATA = -9999
ITEMS = "items.json"
#: Bumped whenever the files' values or layout change, so the cached stack is rewritten.
VERSION = 2


@dataclass(frozen=True)
class Stack:
    """One COG stack: ``dates`` x ``bands`` files of ``size`` x ``size`` pixels."""

    name: str
    dates: int
    bands: int
    size: int
    #: Case name -> (label, kind, count or area in m2); the same kinds in both modes.
    cases: tuple[tuple[str, str, str, float], ...]

    @property
    def folder(self) -> Path:
        # The version says which pixel_values wrote the files: a new one writes them again.
        return DATA / f"cogs_{self.name}_{self.dates}x{self.bands}x{self.size}_v{VERSION}"

    @property
    def band_names(self) -> list[str]:
        return [f"B{b + 1}" for b in range(self.bands)]

    @property
    def times(self) -> list[dt.datetime]:
        start = dt.datetime(2023, 1, 5, 16, 40, tzinfo=dt.UTC)
        return [start + dt.timedelta(days=16 * t) for t in range(self.dates)]

    def item_id(self, t: int) -> str:
        return f"LC09_{self.times[t]:%Y%m%d}_015033"

    def file_name(self, t: int, band: str) -> str:
        return f"{self.item_id(t)}_{band}.tif"

    def files(self) -> list[str]:
        return [self.file_name(t, b) for t in range(self.dates) for b in self.band_names]


FULL = Stack(
    "full",
    dates=12,
    bands=3,
    size=4096,
    cases=(
        ("points_50", "50 random points", "points", 50),
        ("polygon_1km2", "~1 km2 polygon", "polygon", 1e6),
        ("polygon_100km2", "~100 km2 polygon", "polygon", 1e8),
        ("points_1000", "1,000 random points", "points", 1000),
    ),
)
QUICK = Stack(
    "quick",
    dates=3,
    bands=2,
    size=2048,
    cases=(
        ("points_12", "12 random points", "points", 12),
        ("polygon_1km2", "~1 km2 polygon", "polygon", 1e6),
        ("polygon_25km2", "~25 km2 polygon", "polygon", 2.5e7),
        ("points_250", "250 random points", "points", 250),
    ),
)


def pixel_values(stack: Stack, t: int, b: int) -> Any:
    """Reflectance-like int16: smooth gradients, a per-image offset and noise (so DEFLATE
    compresses as it does real imagery, to about 2/3), and a nodata block that moves."""
    import numpy as np

    n = stack.size
    rows = np.arange(n, dtype=np.float32)[:, None]
    cols = np.arange(n, dtype=np.float32)[None, :]
    rng = np.random.default_rng([t, b])
    smooth = 1500 + 600 * np.sin(rows / 211 + t) * np.cos(cols / 173 - b) + 0.05 * cols
    values = (smooth + 300 * b + 20 * t + rng.normal(0, 25, (n, n))).astype("int16")
    # Across the small polygon's edge, so its table holds masked values too.
    r0, c0 = int(0.41 * n) - 20 + 3 * t, int(0.37 * n) - 60
    values[r0 : r0 + 40, c0 : c0 + 60 + 10 * b] = NODATA
    return values


def transform() -> Any:
    from rasterio.transform import from_origin

    return from_origin(X0, Y0, RES, RES)


def ensure_stack(stack: Stack) -> Path:
    """The COGs and ``items.json`` of ``stack`` under ``benchmarks/_data``, written once."""
    import time

    folder = stack.folder
    if (folder / ITEMS).exists():
        return folder
    start = time.perf_counter()
    print(
        f"writing {len(stack.files())} COGs of {stack.size} x {stack.size} to {folder}", flush=True
    )
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    write_stack(stack, tmp)
    tmp.rename(folder)
    print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def write_stack(stack: Stack, folder: Path) -> None:
    import pystac
    import rasterio
    import shapely
    from pyproj import Transformer
    from pystac.extensions.projection import ProjectionExtension

    for t in range(stack.dates):
        for b, band in enumerate(stack.band_names):
            with rasterio.open(
                folder / stack.file_name(t, band),
                "w",
                driver="COG",
                width=stack.size,
                height=stack.size,
                count=1,
                dtype="int16",
                crs=UTM,
                transform=transform(),
                nodata=NODATA,
                blocksize=TILE,
                compress="deflate",
            ) as dst:
                dst.write(pixel_values(stack, t, b), 1)
    side = stack.size * RES
    bbox_utm = [X0, Y0 - side, X0 + side, Y0]
    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(bbox_utm[::2] * 2, [bbox_utm[1]] * 2 + [bbox_utm[3]] * 2)
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    items = []
    for t, when in enumerate(stack.times):
        item = pystac.Item(
            id=stack.item_id(t),
            geometry=shapely.geometry.mapping(shapely.box(*bbox)),
            bbox=bbox,
            datetime=when,
            properties={},
        )
        for band in stack.band_names:
            # Relative hrefs: the fresh process prefixes the server's URL of the run.
            asset = pystac.Asset(href=stack.file_name(t, band), media_type=pystac.MediaType.COG)
            asset.extra_fields["raster:bands"] = [
                {"data_type": "int16", "nodata": NODATA, "spatial_resolution": RES}
            ]
            item.add_asset(band, asset)
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.epsg = EPSG
        proj.transform = list(transform())[:6]
        proj.shape = [stack.size, stack.size]
        proj.bbox = bbox_utm
        # pystac writes proj:code (projection v2); stackstac 0.5.1 reads the grid only from
        # v1's proj:epsg, and otherwise pads it from the lon/lat bbox.
        item.properties["proj:epsg"] = EPSG
        items.append(item)
    collection = pystac.ItemCollection(items)
    (folder / ITEMS).write_text(json.dumps(collection.to_dict(transform_hrefs=False)))


# --- the cases --------------------------------------------------------------------------------


def geometries(stack: Stack, case: str) -> Any:
    """The case's geometries (a GeoSeries in UTM), from fixed seeds, inside the files."""
    import geopandas as gpd
    import numpy as np
    import shapely

    _, _, kind, amount = next(c for c in stack.cases if c[0] == case)
    side = stack.size * RES
    rng = np.random.default_rng(20_26)
    if kind == "points":
        n = int(amount)
        xs = rng.uniform(X0 + 1, X0 + side - 1, n)
        ys = rng.uniform(Y0 - side + 1, Y0 - 1, n)
        return gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs=UTM)
    # A wobbly 40-gon of the area, off the tile grid: a small one inside a tile (at 0.37,
    # 0.41 of the extent), a large one across the middle tile corner (at 0.49, 0.52).
    fx, fy = (0.37, 0.41) if amount < 1e7 else (0.49, 0.52)
    cx, cy = X0 + side * fx, Y0 - side * fy
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    wobble = 1 + 0.2 * np.sin(3 * angles + rng.uniform(0, 6))
    r = math.sqrt(amount / math.pi) * wobble / np.sqrt(np.mean(wobble**2))
    polygon = shapely.Polygon(np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]))
    return gpd.GeoSeries([polygon], crs=UTM)


# --- the floor: rasterio's reading of the files, nothing from xr_getregion --------------------


def covered_pixels(path: Path, geoms: Any) -> Any:
    """(row, col) of the pixel(s) each geometry covers on the file's grid, feature by feature
    (a pixel two features cover comes twice, as it does in the table).

    Points: the pixel holding each (``dataset.index``, flooring). Polygons: the pixels whose
    centre GDAL's rasterizer puts inside (``geometry_mask``, ``all_touched=False``).
    """
    import numpy as np
    import rasterio
    import rasterio.features

    with rasterio.open(path) as src:
        pixels = []
        for geom in geoms:
            if geom.geom_type == "Point":
                row, col = src.index(geom.x, geom.y)
                if 0 <= row < src.height and 0 <= col < src.width:
                    pixels.append(np.array([[row, col]]))
            else:
                inside = rasterio.features.geometry_mask(
                    [geom], out_shape=(src.height, src.width), transform=src.transform, invert=True
                )
                pixels.append(np.argwhere(inside))
    if not pixels:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(pixels)


def covered_tiles(pixels: Any, tile: int = TILE) -> list[tuple[int, int]]:
    """The (tile row, tile col) of the internal tiles holding ``pixels``."""
    import numpy as np

    if len(pixels) == 0:
        return []
    return [(int(r), int(c)) for r, c in np.unique(pixels // tile, axis=0)]


def tile_bytes(path: Path, tiles: list[tuple[int, int]]) -> int:
    """The bytes of ``tiles`` in the file, from GDAL's TIFF metadata (``BLOCK_SIZE_x_y``)."""
    import rasterio

    with rasterio.open(path) as src:
        if src.block_shapes[0] != (TILE, TILE):
            raise ValueError(f"{path} has blocks {src.block_shapes[0]}, not {TILE} x {TILE}")
        return sum(
            int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)) for row, col in tiles
        )


def floor(folder: Path, files: list[str], geoms: Any) -> dict[str, Any]:
    """The rows per image the table must have (covered pixels, per feature), the covered tiles
    of each file (all files share one grid) and their bytes summed over every file."""
    pixels = covered_pixels(folder / files[0], geoms)
    tiles = covered_tiles(pixels)
    total = sum(tile_bytes(folder / name, tiles) for name in files)
    return {"rows_per_image": len(pixels), "tiles": tiles, "bytes": total}
