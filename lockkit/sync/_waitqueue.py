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
    """One parked thread: its own primitive lock, its mode and whether it was granted."""

    __slots__ = ("granted", "ident", "lock", "shared", "since")

    def __init__(self, ident: int, shared: bool) -> None:
        self.lock = allocate_lock()
        self.lock.acquire()
        self.ident = ident
        self.shared = shared
        self.granted = False
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
) -> bool:
    """Block until ``waiter`` is granted or ``timeout`` runs out.

    Called without the internal lock held. ``cancel`` is called under ``mutex`` when
    the wait gives up, and must remove the waiter and re-examine the queue.

    Returns:
        ``True`` if the lock was granted (even at the instant of timing out).

    """
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
        cancel(waiter)
        return False


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
