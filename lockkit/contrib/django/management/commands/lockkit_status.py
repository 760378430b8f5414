"""``manage.py lockkit_status [PATH...]``: who holds lockkit's lock files (``lockkit status``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    """Show the holder of every lock file under ``LOCKKIT['DATA_DIR']`` (or of the given ones)."""

    help = "Show who holds lockkit's lock files (every *.lock under LOCKKIT['DATA_DIR'] by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        """``PATH...`` and ``--json``."""
        parser.add_argument("paths", nargs="*", help="lock files (default: every *.lock under DATA_DIR)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the status lines; exit status 1 when a named lock file does not exist."""
        from lockkit._tools.cli import main
        from lockkit.contrib.django import settings

        paths: list[str] = list(options["paths"])
        if not paths:
            root = settings().data_dir
            for directory, _dirs, files in os.walk(root):
                paths += sorted(os.path.join(directory, f) for f in files if f.endswith(".lock"))
            if not paths:
                self.stdout.write(f"no lock files under {root}")
                return
        with contextlib.redirect_stdout(self.stdout), contextlib.redirect_stderr(self.stderr):
            code = main(["status", *(["--json"] if options["json"] else []), *paths])
        if code:
            raise CommandError("some lock files do not exist or cannot be read", returncode=code)
