"""RWLock: shared/exclusive lock with a FIFO default and readerwriterlock policies."""

from __future__ import annotations

from _thread import allocate_lock
from threading import get_ident
from types import TracebackType
from typing import Any, Literal

from readerwriterlock import rwlock

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import check_timeout, monotonic, timeout_error
from lockkit._internal.stats import Counters, LockStatistics, thread_name
from lockkit.exceptions import DeadlockError, NotOwnerError
from lockkit.sync._guard import ModeGuard
from lockkit.sync._waitqueue import SXQueue, Waiter, park

Policy = Literal["fifo", "read", "write"]


class RWLock:
    """A shared/exclusive (reader/writer) lock.

    Fairness depends on ``policy``:

    * ``"fifo"`` (default, lockkit's own queue): task-fair. Requests are granted in
      arrival order; readers that queue one after another are granted together as a
      batch, a reader never overtakes a queued writer, so writers cannot starve and
      readers cannot starve either.
    * ``"read"``: read-preferring (readerwriterlock ``RWLockReadD``); writers can starve.
    * ``"write"``: write-preferring (readerwriterlock ``RWLockWriteD``); readers can starve.

    Ownership: each hold belongs to the thread that took it; :meth:`release` releases
    the calling thread's hold, in whichever mode it holds, and raises
    :class:`~lockkit.exceptions.NotOwnerError` if it holds none.

    Reentrancy: none in either mode. A thread that holds the lock and asks for it again
    (including a reader asking to upgrade to writer) gets :class:`~lockkit.exceptions.DeadlockError`
    at once. Use :meth:`downgrade` to go from writer to reader atomically.

    Args:
        policy: ``"fifo"``, ``"read"`` or ``"write"``.
        name: A name for statistics, events and error messages.
        timeout: Default timeout (seconds) for ``with``, :meth:`read` and :meth:`write`;
            ``None`` waits forever.

    """

    __slots__ = (
        "__weakref__",
        "_acquisitions",
        "_delegate",
        "_held",
        "_mu",
        "_name",
        "_policy",
        "_queue",
        "_stats",
        "_timeout",
        "_waiting",
    )

    def __init__(self, policy: Policy = "fifo", *, name: str | None = None, timeout: float | None = None) -> None:
        if policy not in ("fifo", "read", "write"):
            raise ValueError(f"policy must be 'fifo', 'read' or 'write', not {policy!r}")
        self._policy = policy
        self._name = name
        self._timeout = check_timeout(True, timeout)
        self._acquisitions = 0
        self._stats = Counters()
        self._reset_after_fork()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        self._mu = allocate_lock()
        self._queue = SXQueue()
        self._held: dict[int, Any] = {}  # ident -> readerwriterlock lock object (non-fifo policies)
        self._waiting = 0
        if self._policy == "read":
            self._delegate: Any = rwlock.RWLockReadD()
        elif self._policy == "write":
            self._delegate = rwlock.RWLockWriteD()
        else:
            self._delegate = None

    @property
    def policy(self) -> Policy:
        """The fairness policy given at construction."""
        return self._policy

    # -- acquire ------------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None, *, shared: bool = False) -> bool:
        """Acquire the lock, exclusive unless ``shared=True``.

        Args:
            blocking: ``False`` makes one attempt.
            timeout: Seconds to wait at most; ``None`` waits forever, ``0`` is one attempt.
            shared: Take the lock in shared (reader) mode.

        Returns:
            ``True`` if acquired, ``False`` if the attempt or timeout ran out.

        Raises:
            DeadlockError: The calling thread already holds the lock (in any mode).

        """
        t = check_timeout(blocking, timeout)
        if self._delegate is not None:
            return self._acquire_delegated(shared, t)
        me = get_ident()
        q = self._queue
        with self._mu:
            if q.try_take(me, shared):
                self._acquisitions += 1
                return True
            if t == 0:
                self._stats.contentions += 1
                return False
            waiter = q.enqueue(me, shared)
            self._stats.queued(len(q._waiters), self._name)
        _log.debug(_log.LOCK_CONTENDED, lock=self._name, shared=shared)
        granted = park(waiter, self._mu, t, q.cancel, self._describe_holder, self._name)
        self._after_wait(waiter, granted)
        return granted

    def _after_wait(self, waiter: Waiter, granted: bool) -> None:
        with self._mu:
            self._stats.waited(monotonic() - waiter.since, granted, self._name)
            if granted:
                self._acquisitions += 1
            if not self._queue._waiters:
                self._stats.drained()

    def _acquire_delegated(self, shared: bool, timeout: float | None) -> bool:
        me = get_ident()
        with self._mu:
            if me in self._held:
                raise DeadlockError("rwlock is not reentrant: this thread already holds it")
            self._waiting += 1
        obj = self._delegate.gen_rlock() if shared else self._delegate.gen_wlock()
        ok = obj.acquire(blocking=False)
        waited = not ok and timeout != 0
        if waited:
            since = monotonic()
            with self._mu:
                self._stats.queued(self._waiting, self._name)
            ok = obj.acquire(blocking=True, timeout=-1 if timeout is None else timeout)
        with self._mu:
            self._waiting -= 1
            if ok:
                self._held[me] = obj
                self._acquisitions += 1
            elif not waited:
                self._stats.contentions += 1
            if waited:
                self._stats.waited(monotonic() - since, ok, self._name)
        return bool(ok)

    def acquire_read(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire in shared mode; same arguments as :meth:`acquire`."""
        return self.acquire(blocking, timeout, shared=True)

    def acquire_write(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire in exclusive mode; same arguments as :meth:`acquire`."""
        return self.acquire(blocking, timeout, shared=False)

    # -- release / downgrade ----------------------------------------------------------

    def release(self) -> None:
        """Release the calling thread's hold (shared or exclusive).

        Raises:
            NotOwnerError: The calling thread holds nothing.

        """
        me = get_ident()
        if self._delegate is None:
            with self._mu:
                self._queue.release(me)
            return
        with self._mu:
            obj = self._held.pop(me, None)
        if obj is None:
            raise NotOwnerError("cannot release an rwlock this thread does not hold")
        obj.release()

    def downgrade(self) -> None:
        """Turn the calling thread's exclusive hold into a shared one, atomically.

        No writer can get in between; readers queued behind are admitted with it.

        Raises:
            NotOwnerError: The calling thread does not hold the lock exclusively.

        """
        me = get_ident()
        if self._delegate is None:
            with self._mu:
                self._queue.downgrade(me)
            return
        with self._mu:
            obj = self._held.get(me)
            if obj is None or not hasattr(obj, "downgrade"):
                raise NotOwnerError("only the exclusive holder can downgrade")
            self._held[me] = obj.downgrade()

    # -- context managers -----------------------------------------------------------

    def read(self, timeout: float | None = None) -> ModeGuard:
        """``with lock.read():`` — hold in shared mode; raises LockTimeoutError on timeout.

        Args:
            timeout: Seconds to wait; defaults to the lock's default timeout.

        """
        return ModeGuard(self, True, self._timeout if timeout is None else timeout)

    def write(self, timeout: float | None = None) -> ModeGuard:
        """``with lock.write():`` — hold in exclusive mode; raises LockTimeoutError on timeout."""
        return ModeGuard(self, False, self._timeout if timeout is None else timeout)

    def _enter_mode(self, shared: bool, timeout: float | None) -> None:
        if not self.acquire(True, timeout, shared=shared):
            label = f"rwlock {self._name!r}" if self._name else "rwlock"
            raise timeout_error(
                f"{label} ({'shared' if shared else 'exclusive'})",
                timeout,
                resource=self._name,
                holder=self._describe_holder(),
            )

    def __enter__(self) -> RWLock:
        self._enter_mode(False, self._timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- introspection ----------------------------------------------------------------

    def _holders(self) -> tuple[int | None, int]:
        if self._delegate is None:
            return self._queue._writer, len(self._queue._readers)
        writer = None
        readers = 0
        for ident, obj in self._held.items():
            if "Reader" in type(obj).__name__:
                readers += 1
            else:
                writer = ident
        return writer, readers

    def _waiting_count(self) -> int:
        return len(self._queue._waiters) if self._delegate is None else self._waiting

    def _describe_holder(self) -> str | None:
        with self._mu:
            writer, readers = self._holders()
        if writer is not None:
            return f"thread {thread_name(writer)!r} (exclusive)"
        if readers:
            return f"{readers} reader thread(s)"
        return None

    def locked(self) -> bool:
        """Whether any thread holds the lock (in either mode)."""
        with self._mu:
            writer, readers = self._holders()
        return writer is not None or readers > 0

    def is_locked(self) -> bool:
        """Whether the lock is busy: held, or with any acquirer queued."""
        return self.queue_length() > 0

    def queue_length(self) -> int:
        """Holders plus waiters right now."""
        with self._mu:
            writer, readers = self._holders()
            return (writer is not None) + readers + self._waiting_count()

    def statistics(self) -> LockStatistics:
        """A frozen snapshot of the counters (see :class:`~lockkit.LockStatistics`)."""
        with self._mu:
            writer, readers = self._holders()
            waiting = self._waiting_count()
            return self._stats.snapshot(
                self._name,
                self._acquisitions,
                held=writer is not None or readers > 0,
                readers=readers,
                owner=thread_name(writer),
                waiting=waiting,
                queue_length=(writer is not None) + readers + waiting,
            )

    def __repr__(self) -> str:
        return f"<lockkit.RWLock name={self._name!r} policy={self._policy!r} queue={self.queue_length()}>"
