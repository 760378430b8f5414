"""Optional peer libraries, imported if installed."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional(name: str) -> ModuleType | None:
    """Import ``name`` or return ``None`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
