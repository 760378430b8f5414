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


def check_file_mode(file_mode: object) -> int:
    """Validate the permission bits lockkit gives the files it creates.

    Raises:
        TypeError: ``file_mode`` is not an int.
        ValueError: It has bits outside ``0o777``, or does not let the owner read and write.
    """
    if isinstance(file_mode, bool) or not isinstance(file_mode, int):
        raise TypeError(f"file_mode must be an int such as 0o600, not {type(file_mode).__name__}")
    if file_mode & ~0o777:
        raise ValueError(f"file_mode must be permission bits within 0o777, not {file_mode:#o}")
    if file_mode & 0o600 != 0o600:
        raise ValueError(f"file_mode must let the owner read and write (0o600 at least), not {file_mode:#o}")
    return file_mode
