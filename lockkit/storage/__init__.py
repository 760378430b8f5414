"""Storage on the locks: durable atomic writes, locked JSON documents and repositories, stores.

:func:`atomic_write` is the one commit path (temp file, fsync, rename, directory
fsync); :class:`JsonDocument` and :class:`JsonRepository` add read-modify-write under
the exclusive lock of every thread and process; :class:`PersistentStore` keeps a
dict-like map persisted through them, optionally encrypted by
:class:`EncryptionService`. :class:`SessionStore`, :class:`RefreshTokenStore` and
:class:`ClientStore` are stores preset for common web-app data.
"""

from __future__ import annotations

from lockkit.storage._atomic import AtomicWriter, atomic_write, sweep_temp_files
from lockkit.storage._crypto import EncryptionService
from lockkit.storage._document import (
    JsonDocument,
    JsonSerializer,
    Serializer,
    orjson_serializer,
)
from lockkit.storage._presets import ClientStore, RefreshTokenStore, SessionStore
from lockkit.storage._repository import BaseFileRepository, JsonRepository
from lockkit.storage._stats import DocumentStatistics
from lockkit.storage._store import (
    PersistentStore,
    StoreStatistics,
    flush_all_stores,
    flush_stores_on_signal,
)

__all__ = [
    "AtomicWriter",
    "BaseFileRepository",
    "ClientStore",
    "DocumentStatistics",
    "EncryptionService",
    "JsonDocument",
    "JsonRepository",
    "JsonSerializer",
    "PersistentStore",
    "RefreshTokenStore",
    "Serializer",
    "SessionStore",
    "StoreStatistics",
    "atomic_write",
    "flush_all_stores",
    "flush_stores_on_signal",
    "orjson_serializer",
    "sweep_temp_files",
]
