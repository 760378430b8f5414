"""FileMutex: an in-process lock per file, keyed by the file's normalised real path."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from lockkit._internal.paths import PathLike, check_path
from lockkit.sync._manager import KeyLock, LockHandle, LockManager

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics

R = TypeVar("R")


def normalize_path(path: PathLike) -> str:
    """The canonical key of a path: ``realpath`` then ``normcase``.

    ``a/../b.json``, ``./b.json`` and a symlink to ``b.json`` all map to one key.

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike[str]``.
        ValueError: ``path`` is empty or contains a NUL byte.

    """
    return os.path.normcase(os.path.realpath(check_path(path)))


@dataclass(frozen=True, slots=True)
class FileMutexMetrics:
    """A snapshot of a :class:`FileMutex`'s metrics.

    Attributes:
        overall: Counters over every file.
        files: Per-file counters for the most recently used files (at most 1,024),
            keyed by normalised path.

    """

    overall: LockStatistics
    files: dict[str, LockStatistics]

    @property
    def average_wait(self) -> float:
        """Mean wait of the acquisitions that waited (0.0 if none did)."""
        waits = self.overall.contentions - self.overall.timeouts
        return self.overall.wait_total / waits if waits > 0 else 0.0


class FileMutex:
    """Per-file in-process locks: threads touching the same file queue FIFO.

    Keys are normalised real paths (see :func:`normalize_path`), so different spellings
    of one file share one lock, while different files never block each other.

    Fairness: FIFO per file (task-fair in shared mode). Ownership: a hold belongs to the
    thread that took it. Reentrancy: none; re-locking a file the thread already holds
    raises :class:`~lockkit.exceptions.DeadlockError`.

    Warnings (``lockkit.queue_deep`` when a file has more than 10 waiters,
    ``lockkit.lock_wait_long`` when a wait passes 5 s, naming the holder thread) are
    emitted once per episode; waits over 100 ms emit a debug event.

    This lock covers the threads of one process only; combine it with
    :class:`~lockkit.FileLock` for other processes.

    Args:
        name: A name for statistics and events.

    """

    __slots__ = ("_manager",)

    def __init__(self, name: str | None = "filemutex") -> None:
        self._manager = LockManager(name, track_keys=True, show_keys=True)  # keys are file paths

    def acquire(self, path: PathLike, timeout: float | None = None, shared: bool = False) -> LockHandle:
        """Lock ``path``; returns a handle to release (callable or ``with``).

        Raises:
            LockTimeoutError: The timeout ran out.
            DeadlockError: The calling thread already holds this file.

        """
        return self._manager.acquire(normalize_path(path), timeout, shared)

    lock = acquire

    def with_lock(
        self, path: PathLike, fn: Callable[[], R], *, timeout: float | None = None, shared: bool = False
    ) -> R:
        """Call ``fn()`` while holding ``path`` and return its result."""
        with self.acquire(path, timeout, shared):
            return fn()

    def get_lock(self, path: PathLike, *, shared: bool = False, timeout: float | None = None) -> KeyLock:
        """A lock-like view of one file (``acquire``/``release``/``with``)."""
        return self._manager.get_lock(normalize_path(path), shared=shared, timeout=timeout)

    def is_locked(self, path: PathLike) -> bool:
        """Whether ``path`` is held or waited for."""
        return self._manager.is_locked(normalize_path(path))

    def queue_length(self, path: PathLike) -> int:
        """Holders plus waiters of ``path``."""
        return self._manager.queue_length(normalize_path(path))

    def has_pending_operations(self) -> bool:
        """Whether any file is held or waited for."""
        return self._manager.has_pending_operations()

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Wait until every file operation in flight at the time of the call is done."""
        return self._manager.wait_for_pending(timeout)

    def statistics(self) -> LockStatistics:
        """Counters over every file."""
        return self._manager.statistics()

    def metrics(self) -> FileMutexMetrics:
        """Overall and per-file counters (acquisitions, contentions, waits, queue depths)."""
        files = {str(k): v for k, v in self._manager.key_statistics().items()}
        return FileMutexMetrics(overall=self._manager.statistics(), files=files)

    def __len__(self) -> int:
        """Files in use right now."""
        return len(self._manager)

    def __repr__(self) -> str:
        return f"<lockkit.sync.FileMutex files_in_use={len(self._manager)}>"
