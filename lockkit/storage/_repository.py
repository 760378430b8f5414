"""JsonRepository (one file per record) and BaseFileRepository (a base class for your own repositories)."""

from __future__ import annotations

import contextlib
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lockkit._internal import fork as _fork
from lockkit.exceptions import InvalidKeyError
from lockkit.files._filelock import FileLock, lock_key
from lockkit.files._strategy import StrategyName
from lockkit.storage._atomic import TEMP_PATTERN, storage_error
from lockkit.storage._document import JsonDocument, Serializer
from lockkit.storage._stats import DocumentStatistics, Tally
from lockkit.sync._multi import acquire_all

MAX_KEY_BYTES = 200
#: How many records' documents (and their lock objects) a repository keeps for reuse.
DOCUMENT_CACHE = 1024


def check_key(key: object) -> str:
    """Validate a record key: a file name, never a path, and one record per key.

    A key must be valid Unicode (no lone surrogates: they would let two different
    strings name one file) in normalisation form NFC (``"e\u0301"`` and ``"\u00e9"``
    would otherwise be two records that look the same). Normalise keys you receive
    with ``unicodedata.normalize("NFC", key)``.

    Raises:
        TypeError: The key is not a string.
        InvalidKeyError: The key is empty, too long, ``.``/``..``, starts with a dot,
            contains a path separator or a NUL or control character, is not valid
            Unicode, or is not in NFC. Also a ``ValueError``.
    """
    if not isinstance(key, str):
        raise TypeError(f"record keys must be str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("record key must not be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError("record key must be valid Unicode (it contains a lone surrogate)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"record key must be at most {MAX_KEY_BYTES} bytes in UTF-8")
    if key.startswith("."):
        raise InvalidKeyError("record key must not start with '.' (no '.', '..' or hidden names)")
    if "/" in key or "\\" in key or (os.altsep and os.altsep in key):
        raise InvalidKeyError("record key must not contain a path separator")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKeyError("record key must not contain NUL or control characters")
    if not unicodedata.is_normalized("NFC", key):
        raise InvalidKeyError(
            'record key must be in Unicode normalisation form NFC (unicodedata.normalize("NFC", key))'
        )
    return key


def _is_key(name: str) -> bool:
    try:
        check_key(name)
    except ValueError:
        return False
    return True


def _take(lock: FileLock, left: float | None) -> FileLock | None:
    return lock if lock.acquire(timeout=left) else None


def _release(lock: FileLock) -> None:
    lock.release()


def _by_lock_file(locks: Iterable[FileLock]) -> list[FileLock]:
    return sorted(locks, key=lambda lock: lock_key(lock.path))


class JsonRepository:
    """A directory of JSON records, one file per key, with record-level locking.

    Different keys never contend: each record has its own :class:`JsonDocument`
    (a sidecar lock file per record). Keys are validated as file names (no path
    traversal). Same fairness, ownership and reentrancy rules as
    :class:`JsonDocument`. Iterating a repository yields its keys (sorted);
    :meth:`items` and :meth:`values` read each record without a lock, as :meth:`get` does.

    Args:
        directory: Where the records live (created with its parents if missing).
        serializer: JSON serializer (default: the standard library's strict json).
        fsync: Durable writes.
        timeout: Lock timeout per record (``None`` waits forever).
        strategy: The :class:`~lockkit.FileLock` strategy.
        suffix: File name suffix of records.
        stale_after: Marker strategy: seconds without heartbeat after which a
            record's marker is stale.
        file_mode: Permission bits of new record and lock files (minus the umask);
            ``0o600`` by default.
        plain: Store each record as bare JSON (``{"balance": 7}``), as other programs
            expect, instead of lockkit's envelope. Plain records have no versions
            (``expected_version`` only matches 0) and refuse fencing tokens; locking
            and atomic writes are the same.
        track_hold_time: Measure how long each operation holds its record's lock,
            for :meth:`statistics`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        serializer: Serializer | None = None,
        fsync: bool = True,
        timeout: float | None = None,
        strategy: StrategyName = "kernel",
        suffix: str = ".json",
        stale_after: float = 300.0,
        file_mode: int = 0o600,
        plain: bool = False,
        track_hold_time: bool = False,
    ) -> None:
        self._dir = os.path.abspath(os.fspath(directory))
        try:
            os.makedirs(self._dir, exist_ok=True)
        except OSError as exc:
            raise storage_error(self._dir, exc, "create directory") from exc
        if not suffix.startswith(".") or "/" in suffix:
            raise ValueError("suffix must start with '.' and contain no separator")
        self._suffix = suffix
        self._options: dict[str, Any] = {
            "serializer": serializer,
            "fsync": fsync,
            "timeout": timeout,
            "strategy": strategy,
            "stale_after": stale_after,
            "file_mode": file_mode,
            "plain": plain,
        }
        self._tally = Tally(track_hold_time)  # one set of counters for all records, never one per key
        # The documents of recently used keys: building one (two FileLock objects, a
        # path check) costs more than a lock-free read, so hot records reuse theirs.
        self._documents: OrderedDict[str, JsonDocument] = OrderedDict()
        self._documents_mu = threading.Lock()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        self._documents_mu = threading.Lock()  # another thread of the parent may have held it

    @property
    def directory(self) -> str:
        """The records' directory."""
        return self._dir

    def document(self, key: str) -> JsonDocument:
        """The :class:`JsonDocument` of one record (validates the key).

        The repository keeps the documents of the last :data:`DOCUMENT_CACHE` keys it
        used and hands the same object out again; a document is safe to share between
        threads.
        """
        with self._documents_mu:
            doc = self._documents.get(key) if isinstance(key, str) else None  # check_key names the rule
            if doc is not None:
                self._documents.move_to_end(key)
                return doc
        doc = JsonDocument(os.path.join(self._dir, check_key(key) + self._suffix), **self._options)
        doc._tally = self._tally
        with self._documents_mu:
            doc = self._documents.setdefault(key, doc)
            if len(self._documents) > DOCUMENT_CACHE:
                self._documents.popitem(last=False)
        return doc

    def statistics(self) -> DocumentStatistics:
        """Counts over all records: reads, writes, deletes, conflicts, timeouts, failures, lock times."""
        return self._tally.snapshot()

    def get(self, key: str, default: Any = None, *, consistent: bool = False) -> Any:
        """The record's value, or ``default`` if it does not exist.

        Lock-free by default: a record is replaced by an atomic rename, so the read
        sees the old or the new value, whole (see :meth:`JsonDocument.read`).
        ``consistent=True`` takes the record's shared lock.
        """
        return self.document(key).read(default, consistent=consistent)

    def get_versioned(self, key: str, *, consistent: bool = False) -> tuple[Any, int] | None:
        """``(value, version)`` or ``None`` (see :meth:`get`)."""
        return self.document(key).read_versioned(consistent=consistent)

    def get_many(self, keys: Iterable[str], default: Any = None, *, consistent: bool = False) -> dict[str, Any]:
        """``{key: value}`` for several records (``default`` for those that do not exist).

        Without ``consistent`` each record is read lock-free, one after the other: every
        value is whole, but a write between two reads can show one record before a
        change and another after it. With ``consistent=True`` the shared locks of all
        the records are taken first (in one sorted order, with one deadline, like
        :meth:`modify_many`) and the records are read together: no writer, not even
        a :meth:`modify_many` over the same keys, can fall between two reads.

        Raises:
            LockTimeoutError: ``consistent=True`` and the locks were not all had within
                the repository's timeout (none is held then).
        """
        docs = {k: self.document(k) for k in dict.fromkeys(keys)}
        if not consistent:
            return {k: doc.read(default) for k, doc in docs.items()}
        out = {}
        with self._all_locked([doc._read_lock for doc in docs.values()]):
            for k, doc in docs.items():
                with self._tally.unlocked("reads"):
                    content = doc._load()
                out[k] = default if content is None else content.value
        return out

    @contextlib.contextmanager
    def _all_locked(self, locks: list[FileLock]) -> Iterator[None]:
        """Hold every lock of ``locks``, taken in one sorted order within the repository's timeout."""
        timeout = self._options["timeout"]
        taken, missed = acquire_all(locks, _take, _release, timeout=timeout, order=_by_lock_file)
        if missed:
            self._tally.count("timeouts")
            raise missed[0]._timeout_error(timeout)
        try:
            yield
        finally:
            for lock in reversed(taken):
                lock.release()

    def put(
        self, key: str, value: Any, *, expected_version: int | None = None, fencing_token: int | None = None
    ) -> int:
        """Write a record; returns its new version (see :meth:`JsonDocument.write`)."""
        return self.document(key).write(value, expected_version=expected_version, fencing_token=fencing_token)

    def modify(self, key: str, fn: Callable[[Any], Any], *, fencing_token: int | None = None) -> Any:
        """Read-modify-write one record under its exclusive lock; returns the new value."""
        return self.document(key).modify(fn, fencing_token=fencing_token)

    def delete(self, key: str) -> bool:
        """Delete a record; ``True`` if it existed."""
        return self.document(key).delete()

    def keys(self) -> list[str]:
        """The keys of the stored records, sorted.

        Files whose names are not valid keys (put there by something else) are not
        records of this repository and are left out.
        """
        try:
            names = os.listdir(self._dir)
        except OSError as exc:
            raise storage_error(self._dir, exc, "list") from exc
        n = len(self._suffix)
        return sorted(
            name[:-n]
            for name in names
            if name.endswith(self._suffix) and not TEMP_PATTERN.search(name) and _is_key(name[:-n])
        )

    def __iter__(self) -> Iterator[str]:
        """The keys of the stored records, sorted (a listing taken when iteration starts)."""
        return iter(self.keys())

    def __len__(self) -> int:
        """How many records are stored."""
        return len(self.keys())

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(key, value)`` for every record, each read lock-free (see :meth:`get`).

        Records are read one at a time, so this is not a snapshot of the whole
        repository: a record deleted after the listing is skipped, one written
        meanwhile may show its new value.
        """
        missing = object()
        for key in self.keys():
            value = self.document(key).read(missing)
            if value is not missing:
                yield key, value

    def values(self) -> Iterator[Any]:
        """The value of every record (see :meth:`items`)."""
        for _key, value in self.items():
            yield value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and os.path.exists(os.path.join(self._dir, check_key(key) + self._suffix))

    def modify_many(
        self, keys: Iterable[str], fn: Callable[[dict[str, Any]], dict[str, Any]], *, fencing_token: int | None = None
    ) -> dict[str, Any]:
        """Change several records together, all locked at once in one sorted order, one deadline.

        ``fn`` gets ``{key: value or None}`` and returns ``{key: new value}`` for the
        keys to write (a key mapped to ``None`` is written as ``null``; leave it out to
        keep it). If ``fn`` raises, nothing is written. Deadlock-free: every caller
        takes the locks in the same order.

        Note:
            Each record is written atomically, but the set of writes is not a
            transaction: a crash between two writes leaves some records new and some
            old.
        """
        docs = {k: self.document(k) for k in dict.fromkeys(keys)}
        with self._all_locked([doc.lock for doc in docs.values()]):
            snapshots = {k: doc._snapshot() for k, doc in docs.items()}
            current = {k: snap[0] for k, snap in snapshots.items()}
            changes = fn({k: None if c is None else c.value for k, c in current.items()})
            unknown = set(changes) - set(docs)
            if unknown:
                raise KeyError(f"modify_many returned keys it did not lock: {sorted(unknown)!r}")
            blobs = {}
            for k, value in changes.items():
                version, fence = docs[k]._next(current[k], None, fencing_token)
                blobs[k] = docs[k]._encode(value, version, fence)
            for k, blob in blobs.items():
                docs[k]._store(blob, snapshots[k][1])
                self._tally.count("writes")
        if changes:  # one directory fsync covers every rename above
            docs[next(iter(changes))]._durable()
        return changes


class BaseFileRepository:
    """A base class for your own file-backed repositories.

    Subclasses call the protected ``*_with_lock`` operations on JSON files below
    ``base_dir``; each is locked for threads and processes (see
    :class:`JsonDocument`). Paths are resolved inside ``base_dir``; escaping it raises
    ``ValueError``.

    Args:
        base_dir: The directory the repository's files live in.
        timeout: Lock timeout (``None`` waits forever).
        fsync: Durable writes.
    """

    def __init__(self, base_dir: str | os.PathLike[str], *, timeout: float | None = 30.0, fsync: bool = True) -> None:
        self._base = os.path.realpath(os.fspath(base_dir))
        try:
            os.makedirs(self._base, exist_ok=True)
        except OSError as exc:
            raise storage_error(self._base, exc, "create directory") from exc
        self._doc_options: dict[str, Any] = {"timeout": timeout, "fsync": fsync, "plain": True}

    def _document(self, path: str | os.PathLike[str]) -> JsonDocument:
        full = os.path.realpath(os.path.join(self._base, os.fspath(path)))
        if os.path.commonpath([full, self._base]) != self._base or full == self._base:
            raise ValueError("repository paths must stay inside the base directory")
        return JsonDocument(full, **self._doc_options)

    def read_with_lock(self, path: str | os.PathLike[str], default: Any = None) -> Any:
        """Read a JSON file under the shared lock (``default`` if missing).

        The lock makes the read wait for a writer, as the name says: the files of a
        ``BaseFileRepository`` are plain JSON that other programs may rewrite in place.
        """
        return self._document(path).read(default, consistent=True)

    def write_with_lock(self, path: str | os.PathLike[str], data: Any) -> None:
        """Replace a JSON file atomically under the exclusive lock."""
        self._document(path).write(data)

    def modify_with_lock(self, path: str | os.PathLike[str], fn: Callable[[Any], Any]) -> Any:
        """Read-modify-write a JSON file under the exclusive lock; returns the new value."""
        return self._document(path).modify(fn)

    def delete_with_lock(self, path: str | os.PathLike[str]) -> bool:
        """Delete a JSON file under the exclusive lock; ``True`` if it existed."""
        return self._document(path).delete()
