"""``python -m lockkit``."""

import sys

from lockkit._cli import main

sys.exit(main())
