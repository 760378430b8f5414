"""Mutex: a strict-FIFO, owner-checked, non-reentrant lock."""

from __future__ import annotations

from _thread import allocate_lock
from collections.abc import Callable
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import check_timeout, monotonic, timeout_error
from lockkit._internal.stats import Counters, thread_name
from lockkit.exceptions import DeadlockError, LockTimeoutError, NotOwnerError
from lockkit.sync._guard import ConditionSupport
from lockkit.sync._waitqueue import Waiter, WaitQueue, abandon, announcer, park

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics

P = ParamSpec("P")
R = TypeVar("R")


class Mutex(WaitQueue, ConditionSupport):
    """A mutual-exclusion lock that grants waiters strictly in arrival order.

    Fairness: strict FIFO. A release hands the lock directly to the oldest waiter, so a
    thread that arrives later can never barge in ahead of one that is queued.

    Ownership: the thread that acquired the mutex owns it; releasing it from any other
    thread raises :class:`~lockkit.exceptions.NotOwnerError`.

    Reentrancy: none. Acquiring it again from the owning thread raises
    :class:`~lockkit.exceptions.DeadlockError` at once instead of hanging.

    Interruption: an exception raised while a thread waits (``KeyboardInterrupt``
    from a signal, an error from a log processor) removes it from the queue, or
    passes on a grant it had just received: the mutex is never left held by a thread
    whose ``acquire`` raised.

    The uncontended path takes one C-level lock and reads no clock; bookkeeping,
    logging and timing happen only when a thread has to wait.

    Args:
        name: A name used in statistics, log events and error messages.
        timeout: Default timeout in seconds for ``with`` and :meth:`run_exclusive`;
            ``None`` waits forever. When it runs out they raise
            :class:`~lockkit.exceptions.LockTimeoutError`.
        track_hold_time: Measure the hold time of every acquisition (two clock reads
            per hold). When false, only holds granted after a wait are measured.

    """

    __slots__ = (
        "__weakref__",
        "_acquisitions",
        "_gate",
        "_hold_start",
        "_mu",
        "_name",
        "_stats",
        "_timeout",
        "_track_hold_time",
    )

    def __init__(self, name: str | None = None, timeout: float | None = None, *, track_hold_time: bool = False) -> None:
        self._name = name
        self._timeout = check_timeout(True, timeout)
        self._track_hold_time = track_hold_time
        self._hold_start = 0.0
        self._reset_after_fork()
        self._acquisitions = 0
        self._stats = Counters()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread survives: it keeps its own hold
        # (as CPython's locks do); holds and waits of other threads are dropped.
        mine = getattr(self, "_writer", None) == get_ident()
        WaitQueue.__init__(self)
        self._gate = allocate_lock()  # held <=> the mutex is held (or being handed over)
        self._mu = allocate_lock()  # guards the queue and slow-path counters
        if mine:
            self._gate.acquire()
            self._writer = get_ident()
        else:
            self._hold_start = 0.0

    @property
    def name(self) -> str | None:
        """The name given at construction."""
        return self._name

    # -- acquire / release ---------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the mutex.

        Args:
            blocking: ``False`` makes one attempt and returns at once.
            timeout: Seconds to wait at most; ``None`` (or ``-1``) waits forever and
                ``0`` is one attempt. Must be ``None`` when ``blocking`` is false.

        Returns:
            ``True`` if the mutex is now held by the calling thread, ``False`` if the
            attempt or the timeout ran out.

        Raises:
            DeadlockError: The calling thread already holds the mutex.
            ValueError: ``blocking=False`` together with a timeout.

        """
        if timeout is None and blocking and not self._waiters and self._gate.acquire(False):
            self._writer = get_ident()
            self._acquisitions += 1
            if self._track_hold_time:
                self._hold_start = monotonic()
            return True
        return self._acquire_slow(check_timeout(blocking, timeout))

    def _acquire_slow(self, timeout: float | None) -> bool:
        me = get_ident()
        waiter: Waiter | None = None
        try:
            with self._mu:
                if self._writer == me:
                    if timeout == 0:  # a try cannot deadlock: answer like threading.Lock
                        return False
                    raise DeadlockError(f"{self._label()} is not reentrant: this thread already holds it")
                waiter = self.enqueue(me, False)
                self.grant_waiting()  # at the head of an idle queue: granted at once
                if waiter.granted:
                    waiter.gone = True  # kept: nothing left to undo
                    if self._track_hold_time:
                        self._hold_start = monotonic()
                    return True
                if timeout == 0:
                    waiter.gone = True
                    self.cancel(waiter)
                    self._stats.contentions += 1
                    return False
                depth = len(self._waiters)
                deep = self._stats.queued(depth, self._name)
            granted = park(
                waiter,
                self._mu,
                timeout,
                self.cancel,
                self._describe_holder,
                self._name,
                announcer(self._name, deep, waiting=depth),
            )
            now = monotonic()
            with self._mu:
                self._stats.waited(now - waiter.since, granted)
                if not self._waiters:
                    self._stats.drained()
            if granted:
                self._hold_start = now
        except BaseException:
            if waiter is not None:
                abandon(waiter, self._mu, self.cancel, self._revoke)
            raise
        _log.slow_wait(self._name, now - waiter.since, granted)
        return granted

    def _revoke(self, waiter: Waiter) -> None:
        # Under self._mu: pass on a grant whose waiter gave up (as release() would).
        self._writer = None
        self._hold_start = 0.0
        if waiter.counted:
            self._acquisitions -= 1
        self._gate.release()
        self.grant_waiting()

    def _admit(self, waiter: Waiter) -> bool:
        # Under self._mu: the head may have the mutex if the gate is free.
        if not self._gate.acquire(False):
            return False
        self._writer = waiter.ident
        self._acquisitions += 1
        waiter.counted = True
        return True

    def release(self) -> None:
        """Release the mutex, handing it to the oldest waiter if there is one.

        Raises:
            NotOwnerError: The calling thread does not hold the mutex.

        """
        if self._writer != get_ident():
            raise NotOwnerError(self._not_owner_message())
        if self._hold_start:
            self._account_hold()
        self._writer = None
        if self._waiters:
            with self._mu:
                self._gate.release()
                self.grant_waiting()
            return
        self._gate.release()
        if self._waiters:  # a waiter queued while we were opening the gate
            with self._mu:
                self.grant_waiting()

    def _account_hold(self) -> None:
        held = monotonic() - self._hold_start
        self._hold_start = 0.0
        with self._mu:
            self._stats.held_for(held)

    # -- threading.Condition support --------------------------------------------------

    def _is_owned(self) -> bool:
        return self._writer == get_ident()

    def _label(self) -> str:
        return f"mutex {self._name!r}" if self._name else "mutex"

    def _not_owner_message(self) -> str:
        label = self._label()
        if self._writer is None:
            return f"cannot release {label}: it is not held"
        return f"cannot release {label}: it is held by another thread"

    def __enter__(self) -> Mutex:
        if self._waiters or not self._gate.acquire(False):
            if not self._acquire_slow(self._timeout):
                raise self._timeout_error()
            return self
        self._writer = get_ident()
        self._acquisitions += 1
        if self._track_hold_time:
            self._hold_start = monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(), inlined: one Python frame less on the hot path.
        if self._writer != get_ident():
            raise NotOwnerError(self._not_owner_message())
        if self._hold_start:
            self._account_hold()
        self._writer = None
        if self._waiters:
            with self._mu:
                self._gate.release()
                self.grant_waiting()
            return
        self._gate.release()
        if self._waiters:
            with self._mu:
                self.grant_waiting()

    def _timeout_error(self) -> LockTimeoutError:
        return timeout_error(self._label(), self._timeout, resource=self._name, holder=self._describe_holder())

    def _describe_holder(self) -> str | None:
        owner = self._writer
        return None if owner is None else f"thread {thread_name(owner)!r}"

    def run_exclusive(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` while holding the mutex and return its result.

        Uses the default timeout given at construction.

        Raises:
            LockTimeoutError: The default timeout ran out before the mutex was acquired.

        """
        with self:
            return fn(*args, **kwargs)

    # -- introspection ----------------------------------------------------------------

    def locked(self) -> bool:
        """Whether the mutex is held right now (like :meth:`threading.Lock.locked`)."""
        return self._gate.locked()

    def is_locked(self) -> bool:
        """Whether the mutex is busy: held, or with any acquirer queued (counter-based)."""
        return self._gate.locked() or bool(self._waiters)

    def queue_length(self) -> int:
        """Holder plus waiters right now."""
        return (1 if self._gate.locked() else 0) + len(self._waiters)

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Wait until every operation that held or queued for the mutex before this call is done.

        Because grants are FIFO, this joins the queue and releases as soon as it is
        granted: everything that was ahead of it has finished by then. Useful for a
        graceful shutdown.

        Returns:
            ``True`` if the earlier operations finished, ``False`` on timeout.

        Raises:
            DeadlockError: Called by the thread that holds the mutex.

        """
        if not self.is_locked():
            return True
        if not self.acquire(timeout=timeout):
            return False
        self.release()
        return True

    def statistics(self) -> LockStatistics:
        """A frozen snapshot of the counters (see :class:`~lockkit.LockStatistics`)."""
        with self._mu:
            held = self._gate.locked()
            waiting = len(self._waiters)
            return self._stats.snapshot(
                self._name,
                self._acquisitions,
                held=held,
                readers=0,
                owner=thread_name(self._writer),
                waiting=waiting,
                queue_length=int(held) + waiting,
            )

    def __repr__(self) -> str:
        state = "locked" if self._gate.locked() else "unlocked"
        return f"<lockkit.Mutex name={self._name!r} {state} waiting={len(self._waiters)}>"
