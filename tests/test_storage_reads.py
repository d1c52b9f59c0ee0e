"""Reads at the storage floor: only the COG tiles holding covered pixels are fetched.

The test writes a small stack of Cloud-Optimized GeoTIFFs (2 dates x 2 bands, 2048 x 2048,
512 x 512 DEFLATE tiles, so one default dask chunk spans 4 to 16 tiles), serves them over HTTP from
``tests/range_server.py`` (which logs the bytes of every request), and builds the cube as users
do with stackstac, odc-stac and ``rioxarray.open_rasterio``. Each extraction runs in a fresh
process, so GDAL's caches start empty and the server's byte count is the run's own.

The references share nothing with the package: the covered pixels come from rasterio
(``geometry_mask``, ``rowcol``), each tile's bytes from GDAL's TIFF metadata
(``BLOCK_SIZE_x_y``), what reading them costs from a tile-by-tile rasterio reader of exactly
those tiles in a fresh process (headers and GDAL's 16 KB rounding of ranges included), and
every value of the table from ``rasterio`` reads of the files.

The loaders' graphs are internals, not APIs: the last tests pin what
:mod:`xr_getregion.loaders` relies on in each of them, against the real packages.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import shapely
from pyproj import Transformer

stackstac = pytest.importorskip("stackstac")
odc_stac = pytest.importorskip("odc.stac")
pystac = pytest.importorskip("pystac")

from pystac.extensions.projection import ProjectionExtension  # noqa: E402

from tests.helpers import raise_if_dask_computes, write_geotiff  # noqa: E402

UTM = "EPSG:32615"
RES = 30.0
SIZE = 2048
TILE = 512
# Corners on multiples of the resolution: stackstac snaps its bounds to them, and would
# otherwise put the cube on another grid than the files'.
X0, Y0 = 600_000.0, 4_200_000.0
TRANSFORM = rasterio.transform.from_origin(X0, Y0, RES, RES)
NODATA = -9999
BANDS = ("red", "nir")
DATES = [dt.datetime(2022, 5, d, tzinfo=dt.UTC) for d in (3, 13)]
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
#: How many bytes more than a tile-by-tile reader of exactly the covered tiles may be fetched.
ALLOWANCE = 1.05
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
}


def _name(t: int, band: str) -> str:
    return f"stack/{t}_{band}.tif"


def write_stack(
    folder: Path, url: str, size: int, dates: list[dt.datetime], seed: int, name: Any
) -> list[dict[str, Any]]:
    """COGs of ``size`` x ``size`` int16 at TRANSFORM, one per date and band, at
    ``folder / name(t, band)`` (served at ``url``), and their STAC items
    (dicts): smooth fields plus noise, so tiles compress to different sizes, as real ones do;
    nodata in each top-left 3 x 3."""
    rng = np.random.default_rng(seed)
    x1, y1 = X0 + size * RES, Y0 - size * RES
    lon, lat = TO_LONLAT.transform([X0, x1, X0, x1], [Y0, Y0, y1, y1])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    yy, xx = np.mgrid[0:size, 0:size]
    items = []
    for t, when in enumerate(dates):
        item = pystac.Item(
            id=f"T{t}",
            geometry=shapely.geometry.mapping(shapely.box(*bbox)),
            bbox=bbox,
            datetime=when,
            properties={},
        )
        for band in BANDS:
            values = (yy + 2 * xx + rng.integers(0, 400, (size, size))).astype("int16")
            values[:3, :3] = NODATA
            write_geotiff(
                folder / name(t, band),
                values,
                TRANSFORM,
                crs=UTM,
                nodata=NODATA,
                tile=TILE,
                cog=True,
            )
            item.add_asset(
                band, pystac.Asset(href=f"{url}/{name(t, band)}", media_type=pystac.MediaType.COG)
            )
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.epsg = 32615
        proj.transform = list(TRANSFORM)[:6]
        proj.shape = [size, size]
        proj.bbox = [X0, y1, x1, Y0]
        item.properties["proj:epsg"] = 32615  # stackstac 0.5.1 reads v1's proj:epsg only
        items.append(item.to_dict())
    return items


@pytest.fixture(scope="module")
def stack(range_server: Any) -> dict[str, Any]:
    """The files on the server and their STAC items (dicts), with the server's URLs."""
    root = range_server.root / "stack"
    root.mkdir(exist_ok=True)
    items = write_stack(range_server.root, range_server.url, SIZE, DATES, 16, _name)
    (root / "items.json").write_text(json.dumps(items))
    return {"items": root / "items.json", "root": range_server.root, "url": range_server.url}


# --- the reference: rasterio, nothing else --------------------------------------------------


def covered(geometry: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels a polygon covers (GDAL's rasterizer), or of points."""
    if geometry.geom_type == "MultiPoint":
        xy = shapely.get_coordinates(geometry)
        rows, cols = rasterio.transform.rowcol(TRANSFORM, xy[:, 0], xy[:, 1])
        return np.asarray(rows), np.asarray(cols)
    mask = rasterio.features.geometry_mask([geometry], (SIZE, SIZE), TRANSFORM, invert=True)
    return np.nonzero(mask)


def tile_bytes(root: Path, rows: np.ndarray, cols: np.ndarray) -> int:
    """The bytes of the tiles holding those pixels, in every file, from the TIFF metadata."""
    tiles = set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True))
    total = 0
    for t in range(len(DATES)):
        for band in BANDS:
            with rasterio.open(root / _name(t, band)) as ds:
                for ty, tx in tiles:
                    total += int(ds.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1))
    return total


def fetched(range_server: Any, script: str) -> tuple[int, int, str]:
    """Run ``script`` in a fresh Python with GDAL's cloud settings; the requests and bytes
    the server sent meanwhile, and the script's stdout."""
    range_server.reset()
    env = {**__import__("os").environ, **GDAL_ENV}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = [r for r in range_server.requests() if r["bytes"]]
    return len(log), sum(r["bytes"] for r in log), done.stdout


def tile_reader_bytes(
    range_server: Any,
    stack: dict[str, Any],
    rows: Any,
    cols: Any,
    files: list[tuple[int, str]] | None = None,
) -> int:
    """What a tile-by-tile rasterio reader of exactly the covered tiles fetches: the headers,
    the tiles, and GDAL's rounding of each range to its 16 KB read chunks. ``files``: the
    (date, band) files read, all by default."""
    files = files or [(t, b) for t in range(len(DATES)) for b in BANDS]
    urls = [f"/vsicurl/{stack['url']}/{_name(t, b)}" for t, b in files]
    tiles = sorted(set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True)))
    _, size, _ = fetched(
        range_server,
        f"""
        import rasterio
        from rasterio.windows import Window
        for url in {urls!r}:
            with rasterio.open(url) as ds:
                for ty, tx in {tiles!r}:
                    ds.read(1, window=Window(tx * {TILE}, ty * {TILE}, {TILE}, {TILE}))
        """,
    )
    return size


LOADERS = {
    "stackstac": """
        import numpy as np, stackstac
        # pystac reads proj:epsg as proj:code, which stackstac 0.5.1 does not know: without
        # it stackstac would guess a grid from the lon/lat bbox, not the files' own.
        for item in items:
            item.properties["proj:epsg"] = 32615
        cube = stackstac.stack(items, dtype="int16", fill_value=np.int16(-9999), rescale=False)
    """,
    "odc-stac": """
        import odc.stac
        cube = odc.stac.load(items, chunks={})
    """,
    "rioxarray": """
        import rioxarray, xarray as xr
        cube = xr.concat(
            [
                xr.concat(
                    [
                        rioxarray.open_rasterio(asset["href"], chunks=True)
                        for asset in it["assets"].values()
                    ],
                    dim="band",
                ).assign_coords(band=list(it["assets"]))
                for it in raw
            ],
            dim="time",
        ).assign_coords(time=[np.datetime64(it["properties"]["datetime"][:19]) for it in raw])
    """,
}

CASES = {
    # A compact polygon of ~3,600 pixels inside one tile of each file.
    "polygon": shapely.Point(X0 + RES * 1300, Y0 - RES * 700).buffer(RES * 34),
    # 12 points in 6 of the 16 tiles.
    "points": shapely.MultiPoint(
        [(X0 + RES * (c + 0.5), Y0 - RES * (r + 0.5)) for r in (10, 200, 1400) for c in (40, 60)]
        + [(X0 + RES * (c + 0.5), Y0 - RES * (r + 0.5)) for r in (1040, 2000) for c in (1800, 2020)]
        + [(X0 + RES * 600.5, Y0 - RES * 1600.5), (X0 + RES * 666.5, Y0 - RES * 1555.5)]
    ),
}

#: A square across the corner of 4 of stackstac's default dask chunks (1024) and of 4 tiles.
ACROSS = shapely.box(X0 + RES * 990, Y0 - RES * 1060, X0 + RES * 1060, Y0 - RES * 990)


def extraction(loader: str, geometry: shapely.Geometry, items: Path, out: Path) -> str:
    return f"""
        import json, numpy as np, pystac, shapely, xr_getregion
        raw = json.load(open({str(items)!r}))
        items = [pystac.Item.from_dict(d) for d in raw]
        {textwrap.indent(textwrap.dedent(LOADERS[loader]), "        ").strip()}
        table = cube.ee.get_region(shapely.from_wkt({geometry.wkt!r}), geometry_crs="{UTM}")
        table.to_pickle({str(out)!r})
    """


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_only_the_covered_tiles_are_fetched(loader, case, stack, range_server, tmp_path):
    geometry = CASES[case]
    rows, cols = covered(geometry)
    floor = tile_bytes(stack["root"], rows, cols)
    reference = tile_reader_bytes(range_server, stack, rows, cols)
    out = tmp_path / "table.pkl"
    requests, size, _ = fetched(range_server, extraction(loader, geometry, stack["items"], out))
    # Whole default chunks would be 4 (stackstac) or all 16 tiles (odc-stac, rioxarray) of
    # each file for the polygon's 1 covered tile, and 12 or 16 for the points' 6.
    assert floor < reference <= 1.3 * floor  # the headers and GDAL's 16 KB rounding
    assert size <= ALLOWANCE * reference, (loader, case, requests, size, reference, floor)
    table = pd.read_pickle(out)
    check_values(table, stack["root"], len(rows))


def check_values(table: pd.DataFrame, root: Path, n_pixels: int) -> None:
    """Every value of the table is the file's value at the row's centre."""
    assert len(table) == n_pixels * len(DATES)
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    image = table["time"].rank(method="dense").astype(int).to_numpy() - 1
    for band in BANDS:
        got = table[band].to_numpy(dtype=float)
        for t in range(len(DATES)):
            with rasterio.open(root / _name(t, band)) as ds:
                values = ds.read(1)
            here = image == t
            r, c = rasterio.transform.rowcol(TRANSFORM, x[here], y[here])
            expected = values[np.asarray(r), np.asarray(c)].astype(float)
            expected[expected == NODATA] = np.nan
            np.testing.assert_array_equal(got[here], expected)


def check_image_values(table: pd.DataFrame, root: Path, t: int) -> None:
    """Every value of a table of image ``t`` alone is the file's value at the row's centre."""
    assert (table["time"] == pd.Timestamp(DATES[t])).all()
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    r, c = rasterio.transform.rowcol(TRANSFORM, x, y)
    for band in BANDS:
        with rasterio.open(root / _name(t, band)) as ds:
            expected = ds.read(1)[np.asarray(r), np.asarray(c)].astype(float)
        expected[expected == NODATA] = np.nan
        np.testing.assert_array_equal(table[band].to_numpy(dtype=float), expected)


#: Selections by lists, as users make them: (the selection, the (date, band) files it keeps).
SELECTIONS = {
    "stackstac": ('cube = cube.sel(band=["nir"]).isel(time=[1])', [(1, "nir")]),
    "odc-stac": ('cube = cube[["nir"]].isel(time=[1])', [(1, "nir")]),
}


def selected_table(
    loader: str, selection: str, case: str, files: Any, stack: Any, server: Any, tmp: Path
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The table of ``loader``'s cube after ``selection``, extracted in a fresh process that
    fetched at most ALLOWANCE x the tile reader's bytes of ``files``; and the covered rows
    and columns."""
    geometry = CASES[case]
    rows, cols = covered(geometry)
    reference = tile_reader_bytes(server, stack, rows, cols, files)
    out = tmp / "table.pkl"
    script = selected_extraction(loader, selection, geometry, stack["items"], out)
    requests, size, _ = fetched(server, script)
    assert size <= ALLOWANCE * reference, (loader, selection, case, requests, size, reference)
    return pd.read_pickle(out), rows, cols


def selected_extraction(
    loader: str, selection: str, geometry: shapely.Geometry, items: Any, out: Path
) -> str:
    """The extraction script of ``loader`` with ``selection`` (a line of code changing
    ``cube``) run first, and a check that the plan still reads storage blocks."""
    script = extraction(loader, geometry, items, out).replace(
        "        table = cube.ee.get_region",
        f"        {selection}\n"
        "        for r in cube.ee.plan(shapely.from_wkt(GEOMETRY), geometry_crs=UTM).reads():\n"
        "            assert r.granularity.startswith('storage blocks'), r\n"
        "        table = cube.ee.get_region",
    )
    return f"GEOMETRY = {geometry.wkt!r}\nUTM = {UTM!r}\n" + textwrap.dedent(script)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("loader", sorted(SELECTIONS))
def test_selections_by_lists_still_read_only_the_covered_tiles(
    loader, case, stack, range_server, tmp_path
):
    # sel(band=[...]) and isel(time=[...]) put a take of dask's between the loader's chunks
    # and the window: the window is read below it, through the loader's reader.
    selection, files = SELECTIONS[loader]
    table, rows, _ = selected_table(loader, selection, case, files, stack, range_server, tmp_path)
    assert list(table.columns[4:]) == ["nir"]
    assert len(table) == len(rows)
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    with rasterio.open(stack["root"] / _name(1, "nir")) as ds:
        values = ds.read(1)
    r, c = rasterio.transform.rowcol(TRANSFORM, x, y)
    expected = values[np.asarray(r), np.asarray(c)].astype(float)
    expected[expected == NODATA] = np.nan
    np.testing.assert_array_equal(table["nir"].to_numpy(dtype=float), expected)
    assert (table["time"] == pd.Timestamp(DATES[1])).all()


#: Selections by scalars, which drop the picked dim: (loader, the selection, the (date, band)
#: files it keeps). Negative positions are dask's to normalise.
SCALAR_SELECTIONS = {
    "stackstac-band": ("stackstac", 'cube = cube.sel(band="nir")', [(0, "nir"), (1, "nir")]),
    "stackstac-time": ("stackstac", "cube = cube.isel(time=-1)", [(1, "red"), (1, "nir")]),
    "stackstac-both": ("stackstac", 'cube = cube.isel(time=1).sel(band="nir")', [(1, "nir")]),
    # Chunks of 2 images x 2 bands: the reader is given the picked band's files alone.
    "stackstac-band-in-chunk": (
        "stackstac",
        "cube = stackstac.stack(items, dtype='int16', fill_value=np.int16(-9999), "
        "rescale=False, chunksize=(2, 2, 1024, 1024)).sel(band='nir')",
        [(0, "nir"), (1, "nir")],
    ),
    "odc-stac-time": ("odc-stac", "cube = cube.isel(time=-1)", [(1, "red"), (1, "nir")]),
    "odc-stac-both": ("odc-stac", 'cube = cube["nir"].isel(time=1)', [(1, "nir")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("selection", sorted(SCALAR_SELECTIONS))
def test_selections_by_scalars_still_read_only_the_covered_tiles(
    selection, case, stack, range_server, tmp_path
):
    # sel(band="nir") and isel(time=1) put dask's integer pick between the loader's chunks
    # and the window: the window is read below it (one image or band wide), through the
    # loader's reader, given only the picked files' readers, and picked after.
    loader, code, files = SCALAR_SELECTIONS[selection]
    table, rows, _ = selected_table(loader, code, case, files, stack, range_server, tmp_path)
    dates = sorted({t for t, _ in files})
    assert len(table) == len(rows) * len(dates)
    columns = list(table.columns[4:])
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    for t, band in files:
        # A band picked by a scalar is the array's one column, named after the array.
        column = band if band in columns else columns[0]
        assert len(columns) == len({b for _, b in files})
        here = (table["time"] == pd.Timestamp(DATES[t])).to_numpy()
        with rasterio.open(stack["root"] / _name(t, band)) as ds:
            values = ds.read(1)
        r, c = rasterio.transform.rowcol(TRANSFORM, x[here], y[here])
        expected = values[np.asarray(r), np.asarray(c)].astype(float)
        expected[expected == NODATA] = np.nan
        np.testing.assert_array_equal(table[column].to_numpy(dtype=float)[here], expected)


def test_odc_stacs_chunk_task_reads_each_image_from_its_own_sources(stack):
    # What a pick inside a chunk of several images relies on: odc-stac's chunk task is
    # _dask_loader_tyx(sources, tiles, (iy, ix), ...), ``sources`` a list with one list per
    # image of the chunk, in time order, of the tasks opening that image's files.
    import dask.core
    import odc.loader._builder
    import odc.stac

    items = [pystac.Item.from_dict(d) for d in json.loads(stack["items"].read_text())]
    data = odc.stac.load(items, chunks={"time": 2})["nir"].data
    (key,) = dask.core.flatten(data.__dask_keys__())
    task = data.dask[key]
    assert task.func is odc.loader._builder._dask_loader_tyx
    per_image = task.args[0].args
    assert len(per_image) == len(DATES)
    for t, refs in enumerate(per_image):
        (ref,) = refs.args
        opener = data.dask[ref.key]  # (_dask_open_reader, RasterSource, driver, env, state)
        assert opener[0] is odc.loader._builder._dask_open_reader
        assert opener[1].uri == f"{stack['url']}/{_name(t, 'nir')}"


@pytest.mark.parametrize("pick", [1, [1]], ids=["scalar", "list"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_pick_inside_an_odc_stac_chunk_of_several_images_reads_that_image_alone(
    case, pick, stack, range_server, tmp_path
):
    # isel(time=1) of a chunk of 2 images: odc-stac's loader is given the picked image's
    # sources alone and the window's GeoBox, so only that image's covered tiles are fetched
    # (before: the whole chunk, both images, every tile). isel(time=[1]) puts dask's take
    # there instead; the loader is given the listed images' sources, in the list's order.
    # plan() says it reads blocks.
    selection = f"cube = odc.stac.load(items, chunks={{'time': 2}}).isel(time={pick!r})"
    files = [(1, "red"), (1, "nir")]
    table, rows, cols = selected_table(
        "odc-stac", selection, case, files, stack, range_server, tmp_path
    )
    assert len(table) == len(rows)
    check_image_values(table, stack["root"], 1)
    # The plan's estimate: one image's covered tiles per band, as the files' tags count them.
    import odc.stac

    items = [pystac.Item.from_dict(d) for d in json.loads(stack["items"].read_text())]
    picked = odc.stac.load(items, chunks={"time": 2}).isel(time=pick)
    with raise_if_dask_computes(0):
        reads = picked.ee.plan(CASES[case], geometry_crs=UTM).reads()
    assert all(r.granularity.startswith(f"storage blocks {TILE} x {TILE}") for r in reads)
    tiles = len(set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True)))
    assert sum(r.blocks for r in reads) == tiles * len(BANDS)
    for r in reads:
        assert r.fetch_bytes == first_file_tile_bytes(stack["root"], r.granularity, rows, cols)


@pytest.mark.parametrize("images", [[1, 0, 1], [0, 1], [1]])
@pytest.mark.parametrize("per_chunk", [1, 2])
def test_a_list_inside_an_odc_stac_chunk_keeps_its_order_and_repeats(
    images, per_chunk, stack, range_server
):
    # isel(time=[1, 0, 1]) reads the listed images in the list's order, repeats included:
    # the table is the same as from the whole images, computed by dask.
    import odc.stac

    items = [pystac.Item.from_dict(d) for d in json.loads(stack["items"].read_text())]
    cube = odc.stac.load(items, chunks={"time": per_chunk}).isel(time=images)
    geometry = CASES["points"]
    table = cube.ee.get_region(geometry, geometry_crs=UTM)
    expected = cube.compute().ee.get_region(geometry, geometry_crs=UTM)
    pd.testing.assert_frame_equal(table, expected)
    n = len(table) // len(images)
    assert table["time"].tolist()[::n] == [pd.Timestamp(DATES[t]) for t in images]


def test_a_sel_inside_an_odc_stac_chunk_of_several_images_and_chunks_reads_that_image_alone(
    stack, range_server, tmp_path
):
    # The same by a label, on chunks of 2 images x 1024 x 1024 (4 tiles): the points' tiles
    # of the first image only.
    selection = (
        "cube = odc.stac.load(items, chunks={'time': 2, 'x': 1024, 'y': 1024})"
        ".sel(time=np.datetime64('2022-05-03T00:00:00'))"
    )
    files = [(0, "red"), (0, "nir")]
    table, rows, _ = selected_table(
        "odc-stac", selection, "points", files, stack, range_server, tmp_path
    )
    assert len(table) == len(rows)
    check_image_values(table, stack["root"], 0)


#: Images of 3072 x 3072 int16 (13.7 MiB stored each, 36 tiles): more stored bytes than GDAL
#: fetches for one read in one multi-range request by default (10 MiB).
LARGE = 3072


@pytest.fixture(scope="module")
def large_stack(range_server: Any) -> dict[str, Any]:
    """4 dates x 2 bands of LARGE x LARGE COGs on the server, and their STAC items."""
    root = range_server.root / "large"
    root.mkdir(exist_ok=True)
    dates = [dt.datetime(2022, 6, 1 + t, tzinfo=dt.UTC) for t in range(4)]
    items = write_stack(root, f"{range_server.url}/large", LARGE, dates, 61, "{}_{}.tif".format)
    (root / "items.json").write_text(json.dumps(items))
    return {"items": root / "items.json", "root": root, "files": sorted(root.glob("*.tif"))}


def test_odc_stac_fetches_each_tile_of_large_images_read_whole_in_parallel_once(
    large_stack, range_server, tmp_path
):
    # A point in every tile: each image is one chunk, read whole, several at once. GDAL
    # fetched the first 10 MiB of each read's tiles in one multi-range request and the rest
    # by readahead through /vsicurl/'s shared 16 MB cache, which the other reads in flight
    # evicted before use: ranges fetched twice (1.05-1.08x the tiles' bytes on the 36 larger
    # images of benchmarks.cogs). The reads raise GDAL's limit to the window's bytes.
    points = shapely.MultiPoint(
        [
            (X0 + RES * (c * TILE + 100.5), Y0 - RES * (r * TILE + 200.5))
            for r in range(LARGE // TILE)
            for c in range(LARGE // TILE)
        ]
    )
    out = tmp_path / "table.pkl"
    script = extraction("odc-stac", points, large_stack["items"], out).replace(
        "        table = cube.ee.get_region",
        "        assert cube.red.data.chunksize == (1, 3072, 3072), cube.red.data.chunks\n"
        "        table = cube.ee.get_region",
    )
    requests, size, _ = fetched(range_server, script)
    floor = 0
    for path in large_stack["files"]:
        with rasterio.open(path) as ds:
            floor += sum(
                int(ds.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1))
                for ty in range(LARGE // TILE)
                for tx in range(LARGE // TILE)
            )
    files = len(large_stack["files"])
    # Each file: its 16 KB header and its tiles in one request (measured: 17 requests and
    # 25-42 KB over the tiles' bytes for the 8 files; before, 53-60 and 240-300 KB).
    assert floor <= size <= floor + files * 16 * 1024, (size, floor, requests)
    assert requests <= 3 * files, (size, floor, requests)
    table = pd.read_pickle(out)
    assert len(table) == (LARGE // TILE) ** 2 * 4
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    r, c = rasterio.transform.rowcol(TRANSFORM, x, y)
    for t in range(4):
        here = (table["time"] == pd.Timestamp(dt.datetime(2022, 6, 1 + t))).to_numpy()
        for band in BANDS:
            with rasterio.open(large_stack["root"] / f"{t}_{band}.tif") as ds:
                values = ds.read(1)
            expected = values[np.asarray(r)[here], np.asarray(c)[here]].astype(float)
            expected[expected == NODATA] = np.nan
            np.testing.assert_array_equal(table[band].to_numpy(dtype=float)[here], expected)


def test_odc_stac_reads_raise_gdals_raw_block_limit_unless_the_user_set_it(stack):
    # odc-stac's chunk task applies its 8th argument, the GDAL options captured at load
    # time, around each read: the reads add the limit there, and keep a value the user set.
    import dask.core
    import odc.stac

    from xr_getregion.loaders import whole_chunk_tasks

    items = [pystac.Item.from_dict(d) for d in json.loads(stack["items"].read_text())]
    limits = []
    for env in ({}, {"GDAL_MAX_RAW_BLOCK_CACHE_SIZE": 12345}):
        with rasterio.Env(**env):
            data = odc.stac.load(items, chunks={})["red"].data
        block = next(iter(dask.core.flatten(data.__dask_keys__())))
        tasks = whole_chunk_tasks(data, block, ("read", 0))
        assert tasks is not None
        limits.append(tasks["read", 0].args[7]["GDAL_MAX_RAW_BLOCK_CACHE_SIZE"])
    assert limits == [str(8 * SIZE * SIZE), 12345]


def build(loader: str, items_path: Path) -> Any:
    """The cube as the fresh processes above build it, here in-process."""
    import pystac

    import xr_getregion  # noqa: F401  (registers .ee)

    raw = json.loads(items_path.read_text())
    scope: dict[str, Any] = {"raw": raw, "items": [pystac.Item.from_dict(d) for d in raw]}
    exec("import numpy as np\n" + textwrap.dedent(LOADERS[loader]), scope)
    return scope["cube"]


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_plan_reports_the_storage_blocks_it_will_read(loader, stack):
    geometry = CASES["points"]
    rows, cols = covered(geometry)
    tiles = len(set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True)))
    cube = build(loader, stack["items"])
    reads = cube.ee.plan(geometry, geometry_crs=UTM).reads()
    assert sum(r.blocks for r in reads) == tiles * len(DATES) * len(BANDS)
    assert all(r.granularity.startswith(f"storage blocks {TILE} x {TILE}") for r in reads)
    itemsize = (
        next(iter(cube.data_vars.values())).dtype.itemsize
        if hasattr(cube, "data_vars")
        else cube.dtype.itemsize
    )
    assert sum(r.nbytes for r in reads) == tiles * len(DATES) * len(BANDS) * TILE * TILE * itemsize


def first_file_tile_bytes(root: Path, granularity: str, rows: Any, cols: Any) -> int:
    """The bytes of the tiles holding those pixels in the one file ``granularity`` names
    (``"... (from <url>)"``), from the TIFF metadata."""
    name = granularity.rsplit("(from ", 1)[1].rstrip(")").split("/stack/", 1)[1]
    tiles = set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True))
    with rasterio.open(root / "stack" / name) as ds:
        return sum(
            int(ds.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1)) for ty, tx in tiles
        )


#: How far the bytes fetched may exceed the stored bytes ``plan().reads()`` reports, per file
#: read: its header (16 KB, 32 KB where GDAL reads on into the first tile) and GDAL's rounding
#: of each tile's range out to its 16 KB read chunks (both ends of each run of tiles).
PER_FILE = 32 * 1024
PER_TILE = 2 * 16 * 1024


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_plan_reports_the_bytes_it_will_fetch(loader, case, stack, range_server, tmp_path):
    geometry = CASES[case]
    rows, cols = covered(geometry)
    files = len(DATES) * len(BANDS)
    n_tiles = len(set(zip((rows // TILE).tolist(), (cols // TILE).tolist(), strict=True)))
    cube = build(loader, stack["items"])
    with raise_if_dask_computes(0):
        reads = cube.ee.plan(geometry, geometry_crs=UTM).reads()
    fetch = sum(r.fetch_bytes for r in reads)
    # Exact for the file the layout was learnt from, scaled to the files read (GDAL's own
    # TIFF tags, read here)...
    for r in reads:
        planes = files // len(reads)
        assert r.fetch_bytes == planes * first_file_tile_bytes(
            stack["root"], r.granularity, rows, cols
        )
    # ... and an estimate for all files: their tiles compress differently (within 1% here).
    floor = tile_bytes(stack["root"], rows, cols)
    assert abs(fetch - floor) <= 0.01 * floor, (fetch, floor)
    # What the server sends for the same extraction in a fresh process: those tiles, the
    # headers, GDAL's rounding.
    out = tmp_path / "table.pkl"
    _, size, _ = fetched(range_server, extraction(loader, geometry, stack["items"], out))
    assert 0.99 * fetch <= size <= fetch + files * (PER_FILE + n_tiles * PER_TILE), (size, fetch)


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_the_bytes_to_fetch_cost_one_header_read(loader, stack, range_server, tmp_path):
    # plan().reads() in a fresh process fetches one file's header per array of the cube (the
    # file its tile layout is learnt from: odc-stac gives one array per band), 16 KB in one
    # request, and nothing more for the tiles' byte counts: the COG header holds them.
    script = extraction(loader, CASES["points"], stack["items"], tmp_path / "unused.pkl")
    script = script.replace("        table = cube.ee.get_region", "        reads = cube.ee.plan")
    script = script.replace(
        "        table.to_pickle(", "        print([r.fetch_bytes for r in reads], "
    )
    script = script.replace('geometry_crs="EPSG:32615")', 'geometry_crs="EPSG:32615").reads()')
    requests, size, out = fetched(range_server, textwrap.dedent(script))
    assert "None" not in out and out.startswith("["), out
    arrays = {"odc-stac": len(BANDS), "stackstac": 1}[loader]
    paths = [r["path"] for r in range_server.requests() if r["bytes"]]
    assert len(set(paths)) == requests == arrays, paths
    assert size == arrays * 16 * 1024


@pytest.mark.parametrize("user_env", [False, True])
def test_stackstac_opens_files_with_16_kb_header_reads_unless_the_user_set_its_options(
    user_env, stack, range_server, tmp_path
):
    # stackstac's default options open files through GDAL's VSI_CACHE, 32 KB header reads;
    # our reads open them without it (16 KB, as GDAL and the other loaders do). Options the
    # user gave stackstac are theirs: a gdal_env of the user's keeps its VSI_CACHE.
    out = tmp_path / "table.pkl"
    script = extraction("stackstac", CASES["polygon"], stack["items"], out)
    if user_env:
        script = script.replace(
            "rescale=False)",
            "rescale=False, gdal_env=stackstac.DEFAULT_GDAL_ENV.updated("
            "always=dict(GDAL_HTTP_MAX_RETRY='1')))",
        )
    fetched(range_server, script)
    headers = [r["bytes"] for r in range_server.requests() if r["bytes"] and r["start"] == 0]
    assert len(headers) == len(BANDS) * len(DATES)
    # The plan reads the first file's header itself (16 KB), before stackstac opens it.
    assert headers.count(32768) == (len(headers) - 1 if user_env else 0)
    check_values(pd.read_pickle(out), stack["root"], len(covered(CASES["polygon"])[0]))


def test_stackstac_reads_a_region_across_its_chunks_as_one_window_per_image(
    stack, range_server, tmp_path
):
    # stackstac's reader reads any window of an image: the 4 tiles a square across the
    # corner of 4 chunks touches are one read per file, not one per chunk, and GDAL fetches
    # each row of 2 tiles with one request. (A tile-by-tile reader is no reference here:
    # reading a file's tiles one after another, GDAL reads ahead and fetched 1.6x the floor.)
    cube = build("stackstac", stack["items"])
    assert cube.data.chunksize[2:] == (1024, 1024)
    (estimate,) = cube.ee.plan(ACROSS, geometry_crs=UTM).reads()
    files = len(DATES) * len(BANDS)
    assert (estimate.reads, estimate.blocks) == (files, 4 * files)
    rows, cols = covered(ACROSS)
    floor = tile_bytes(stack["root"], rows, cols)
    out = tmp_path / "table.pkl"
    requests, size, _ = fetched(range_server, extraction("stackstac", ACROSS, stack["items"], out))
    # Per file: its header (16 KB, 32 KB where GDAL reads on into the first tile) and 2 rows
    # of 2 tiles; GDAL rounds each range out to 16 KB.
    assert requests <= files * (1 + 2 + 1)
    assert size <= floor + files * (32 + 2 * 2 * 16) * 1024, (requests, size, floor)
    check_values(pd.read_pickle(out), stack["root"], len(rows))


class _CountingLock:
    """Stands for the lock inside rioxarray's process-wide lock: counts who takes it to wait
    for it (a read, or a check of a thread's handle), not who only looks whether it is free;
    ``busy`` makes every look find it taken."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.takers, self.busy = lock, [], False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        import threading

        if not blocking:  # a look at whether it is free, not a read or check under it
            return not self.busy and self.lock.acquire(False)  # busy: as if a read held it
        self.takers.append(threading.current_thread().name)
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *args: Any) -> None:
        self.release()

    def locked(self) -> bool:
        return self.lock.locked()


@pytest.fixture(autouse=True)
def _no_kept_spares() -> Any:
    """Each test starts and ends without spare handles kept by another."""
    from xr_getregion.loaders import close_spares

    close_spares()
    yield
    close_spares()


@pytest.fixture
def rioxarray_lock(monkeypatch: pytest.MonkeyPatch) -> _CountingLock:
    """rioxarray's default lock, counting the threads that take it."""
    import rioxarray._io

    counting = _CountingLock(rioxarray._io.RASTERIO_LOCK.lock)
    monkeypatch.setattr(rioxarray._io.RASTERIO_LOCK, "lock", counting)
    return counting


def _geotiff(
    path: Path, offset: int = 0, data: np.ndarray | None = None, nodata: float = -9999
) -> np.ndarray:
    """A GeoTIFF of 64-tiles at ``path`` holding ``data`` (bands, 300, 260), by default 4
    int16 bands with nodata in their top-left 5 x 5: its values."""
    if data is None:
        data = np.random.default_rng(0).integers(0, 1000, (4, 300, 260)).astype(np.int16)
        data += offset
        data[:, :5, :5] = -9999
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=UTM,
        transform=rasterio.transform.from_origin(X0, Y0, RES, RES),
        nodata=nodata,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as dst:
        dst.write(data)
    return data


#: Pixels in four 64-tiles far apart, one inside the nodata corner: four window reads.
FOUR_TILES = shapely.union_all(
    [
        shapely.box(X0 + RES * c, Y0 - RES * (r + 3), X0 + RES * (c + 3), Y0 - RES * r)
        for r, c in ((2, 2), (2, 200), (200, 2), (200, 200))
    ]
)


def _check_four_tiles(table: pd.DataFrame, data: np.ndarray) -> None:
    """The table of :data:`FOUR_TILES` holds the file's values (``data``), nodata masked."""
    assert len(table) == 4 * 9
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    transform = rasterio.transform.from_origin(X0, Y0, RES, RES)
    rows, cols = (np.asarray(v) for v in rasterio.transform.rowcol(transform, x, y))
    for b in range(4):
        expected = data[b, rows, cols].astype(float)
        expected[expected == -9999] = np.nan  # the table masks nodata, masked or not
        np.testing.assert_array_equal(table[str(b + 1)].to_numpy(dtype=float), expected)
    assert int(table["1"].isna().sum()) == 9  # 3 x 3 inside the corner's 5 x 5


def _io_takers(lock: _CountingLock) -> int:
    """How many times the package's I/O threads took rioxarray's lock."""
    from xr_getregion.loaders import IO_THREAD_PREFIX

    return len([t for t in lock.takers if t.startswith(IO_THREAD_PREFIX)])


def _open_handles() -> int:
    """rasterio datasets open in this process, after a garbage collection."""
    import gc

    from rasterio.io import DatasetReader

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, DatasetReader) and not o.closed)


@pytest.mark.parametrize("masked", [False, True])
def test_rioxarray_windows_are_read_without_its_process_wide_lock(
    range_server, rioxarray_lock, masked
):
    # open_rasterio's default lock=None reads every file through one cached handle under one
    # lock for the whole process (rioxarray._io.RASTERIO_LOCK): one read at a time. Window
    # reads of a remote GeoTIFF run rioxarray's own read on a handle of the reading thread
    # instead, taking the lock once, to check that handle against rioxarray's: on one I/O
    # thread, once in all, for four windows. The values are rasterio's (masked: NaN where
    # the file has nodata), and no handle is left open after.
    import dask
    import rioxarray

    from xr_getregion.loaders import _rioxarray_wrapper

    name = f"lock-free-{masked}.tif"
    data = _geotiff(range_server.root / name)
    layer = rioxarray.open_rasterio(
        f"{range_server.url}/{name}", chunks={"x": 64, "y": 64}, masked=masked
    )
    # What the reads rely on, pinned: each chunk task reads rioxarray's wrapper under the
    # default lock, through a cached file manager.
    (node,) = [v for k, v in dict(layer.data.dask).items() if isinstance(k, str)]
    assert _rioxarray_wrapper(getattr(node, "value", node)) is not None
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    handles = _open_handles()
    rioxarray_lock.busy = True  # other reads keep it: a thread opens a handle of its own
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    assert _io_takers(rioxarray_lock) == 1
    _check_four_tiles(table, data)
    from xr_getregion.loaders import close_spares

    close_spares()  # the file's spare is kept for the next extraction until then
    assert _open_handles() == handles  # the thread's handle closed with it


def test_rioxarray_windows_are_read_through_a_spare_handle_made_ready_before_the_reads(
    range_server, rioxarray_lock
):
    # Before the reads, the file gets one spare handle, checked against rioxarray's under its
    # lock; the four windows are then read through it, one after the other, without the lock.
    # It is kept for the next extraction, until close_spares().
    import dask
    import rioxarray

    data = _geotiff(range_server.root / "spare.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/spare.tif", chunks={"x": 64, "y": 64})
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    handles = _open_handles()
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    assert _io_takers(rioxarray_lock) == 1  # the spare's check
    _check_four_tiles(table, data)
    assert _open_handles() == handles + 1
    from xr_getregion.loaders import close_spares

    close_spares()
    assert _open_handles() == handles


def test_rioxarray_windows_are_read_through_its_handle_while_its_lock_is_free(
    range_server, rioxarray_lock, monkeypatch
):
    # Without a spare (past SPARE_FILES files, or where one could not be made ready), while
    # no other read holds rioxarray's lock, a window is read through rioxarray's own handle,
    # as rioxarray would, and no handle of the thread's is opened: on one I/O thread, each of
    # the four windows takes the lock for its read.
    import dask
    import rioxarray

    from xr_getregion import loaders

    monkeypatch.setattr(loaders, "SPARE_FILES", 0)
    data = _geotiff(range_server.root / "free.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/free.tif", chunks={"x": 64, "y": 64})
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    assert _io_takers(rioxarray_lock) == 4
    _check_four_tiles(table, data)


def _layer_array(layer: Any) -> Any:
    """The lazily indexed file behind a one-file rioxarray layer's dask graph."""
    (node,) = [v for k, v in dict(layer.data.dask).items() if isinstance(k, str)]
    return getattr(node, "value", node)


def _read_task(key: str, array: Any) -> Any:
    """A task reading the first 64 x 64 window of ``array``'s first band as the reads do."""
    from dask._task_spec import DataNode, Task

    from xr_getregion import loaders

    window = (slice(0, 1), slice(0, 64), slice(0, 64))
    return Task(key, loaders._io_getter, DataNode(None, array), DataNode(None, window))


def _boom(*args: Any) -> None:
    raise ValueError("boom")


def test_spare_handles_are_kept_when_an_extraction_fails(range_server):
    # A read that fails ends the compute while other reads may still run: nothing closes a
    # spare then (a second Ctrl-C once ended the pool's shutdown while reads still ran on
    # spares, and closing them under their reads crashed GDAL). The spare is kept, idle, and
    # close_spares() closes it.
    import rioxarray
    from dask._task_spec import Task, TaskRef
    from dask.delayed import Delayed

    from xr_getregion import loaders, reads

    _geotiff(range_server.root / "fails.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/fails.tif", chunks={"x": 64, "y": 64})
    handles = _open_handles()
    graph = {
        "read": _read_task("read", _layer_array(layer)),
        "boom": Task("boom", _boom, TaskRef("read")),
    }
    with pytest.raises(ValueError, match="boom"):
        reads.compute(Delayed("boom", graph))
    (spare,) = loaders._IDLE.values()
    assert not spare.dataset.closed
    loaders.close_spares()
    assert spare.dataset.closed and _open_handles() == handles


class _FakeHandle:
    """Stands for a rasterio dataset in the tests of the idle spares' bookkeeping."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_spares_past_spare_files_are_closed_least_recently_used_first_and_never_lent_ones(
    monkeypatch,
):
    from xr_getregion import loaders

    monkeypatch.setattr(loaders, "SPARE_FILES", 2)
    spares = {key: loaders._Spare(_FakeHandle(), None) for key in "abcd"}
    for key in "abc":
        loaders._keep_spare(key, spares[key])
    assert spares["a"].dataset.closed  # the least recently used, past 2
    lent = loaders._take_spare("b")
    assert lent is spares["b"] and loaders._take_spare("b") is None  # one read at a time
    loaders._keep_spare("d", spares["d"])  # c and d idle, b lent: none to close
    assert not any(spares[k].dataset.closed for k in "bcd")
    loaders._keep_spare("b", lent)  # given back: c, the least recently used, goes
    assert spares["c"].dataset.closed and not lent.dataset.closed
    twin = loaders._Spare(_FakeHandle(), None)
    loaders._keep_spare("b", twin)  # a second spare of a file with an idle one
    assert twin.dataset.closed
    loaders.close_spares()
    assert all(spares[k].dataset.closed for k in "bd")


def test_a_spare_whose_manager_is_collected_while_the_idle_lock_is_held_closes_on_release(
    monkeypatch,
):
    # weakref.finalize's callback runs at whatever allocation frees the manager, maybe in a
    # thread holding the lock of the idle spares (not reentrant): it must not wait for that
    # lock (it would wait forever), and the spare is closed once the lock is released. Here
    # a cycle holds the manager, and a collection runs while the lock is held, in a thread
    # that must end.
    import gc
    import threading

    from xr_getregion import loaders

    class Manager:  # a file manager in a reference cycle, as a cube's graph holds it
        def __init__(self) -> None:
            self.cycle = self

    def keep(key: str) -> loaders._Spare:
        manager = Manager()
        spare = loaders._Spare(_FakeHandle(), None)
        loaders._keep_spare(key, spare)
        loaders._watch(manager, key)
        return spare

    # A lock of the test's own: one a stuck thread holds is not left to the next tests.
    monkeypatch.setattr(loaders, "_IDLE_LOCK", threading.Lock())
    gc.collect()
    spare = keep("held")
    seen: dict[str, bool] = {}

    def collect_under_the_lock() -> None:
        with loaders._idle():
            gc.collect()  # the manager's finalizer runs here
            seen["closed under the lock"] = spare.dataset.closed
        seen["closed after"] = spare.dataset.closed

    thread = threading.Thread(target=collect_under_the_lock, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the finalizer waited for the lock its own thread holds"
    assert seen == {"closed under the lock": False, "closed after": True}
    assert "held" not in loaders._IDLE and "held" not in loaders._WATCHED
    spare = keep("free")
    gc.collect()  # the lock is free: closed at once
    assert spare.dataset.closed and "free" not in {*loaders._IDLE, *loaders._WATCHED}


def test_a_kept_spare_serves_the_next_extraction_and_is_replaced_where_theirs_changed(
    range_server, monkeypatch
):
    # A second extraction opens no handle: it reads through the spare the first one kept,
    # without checking it again while rioxarray's handle is the one it was checked against.
    # Where xarray's cache of files has opened rioxarray's handle again (its manager closed
    # here), the kept spare is closed, and a new one opened and checked against the new
    # handle before any read.
    import dask
    import rioxarray

    from xr_getregion import loaders

    data = _geotiff(range_server.root / "kept.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/kept.tif", chunks={"x": 64, "y": 64})
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    counts = {"open": 0, "check": 0}
    real_open, real_check = loaders._open_twin, loaders._checked_against

    def counting_open(wrapper: Any) -> Any:
        counts["open"] += 1
        return real_open(wrapper)

    def counting_check(wrapper: Any, dataset: Any) -> Any:
        counts["check"] += 1
        return real_check(wrapper, dataset)

    monkeypatch.setattr(loaders, "_open_twin", counting_open)
    monkeypatch.setattr(loaders, "_checked_against", counting_check)
    with dask.config.set({"xr_getregion.io_threads": 1}):
        for expected in ({"open": 1, "check": 1}, {"open": 1, "check": 1}):
            _check_four_tiles(cube.ee.get_region(FOUR_TILES, geometry_crs=UTM), data)
            assert counts == expected
        (kept,) = loaders._IDLE.values()
        loaders._rioxarray_wrapper(_layer_array(layer)).manager.close()
        _check_four_tiles(cube.ee.get_region(FOUR_TILES, geometry_crs=UTM), data)
    assert counts == {"open": 2, "check": 2}
    assert kept.dataset.closed
    loaders.close_spares()


def test_a_spare_kept_from_before_a_file_was_rewritten_reads_no_old_values(range_server, tmp_path):
    # A pipeline rewrites a COG in place (same layout, new values) and xarray's cache of
    # files opens rioxarray's handle again (evicted, or its manager closed, as here): rioxarray
    # reads the new values. A spare kept from before still held GDAL's decoded tiles of the
    # old file; its check (the file's description, unchanged) passed, and the next table gave
    # old values for the tiles read before (a review found it). GDAL's cache of ranges is off
    # for the server, as for a file not read since long: only a handle's own cache is left.
    new = range_server.root / "rewritten.new.tif"
    _geotiff(range_server.root / "rewritten.tif")
    data = _geotiff(new, offset=1)
    url = f"{range_server.url}/rewritten.tif"
    out = tmp_path / "table.pkl"
    fetched(
        range_server,
        f"""
        import os
        os.environ["CPL_VSIL_CURL_NON_CACHED"] = "/vsicurl/{range_server.url}"
        import dask, numpy as np, rioxarray, shapely
        import xr_getregion
        from xr_getregion import loaders

        layer = rioxarray.open_rasterio({url!r}, chunks={{"x": 64, "y": 64}})
        cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
        region = shapely.from_wkt({FOUR_TILES.wkt!r})
        with dask.config.set({{"xr_getregion.io_threads": 1}}):
            cube.ee.get_region(region, geometry_crs={UTM!r})
            os.replace({str(new)!r}, {str(range_server.root / "rewritten.tif")!r})
            node = next(v for k, v in dict(layer.data.dask).items() if isinstance(k, str))
            loaders._rioxarray_wrapper(getattr(node, "value", node)).manager.close()
            table = cube.ee.get_region(region, geometry_crs={UTM!r})
        table.to_pickle({str(out)!r})
        """,
    )
    _check_four_tiles(pd.read_pickle(out), data)


def test_a_cubes_spares_are_closed_when_it_is_collected(range_server):
    # xarray gives each file manager its own key: a spare kept for a cube no one holds any
    # more would never be taken again, and would hold its file open and push out the spares
    # of live cubes (a review saw 256 of them, 84 MB, after reopening a cube in a loop).
    import gc

    import dask
    import rioxarray

    from xr_getregion import loaders

    _geotiff(range_server.root / "dropped.tif")  # no spare kept: see _no_kept_spares
    handles = _open_handles()
    for _ in range(3):
        layer = rioxarray.open_rasterio(
            f"{range_server.url}/dropped.tif", chunks={"x": 64, "y": 64}
        )
        cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
        with dask.config.set({"xr_getregion.io_threads": 1}):
            cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
        (key,) = loaders._IDLE  # the last cube's alone
        assert key in loaders._WATCHED
        del layer, cube
        gc.collect()  # the cube's graph holds cycles
        assert key not in loaders._IDLE and key not in loaders._WATCHED
    assert _open_handles() == handles  # collected: rioxarray's handle and the spare closed


def test_float_files_with_nan_nodata_get_a_spare_handle(range_server, rioxarray_lock):
    # NaN != NaN: a description holding a NaN nodata equalled no other, and every read of
    # such a file (common for float COGs) waited on rioxarray's lock.
    import dask
    import rioxarray

    data = np.random.default_rng(3).random((1, 300, 260)).astype(np.float32)
    data[:, :5, :5] = np.nan
    _geotiff(range_server.root / "nan.tif", data=data, nodata=float("nan"))
    layer = rioxarray.open_rasterio(f"{range_server.url}/nan.tif", chunks={"x": 64, "y": 64})
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    assert _io_takers(rioxarray_lock) == 1  # the spare's check: every window read through it
    x, y = TO_UTM.transform(table["longitude"].to_numpy(), table["latitude"].to_numpy())
    rows, cols = rasterio.transform.rowcol(rasterio.transform.from_origin(X0, Y0, RES, RES), x, y)
    expected = data[0, np.asarray(rows), np.asarray(cols)]
    np.testing.assert_array_equal(table["1"].to_numpy(dtype=float), expected.astype(float))
    assert int(table["1"].isna().sum()) == 9


def test_at_most_spare_files_files_get_a_spare_handle(range_server, monkeypatch):
    import rioxarray

    from xr_getregion import loaders
    from xr_getregion.iopool import IOPool

    monkeypatch.setattr(loaders, "SPARE_FILES", 1)
    for name in ("cap-a.tif", "cap-b.tif"):
        _geotiff(range_server.root / name)
    layers = [
        rioxarray.open_rasterio(f"{range_server.url}/{name}", chunks={"x": 64, "y": 64})
        for name in ("cap-a.tif", "cap-b.tif")
    ]
    graph = {f"read-{i}": _read_task(f"read-{i}", _layer_array(x)) for i, x in enumerate(layers)}
    spares = loaders.Spares()
    with IOPool(2, loaders.IO_THREAD_PREFIX) as pool:
        spares.open(graph, pool)
    assert len(loaders._IDLE) == 1  # the other closed, past SPARE_FILES
    loaders.close_spares()


def test_a_spare_handle_that_fails_a_read_is_not_lent_again(
    range_server, rioxarray_lock, monkeypatch
):
    # The read falls back to rioxarray's own handle, which gives its value (or its error);
    # the spare is not given back, so the other windows are read as without one.
    import dask
    import rioxarray

    from xr_getregion import loaders

    real = loaders._read_on
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise rasterio.errors.RasterioIOError("a connection dropped")
        return real(*args, **kwargs)

    monkeypatch.setattr(loaders, "_read_on", flaky)
    data = _geotiff(range_server.root / "flaky.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/flaky.tif", chunks={"x": 64, "y": 64})
    cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    _check_four_tiles(table, data)
    assert len(calls) == 1
    # The spare's check, then each window under rioxarray's lock, free on one thread.
    assert _io_takers(rioxarray_lock) == 5


def test_a_spare_handle_reads_a_file_indexed_before_it_was_chunked(range_server, rioxarray_lock):
    # open_rasterio(...).isel(...).chunk(...) puts xarray's lazy index between dask's getter
    # and rioxarray's wrapper: the windows read are not the file's, so the spare is made
    # ready by its mask flags alone, and reads the right values.
    import dask
    import rioxarray

    data = _geotiff(range_server.root / "indexed.tif")
    layer = rioxarray.open_rasterio(f"{range_server.url}/indexed.tif").isel(x=slice(1, 250))
    cube = layer.chunk({"x": 64, "y": 64}).expand_dims(time=[np.datetime64("2020-01-01")])
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    _check_four_tiles(table, data)
    assert _io_takers(rioxarray_lock) == 1  # the spare's check: every window read through it


def _header_fetches(range_server: Any, script: str) -> dict[str, int]:
    """Run ``script`` (see :func:`fetched`); how many times each file's first bytes were
    fetched meanwhile."""
    fetched(range_server, script)
    counts: dict[str, int] = {}
    for r in range_server.requests():
        if r["method"] == "GET" and r.get("start") == 0 and r["bytes"]:
            counts[r["path"]] = counts.get(r["path"], 0) + 1
    return counts


@pytest.mark.parametrize("spares", [True, False])
def test_rioxarray_files_first_bytes_are_fetched_once_when_the_tiles_overflow_gdals_cache(
    stack, range_server, tmp_path, spares
):
    # GDAL reads a GeoTIFF's directories and tile index again, from the file's first bytes,
    # at a handle's first pixel read. rioxarray opens its files when the cube is built; with
    # /vsicurl/'s cache of ranges (16 MB by default) smaller than the tiles read, a file read
    # after others finds those bytes gone and fetches them again. Here the cache holds 128 KB:
    # the 4 files' 16 KB headers, which the first ~400 KB tile pushes out. The spare handles,
    # made ready before the reads, fetch each file's first bytes once (when rioxarray opens
    # it); without them (the reference run), the 3 files read after the first fetch them
    # again. One I/O thread: the reads come in turn.
    geometry = CASES["polygon"]
    out = tmp_path / "table.pkl"
    script = extraction("rioxarray", geometry, stack["items"], out)
    setup = 'import os\nos.environ["CPL_VSIL_CURL_CACHE_SIZE"] = "131072"\n'
    setup += 'import dask\ndask.config.set({"xr_getregion.io_threads": 1})\n'
    if not spares:
        setup += "import xr_getregion.loaders\nxr_getregion.loaders.SPARE_FILES = 0\n"
    counts = _header_fetches(range_server, setup + textwrap.dedent(script))
    assert len(counts) == len(DATES) * len(BANDS)
    if spares:
        assert sorted(counts.values()) == [1, 1, 1, 1]
    else:
        assert sorted(counts.values()) == [1, 2, 2, 2]
    check_values(pd.read_pickle(out), stack["root"], len(covered(geometry)[0]))


def test_rioxarray_windows_are_read_through_its_own_handle_where_options_differ(
    range_server, rioxarray_lock, monkeypatch
):
    # rioxarray opens its file once, under whatever rasterio.Env is active then, and reads
    # through that handle; a handle opened later, in a read thread, does not see that Env.
    # Here the Env turns GDAL's .aux.xml sidecars off, and the sidecar declares another
    # nodata: a thread's handle says another nodata than rioxarray's, so every window is read
    # through rioxarray's handle, under its lock, and the table masks exactly what rioxarray
    # masks (a review found a per-thread handle taking the sidecar's nodata).
    import rasterio
    import rioxarray

    data = _geotiff(range_server.root / "pam.tif")
    sidecar = int(data[0, 10, 10])
    (range_server.root / "pam.tif.aux.xml").write_text(
        f'<PAMDataset><PAMRasterBand band="1"><NoDataValue>{sidecar}</NoDataValue>'
        "</PAMRasterBand></PAMDataset>"
    )
    # The S3 server's fixture, when an earlier test started it, tells GDAL through the
    # process's environment not to look for sibling files: a handle would then never see the
    # sidecar. This test needs GDAL's default, and checks that it has it.
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    monkeypatch.delenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", raising=False)
    with rasterio.open(f"{range_server.url}/pam.tif") as elsewhere:
        assert elsewhere.nodata == sidecar
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        cube = rioxarray.open_rasterio(
            f"{range_server.url}/pam.tif", chunks={"x": 128, "y": 128, "band": 1}, masked=True
        )
    cube = cube.expand_dims(time=[np.datetime64("2020-01-01")])
    region = shapely.box(X0, Y0 - RES * 20, X0 + RES * 20, Y0)
    rioxarray_lock.busy = True  # other reads keep it: each thread opens and checks a handle
    table = cube.ee.get_region(region, geometry_crs=UTM)
    expected = cube.isel(band=0, y=slice(0, 20), x=slice(0, 20)).values
    assert len(table) == 400
    # The nodata of the file (the corner's 5 x 5), not the sidecar's.
    assert int(table["1"].isna().sum()) == int(np.isnan(expected).sum()) == 25
    # Each of the 4 band reads took the lock: for its check (a thread's first look) or read.
    assert _io_takers(rioxarray_lock) >= 4


def test_rioxarray_local_files_are_read_through_its_own_handle(tmp_path, rioxarray_lock):
    # A local file replaced since rioxarray opened it is still read, old, through rioxarray's
    # open descriptor; a handle opened now would read the new one. Local files keep
    # rioxarray's handle and lock: the table is rioxarray's.
    import dask
    import rioxarray

    path = tmp_path / "local.tif"
    data = _geotiff(path)
    cube = rioxarray.open_rasterio(path, chunks={"x": 64, "y": 64}).expand_dims(
        time=[np.datetime64("2020-01-01")]
    )
    (tmp_path / "new.tif").unlink(missing_ok=True)
    _geotiff(tmp_path / "new.tif", offset=1)
    os.replace(tmp_path / "new.tif", path)  # same name, same layout, other values
    with dask.config.set({"xr_getregion.io_threads": 1}):
        table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
    _check_four_tiles(table, data)
    assert _io_takers(rioxarray_lock) == 4  # each window's read, under the lock


def test_rioxarray_reads_fall_back_to_its_handle_where_a_thread_cannot_open_or_read(
    range_server, rioxarray_lock
):
    # A thread's open can fail where rioxarray's succeeded (credentials only in the Env of
    # its open), and an option GDAL reads at open can change values unseen
    # (GTIFF_IGNORE_READ_ERRORS): both leave every read to rioxarray's handle.
    import dask
    import rasterio
    import rioxarray

    data = _geotiff(range_server.root / "fallback.tif")
    url = f"{range_server.url}/fallback.tif"
    rioxarray_lock.busy = True  # other reads keep it: a thread would open a handle
    for case in ("open fails", "option set"):
        rioxarray_lock.takers.clear()
        layer = rioxarray.open_rasterio(url, chunks={"x": 64, "y": 64}, cache=False)
        env = rasterio.Env()
        if case == "open fails":
            (node,) = [v for k, v in dict(layer.data.dask).items() if isinstance(k, str)]
            from xr_getregion.loaders import _rioxarray_wrapper

            manager = _rioxarray_wrapper(getattr(node, "value", node)).manager
            manager._opener = _refuse  # rioxarray's handle is open already, and cached
        else:
            env = rasterio.Env(GTIFF_IGNORE_READ_ERRORS="YES")
        cube = layer.expand_dims(time=[np.datetime64("2020-01-01")])
        with env, dask.config.set({"xr_getregion.io_threads": 1}):
            table = cube.ee.get_region(FOUR_TILES, geometry_crs=UTM)
        _check_four_tiles(table, data)
        assert _io_takers(rioxarray_lock) == 4, case  # each read under rioxarray's lock


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise rasterio.errors.RasterioIOError("HTTP 403: no credentials")


def test_a_lock_the_user_gives_rioxarray_is_honoured(stack):
    # Only rioxarray's default lock is left aside: reads under a lock of the user's wait for it.
    import threading

    import rioxarray

    lock = threading.Lock()
    url = f"{stack['url']}/{_name(0, BANDS[0])}"
    cube = rioxarray.open_rasterio(url, chunks=True, lock=lock).squeeze("band", drop=True)
    result: dict[str, Any] = {}
    with lock:
        worker = threading.Thread(
            target=lambda: result.update(
                table=cube.ee.get_region(CASES["polygon"], geometry_crs=UTM)
            ),
            daemon=True,
        )
        worker.start()
        worker.join(3)
        assert worker.is_alive()  # waiting for the lock
    worker.join(60)
    assert not worker.is_alive()
    assert len(result["table"]) == len(covered(CASES["polygon"])[0])


def test_a_cube_computed_from_a_loader_is_read_by_whole_chunks_and_says_so(stack):
    # Arithmetic hides stackstac's reader behind another task: the chunk is read whole, the
    # values are still right, and plan() says how it reads.
    cube = build("stackstac", stack["items"])
    shifted = (cube + np.int16(0)).assign_attrs(cube.attrs)
    geometry = CASES["polygon"]
    (estimate,) = shifted.ee.plan(geometry, geometry_crs=UTM).reads()
    assert estimate.granularity.startswith("dask chunks 1024 x 1024")
    assert estimate.fetch_bytes is None  # the storage behind the computed chunks is unknown
    table = shifted.ee.get_region(geometry, geometry_crs=UTM)
    check_values(table, stack["root"], len(covered(geometry)[0]))


def test_a_sharded_zarr_store_reads_the_inner_chunks_of_its_shards(range_server, tmp_path):
    # A Zarr v3 store over HTTP whose shards (512 x 512) hold inner chunks (128 x 128), opened
    # with a dask chunk per shard: a polygon inside one inner chunk fetches that chunk (and
    # the shard's index), not the shard.
    import xarray as xr

    import xr_getregion  # noqa: F401  (registers .ee)

    rng = np.random.default_rng(5)
    values = rng.normal(size=(2, 1024, 1024)).astype("float32")
    cube = ndvi_cube(values)
    encoding = {"ndvi": {"chunks": (1, 128, 128), "shards": (1, 512, 512)}}
    store = range_server.root / "sharded.zarr"
    dataset = cube.to_dataset().rio.write_crs(UTM)
    dataset["ndvi"].attrs["grid_mapping"] = "spatial_ref"  # CF: the variable names its CRS
    dataset.to_zarr(store, encoding=encoding, zarr_format=3, consolidated=True)
    remote = xr.open_zarr(
        f"{range_server.url}/sharded.zarr", chunks={"y": 512, "x": 512}, decode_coords="all"
    )
    polygon = shapely.box(X0 + RES * 300, Y0 - RES * 330, X0 + RES * 340, Y0 - RES * 290)
    (estimate,) = remote.ee.plan(polygon, geometry_crs=UTM).reads()
    assert estimate.granularity.startswith("storage blocks 128 x 128")
    assert (estimate.reads, estimate.blocks) == (2, 2)  # one inner chunk per image
    # Zarr's stored chunk sizes cost a request each on object storage: not asked, unknown.
    assert estimate.fetch_bytes is None
    range_server.reset()
    table = remote.ee.get_region(polygon, geometry_crs=UTM)
    fetched_bytes = sum(r["bytes"] for r in range_server.requests() if "/ndvi/c/" in r["path"])
    shard = (store / "ndvi" / "c" / "0" / "0" / "0").stat().st_size
    # Two inner chunks of about 64 KB (float noise compresses little) and two shard indexes,
    # not two shards of about 1 MB.
    assert fetched_bytes < 2 * (128 * 128 * 4 + 4096)
    assert fetched_bytes < shard / 3
    rows, cols = np.arange(290, 330), np.arange(300, 340)
    expected = values[:, rows[:, None], cols[None, :]].reshape(2, -1)
    np.testing.assert_array_equal(table["ndvi"].to_numpy().reshape(2, -1), expected)


def ndvi_cube(values: np.ndarray) -> Any:
    """Two images of 1024 x 1024 ``values`` named ``ndvi``, on the stack's grid."""
    import xarray as xr

    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={
            "time": np.array(["2022-05-03", "2022-05-13"], "datetime64[ns]"),
            "y": Y0 - RES * (np.arange(1024) + 0.5),
            "x": X0 + RES * (np.arange(1024) + 0.5),
        },
        name="ndvi",
    )


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_local_zarr_store_reports_the_chunk_files_it_will_read(tmp_path, zarr_format):
    # A Zarr store in a local directory tells each chunk's stored size by its file's size:
    # plan().reads() sums the files of the chunks read (computing nothing), here 2 chunks of
    # 128 x 128 per image inside one dask chunk of 512 x 512.
    import os

    import xarray as xr

    import xr_getregion  # noqa: F401  (registers .ee)

    rng = np.random.default_rng(7)
    values = rng.normal(size=(2, 1024, 1024)).astype("float32")
    values[1, :512] = 0  # compresses to far less than the other image's noise
    cube = ndvi_cube(values)
    store = tmp_path / "cube.zarr"
    dataset = cube.to_dataset().rio.write_crs(UTM)
    dataset["ndvi"].attrs["grid_mapping"] = "spatial_ref"
    encoding = {"ndvi": {"chunks": (1, 128, 128)}}
    dataset.to_zarr(store, encoding=encoding, zarr_format=zarr_format, consolidated=True)
    local = xr.open_zarr(store, chunks={"y": 512, "x": 512}, decode_coords="all")
    # Rows 250 to 330 are in chunk rows 1 and 2, columns 300 to 340 in chunk column 2.
    polygon = shapely.box(X0 + RES * 300, Y0 - RES * 330, X0 + RES * 340, Y0 - RES * 250)
    with raise_if_dask_computes(0):
        (estimate,) = local.ee.plan(polygon, geometry_crs=UTM).reads()
    assert estimate.granularity.startswith("storage blocks 128 x 128")
    sep = "/" if zarr_format == 3 else "."
    prefix = "c/" if zarr_format == 3 else ""
    files = [
        store / "ndvi" / f"{prefix}{t}{sep}{r}{sep}2".replace("/", os.sep)
        for t in (0, 1)
        for r in (1, 2)
    ]
    expected = sum(f.stat().st_size for f in files)
    assert estimate.fetch_bytes == expected
    assert estimate.fetch_bytes < estimate.nbytes == 4 * 128 * 128 * 4


def test_a_files_tile_layout_is_read_once_for_many_extractions(stack):
    from xr_getregion import loaders

    cube = build("stackstac", stack["items"])
    loaders._file_tiles.cache_clear()
    for geometry in CASES.values():
        cube.ee.plan(geometry, geometry_crs=UTM).reads()
        cube.ee.get_region(geometry, geometry_crs=UTM)
    info = loaders._file_tiles.cache_info()
    assert (info.misses, info.hits) == (1, 2 * len(CASES) - 1)
