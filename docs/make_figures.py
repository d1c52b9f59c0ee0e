"""Regenerate the README's pictures: ``python docs/make_figures.py`` (needs the plot extra)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import xr_getregion  # noqa: E402
from xr_getregion import Geometry  # noqa: E402
from xr_getregion.plot import region_map  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    col = xr_getregion.sample_cube().ee.select("B[2-4]")
    roi = Geometry.BBox(-90.496353, 34.851971, -90.495749, 34.852197)
    ax = region_map(col, roi, scale=30, bands=["B4", "B3", "B2"], min=0.128, max=0.163)
    ax.figure.savefig(HERE / "region_map.png", dpi=90, bbox_inches="tight")
    # Pyramids: at scale=250 (EE's lon/lat grid) the cube's 30 m pixels are read at level 3,
    # 8x8 blocks of 240 m; each working pixel (yellow) takes the mean of its block (cyan).
    field = Geometry.BBox(-90.4990, 34.8500, -90.4935, 34.8540)
    ax = region_map(col, field, scale=250, bands=["B4", "B3", "B2"], min=0.10, max=0.20, pad=4)
    ax.figure.savefig(HERE / "pyramids.png", dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
