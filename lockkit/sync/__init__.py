"""Thread scope: fair in-process locks for the threads of one process.

Every lock here shares one FIFO wait queue (ownership is handed directly to the
oldest waiter), one deadline helper and one statistics builder. They follow the
lockkit lock contract: ``acquire(blocking=True, timeout=None) -> bool``, ``release()``,
``with lock:``, owner checks (:class:`~lockkit.exceptions.NotOwnerError`), no
reentrancy (:class:`~lockkit.exceptions.DeadlockError`), ``locked()`` (held by anyone),
``is_locked()`` (held or queued), ``queue_length()`` and ``statistics()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockkit._internal.lazy import lazy_names

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics
    from lockkit.sync._default import lock_manager, with_lock
    from lockkit.sync._filemutex import FileMutex, FileMutexMetrics, normalize_path
    from lockkit.sync._manager import KeyLock, LockHandle, LockManager
    from lockkit.sync._mutex import Mutex
    from lockkit.sync._rwlock import RWLock

#: Where each name lives, loaded on first use: a file lock needs the Mutex, not the
#: keyed manager or the default registry.
_LAZY = {
    "LockStatistics": "lockkit._internal.snapshot",
    **dict.fromkeys(["lock_manager", "with_lock"], "._default"),
    **dict.fromkeys(["FileMutex", "FileMutexMetrics", "normalize_path"], "._filemutex"),
    **dict.fromkeys(["KeyLock", "LockHandle", "LockManager"], "._manager"),
    "Mutex": "._mutex",
    "RWLock": "._rwlock",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "FileMutex",
    "FileMutexMetrics",
    "KeyLock",
    "LockHandle",
    "LockManager",
    "LockStatistics",
    "Mutex",
    "RWLock",
    "lock_manager",
    "normalize_path",
    "with_lock",
]
