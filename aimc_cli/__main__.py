"""`python -m aimc_cli`: the same as the `aimc` script."""

import sys

from aimc_cli import main

sys.exit(main())
