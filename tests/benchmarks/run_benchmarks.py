"""Entry point of ``tox -e bench``: the same code as ``lockkit bench``."""

import sys

from lockkit._tools.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
