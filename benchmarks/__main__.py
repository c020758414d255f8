"""``python -m planecut.benchmarks run|score|plot``: the same as ``planecut bench ...``."""

import sys

from planecut.benchmarks.cli import main

sys.exit(main())
