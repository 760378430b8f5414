"""JsonDocument: one JSON file, read-modify-write safe across threads and processes."""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from lockkit._internal.paths import check_file_mode
from lockkit.exceptions import (
    ConflictError,
    CorruptDataError,
    StaleWriterError,
    StorageError,
)
from lockkit.files._filelock import FileLock
from lockkit.files._strategy import StrategyName
from lockkit.storage._atomic import _atomic_write, directory_sync, read_with_stat, resolve_target, storage_error
from lockkit.storage._commit import Identity, commit_point, identity_of
from lockkit.storage._stats import DocumentStatistics, Tally


class Serializer(Protocol):
    """Turns values into JSON bytes and back (strict ``json`` by default)."""

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value`` to JSON bytes; raise ``TypeError``/``ValueError`` if it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Parse JSON bytes; raise ``ValueError`` on bad input."""
        ...


class NonFiniteNumberError(ValueError):
    """A JSON number that is not finite (``NaN``, ``Infinity``, ``1e400``): it cannot be stored back."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError("a number out of the range of a float")
    return value


def _no_constant(name: str) -> Any:
    raise NonFiniteNumberError("NaN or Infinity")


class JsonSerializer:
    """The default serializer: the standard library's ``json`` (compact, UTF-8).

    Numbers that are not finite are refused both ways (``NaN``, ``Infinity`` and numbers
    such as ``1e400`` that overflow a float): what can be read can always be written back.
    """

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value``."""
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """Parse ``data``; a non-finite number raises :class:`NonFiniteNumberError`."""
        return json.loads(data, parse_float=_finite_float, parse_constant=_no_constant)


def load_json(serializer: Serializer, raw: bytes, path: str) -> Any:
    """Parse a data file's bytes; every way they can be bad is :class:`CorruptDataError`.

    The message names the file and the rule, never the content.
    """
    try:
        return serializer.loads(raw)
    except RecursionError:
        raise CorruptDataError(f"{path!r} is nested too deeply to read as JSON", path=path) from None
    except NonFiniteNumberError:
        raise CorruptDataError(
            f"{path!r} holds a number that is not finite (NaN, Infinity or out of range), which JSON cannot store back",
            path=path,
        ) from None
    except ValueError as exc:
        raise CorruptDataError(f"{path!r} is not valid JSON: {type(exc).__name__}", path=path) from None


def dump_json(serializer: Serializer, value: Any) -> bytes:
    """Serialise a value to store; anything that cannot be stored is ``TypeError``."""
    try:
        return serializer.dumps(value)
    except RecursionError:
        raise TypeError("value is nested too deeply to be stored as JSON") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"value cannot be stored as JSON: {exc}") from None


class _Orjson:
    def __init__(self, module: Any) -> None:
        self._module = module

    def dumps(self, value: Any) -> bytes:
        return bytes(self._module.dumps(value))

    def loads(self, data: bytes) -> Any:
        return self._module.loads(data)


def default_serializer() -> Serializer:
    """The default serializer: :class:`JsonSerializer`.

    orjson is faster but writes NaN and infinities as ``null`` without complaint,
    which silently changes data; pass ``orjson_serializer()`` to opt in.
    """
    return JsonSerializer()


def orjson_serializer() -> Serializer:
    """A serializer on ``orjson`` (must be installed). Note: NaN is stored as ``null``.

    Raises:
        ImportError: orjson is not installed.
    """
    return _Orjson(importlib.import_module("orjson"))


_ENVELOPE_KEYS = frozenset({"lockkit", "version", "fence", "data"})


class _Content:
    __slots__ = ("fence", "value", "version")

    def __init__(self, value: Any, version: int, fence: int) -> None:
        self.value = value
        self.version = version
        self.fence = fence


class JsonDocument:
    """One JSON file guarded for threads and processes.

    Writes (``write``, ``modify``, ``delete``) take the exclusive lock of a
    :class:`FileLock` on the sidecar ``<path>.lock`` (never on the data file, which
    every write replaces with a new inode); threads of one process queue FIFO before
    the kernel lock. Every write is an atomic rename of a fully written (and, by
    default, fsynced) file, so reads need no lock: ``read`` opens the file and sees the
    old or the new version, whole, without waiting for writers or delaying them
    (``consistent=True`` takes the shared lock instead).

    Durability: a write returns once its new file and the directory entry are on
    stable storage. The directory ``fsync`` runs after the record's lock is released
    and is shared by the writers that renamed at about the same time (group commit),
    so concurrent writers pay for about one directory fsync, not one each.

    Each write stores a version (for optimistic concurrency) and the highest fencing
    token accepted (to refuse stale writers), in a small envelope:
    ``{"lockkit": 1, "version": 3, "fence": 17, "data": ...}``. A plain JSON file is
    read as version 0. With ``plain=True`` the file holds just the data (no versions,
    no fencing), for files other programs read.

    Ownership and reentrancy are the lock's: writes are not reentrant (calling
    ``write`` or ``modify``, or ``read(consistent=True)``, inside ``modify``'s function
    on the same document raises :class:`~lockkit.exceptions.DeadlockError`; a plain
    ``read`` there returns the stored value, before the change).

    Args:
        path: The data file.
        serializer: JSON serializer (default: the standard library's strict json).
        fsync: Durable writes.
        timeout: Lock timeout in seconds (``None`` waits forever).
        strategy: The :class:`FileLock` strategy.
        plain: Store bare JSON without the envelope.
        validate: A type (or predicate) the data must satisfy; anything else is
            :class:`~lockkit.exceptions.CorruptDataError`.
        stale_after: Marker strategy: seconds without heartbeat after which a marker
            is stale (see :class:`~lockkit.FileLock`).
        file_mode: Permission bits of the data file and its lock files when they are
            created (minus the umask); ``0o600`` by default. A rewrite keeps the data
            file's existing mode.
        follow_symlinks: A symlink at ``path`` is resolved once, here, and its target
            is the document (one lock, whichever path names the file). ``None``
            follows only links owned by the caller or root; ``True`` any; ``False`` none.
        track_hold_time: Measure how long each operation holds the lock (two clock
            reads per operation) for :meth:`statistics`.

    Raises:
        StorageError: ``path`` is a symbolic link that may not be followed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serializer: Serializer | None = None,
        fsync: bool = True,
        timeout: float | None = None,
        strategy: StrategyName = "kernel",
        plain: bool = False,
        validate: type | Callable[[Any], bool] | None = None,
        stale_after: float = 300.0,
        file_mode: int = 0o600,
        follow_symlinks: bool | None = None,
        track_hold_time: bool = False,
    ) -> None:
        self._tally = Tally(track_hold_time)
        self._path = resolve_target(os.path.abspath(os.fspath(path)), follow_symlinks)
        self._follow = follow_symlinks
        self._file_mode = check_file_mode(file_mode)
        self._serializer = serializer or default_serializer()
        self._fsync = fsync
        self._timeout = timeout
        self._plain = plain
        self._validate = validate
        lock_path = self._path + ".lock"
        self._read_lock = FileLock(lock_path, shared=True, timeout=timeout, file_mode=file_mode)
        self._write_lock = FileLock(
            lock_path, timeout=timeout, strategy=strategy, stale_after=stale_after, file_mode=file_mode
        )
        if strategy == "marker":
            self._read_lock = self._write_lock  # markers are exclusive only

    @property
    def path(self) -> str:
        """The data file."""
        return self._path

    @property
    def lock(self) -> FileLock:
        """The exclusive :class:`FileLock` guarding the file."""
        return self._write_lock

    # -- low level ---------------------------------------------------------------------

    def _load(self) -> _Content | None:
        return self._snapshot()[0]

    def _snapshot(self) -> tuple[_Content | None, Identity | None]:
        """The parsed content and the identity of the file it was read from."""
        found = read_with_stat(self._path)
        if found is None:
            return None, None
        raw, st = found
        return self._parse(raw), identity_of(st)

    def _parse(self, raw: bytes) -> _Content:
        if not raw.strip():
            raise CorruptDataError(f"{self._path!r} is empty: expected JSON (truncated write?)", path=self._path)
        parsed = load_json(self._serializer, raw, self._path)
        if isinstance(parsed, dict) and parsed.get("lockkit") == 1 and _ENVELOPE_KEYS.issuperset(parsed):
            version, fence = parsed.get("version"), parsed.get("fence", 0)
            if not isinstance(version, int) or not isinstance(fence, int) or "data" not in parsed:
                raise CorruptDataError(f"{self._path!r} has a damaged lockkit envelope", path=self._path)
            content = _Content(parsed["data"], version, fence)
        else:
            content = _Content(parsed, 0, 0)
        self._check(content.value)
        return content

    def _check(self, value: Any) -> None:
        rule = self._validate
        if rule is None:
            return
        ok = isinstance(value, rule) if isinstance(rule, type) else bool(rule(value))
        if not ok:
            expected = rule.__name__ if isinstance(rule, type) else "the validation rule"
            raise CorruptDataError(f"{self._path!r} holds a {type(value).__name__}, not {expected}", path=self._path)

    def _encode(self, value: Any, version: int, fence: int) -> bytes:
        data = dump_json(self._serializer, value)
        if self._plain:
            return data + b"\n"
        return b'{"lockkit":1,"version":%d,"fence":%d,"data":%s}\n' % (version, fence, data)

    def _store(self, blob: bytes, seen: Identity | None) -> None:
        """Commit ``blob`` through the commit point (see :mod:`lockkit.storage._commit`).

        The new file is fsynced and renamed here, under the record's lock; the
        directory fsync that makes the rename durable is left to :meth:`_durable`,
        called once the lock is released.
        """

        def commit(target: str) -> contextlib.AbstractContextManager[None]:
            return commit_point(target, self._write_lock, seen, self._timeout)

        try:
            with _atomic_write(
                self._path,
                "wb",
                "utf-8",
                self._fsync,
                True,
                commit,
                self._file_mode,
                self._follow,
                sync_directory=False,
                fsynced=self._tally.fsynced,
            ) as f:
                f.write(blob)
        except StorageError:
            raise
        except OSError as exc:
            raise storage_error(self._path, exc, "write") from exc

    def _durable(self) -> None:
        """Make this document's renames so far durable: a directory fsync shared with concurrent writers.

        Called after the record's lock is released, so the next writer of the record
        can go ahead while this one waits for the disk; the caller still returns only
        once a directory fsync that started after its rename has completed.
        """
        if self._fsync:
            t0 = time.monotonic()
            try:
                directory_sync.sync(os.path.dirname(self._path))
            except StorageError:
                self._tally.count("failures")
                raise
            finally:
                self._tally.fsynced(time.monotonic() - t0)

    def _next(
        self, current: _Content | None, expected_version: int | None, fencing_token: int | None
    ) -> tuple[int, int]:
        version = 0 if current is None else current.version
        fence = 0 if current is None else current.fence
        if expected_version is not None and expected_version != version:
            raise ConflictError(
                f"{self._path!r} is at version {version}, not the expected {expected_version}",
                expected=expected_version,
                actual=version,
            )
        if fencing_token is not None:
            self._check_fenceable()
            if fencing_token < fence:
                raise StaleWriterError(
                    f"fencing token {fencing_token} is older than {fence}, already accepted for {self._path!r}",
                    token=fencing_token,
                    latest=fence,
                )
            fence = fencing_token
        return version + 1, fence

    def _check_fenceable(self) -> None:
        if self._plain:
            raise ValueError(f"fencing tokens need lockkit's envelope: {self._path!r} is a plain document")

    def statistics(self) -> DocumentStatistics:
        """Counts of reads, writes, deletes, conflicts, timeouts and failures, and lock wait and hold times."""
        return self._tally.snapshot()

    # -- public ----------------------------------------------------------------------

    def read(self, default: Any = None, *, consistent: bool = False, fencing_token: int | None = None) -> Any:
        """The current value (``default`` if the file does not exist), without taking a lock.

        Every write replaces the file by an atomic rename, so a read that opens the
        file sees one whole version, the old or the new, never a torn one: reads take
        no lock, never wait for a writer, and never delay one. What they return can be
        overtaken by a write the moment after (as with any read that then lets go of
        its lock); use :meth:`modify` to change a value based on what it is.

        Args:
            default: Returned when the file does not exist.
            consistent: Take the shared lock for the read, so it waits for a writer
                that holds the exclusive lock (and one reading inside this document's
                :meth:`modify` function raises :class:`~lockkit.exceptions.DeadlockError`).
                Only needed when the file is also written by a program that rewrites
                it in place instead of renaming; to read several records at one
                instant, use :meth:`JsonRepository.get_many` with ``consistent=True``.
            fencing_token: The token of a lock held across this read and a later write
                (a :class:`~lockkit.redis.RedisLock`, say). The storage records it before
                returning, under the exclusive lock, so a holder with an older token
                that lost its lock meanwhile can no longer write what it computed from
                an older read. Raises :class:`~lockkit.exceptions.StaleWriterError` if a
                newer token was already recorded.

        Raises:
            CorruptDataError: The file is not valid JSON or fails validation.
            StorageError: The file cannot be read.
            LockTimeoutError: The lock timeout ran out.
            StaleWriterError: ``fencing_token`` is older than one already recorded.
        """
        content = self.read_versioned(consistent=consistent, fencing_token=fencing_token)
        return default if content is None else content[0]

    def read_versioned(self, *, consistent: bool = False, fencing_token: int | None = None) -> tuple[Any, int] | None:
        """``(value, version)``, or ``None`` if the file does not exist (see :meth:`read`)."""
        if fencing_token is not None:
            return self._fenced_read(fencing_token)
        with (
            self._tally.locked(self._read_lock, self._timeout, "reads") if consistent else self._tally.unlocked("reads")
        ):
            content = self._load()
        return None if content is None else (content.value, content.version)

    def _fenced_read(self, token: int) -> tuple[Any, int] | None:
        self._check_fenceable()
        with self._tally.locked(self._write_lock, self._timeout, "reads"):
            content, seen = self._snapshot()
            if content is None:
                return None  # nothing stored yet: the first write records the token
            _, fence = self._next(content, None, token)
            stored = fence > content.fence
            if stored:  # record it; the data and version stay as they are
                self._store(self._encode(content.value, content.version, fence), seen)
        if stored:
            self._durable()
        return content.value, content.version

    def write(self, value: Any, *, expected_version: int | None = None, fencing_token: int | None = None) -> int:
        """Replace the value; returns the new version.

        The value is serialised before the lock is taken: an unserialisable value
        raises ``TypeError`` and nothing is written. An existing corrupt file is not
        overwritten (delete it first if you mean to).

        Args:
            value: The new value.
            expected_version: Fail with :class:`~lockkit.exceptions.ConflictError` unless the file
                is at this version (0 for a missing or plain file).
            fencing_token: Fail with :class:`~lockkit.exceptions.StaleWriterError` if a higher
                token was already accepted; otherwise remember this one.
        """
        self._encode(value, 0, 0)  # fail early, before any lock or file is touched
        with self._tally.locked(self._write_lock, self._timeout, "writes"):
            current, seen = self._snapshot()
            version, fence = self._next(current, expected_version, fencing_token)
            self._store(self._encode(value, version, fence), seen)
        self._durable()
        return version

    def modify(self, fn: Callable[[Any], Any], *, fencing_token: int | None = None) -> Any:
        """Read-modify-write under the exclusive lock; returns the new value.

        ``fn`` gets the current value (``None`` if the file does not exist) and returns
        the new one. If ``fn`` raises, nothing is written and the error propagates. A
        corrupt file raises :class:`~lockkit.exceptions.CorruptDataError` and is never overwritten.
        """
        if fencing_token is not None:
            self._check_fenceable()
        with self._tally.locked(self._write_lock, self._timeout, "writes"):
            current, seen = self._snapshot()
            new = fn(None if current is None else current.value)
            version, fence = self._next(current, None, fencing_token)
            self._store(self._encode(new, version, fence), seen)
        self._durable()
        return new

    def delete(self) -> bool:
        """Delete the file and its lock file; ``True`` if the data file existed.

        The lock file is removed while the exclusive lock is held: a waiter that then
        gets the old file finds it unlinked and locks the new one, so exclusion holds
        and deleted records leave no lock files behind (kernel strategy; a marker's
        empty directory is replaced by the next acquirer).
        """
        with self._tally.locked(self._write_lock, self._timeout, "deletes"):
            self._write_lock.verify()
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise storage_error(self._path, exc, "delete") from exc
            if self._write_lock.strategy == "kernel":
                with contextlib.suppress(OSError):
                    os.unlink(self._write_lock.path)
            return True

    def version(self) -> int:
        """The stored version (0 if the file is missing or plain)."""
        content = self.read_versioned()
        return 0 if content is None else content[1]

    def __repr__(self) -> str:
        return f"<lockkit.JsonDocument {self._path!r}>"
