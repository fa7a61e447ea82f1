"""``python -m gmsop <command>``: the same as the ``gmsop`` console script."""

import sys

from gmsop.cli import main

sys.exit(main())
