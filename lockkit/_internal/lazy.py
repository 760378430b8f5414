"""The one lazy-loading mechanism of lockkit's packages (PEP 562 module ``__getattr__``).

A package lists where each public name lives; the module holding it is imported the
first time the name is looked up, and the value is then cached in the package's
namespace, so later lookups cost nothing. ``import lockkit`` and ``lockkit run`` load
only what they use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str], *, moved: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's ``__name__``.
        names: Public name -> module that defines it (absolute, or relative to
            ``package`` when it starts with a dot).
        moved: Names that left ``package`` -> the module they live in now; still
            importable from ``package``, with a :class:`DeprecationWarning`, and never
            cached (so each use warns).

    """
    moved = moved or {}

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            module = moved.get(name)
            if module is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            import warnings

            warnings.warn(
                f"{package}.{name} moved to {module}.{name}; import it from there", DeprecationWarning, stacklevel=2
            )
            return getattr(importlib.import_module(module), name)
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
