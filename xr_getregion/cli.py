"""The ``xr-getregion`` command line: ``demo`` runs Earth Engine's reference example."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pprint import pformat

import numpy as np
import xarray as xr

__all__ = ["main"]


def _summary(cube: xr.DataArray) -> str:
    from xr_getregion.cube import read_cube

    info = read_cube(cube)
    a, _, _, _, e, _ = info.grid.transform
    rows, cols = info.grid.shape or (0, 0)
    lines = [
        f"ImageCollection ({info.n_images} images): {cube.name}, {info.grid.crs.to_string()}, "
        f"{abs(a):g} x {abs(e):g} m pixels, {cols} x {rows}",
        f"  bands: {', '.join(info.band_names)}",
    ]
    for image_id, ms in zip(info.ids, info.times_ms, strict=True):
        when = "no time" if ms is None else str(np.datetime64(ms, "ms")) + "Z"
        lines.append(f"  {image_id}  {when}")
    return "\n".join(lines)


def _print_table(title: str, table: list[list]) -> None:
    print(f"{title} ({len(table)} rows with the header):")
    for row in table:
        print(" ", pformat(row, width=200))


def demo(args: argparse.Namespace) -> int:
    """Earth Engine's getRegion reference example, on the built-in sample cube."""
    import xr_getregion
    from xr_getregion import Geometry

    cube = xr_getregion.sample_cube()
    # EE: col = ImageCollection(...).filterBounds(...).filterDate(...).select('B[2-4]')
    col = cube.sel(band=["B2", "B3", "B4"])
    print("Collection")
    print(_summary(col))
    print()
    roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    _print_table("Extracted pixel info", col.ee.getRegion(roi, scale=30))
    print()
    points = Geometry.MultiPoint([[-90.49, 34.85], [-90.48, 34.84]])
    _print_table("Point geometry example", col.ee.getRegion(points, scale=30))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xr-getregion`` and ``python -m xr_getregion``."""
    parser = argparse.ArgumentParser(
        prog="xr-getregion",
        description="Earth Engine's ImageCollection.getRegion for xarray cubes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser(
        "demo", help="run the EE reference page's example on the built-in sample cube"
    )
    run_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
