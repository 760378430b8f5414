"""lockkit: fair locks, crash-safe file locks and durable storage for threaded WSGI apps.

Every public name is importable from here; see the documentation for the guide.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from lockkit._atomic import AtomicWriter, atomic_write, sweep_temp_files
from lockkit._backoff import Backoff
from lockkit._breaker import BreakerStatistics, CircuitBreaker, CircuitState
from lockkit._budget import BudgetStatistics, RetryBudget
from lockkit._classify import ErrorClass, classify, parse_retry_after, register_rule
from lockkit._crypto import EncryptionService
from lockkit._document import (
    JsonDocument,
    JsonSerializer,
    Serializer,
    orjson_serializer,
)
from lockkit._filelock import FileLock
from lockkit._filemutex import FileMutex, FileMutexMetrics, normalize_path
from lockkit._holder import LockInfo
from lockkit._http import fetch_with_retry
from lockkit._manager import KeyLock, LockHandle, LockManager
from lockkit._mutex import Mutex
from lockkit._repository import BaseFileRepository, JsonRepository
from lockkit._retry import Attempt, RetryDetails, RetryPolicy, retry, retry_testing
from lockkit._rwlock import RWLock
from lockkit._service import FileLockHandle, FileLockService, LockResult
from lockkit._stats import LockStatistics
from lockkit._store import (
    ClientStore,
    PersistentStore,
    RefreshTokenStore,
    SessionStore,
    StoreStatistics,
    flush_all_stores,
    flush_stores_on_signal,
)
from lockkit._version import __version__
from lockkit.exceptions import (
    AbortError,
    CircuitOpenError,
    ConflictError,
    CorruptDataError,
    DeadlockError,
    DecryptionError,
    LockFileError,
    LockkitError,
    LockLostError,
    LockTimeoutError,
    NotOwnerError,
    RetryAfterTooLongError,
    StaleWriterError,
    StorageError,
    StoreClosedError,
)

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
    "AbortError",
    "AtomicWriter",
    "Attempt",
    "Backoff",
    "BaseFileRepository",
    "BreakerStatistics",
    "BudgetStatistics",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ClientStore",
    "ConflictError",
    "CorruptDataError",
    "DeadlockError",
    "DecryptionError",
    "EncryptionService",
    "ErrorClass",
    "FileLock",
    "FileLockHandle",
    "FileLockService",
    "FileMutex",
    "FileMutexMetrics",
    "JsonDocument",
    "JsonRepository",
    "JsonSerializer",
    "KeyLock",
    "LockFileError",
    "LockHandle",
    "LockInfo",
    "LockLostError",
    "LockManager",
    "LockResult",
    "LockStatistics",
    "LockTimeoutError",
    "LockkitError",
    "Mutex",
    "NotOwnerError",
    "PersistentStore",
    "RWLock",
    "RefreshTokenStore",
    "RetryAfterTooLongError",
    "RetryBudget",
    "RetryDetails",
    "RetryPolicy",
    "Serializer",
    "SessionStore",
    "StaleWriterError",
    "StorageError",
    "StoreClosedError",
    "StoreStatistics",
    "__version__",
    "atomic_write",
    "classify",
    "fetch_with_retry",
    "flush_all_stores",
    "flush_stores_on_signal",
    "lock_manager",
    "normalize_path",
    "orjson_serializer",
    "parse_retry_after",
    "register_rule",
    "retry",
    "retry_testing",
    "sweep_temp_files",
    "with_lock",
]
