"""``python -m xr_getregion``: the same as the ``xr-getregion`` command."""

import sys

from xr_getregion.cli import main

sys.exit(main())
