"""PersistentStore: a thread-safe dict persisted (optionally encrypted) to one file."""

from __future__ import annotations

import _thread
import atexit
import contextlib
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline
from lockkit._internal.paths import check_file_mode
from lockkit._internal.threads import start_daemon
from lockkit.exceptions import CorruptDataError, DecryptionError, StoreClosedError
from lockkit.files._filelock import FileLock
from lockkit.resilience._backoff import Backoff
from lockkit.storage._atomic import atomic_write, read_optional, resolve_target
from lockkit.storage._crypto import EncryptionService, file_associated_data
from lockkit.storage._document import JsonSerializer, Serializer, dump_json, load_json

SaveMode = Literal["immediate", "debounced", "background"]
Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of a :class:`PersistentStore`.

    Attributes:
        entries: Live entries in memory.
        changes: Changes made since the store was opened.
        saves: Successful saves to disk.
        failures: Failed save attempts (each is retried).
        pending: Whether changes are waiting to be saved.
        last_error: Class name of the last save error, or ``None``.
    """

    entries: int
    changes: int
    saves: int
    failures: int
    pending: bool
    last_error: str | None


_open_stores: weakref.WeakSet[PersistentStore] = weakref.WeakSet()
_open_stores_mu = threading.Lock()  # a WeakSet is not safe to change and list from several threads at once


def _stores_open() -> list[PersistentStore]:
    with _open_stores_mu:
        return list(_open_stores)


def flush_all_stores(timeout: float | None = None) -> bool:
    """Flush every open store; ``False`` if any could not finish (errors are logged)."""
    ok = True
    for store in _stores_open():
        try:
            ok = store.flush(timeout) and ok
        except Exception as exc:
            ok = False
            _log.warning("lockkit.save_failed", store=store.path, error=type(exc).__name__, at="shutdown")
    return ok


def _close_all_at_exit() -> None:
    for store in _stores_open():
        with contextlib.suppress(Exception):
            store.close()


atexit.register(_close_all_at_exit)


class _SignalFlusher:
    """A thread that flushes every store when a signal handler asks, then lets the signal act.

    The handler only writes the signal number to a pipe (async-signal-safe, no lock):
    the interrupted code may hold a store's lock, and a handler that flushed in place
    would wait for it forever. The thread flushes once the interrupted code has let go,
    then re-delivers the signal: to its previous Python handler in the main thread, or
    with the default action (so the process exits with the signal's own status).
    """

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._pid = -1
        self._write = -1
        self._previous: dict[int, Any] = {}

    def install(self, signals: tuple[int, ...]) -> None:
        with self._mu:
            if self._pid != os.getpid():  # first use, or in a forked child: a thread of our own
                read, self._write = os.pipe()
                os.set_inheritable(read, False)
                os.set_inheritable(self._write, False)
                self._pid = os.getpid()
                start_daemon(self._run, "lockkit-signal-flush", read)
            for sig in signals:
                current = signal.getsignal(sig)
                if current is not self._handler:
                    self._previous[sig] = current
                    signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        previous = self._previous.get(signum)
        # Main thread, inside the handler: restore the previous disposition now, so a
        # second signal acts at once, and the re-delivery below reaches it.
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.write(self._write, bytes([signum]))

    def _run(self, read: int) -> None:
        while True:
            data = os.read(read, 1)
            if not data:
                return
            signum = data[0]
            flush_all_stores(timeout=10)
            previous = self._previous.get(signum)
            if callable(previous):
                _thread.interrupt_main(signal.Signals(signum))  # runs the previous handler in the main thread
            elif previous != signal.SIG_IGN:
                os.kill(os.getpid(), signum)  # the default action, with the signal's own status


_flusher = _SignalFlusher()


def flush_stores_on_signal(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Flush every open store when one of ``signals`` arrives, then let the signal act.

    The flush runs in a thread of its own, never in the signal handler: the interrupted
    code may hold a store's lock. Once it is done, the signal acts as it would have: the
    previous Python handler runs in the main thread, or the default action ends the
    process with the signal's status. A second signal during the flush acts at once.
    Call this from the main thread, e.g. in a gunicorn ``post_worker_init`` hook.
    """
    _flusher.install(signals)


class PersistentStore:
    """A thread-safe mapping of string keys to JSON values, persisted to one file.

    Save strategies:

    * ``"immediate"``: every change is on disk before the call returns.
    * ``"debounced"``: changes within ``debounce`` seconds of the first unsaved change
      are coalesced into one save (at most one save per window; the last state always
      lands).
    * ``"background"``: a single writer thread saves the latest state after each
      change; changes made during a save are coalesced into the next one. A failed
      save is logged (``lockkit.save_failed``) and retried with backoff, never dropped.

    Saves are whole-file :func:`~lockkit.atomic_write` calls under the exclusive
    :class:`~lockkit.FileLock` of ``<path>.lock``; a later snapshot is never overwritten
    by an earlier one. With several processes on one file the last writer wins for the
    whole map, unless ``merge`` is given: then each save reads the file under the lock
    and writes ``merge(on_disk, in_memory)``.

    Ownership and reentrancy: methods may be called from any thread; they are not
    reentrant from inside ``merge``.

    Args:
        path: The store's file.
        save: ``"immediate"``, ``"debounced"`` or ``"background"``.
        debounce: The debounce window in seconds.
        codec: An :class:`~lockkit.storage.EncryptionService` to encrypt the file (bound to its path).
        ttl: Default time-to-live of entries in seconds (``None``: no expiry).
        on_corrupt: ``"raise"`` (refuse to start, keep the file) or ``"backup"`` (move
            the file aside with a timestamp and start empty).
        merge: ``merge(on_disk, in_memory) -> merged`` for multi-process stores.
        fsync: Durable saves.
        timeout: Lock timeout in seconds for loads and saves.
        serializer: JSON serializer (default: strict json).
        file_mode: Permission bits of the store's file and its lock file when they are
            created (minus the umask). ``0o600`` by default: a store often holds
            sessions or tokens, and read access to an unencrypted store is access to them.

    Raises:
        CorruptDataError: The file is corrupt and ``on_corrupt="raise"``.
        DecryptionError: The file cannot be decrypted and ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        save: SaveMode = "immediate",
        debounce: float = 1.0,
        codec: EncryptionService | None = None,
        ttl: float | None = None,
        on_corrupt: Literal["raise", "backup"] = "raise",
        merge: Merge | None = None,
        fsync: bool = True,
        timeout: float | None = 30.0,
        serializer: Serializer | None = None,
        file_mode: int = 0o600,
    ) -> None:
        self._file_mode = check_file_mode(file_mode)
        if save not in ("immediate", "debounced", "background"):
            raise ValueError("save must be 'immediate', 'debounced' or 'background'")
        if on_corrupt not in ("raise", "backup"):
            raise ValueError("on_corrupt must be 'raise' or 'backup'")
        if debounce < 0 or (ttl is not None and ttl <= 0):
            raise ValueError("debounce must be >= 0 and ttl > 0 seconds")
        self._path = resolve_target(os.path.abspath(os.fspath(path)))  # one lock, whatever path names it
        self._mode: SaveMode = save
        self._debounce = float(debounce)
        self._codec = codec
        self._ttl = ttl
        self._merge = merge
        self._fsync = fsync
        self._timeout = timeout
        self._serializer = serializer or JsonSerializer()
        self._file_lock = FileLock(self._path + ".lock", timeout=timeout, file_mode=file_mode)
        self._read_lock = FileLock(self._path + ".lock", shared=True, timeout=timeout, file_mode=file_mode)
        self._mu = threading.Condition(threading.Lock())
        self._save_mu = threading.Lock()
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._gen = 0
        self._saved_gen = 0
        self._touched: dict[str, int] = {}  # key -> the change (gen) that last set or removed it here
        self._dirty_since = 0.0
        self._saves = 0
        self._failures = 0
        self._last_error: str | None = None
        self._closed = False
        self._writer: threading.Thread | None = None
        self._data = self._load(on_corrupt)
        with _open_stores_mu:
            _open_stores.add(self)

    @property
    def path(self) -> str:
        """The store's file."""
        return self._path

    # -- file format ---------------------------------------------------------------------

    def _decode(self, blob: bytes) -> dict[str, tuple[Any, float | None]]:
        if self._codec is not None:
            blob = self._codec.decrypt(blob, associated_data=file_associated_data(self._path), path=self._path)
        parsed = load_json(self._serializer, blob, self._path)
        if not isinstance(parsed, dict):
            raise CorruptDataError(f"{self._path!r} does not hold a JSON object", path=self._path)
        if parsed.get("lockkit_store") != 1:
            return {str(k): (v, None) for k, v in parsed.items()}  # a plain JSON object: adopt it
        entries = parsed.get("entries")
        if not isinstance(entries, dict):
            raise CorruptDataError(f"{self._path!r} has a damaged store envelope", path=self._path)
        out: dict[str, tuple[Any, float | None]] = {}
        for k, pair in entries.items():
            if not (
                isinstance(pair, list) and len(pair) == 2 and (pair[1] is None or isinstance(pair[1], (int, float)))
            ):
                raise CorruptDataError(f"{self._path!r} has a damaged entry", path=self._path)
            out[k] = (pair[0], pair[1])
        return out

    def _encode(self, entries: dict[str, tuple[Any, float | None]]) -> bytes:
        blob = dump_json(
            self._serializer, {"lockkit_store": 1, "entries": {k: [v, e] for k, (v, e) in entries.items()}}
        )
        if self._codec is not None:
            blob = self._codec.encrypt(blob, associated_data=file_associated_data(self._path))
        return blob

    def _read_file(self) -> dict[str, tuple[Any, float | None]] | None:
        blob = read_optional(self._path)
        return None if blob is None else self._decode(blob)

    def _load(self, on_corrupt: str) -> dict[str, tuple[Any, float | None]]:
        with self._read_lock:
            try:
                return self._read_file() or {}
            except Exception as exc:
                if on_corrupt != "backup" or not isinstance(exc, (CorruptDataError, DecryptionError)):
                    raise
        with self._file_lock:
            aside = f"{self._path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.replace(self._path, aside)
        _log.warning("lockkit.store_corrupt", store=self._path, moved_to=aside)
        return {}

    # -- mapping -------------------------------------------------------------------------

    def _live(self, key: str, entry: tuple[Any, float | None]) -> bool:
        if entry[1] is not None and entry[1] <= time.time():
            del self._data[key]
            return False
        return True

    def _check_value(self, key: object, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"store keys must be str, not {type(key).__name__}")
        dump_json(self._serializer, value)  # refuse what cannot be saved, before changing anything

    def __getitem__(self, key: str) -> Any:
        with self._mu:
            entry = self._data.get(key)
            if entry is None or not self._live(key, entry):
                raise KeyError("no such entry")  # the key itself may be a secret (session id)
            return entry[0]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if missing or expired."""
        try:
            return self[key]
        except KeyError:
            return default

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (expiring after ``ttl`` or the store's default)."""
        self._check_value(key, value)
        life = ttl if ttl is not None else self._ttl
        with self._mu:
            self._ensure_open()
            self._data[key] = (value, None if life is None else time.time() + life)
            self._changed_locked(key)
        self._after_change()

    __setitem__ = set

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it was there."""
        with self._mu:
            self._ensure_open()
            if self._data.pop(key, None) is None:
                return False
            self._changed_locked(key)
        self._after_change()
        return True

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyError("no such entry")

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default``)."""
        with self._mu:
            self._ensure_open()
            entry = self._data.pop(key, None)
            live = entry is not None and (entry[1] is None or entry[1] > time.time())
            if entry is not None:
                self._changed_locked(key)
        if entry is not None:
            self._after_change()
        if live:
            return entry[0]  # type: ignore[index]
        if default is _MISSING:
            raise KeyError("no such entry")
        return default

    def update(self, other: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Set several keys as one change (one save in immediate mode)."""
        items = {**(other or {}), **kwargs}
        for k, v in items.items():
            self._check_value(k, v)
        expires = None if self._ttl is None else time.time() + self._ttl
        with self._mu:
            self._ensure_open()
            for k, v in items.items():
                self._data[k] = (v, expires)
            self._changed_locked(*items)
        self._after_change()

    def clear(self) -> None:
        """Remove every entry (one change)."""
        with self._mu:
            self._ensure_open()
            removed = list(self._data)
            self._data.clear()
            self._changed_locked(*removed)
        self._after_change()

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of the live ``(key, value)`` pairs."""
        with self._mu:
            return [(k, e[0]) for k, e in list(self._data.items()) if self._live(k, e)]

    def keys(self) -> list[str]:
        """A snapshot of the live keys."""
        return [k for k, _ in self.items()]

    def values(self) -> list[Any]:
        """A snapshot of the live values."""
        return [v for _, v in self.items()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.items())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    # -- saving --------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self._path!r} is closed")

    def _changed_locked(self, *keys: str) -> None:
        if self._gen == self._saved_gen:  # clean -> dirty: the writer has something to do now
            self._dirty_since = time.monotonic()
            self._gen += 1
            self._mu.notify_all()
        else:  # already dirty: the writer is due anyway, waking it per change costs a thread switch
            self._gen += 1
        for key in keys:
            self._touched[key] = self._gen

    def _fold_locked(self, base: int, fresh: dict[str, tuple[Any, float | None]]) -> None:
        """Adopt ``fresh`` (read or merged from the file) without losing newer local changes.

        ``base`` is the change the file reflects: a key changed here after it keeps its
        live entry (set or removed); every other key takes the file's.
        """
        for key in set(fresh) | set(self._data):
            if self._touched.get(key, -1) > base:
                continue  # changed here since: the newer change wins
            entry = fresh.get(key)
            if entry is None:
                self._data.pop(key, None)
            else:
                self._data[key] = entry
        self._touched = {k: g for k, g in self._touched.items() if g > base}

    def _after_change(self) -> None:
        if self._mode == "immediate":
            self._save()
        elif self._writer is None:
            with self._mu:
                if self._writer is None and not self._closed:
                    self._writer = start_daemon(self._run, f"lockkit-store:{os.path.basename(self._path)}")

    def _save(self, timeout: float | None = None) -> bool:
        if not self._save_mu.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            with self._mu:
                gen = self._gen
                if gen <= self._saved_gen:
                    return True
                now = time.time()
                snapshot = {k: e for k, e in self._data.items() if e[1] is None or e[1] > now}
            if not self._file_lock.acquire(timeout=self._timeout if timeout is None else timeout):
                raise self._file_lock._timeout_error(self._timeout if timeout is None else timeout)
            try:
                if self._merge is not None:
                    snapshot = self._merged(snapshot, gen)
                blob = self._encode(snapshot)
                with atomic_write(self._path, "wb", fsync=self._fsync, file_mode=self._file_mode) as f:
                    f.write(blob)
            finally:
                self._file_lock.release()
        except Exception as exc:
            with self._mu:
                self._failures += 1
                self._last_error = type(exc).__name__
            raise
        finally:
            self._save_mu.release()
        with self._mu:
            self._saved_gen = max(self._saved_gen, gen)
            self._touched = {k: g for k, g in self._touched.items() if g > self._saved_gen}  # folded or saved
            self._saves += 1
            if self._gen > self._saved_gen:  # changed while saving: a new debounce window starts now
                self._dirty_since = time.monotonic()
            self._mu.notify_all()
        return True

    def _merged(self, mine: dict[str, tuple[Any, float | None]], gen: int) -> dict[str, tuple[Any, float | None]]:
        assert self._merge is not None
        disk = self._read_file() or {}
        merged = self._merge({k: v for k, (v, _) in disk.items()}, {k: v for k, (v, _) in mine.items()})
        out = {k: (v, (mine.get(k) or disk.get(k) or (None, None))[1]) for k, v in merged.items()}
        with self._mu:
            self._fold_locked(gen, out)
        return out

    def _run(self) -> None:
        backoff: Backoff | None = None
        while True:
            with self._mu:
                while self._gen <= self._saved_gen and not self._closed:
                    self._mu.wait()
                if self._gen <= self._saved_gen:
                    return  # closed and clean
                if self._mode == "debounced" and not self._closed:
                    window = Deadline(self._debounce, start=self._dirty_since)
                    while not self._closed and self._gen > self._saved_gen and (left := window.remaining()):
                        self._mu.wait(left)
            try:
                self._save()
                backoff = None
            except Exception as exc:
                backoff = backoff or Backoff(0.05, 5.0)
                delay = backoff.next()
                _log.warning(
                    "lockkit.save_failed", store=self._path, error=type(exc).__name__, retry_in=round(delay, 3)
                )
                with self._mu:
                    if self._closed:
                        return
                    self._mu.wait(delay)

    def flush(self, timeout: float | None = None) -> bool:
        """Return once every change made before the call is on disk.

        Pending debounce windows fire early and a background save runs now, in the
        calling thread. ``False`` if ``timeout`` ran out first.

        Raises:
            StorageError: The save failed (the changes stay pending and are retried).
        """
        return self._save(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the writer thread; later changes raise :class:`StoreClosedError`."""
        if self._closed:
            return
        self.flush(timeout)
        with self._mu:
            self._closed = True
            self._mu.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
        with _open_stores_mu:
            _open_stores.discard(self)

    def reload(self) -> None:
        """Re-read the file (other processes may have saved).

        Unsaved local changes are merged with ``merge`` if given; otherwise they are
        saved first (last writer wins), then the file is read back.
        """
        with self._mu:
            dirty = self._gen > self._saved_gen
        if dirty:
            self.flush()
        with self._mu:
            base = self._saved_gen  # what the file holds of ours; later changes are kept
        with self._read_lock:
            disk = self._read_file() or {}
        with self._mu:
            self._fold_locked(base, disk)

    def statistics(self) -> StoreStatistics:
        """A snapshot of the store's counters."""
        entries = len(self)
        with self._mu:
            return StoreStatistics(
                entries, self._gen, self._saves, self._failures, self._gen > self._saved_gen, self._last_error
            )

    def __enter__(self) -> PersistentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lockkit.PersistentStore {self._path!r} save={self._mode!r}>"  # never the contents
