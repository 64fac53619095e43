"""``python -m simulations <scenario> ...``: the same as ``swimmesh simulate <scenario> ...``."""

import sys

from simulations.cli import main

sys.exit(main())
