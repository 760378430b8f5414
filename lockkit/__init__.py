"""lockkit: fair locks, crash-safe file locks and durable storage for threaded WSGI apps.

Every public name is importable from here; see the documentation for the guide.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from lockkit._filemutex import FileMutex, FileMutexMetrics, normalize_path
from lockkit._manager import KeyLock, LockHandle, LockManager
from lockkit._mutex import Mutex
from lockkit._rwlock import RWLock
from lockkit._stats import LockStatistics
from lockkit._version import __version__
from lockkit.exceptions import DeadlockError, LockkitError, LockTimeoutError, NotOwnerError

R = TypeVar("R")

#: The process-wide default :class:`LockManager` used by :func:`with_lock`.
lock_manager = LockManager("default")


def with_lock(key: Hashable, fn: Callable[[], R], *, timeout: float | None = None, shared: bool = False) -> R:
    """Call ``fn()`` while holding ``key`` in the default :data:`lock_manager`.

    Fairness: FIFO per key. Reentrancy: none (:class:`DeadlockError` if the calling
    thread already holds ``key``).

    Raises:
        LockTimeoutError: ``timeout`` seconds passed before the key was free.

    """
    return lock_manager.with_lock(key, fn, timeout=timeout, shared=shared)


__all__ = [
    "DeadlockError",
    "FileMutex",
    "FileMutexMetrics",
    "KeyLock",
    "LockHandle",
    "LockManager",
    "LockStatistics",
    "LockTimeoutError",
    "LockkitError",
    "Mutex",
    "NotOwnerError",
    "RWLock",
    "__version__",
    "lock_manager",
    "normalize_path",
    "with_lock",
]
