"""lockkit: fair locks, crash-safe file locks and durable storage for threaded WSGI apps.

The names here are the core a user reaches for first. Everything else lives in the
package of its layer:

* :mod:`lockkit.sync` — thread scope (``Mutex``, ``RWLock``, ``LockManager``, ``FileMutex``);
* :mod:`lockkit.files` — process scope (``FileLock``, ``FileLockService``, ``LockInfo``);
* :mod:`lockkit.redis` — host scope on Redis;
* :mod:`lockkit.storage` — atomic writes, JSON documents and repositories, stores;
* :mod:`lockkit.resilience` — retry, circuit breaker, retry budget, backoff;
* :mod:`lockkit.exceptions` — every exception.

Names are loaded on first use, so ``import lockkit`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockkit._internal.lazy import lazy_names
from lockkit._version import __version__
from lockkit.exceptions import (
    CorruptDataError,
    DeadlockError,
    LockFileError,
    LockkitError,
    LockTimeoutError,
    NotOwnerError,
    StorageError,
)

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics
    from lockkit.files import FileLock
    from lockkit.resilience import CircuitBreaker, RetryPolicy, retry
    from lockkit.storage import (
        JsonDocument,
        JsonRepository,
        PersistentStore,
        atomic_write,
    )
    from lockkit.sync import LockManager, Mutex, RWLock
    from lockkit.sync._default import lock_manager, with_lock

#: Where each lazily loaded name lives.
_LAZY = {
    "LockStatistics": "lockkit._internal.snapshot",
    "Mutex": "lockkit.sync",
    "RWLock": "lockkit.sync",
    "LockManager": "lockkit.sync",
    "lock_manager": "lockkit.sync._default",
    "with_lock": "lockkit.sync._default",
    "FileLock": "lockkit.files",
    "atomic_write": "lockkit.storage",
    "JsonDocument": "lockkit.storage",
    "JsonRepository": "lockkit.storage",
    "PersistentStore": "lockkit.storage",
    "retry": "lockkit.resilience",
    "RetryPolicy": "lockkit.resilience",
    "CircuitBreaker": "lockkit.resilience",
}

#: Names that left the top level; still importable from here, with a DeprecationWarning.
_MOVED = {
    **dict.fromkeys(
        ["FileMutex", "FileMutexMetrics", "KeyLock", "LockHandle", "normalize_path"],
        "lockkit.sync",
    ),
    **dict.fromkeys(["FileLockHandle", "FileLockService", "LockInfo", "LockResult"], "lockkit.files"),
    **dict.fromkeys(
        [
            "AtomicWriter",
            "BaseFileRepository",
            "ClientStore",
            "EncryptionService",
            "JsonSerializer",
            "RefreshTokenStore",
            "Serializer",
            "SessionStore",
            "StoreStatistics",
            "flush_all_stores",
            "flush_stores_on_signal",
            "orjson_serializer",
            "sweep_temp_files",
        ],
        "lockkit.storage",
    ),
    **dict.fromkeys(
        [
            "Attempt",
            "Backoff",
            "BreakerStatistics",
            "BudgetStatistics",
            "CircuitState",
            "ErrorClass",
            "RetryBudget",
            "RetryDetails",
            "classify",
            "fetch_with_retry",
            "parse_retry_after",
            "register_rule",
            "retry_testing",
        ],
        "lockkit.resilience",
    ),
    **dict.fromkeys(
        [
            "AbortError",
            "CircuitOpenError",
            "ConflictError",
            "DecryptionError",
            "LockLostError",
            "RetryAfterTooLongError",
            "StaleWriterError",
            "StoreClosedError",
        ],
        "lockkit.exceptions",
    ),
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, moved=_MOVED)

__all__ = [
    "CircuitBreaker",
    "CorruptDataError",
    "DeadlockError",
    "FileLock",
    "JsonDocument",
    "JsonRepository",
    "LockFileError",
    "LockManager",
    "LockStatistics",
    "LockTimeoutError",
    "LockkitError",
    "Mutex",
    "NotOwnerError",
    "PersistentStore",
    "RWLock",
    "RetryPolicy",
    "StorageError",
    "__version__",
    "atomic_write",
    "lock_manager",
    "retry",
    "with_lock",
]
