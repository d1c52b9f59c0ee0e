"""The COG benchmark's floor (benchmarks/_cogs.py), against the file's own bytes.

The floor is the bytes of the 512-tiles holding covered pixels, taken from GDAL's TIFF
metadata. Here each tile's (offset, size) is checked by inflating exactly those bytes of the
file with zlib and comparing them with the pixels written there: the tags name the right tile
(x is the column) and hold all of it, and nothing else.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from benchmarks._cogs import TILE, covered_pixels, covered_tiles, tile_bytes

geopandas = pytest.importorskip("geopandas")

X0, Y0, RES = 600_000.0, 4_200_000.0, 30.0


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    path = tmp_path_factory.mktemp("cog") / "a.tif"
    values = np.random.default_rng(3).integers(0, 3000, (1024, 1536)).astype("int16")
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=1536,
        height=1024,
        count=1,
        dtype="int16",
        crs="EPSG:32615",
        transform=from_origin(X0, Y0, RES, RES),
        blocksize=TILE,
        compress="deflate",
    ) as dst:
        dst.write(values, 1)
    return path, values


def test_tile_bytes_are_the_deflated_tiles_of_the_file(cog) -> None:
    path, values = cog
    raw = path.read_bytes()
    with rasterio.open(path) as src:
        for row in range(2):
            for col in range(3):
                offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
                size = tile_bytes(path, [(row, col)])
                tile = np.frombuffer(zlib.decompress(raw[offset : offset + size]), "<i2")
                expected = values[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
                np.testing.assert_array_equal(tile.reshape(TILE, TILE), expected)
    assert tile_bytes(path, [(0, 0), (1, 2)]) == tile_bytes(path, [(0, 0)]) + tile_bytes(
        path, [(1, 2)]
    )


def test_covered_pixels_and_tiles_of_points_and_a_polygon(cog) -> None:
    path, _ = cog
    points = geopandas.GeoSeries(
        [
            shapely.Point(X0 + 511.5 * RES, Y0 - 0.2 * RES),  # last column of tile (0, 0)
            shapely.Point(X0 + 512.5 * RES, Y0 - 0.2 * RES),  # first of tile (0, 1)
            shapely.Point(X0 + 512.5 * RES, Y0 - 0.7 * RES),  # the same pixel again
            shapely.Point(X0 + 1535.9 * RES, Y0 - 1023.9 * RES),  # the last pixel
            shapely.Point(X0 - 3.0, Y0 - 100.0),  # outside: no pixel
        ],
        crs="EPSG:32615",
    )
    pixels = covered_pixels(path, points)
    assert pixels.tolist() == [[0, 511], [0, 512], [0, 512], [1023, 1535]]
    assert covered_tiles(pixels) == [(0, 0), (0, 1), (1, 2)]
    # Centres inside: rows 510-513 (centres 510.5 ... 513.5) and columns 2-4.
    box = shapely.box(X0 + 2.2 * RES, Y0 - 514.0 * RES, X0 + 4.9 * RES, Y0 - 510.1 * RES)
    pixels = covered_pixels(path, geopandas.GeoSeries([box], crs="EPSG:32615"))
    assert sorted(map(tuple, pixels.tolist())) == [
        (r, c) for r in range(510, 514) for c in (2, 3, 4)
    ]
    assert covered_tiles(pixels) == [(0, 0), (1, 0)]
