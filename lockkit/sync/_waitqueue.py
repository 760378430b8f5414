"""The one home of FIFO waiting in lockkit.

Each waiter parks on its own primitive lock (the same mechanism as
:class:`threading.Condition`, one lock per waiter in a deque). A release does not
notify: it pops the head of the queue and *grants* it, handing ownership over
directly, so a newcomer can never barge in between release and wake-up, and
``notify_all`` thundering herds never happen.

Two races are handled here, in one place:

* a waiter times out while threads behind it could now proceed (readers behind a
  timed-out writer): the cancel re-examines the queue head;
* a waiter times out at the very moment it is granted: under the internal lock the
  waiter sees ``granted`` and keeps the lock (its acquire returns ``True``).

Waiting is exception-safe: when anything (``KeyboardInterrupt`` from a signal, an
error raised by a log processor) interrupts a thread between joining the queue and
returning from ``acquire``, :func:`abandon` cancels its waiter, or passes on a grant it
already received, so the lock is never handed to a thread that is no longer waiting.
Nothing that can raise or take another lock runs under an internal lock.
"""

from __future__ import annotations

from _thread import allocate_lock
from collections import deque
from collections.abc import Callable
from typing import Any

from lockkit._internal import log as _log
from lockkit._internal.deadline import monotonic
from lockkit.exceptions import DeadlockError, NotOwnerError


class Waiter:
    """One parked thread: its own primitive lock, its mode and what became of it.

    ``granted`` is set (under the owner's internal lock) when the lock is handed to it;
    ``gone`` when it left for good without keeping the lock (cancelled, or its grant
    passed on); ``counted`` when its acquisition entered the statistics.
    """

    __slots__ = ("counted", "gone", "granted", "ident", "lock", "shared", "since")

    def __init__(self, ident: int, shared: bool) -> None:
        self.lock = allocate_lock()
        self.lock.acquire()
        self.ident = ident
        self.shared = shared
        self.granted = False
        self.gone = False
        self.counted = False
        self.since = monotonic()

    def grant(self) -> None:
        """Hand the lock to this waiter (call under the owner's internal lock)."""
        self.granted = True
        self.lock.release()


def park(
    waiter: Waiter,
    mutex: Any,
    timeout: float | None,
    cancel: Callable[[Waiter], None],
    describe_holder: Callable[[], str | None],
    name: str | None,
    announce: Callable[[], None] | None = None,
) -> bool:
    """Block until ``waiter`` is granted or ``timeout`` runs out.

    Called without the internal lock held. ``announce`` (logging about the wait) runs
    first, outside the internal lock. ``cancel`` is called under ``mutex`` when the
    wait gives up, and must remove the waiter and re-examine the queue. The caller
    wraps everything from joining the queue to returning in a ``try`` whose
    ``except BaseException`` calls :func:`abandon`.

    Returns:
        ``True`` if the lock was granted (even at the instant of timing out).

    """
    if announce is not None:
        announce()
    deadline = None if timeout is None else waiter.since + timeout
    warned = False
    lock = waiter.lock
    while True:
        if deadline is None:
            step = -1.0 if warned else _log.LONG_WAIT
        else:
            left = deadline - monotonic()
            if left <= 0:
                break
            step = left if warned else min(left, _log.LONG_WAIT)
        if lock.acquire(True, step):
            return True
        if not warned and monotonic() - waiter.since >= _log.LONG_WAIT:
            warned = True
            _log.warning(
                _log.LOCK_WAIT_LONG,
                lock=name,
                waited=round(monotonic() - waiter.since, 3),
                holder=describe_holder(),
            )
    with mutex:
        if waiter.granted:
            return True
        waiter.gone = True
        cancel(waiter)
        return False


def announcer(name: str | None, deep: int, **fields: object) -> Callable[[], None]:
    """The ``announce`` callback for :func:`park`: the contended event, and the deep-queue warning if due."""

    def announce() -> None:
        _log.debug(_log.LOCK_CONTENDED, lock=name, **fields)
        if deep:
            _log.warning(_log.QUEUE_DEEP, lock=name, waiting=deep)

    return announce


def abandon(waiter: Waiter, mutex: Any, cancel: Callable[[Waiter], None], revoke: Callable[[Waiter], None]) -> None:
    """Undo a wait that an exception cut short; safe to call at any point after enqueueing.

    Under ``mutex``: a waiter still queued is cancelled (``cancel`` removes it and
    re-examines the queue); a waiter that was granted has its grant passed on
    (``revoke`` releases the hold on its behalf, uncounting it if it was counted).
    A waiter that already left is left alone.
    """
    with mutex:
        if waiter.gone:
            return
        waiter.gone = True
        if waiter.granted:
            revoke(waiter)
        else:
            cancel(waiter)


class WaitQueue:
    """A FIFO of parked waiters with direct hand-off: the one queue of every in-process lock.

    All methods must be called with the owner's internal lock held. ``_writer`` is the
    exclusive holder's ident (or ``None``). Subclasses decide in :meth:`_admit` whether
    the head of the queue may have the lock now, and record the hold if so.
    """

    __slots__ = ("_waiters", "_writer")

    def __init__(self) -> None:
        # The queue is allocated on first use: keyed locks create one queue per key,
        # and most keys are never contended.
        self._writer: int | None = None
        self._waiters: deque[Waiter] | tuple[()] = ()

    def enqueue(self, ident: int, shared: bool) -> Waiter:
        """Queue a waiter at the tail."""
        waiter = Waiter(ident, shared)
        if not self._waiters:
            self._waiters = deque()
        self._waiters.append(waiter)
        return waiter

    def _admit(self, waiter: Waiter) -> bool:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def grant_waiting(self) -> None:
        """Grant the head of the queue, and the shared batch behind a shared head."""
        waiters = self._waiters
        while waiters and self._admit(waiters[0]):
            head = waiters.popleft()
            head.grant()
            if not head.shared:
                return

    def cancel(self, waiter: Waiter) -> None:
        """Remove a waiter that gave up and re-examine the head."""
        try:
            self._waiters.remove(waiter)  # type: ignore[union-attr]
        except ValueError:  # pragma: no cover - granted waiters never reach cancel
            return
        self.grant_waiting()


class SXQueue(WaitQueue):
    """Shared/exclusive ownership state on the FIFO wait queue.

    Holders are identified by an integer (a thread ident). Grants follow arrival order:
    the head is granted as soon as it is compatible, and a shared head is granted
    together with the consecutive shared waiters behind it (task-fair, phase-fair
    batches); a shared request never overtakes a queued exclusive one, so writers
    cannot starve.
    """

    __slots__ = ("_readers",)

    def __init__(self) -> None:
        super().__init__()
        self._readers: set[int] | tuple[()] = ()  # allocated on first shared hold

    def try_take(self, ident: int, shared: bool) -> bool:
        """Take the lock at once if nobody is queued and the mode is compatible."""
        if self._writer == ident or ident in self._readers:
            if shared or self._writer == ident:
                raise DeadlockError("lock is not reentrant: this thread already holds it")
            raise DeadlockError("a shared holder cannot upgrade to exclusive: release it first")
        if self._waiters or self._writer is not None:
            return False
        if shared:
            self._add_reader(ident)
            return True
        if self._readers:
            return False
        self._writer = ident
        return True

    def holds(self, ident: int) -> bool:
        """Whether ``ident`` holds the lock in either mode."""
        return self._writer == ident or ident in self._readers

    def keep_only(self, ident: int) -> None:
        """Forget every hold but ``ident``'s and every waiter (in a forked child)."""
        self._waiters = ()
        if self._writer != ident:
            self._writer = None
        self._readers = {ident} if ident in self._readers else ()

    def _add_reader(self, ident: int) -> None:
        if self._readers:
            self._readers.add(ident)
        else:
            self._readers = {ident}

    def _admit(self, waiter: Waiter) -> bool:
        if self._writer is not None:
            return False
        if waiter.shared:
            self._add_reader(waiter.ident)
            return True
        if self._readers:
            return False
        self._writer = waiter.ident
        return True

    def release(self, ident: int) -> bool:
        """Release ``ident``'s hold and grant whoever may proceed; returns True if it was shared."""
        if self._writer == ident:
            self._writer = None
            shared = False
        elif ident in self._readers:
            self._readers.remove(ident)  # type: ignore[union-attr]
            shared = True
        else:
            raise NotOwnerError("cannot release a lock this thread does not hold")
        self.grant_waiting()
        return shared

    def downgrade(self, ident: int) -> None:
        """Turn ``ident``'s exclusive hold into a shared one, atomically."""
        if self._writer != ident:
            raise NotOwnerError("only the exclusive holder can downgrade")
        self._writer = None
        self._add_reader(ident)
        self.grant_waiting()

    def held(self) -> bool:
        """Whether anyone holds the lock, in either mode."""
        return self._writer is not None or bool(self._readers)


class ReadPreferringQueue(SXQueue):
    """Readers first: a reader gets in whenever no writer holds the lock, even past queued writers.

    When the lock comes free, every queued reader is granted at once; a writer is
    granted only when no reader holds or waits. Writers can starve under a steady
    stream of readers.
    """

    __slots__ = ()

    def try_take(self, ident: int, shared: bool) -> bool:
        if shared and self._writer is None and ident not in self._readers:
            self._add_reader(ident)  # past any queued writer
            return True
        return super().try_take(ident, shared)  # exclusive: FIFO among writers; re-entry raises

    def grant_waiting(self) -> None:
        if self._writer is not None or not self._waiters:
            return
        readers = [w for w in self._waiters if w.shared]
        if readers:
            for w in readers:
                self._waiters.remove(w)
                self._add_reader(w.ident)
                w.grant()
        elif not self._readers:
            head = self._waiters.popleft()
            self._writer = head.ident
            head.grant()


class WritePreferringQueue(SXQueue):
    """Writers first: no new reader gets in while a writer holds or waits.

    When the lock comes free, the oldest queued writer is granted as soon as the
    readers holding it leave; readers are granted only when no writer waits. Readers
    can starve under a steady stream of writers.
    """

    __slots__ = ()

    def _writer_waiting(self) -> bool:
        return any(not w.shared for w in self._waiters)

    def try_take(self, ident: int, shared: bool) -> bool:
        if self._writer_waiting() and not self.holds(ident):
            return False  # nobody passes a queued writer
        return super().try_take(ident, shared)

    def grant_waiting(self) -> None:
        if self._writer is not None or not self._waiters:
            return
        writer = next((w for w in self._waiters if not w.shared), None)
        if writer is not None:
            if not self._readers:
                self._waiters.remove(writer)
                self._writer = writer.ident
                writer.grant()
            return
        for w in list(self._waiters):
            self._waiters.remove(w)
            self._add_reader(w.ident)
            w.grant()
