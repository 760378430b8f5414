"""``python -m lockkit``."""

import sys

from lockkit._tools.cli import main

sys.exit(main())
