"""RWLock: a shared/exclusive lock on lockkit's wait queue, FIFO by default."""

from __future__ import annotations

from _thread import allocate_lock
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import check_timeout, monotonic, timeout_error
from lockkit._internal.stats import Counters, thread_name
from lockkit.sync._guard import ConditionSupport, ModeGuard
from lockkit.sync._waitqueue import (
    ReadPreferringQueue,
    SXQueue,
    Waiter,
    WritePreferringQueue,
    abandon,
    announcer,
    park,
)

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics

Policy = Literal["fifo", "read", "write"]

_QUEUES: dict[str, type[SXQueue]] = {
    "fifo": SXQueue,
    "read": ReadPreferringQueue,
    "write": WritePreferringQueue,
}


class RWLock(ConditionSupport):
    """A shared/exclusive (reader/writer) lock.

    Fairness depends on ``policy``; every policy runs on lockkit's own wait queue
    (direct hand-off, exception-safe waiting):

    * ``"fifo"`` (default): task-fair. Requests are granted in arrival order; readers
      that queue one after another are granted together as a batch, a reader never
      overtakes a queued writer, so neither writers nor readers can starve.
    * ``"read"``: read-preferring. A reader gets in whenever no writer holds the lock,
      even past queued writers; writers can starve.
    * ``"write"``: write-preferring. No new reader gets in while a writer holds or
      waits; readers can starve.

    Ownership: each hold belongs to the thread that took it; :meth:`release` releases
    the calling thread's hold, in whichever mode it holds, and raises
    :class:`~lockkit.exceptions.NotOwnerError` if it holds none.

    Reentrancy: none in either mode. A thread that holds the lock and asks for it again
    (including a reader asking to upgrade to writer) gets
    :class:`~lockkit.exceptions.DeadlockError` at once. Use :meth:`downgrade` to go
    from writer to reader atomically, under every policy.

    Interruption: an exception raised while waiting (``KeyboardInterrupt`` included)
    leaves the lock as if the call had never been made.

    Fork: in a forked child the lock starts free (see the locks guide).

    Args:
        policy: ``"fifo"``, ``"read"`` or ``"write"``.
        name: A name for statistics, events and error messages.
        timeout: Default timeout (seconds) for ``with``, :meth:`read` and :meth:`write`;
            ``None`` waits forever.

    """

    __slots__ = ("__weakref__", "_acquisitions", "_mu", "_name", "_policy", "_queue", "_stats", "_timeout")

    def __init__(self, policy: Policy = "fifo", *, name: str | None = None, timeout: float | None = None) -> None:
        if policy not in _QUEUES:
            raise ValueError(f"policy must be 'fifo', 'read' or 'write', not {policy!r}")
        self._policy = policy
        self._name = name
        self._timeout = check_timeout(True, timeout)
        self._acquisitions = 0
        self._stats = Counters()
        self._reset_after_fork()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread survives: it keeps its own hold.
        self._mu = allocate_lock()
        queue: SXQueue | None = getattr(self, "_queue", None)
        if queue is None:
            queue = _QUEUES[self._policy]()
        else:
            queue.keep_only(get_ident())
        self._queue = queue

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
        me = get_ident()
        q = self._queue
        waiter: Waiter | None = None
        try:
            with self._mu:
                if t == 0 and q.holds(me):  # a try cannot deadlock: answer like threading.Lock
                    return False
                if q.try_take(me, shared):
                    self._acquisitions += 1
                    return True
                if t == 0:
                    self._stats.contentions += 1
                    return False
                waiter = q.enqueue(me, shared)
                deep = self._stats.queued(len(q._waiters), self._name)
            granted = park(
                waiter,
                self._mu,
                t,
                q.cancel,
                self._describe_holder,
                self._name,
                announcer(self._name, deep, shared=shared),
            )
            with self._mu:
                waited = self._stats.waited(monotonic() - waiter.since, granted)
                if granted:
                    self._acquisitions += 1
                    waiter.counted = True
                if not q._waiters:
                    self._stats.drained()
        except BaseException:
            if waiter is not None:
                abandon(waiter, self._mu, q.cancel, self._revoke)
            raise
        _log.slow_wait(self._name, waited, granted)
        return granted

    def _revoke(self, waiter: Waiter) -> None:
        # Under self._mu: pass on a grant whose waiter gave up.
        self._queue.release(waiter.ident)
        if waiter.counted:
            self._acquisitions -= 1

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
        with self._mu:
            self._queue.release(get_ident())

    def downgrade(self) -> None:
        """Turn the calling thread's exclusive hold into a shared one, atomically.

        No writer can get in between; readers the policy admits are admitted with it.

        Raises:
            NotOwnerError: The calling thread does not hold the lock exclusively.

        """
        with self._mu:
            self._queue.downgrade(get_ident())

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

    # -- threading.Condition support (over the exclusive mode) ------------------------

    def _is_owned(self) -> bool:
        return self._queue._writer == get_ident()

    def _holders(self) -> tuple[int | None, int]:
        return self._queue._writer, len(self._queue._readers)

    def _waiting_count(self) -> int:
        return len(self._queue._waiters)

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
