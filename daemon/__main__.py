"""`python -m qwendesk.daemon` is the `qwendesk` command."""

import sys

from .cli import main

sys.exit(main())
