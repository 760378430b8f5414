"""The two timeout races of the wait queue, forced deterministically."""

from __future__ import annotations

from _thread import allocate_lock

import pytest
from conftest import Worker, wait_queued

import lockkit
from lockkit.sync._waitqueue import SXQueue, Waiter, park

pytestmark = pytest.mark.timeout(30)


class _TimesOut:
    """A waiter primitive whose wait always reports a timeout (the race we cannot time for real)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return False

    def release(self) -> None:
        pass


def test_granted_at_the_moment_of_timeout_keeps_the_lock() -> None:
    mu = allocate_lock()
    q = SXQueue()
    q._writer = 1
    waiter = q.enqueue(2, False)
    waiter.lock = _TimesOut()  # type: ignore[assignment]
    with mu:
        q.release(1)  # grants the waiter ...
    cancelled: list[Waiter] = []
    # ... whose own wait then reports a timeout: it must keep the grant.
    assert park(waiter, mu, 0.01, cancelled.append, lambda: None, "race") is True
    assert cancelled == []
    assert q._writer == 2


def test_timeout_without_grant_cancels_and_passes_on() -> None:
    mu = allocate_lock()
    q = SXQueue()
    q._writer = 1
    timed_out = q.enqueue(2, False)
    timed_out.lock = _TimesOut()  # type: ignore[assignment]
    reader_a = q.enqueue(3, True)
    reader_b = q.enqueue(4, True)
    q._writer = None  # the holder left while the writer was timing out
    assert park(timed_out, mu, 0.01, q.cancel, lambda: None, "race") is False
    # the readers behind the timed-out writer were re-examined and granted together
    assert reader_a.granted and reader_b.granted
    assert q._readers == {3, 4}


@pytest.mark.parametrize("policy", ["fifo"])
def test_readers_behind_timed_out_writer_are_granted(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    assert lock.acquire_read()
    writer = Worker(lambda: lock.acquire_write(timeout=0.3))
    wait_queued(lock, 1)
    readers = [Worker(lambda: lock.acquire_read(timeout=30) and (lock.release() or True)) for _ in range(3)]
    wait_queued(lock, 4)
    assert writer.join() is False  # gave up; the readers queued behind it must now run
    assert all(r.join() for r in readers)
    lock.release()
    assert not lock.is_locked()
