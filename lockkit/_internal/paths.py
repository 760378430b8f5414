"""The one validation of path arguments."""

from __future__ import annotations

import os

PathLike = str | os.PathLike[str]


def check_path(path: PathLike, what: str = "path") -> str:
    """``path`` as a ``str``, refusing what no file system accepts.

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike[str]`` (bytes included).
        ValueError: ``path`` is empty or contains a NUL byte.

    """
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise TypeError(f"{what} must be str or os.PathLike[str], not {type(raw).__name__}")
    if not raw or "\0" in raw:
        raise ValueError(f"{what} must be a non-empty string without NUL bytes")
    return raw
