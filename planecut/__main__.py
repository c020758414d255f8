"""``python -m planecut`` is the ``planecut`` command."""

import sys

from planecut.verifier.cli import main

sys.exit(main())
