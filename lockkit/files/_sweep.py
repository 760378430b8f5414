"""Removing lock files nobody uses, safely: only while holding them exclusively."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator

from lockkit.files._holder import lock_file_error


def _candidates(directory: str, recursive: bool) -> Iterator[str]:
    if recursive:
        for root, dirs, files in os.walk(directory, followlinks=False):
            dirs.sort()
            for name in sorted(files + dirs):
                if name.endswith((".lock", ".lock.gate")):
                    yield os.path.join(root, name)
        return
    for name in sorted(os.listdir(directory)):
        if name.endswith((".lock", ".lock.gate")):
            yield os.path.join(directory, name)


def _remove_if_free(path: str, dry_run: bool) -> bool:
    """Unlink a lock file while holding its exclusive lock; ``False`` if anyone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone, a link, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # in use
        held = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return False  # replaced meanwhile: the new file is someone else's business
        if not dry_run:
            os.unlink(path)  # while we hold it: a waiter that gets the old file moves on
        return True
    finally:
        os.close(fd)  # drops the lock


def sweep_lock_files(
    directory: str | os.PathLike[str],
    *,
    older_than: float = 3600.0,
    recursive: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Remove lock files (``*.lock``, their ``.gate`` files, empty marker directories) nobody uses.

    A kernel lock file is removed only while this call holds its exclusive lock, taken
    without waiting: a file that anyone holds or waits for in shared or exclusive mode
    right now is kept, and a process that was waiting for the removed file finds it
    unlinked when it gets it and locks the new one, so exclusion is never broken. A
    marker directory is removed only when it is empty (a published marker never is).
    Only files untouched for ``older_than`` seconds and owned by the caller (or root)
    are considered; symbolic links are never followed.

    Args:
        directory: Where to look.
        older_than: Minimum age in seconds since the file was last used or changed.
        recursive: Look in subdirectories too.
        dry_run: Report what would be removed, remove nothing.

    Returns:
        The paths removed (or, with ``dry_run``, that would be).

    Raises:
        LockFileError: ``directory`` cannot be read.
    """
    base = os.fspath(directory)
    now = time.time()
    removed = []
    try:
        paths = list(_candidates(base, recursive))
    except OSError as exc:
        raise lock_file_error(base, exc) from exc
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid not in (os.geteuid(), 0) or now - st.st_mtime < older_than:
            continue
        if stat.S_ISDIR(st.st_mode):  # an empty marker directory: rmdir removes only an empty one
            if not os.listdir(path) and (dry_run or _rmdir(path)):
                removed.append(path)
        elif stat.S_ISREG(st.st_mode) and _remove_if_free(path, dry_run):
            removed.append(path)
    return removed


def _rmdir(path: str) -> bool:
    with contextlib.suppress(OSError):
        os.rmdir(path)
        return True
    return False
