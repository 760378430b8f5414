"""The ``lockkit`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lockkit`` console script and ``python -m lockkit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:  # the benchmark runner parses its own options
        from lockkit._bench import main as bench_main

        return bench_main(args[1:])
    parser = argparse.ArgumentParser(prog="lockkit", description="lockkit command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="print the benchmark tables (lockkit beside its peers)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    parser.error(f"unknown command {ns.command!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
