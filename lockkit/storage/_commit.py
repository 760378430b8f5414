"""The commit point: the one step where a locked write becomes visible.

Every locked write of the storage layer (``JsonDocument.write``, ``modify``,
``JsonRepository.modify_many``) prepares its new file first (written and flushed
under a temporary name) and then commits it here. Under a short kernel lock on the
data file's directory, held only for this step, the commit checks that

* the writer's :class:`~lockkit.FileLock` still excludes everyone (its lock file was not
  deleted or replaced, its marker not broken), and
* the data file is still exactly the one the writer read (same inode, size and times),
  so the version and fencing token it checked are still the stored ones,

and only then renames the new file over the data file. Two writers can therefore never
both commit on the same snapshot, even when one of them lost its lock without knowing:
the second commit finds the file changed and is refused with nothing written.

The directory lock is taken only by commits, in every process, for microseconds (the
slow ``fsync`` of the data happens before it, the directory ``fsync`` after it). On a
file system without working ``flock`` the checks still run, without it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from lockkit._internal.deadline import Deadline
from lockkit.exceptions import ConflictError, LockTimeoutError
from lockkit.files._filelock import FileLock
from lockkit.files._kernel import flock_until
from lockkit.resilience._backoff import Backoff

#: What identifies one version of a data file: device, inode, size, mtime and ctime (ns).
Identity = tuple[int, int, int, int, int]


def identity_of(st: os.stat_result) -> Identity:
    """The identity of the file ``st`` describes."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def current_identity(path: str) -> Identity | None:
    """The identity of the file at ``path`` now (``None`` if there is none)."""
    try:
        return identity_of(os.stat(path))
    except FileNotFoundError:
        return None


def _backoff() -> Backoff:
    return Backoff(0.0002, 0.02)


def _lock_directory(directory: str, timeout: float | None) -> int:
    """A descriptor of ``directory`` holding its commit lock, or -1 where flock is unavailable."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1  # an unreadable directory: commit with the checks alone
    try:
        if not flock_until(fd, fcntl.LOCK_EX, Deadline(timeout), _backoff):
            raise LockTimeoutError(
                f"the commit lock of directory {directory!r} was not free within {timeout:g} s",
                resource=directory,
                timeout=timeout,
            )
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return -1  # no working flock here (some network file systems)
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def commit_point(target: str, lock: FileLock, seen: Identity | None, timeout: float | None) -> Iterator[None]:
    """Hold the commit lock of ``target``'s directory and check that committing is safe.

    The body renames the prepared file over ``target``.

    Args:
        target: The data file (symlinks already resolved).
        lock: The exclusive lock the calling thread holds for ``target``.
        seen: The identity of ``target`` when the writer read it (``None``: it did not exist).
        timeout: How long to wait for the commit lock (``None``: as long as it takes).

    Raises:
        LockLostError: ``lock`` no longer excludes other processes.
        ConflictError: ``target`` changed since the writer read it.
    """
    fd = _lock_directory(os.path.dirname(target), timeout)
    try:
        lock.verify()
        if current_identity(target) != seen:
            raise ConflictError(
                f"{target!r} changed while this writer held its lock (written by a process that did not "
                "hold it); nothing was written"
            )
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor drops its flock
