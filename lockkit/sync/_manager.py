"""LockManager: keyed FIFO locks that cost nothing once released."""

from __future__ import annotations

from _thread import allocate_lock
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import partial
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline, check_timeout, monotonic, timeout_error
from lockkit._internal.stats import Counters, thread_name
from lockkit.exceptions import LockTimeoutError, NotOwnerError
from lockkit.sync._guard import ConditionSupport
from lockkit.sync._multi import acquire_all, sorted_keys
from lockkit.sync._waitqueue import SXQueue, Waiter, abandon, announcer, park

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics

R = TypeVar("R")

#: Per-key statistics are kept for at most this many keys (least recently used go first).
MAX_TRACKED_KEYS = 1024


class _Entry(SXQueue):
    """One key's queue plus a count of its holders and waiters (deleted at zero)."""

    __slots__ = ("users",)

    def __init__(self, writer: int | None = None) -> None:  # no super() call: this is the hot path
        self._writer = writer
        self._readers = ()
        self._waiters = ()
        self.users = 0 if writer is None else 1


class KeyStatistics:
    """Mutable per-key counters kept by managers that track keys (FileMutex)."""

    __slots__ = ("acquisitions", "counters")

    def __init__(self) -> None:
        self.acquisitions = 0
        self.counters = Counters()


class LockHandle:
    """The hold on one key, returned by :meth:`LockManager.acquire`.

    Release it by calling it, by :meth:`release`, or by using it as a context manager.
    It belongs to the thread that acquired it: releasing it from another thread, or
    twice, raises :class:`~lockkit.exceptions.NotOwnerError`.
    """

    __slots__ = ("_entry", "_ident", "_key", "_manager", "_orphan", "_released", "shared")

    def __init__(self, manager: LockManager, key: Hashable, entry: _Entry, ident: int, shared: bool) -> None:
        self._manager = manager
        self._key = key
        self._entry = entry
        self._ident = ident
        self._released = False
        self.shared = shared

    @property
    def key(self) -> Hashable:
        """The key this handle holds."""
        return self._key

    @property
    def released(self) -> bool:
        """Whether the hold was released."""
        return self._released

    def release(self) -> None:
        """Release the hold (and delete the key's entry if nobody else uses it).

        Raises:
            NotOwnerError: Released twice, or from a thread other than the acquirer.

        """
        if self._released:
            raise NotOwnerError("this lock handle was already released")
        if self._ident != get_ident() and not getattr(self, "_orphan", False):
            raise NotOwnerError("a lock handle can only be released by the thread that acquired it")
        self._released = True
        entry = self._entry
        manager = self._manager
        with manager._mu:
            if entry.users == 1 and entry._writer is not None:  # fast path: sole exclusive user
                entry._writer = None
                entry.users = 0
                if manager._entries.get(self._key) is entry:
                    del manager._entries[self._key]
                return
            entry.release(self._ident)
            manager._drop_user(self._key, entry)

    __call__ = release

    def _release_for_owner(self) -> None:
        # Release from another thread on the owner's behalf (a lock collected while
        # held). The flag is read only when the owner check fails: no cost on the hot path.
        self._orphan = True
        self.release()

    def __enter__(self) -> LockHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._released:
            self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<lockkit.sync.LockHandle key={self._key!r} {'shared' if self.shared else 'exclusive'} {state}>"


class LockManager:
    """Keyed locks: one FIFO shared/exclusive lock per key, created on demand.

    Fairness: FIFO per key (task-fair in shared mode, as :class:`~lockkit.RWLock`).
    Different keys never block each other.

    Ownership: :meth:`acquire` returns a :class:`LockHandle` owned by the calling
    thread. Reentrancy: none; acquiring a key the calling thread already holds raises
    :class:`~lockkit.exceptions.DeadlockError`.

    Memory: each key's entry counts its holders and waiters and is deleted when the
    count reaches zero, so a million distinct keys leave nothing behind (no weak
    references, no dependence on garbage collection timing).

    Args:
        name: A name for statistics, events and error messages.
        track_keys: Keep per-key statistics for the most recently used keys
            (see :meth:`key_statistics`).
        show_keys: Show keys in error messages and log events. Off by default: keys
            are often session ids or user names, and messages end up in logs and
            error trackers; a key is then shown as ``key#`` and a short hash of its
            ``repr``, enough to tell keys apart (not to hide a guessable key from
            someone who tries candidates).

    """

    __slots__ = ("__weakref__", "_acquisitions", "_entries", "_keystats", "_mu", "_name", "_show_keys", "_stats")

    def __init__(self, name: str | None = None, *, track_keys: bool = False, show_keys: bool = False) -> None:
        self._name = name
        self._show_keys = show_keys
        self._acquisitions = 0
        self._stats = Counters()
        self._keystats: OrderedDict[Hashable, KeyStatistics] | None = OrderedDict() if track_keys else None
        self._reset_after_fork()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread survives: it keeps its own holds.
        self._mu = allocate_lock()
        me = get_ident()
        kept: dict[Hashable, _Entry] = {}
        for key, entry in getattr(self, "_entries", {}).items():
            if entry.holds(me):
                entry.keep_only(me)
                entry.users = 1
                kept[key] = entry
        self._entries = kept

    # -- acquire / release ----------------------------------------------------------

    def acquire(self, key: Hashable, timeout: float | None = None, shared: bool = False) -> LockHandle:
        """Acquire the lock for ``key``.

        Args:
            key: Any hashable key.
            timeout: Seconds to wait at most; ``None`` waits forever, ``0`` is one attempt.
            shared: Take the key in shared mode.

        Returns:
            A :class:`LockHandle`; call it, or use it in ``with``, to release.

        Raises:
            LockTimeoutError: The timeout ran out (the error names the holder).
            DeadlockError: The calling thread already holds ``key``.

        """
        timeout = check_timeout(True, timeout)
        handle = self._take(key, timeout, shared)
        if handle is None:
            raise self._timeout_error(key, timeout)
        return handle

    def try_acquire(self, key: Hashable, timeout: float | None = None, shared: bool = False) -> LockHandle | None:
        """Like :meth:`acquire`, but return ``None`` when the timeout runs out.

        Raises:
            ValueError: A negative or NaN timeout.
            TypeError: A timeout that is not a number.
            DeadlockError: The calling thread already holds ``key``.

        """
        return self._take(key, check_timeout(True, timeout), shared)

    def _take(
        self, key: Hashable, timeout: float | None, shared: bool = False, on_queued: Callable[[], None] | None = None
    ) -> LockHandle | None:
        # ``timeout`` is already checked (None or seconds >= 0). ``on_queued`` runs once the
        # caller is in the key's wait queue (not if it is granted without waiting).
        if not shared and self._keystats is None:  # fast path: a key nobody uses, exclusive
            me = get_ident()
            with self._mu:
                if key not in self._entries:
                    entry = self._entries[key] = _Entry(me)
                    self._acquisitions += 1
                    return LockHandle(self, key, entry, me, False)
        return self._try_acquire(key, timeout, shared, on_queued)

    def _try_acquire(
        self, key: Hashable, timeout: float | None, shared: bool, on_queued: Callable[[], None] | None = None
    ) -> LockHandle | None:
        me = get_ident()
        waiter: Waiter | None = None
        entry: _Entry | None = None
        try:
            with self._mu:
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry()
                entry.users += 1
                if timeout == 0 and entry.holds(me):  # a try cannot deadlock: answer like threading.Lock
                    self._drop_user(key, entry)
                    return None
                taken = entry.try_take(me, shared)
                if taken:
                    self._acquisitions += 1
                    if self._keystats is not None:
                        self._key_stats(key).acquisitions += 1
                    return LockHandle(self, key, entry, me, shared)
                if timeout == 0:
                    self._stats.contentions += 1
                    self._drop_user(key, entry)
                    return None
                waiter = entry.enqueue(me, shared)
                depth = len(entry._waiters)
                deep = self._stats.queued(depth, self._name, warn=self._keystats is None)
                if self._keystats is not None:  # the per-key counters warn, naming the key
                    deep = self._key_stats(key).counters.queued(depth)
            if on_queued is not None:
                on_queued()  # in the queue now: statistics that say "queued" are true from here
            return self._wait(key, entry, waiter, timeout, shared, deep)
        except BaseException:
            if entry is not None and waiter is None:  # refused or interrupted before queueing
                with self._mu:
                    self._drop_user(key, entry)
            elif waiter is not None and entry is not None:
                abandon(waiter, self._mu, partial(self._cancel_in, key, entry), partial(self._revoke_in, key, entry))
            raise

    def _cancel_in(self, key: Hashable, entry: _Entry, waiter: Waiter) -> None:
        # Under self._mu: a waiter gave up before its grant.
        entry.cancel(waiter)
        self._drop_user(key, entry)

    def _revoke_in(self, key: Hashable, entry: _Entry, waiter: Waiter) -> None:
        # Under self._mu: pass on a grant whose waiter gave up.
        entry.release(waiter.ident)
        self._drop_user(key, entry)
        if waiter.counted:
            self._acquisitions -= 1

    def _wait(
        self, key: Hashable, entry: _Entry, waiter: Waiter, timeout: float | None, shared: bool, deep: int
    ) -> LockHandle | None:
        me = waiter.ident
        shown = self._shown(key)
        cancel = partial(self._cancel_in, key, entry)
        revoke = partial(self._revoke_in, key, entry)
        try:
            granted = park(
                waiter,
                self._mu,
                timeout,
                cancel,
                lambda: self._describe_entry(entry),
                self._name,
                announcer(
                    f"{self._name or 'lockmanager'}:{shown}",  # names the resource (a file, a key)
                    deep,
                    key=shown,
                    shared=shared,
                ),
            )
            waited = monotonic() - waiter.since
            with self._mu:
                self._stats.waited(waited, granted)
                if granted:
                    self._acquisitions += 1
                    waiter.counted = True
                if self._keystats is not None:
                    ks = self._key_stats(key)
                    ks.counters.waited(waited, granted)
                    if granted:
                        ks.acquisitions += 1
                    if not entry._waiters:
                        ks.counters.drained()
                if not entry._waiters:
                    self._stats.drained()
            handle = LockHandle(self, key, entry, me, shared) if granted else None
        except BaseException:
            abandon(waiter, self._mu, cancel, revoke)
            raise
        _log.slow_wait(self._name, waited, granted)
        return handle

    def _drop_user(self, key: Hashable, entry: _Entry) -> None:
        # Under self._mu.
        entry.users -= 1
        if entry.users == 0 and self._entries.get(key) is entry:
            del self._entries[key]

    def _key_stats(self, key: Hashable) -> KeyStatistics:
        ks = self._keystats
        assert ks is not None
        stats = ks.get(key)
        if stats is None:
            stats = ks[key] = KeyStatistics()
            if len(ks) > MAX_TRACKED_KEYS:
                ks.popitem(last=False)
        else:
            ks.move_to_end(key)
        return stats

    def _describe_entry(self, entry: _Entry) -> str | None:
        with self._mu:
            writer, readers = entry._writer, len(entry._readers)
        if writer is not None:
            return f"thread {thread_name(writer)!r} (exclusive)"
        if readers:
            return f"{readers} reader thread(s)"
        return None

    def _timeout_error(self, key: Hashable, timeout: float | None) -> LockTimeoutError:
        with self._mu:
            entry = self._entries.get(key)
        holder = None if entry is None else self._describe_entry(entry)
        shown = self._shown(key)
        return timeout_error(f"key {shown}", timeout, resource=shown, holder=holder)

    def _shown(self, key: Hashable) -> str:
        """``key`` as messages and events show it: its repr, or a short hash of it."""
        text = repr(key)
        if self._show_keys:
            return text
        import hashlib  # loaded when a key is first shown: most processes never need it

        return "key#" + hashlib.blake2s(text.encode("utf-8", "backslashreplace"), digest_size=4).hexdigest()

    @contextmanager
    def lock(self, *keys: Hashable, shared: bool = False, timeout: float | None = None) -> Iterator[list[LockHandle]]:
        """Hold several keys at once, taken in one sorted order (deadlock-free).

        Args:
            keys: The keys; duplicates are taken once.
            shared: Take every key in shared mode.
            timeout: One deadline for all keys together.

        Yields:
            The handles, in acquisition order.

        Raises:
            LockTimeoutError: The deadline ran out; keys already taken are released.

        """
        handles, missed = acquire_all(
            keys,
            lambda key, left: self._try_acquire(key, left, shared),
            LockHandle.release,
            timeout=timeout,
            order=sorted_keys,
        )
        if missed:
            raise self._timeout_error(missed[0], timeout)
        try:
            yield handles
        finally:
            for handle in reversed(handles):
                if not handle.released:
                    handle.release()

    def with_lock(self, key: Hashable, fn: Callable[[], R], *, timeout: float | None = None, shared: bool = False) -> R:
        """Call ``fn()`` while holding ``key`` and return its result."""
        with self.acquire(key, timeout, shared):
            return fn()

    def get_lock(self, key: Hashable, *, shared: bool = False, timeout: float | None = None) -> KeyLock:
        """A lock-like view of one key, following the full lockkit lock contract."""
        return KeyLock(self, key, shared=shared, timeout=timeout)

    # -- introspection ----------------------------------------------------------------

    def is_locked(self, key: Hashable) -> bool:
        """Whether ``key`` is held or waited for."""
        return key in self._entries

    def queue_length(self, key: Hashable) -> int:
        """Holders plus waiters of ``key``."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry.users

    def __len__(self) -> int:
        """Keys in use right now (held or waited for)."""
        return len(self._entries)

    def has_pending_operations(self) -> bool:
        """Whether any key is held or waited for."""
        return bool(self._entries)

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Wait until every key held or queued for at the time of the call was released.

        Joins the FIFO queue of each such key and leaves it as soon as it is granted.

        Returns:
            ``True`` when all earlier operations finished, ``False`` on timeout.

        """
        deadline = Deadline(check_timeout(True, timeout))
        with self._mu:
            keys = list(self._entries)
        for key in keys:
            handle = self._try_acquire(key, deadline.remaining(), False)
            if handle is None:
                return False
            handle.release()
        return True

    def key_statistics(self) -> dict[Hashable, LockStatistics]:
        """Per-key snapshots for the tracked keys (empty unless ``track_keys=True``)."""
        with self._mu:
            out: dict[Hashable, LockStatistics] = {}
            for key, ks in (self._keystats or {}).items():
                entry = self._entries.get(key)
                out[key] = self._snapshot(str(key), ks.acquisitions, ks.counters, [entry] if entry else [])
            return out

    def statistics(self) -> LockStatistics:
        """A snapshot of the counters over all keys; ``queue_length`` sums every key."""
        with self._mu:
            return self._snapshot(self._name, self._acquisitions, self._stats, list(self._entries.values()))

    def _snapshot(self, name: str | None, n: int, s: Counters, entries: list[_Entry]) -> LockStatistics:
        # Under self._mu.
        waiting = sum(len(e._waiters) for e in entries)
        readers = sum(len(e._readers) for e in entries)
        writers = [e._writer for e in entries if e._writer is not None]
        return s.snapshot(
            name,
            n,
            held=bool(writers) or readers > 0,
            readers=readers,
            owner=thread_name(writers[0]) if len(writers) == 1 else None,
            waiting=waiting,
            queue_length=len(writers) + readers + waiting,
        )

    def __repr__(self) -> str:
        return f"<lockkit.LockManager name={self._name!r} keys={len(self._entries)}>"


class KeyLock(ConditionSupport):
    """One key of a :class:`LockManager` seen as a lock (``acquire``/``release``/``with``).

    Fairness, ownership and reentrancy are the manager's: FIFO per key, owned by the
    acquiring thread, not reentrant. Obtain it with :meth:`LockManager.get_lock`.
    """

    __slots__ = ("__weakref__", "_handles", "_key", "_manager", "_mu", "_shared", "_timeout")

    def __init__(
        self, manager: LockManager, key: Hashable, *, shared: bool = False, timeout: float | None = None
    ) -> None:
        self._manager = manager
        self._key = key
        self._shared = shared
        self._timeout = check_timeout(True, timeout)
        self._handles: dict[int, LockHandle] = {}
        self._mu = allocate_lock()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        self._mu = allocate_lock()
        mine = self._handles.get(get_ident())
        self._handles = {} if mine is None else {get_ident(): mine}

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the key; ``True`` if now held, ``False`` if the attempt/timeout ran out."""
        handle = self._manager._try_acquire(self._key, check_timeout(blocking, timeout), self._shared)
        if handle is None:
            return False
        with self._mu:
            self._handles[get_ident()] = handle
        return True

    def release(self) -> None:
        """Release the calling thread's hold.

        Raises:
            NotOwnerError: The calling thread does not hold the key through this lock.

        """
        with self._mu:
            handle = self._handles.pop(get_ident(), None)
        if handle is None:
            raise NotOwnerError(f"cannot release key {self._key!r}: this thread does not hold it")
        handle.release()

    def __enter__(self) -> KeyLock:
        if not self.acquire(True, self._timeout):
            raise self._manager._timeout_error(self._key, self._timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- threading.Condition support --------------------------------------------------

    def _is_owned(self) -> bool:
        return get_ident() in self._handles

    def locked(self) -> bool:
        """Whether the key is held by anyone."""
        with self._manager._mu:
            entry = self._manager._entries.get(self._key)
            return entry is not None and (entry._writer is not None or bool(entry._readers))

    def is_locked(self) -> bool:
        """Whether the key is held or waited for."""
        return self._manager.is_locked(self._key)

    def queue_length(self) -> int:
        """Holders plus waiters of the key."""
        return self._manager.queue_length(self._key)

    def statistics(self) -> LockStatistics:
        """The manager's statistics, restricted to this key's current queue."""
        m = self._manager
        with m._mu:
            entry = m._entries.get(self._key)
            return m._snapshot(repr(self._key), m._acquisitions, m._stats, [entry] if entry else [])
