"""Process scope: locks that exclude other processes as well as other threads.

:class:`FileLock` takes an in-process FIFO lock first (threads of one process queue
fairly and only one of them talks to the kernel), then one strategy object per
mechanism: a kernel ``flock`` on a sidecar file that only a holder of its exclusive lock deletes (the default),
or a marker directory published with ``rename()`` for file systems without working locks. Holder
records say who holds a lock; :class:`FileLockService` derives lock files from
resource paths and reports failures as results instead of exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockkit._internal.lazy import lazy_names

if TYPE_CHECKING:
    from lockkit.files._filelock import FileLock
    from lockkit.files._info import LockInfo
    from lockkit.files._service import FileLockHandle, FileLockService, LockResult
    from lockkit.files._strategy import LockStrategy, StrategyName
    from lockkit.files._sweep import sweep_lock_files

#: Where each name lives, loaded on first use: ``lockkit run`` needs FileLock alone.
_LAZY = {
    "FileLock": "._filelock",
    "LockInfo": "._info",
    **dict.fromkeys(["FileLockHandle", "FileLockService", "LockResult"], "._service"),
    **dict.fromkeys(["LockStrategy", "StrategyName"], "._strategy"),
    "sweep_lock_files": "._sweep",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "FileLock",
    "FileLockHandle",
    "FileLockService",
    "LockInfo",
    "LockResult",
    "LockStrategy",
    "StrategyName",
    "sweep_lock_files",
]
