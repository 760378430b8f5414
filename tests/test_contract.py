"""One contract, every lock-like: exclusion, FIFO, timeouts, owner checks, statistics."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from conftest import Worker, hold_in_thread, run_in_forked_child, wait_queued
from locklikes import LOCKLIKES

import lockkit

pytestmark = pytest.mark.timeout(60)

NAMES = sorted(LOCKLIKES)
FIFO_NAMES = sorted(n for n, (_, fifo) in LOCKLIKES.items() if fifo)


def make(name: str, timeout: float | None = None) -> Any:
    return LOCKLIKES[name][0](timeout)


@pytest.mark.parametrize("name", NAMES)
def test_mutual_exclusion(name: str) -> None:
    lock = make(name)
    inside = [0]
    worst = [0]
    counter = [0]

    def work() -> None:
        for _ in range(2000):
            with lock:
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
                value = counter[0]
                for _ in range(5):  # widen the window for a lost update
                    pass
                counter[0] = value + 1
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter[0] == 12000
    assert worst[0] == 1
    assert not lock.locked()


@pytest.mark.parametrize("name", FIFO_NAMES)
def test_fifo_order_under_contention(name: str) -> None:
    lock = make(name)
    order: list[int] = []
    assert lock.acquire()
    workers = []
    for i in range(16):

        def take(i: int = i) -> None:
            with lock:
                order.append(i)

        workers.append(Worker(take))
        wait_queued(lock, i + 1)  # arrival order is now fixed: i is the (i+1)-th waiter
    lock.release()
    for w in workers:
        w.join()
    assert order == list(range(16))


@pytest.mark.parametrize("name", NAMES)
def test_timeout_returns_false_and_counts(name: str) -> None:
    lock = make(name)
    assert lock.acquire()
    before = lock.statistics().timeouts
    w = Worker(lambda: lock.acquire(timeout=0.05))
    assert w.join() is False
    assert lock.statistics().timeouts == before + 1
    lock.release()
    assert lock.acquire(timeout=0.05)
    lock.release()


@pytest.mark.parametrize("name", NAMES)
def test_non_blocking_and_zero_timeout_are_one_attempt(name: str) -> None:
    lock = make(name)
    assert lock.acquire(blocking=False)
    assert Worker(lambda: lock.acquire(blocking=False)).join() is False
    assert Worker(lambda: lock.acquire(timeout=0)).join() is False
    lock.release()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1.0)
    with pytest.raises(ValueError, match="timeout"):
        lock.acquire(timeout=-5)


@pytest.mark.parametrize("name", NAMES)
def test_owner_checks(name: str) -> None:
    lock = make(name)
    with pytest.raises(lockkit.NotOwnerError):
        lock.release()  # not held at all
    assert lock.acquire()
    with pytest.raises(lockkit.DeadlockError):
        lock.acquire()
    w = Worker(lock.release)
    with pytest.raises(lockkit.NotOwnerError):
        w.join()
    assert lock.locked()
    lock.release()
    assert not lock.locked()


@pytest.mark.parametrize("name", NAMES)
def test_context_manager_and_default_timeout(name: str) -> None:
    lock = make(name, timeout=0.05)
    with lock:
        assert lock.locked()
        w = Worker(lambda: lock.__enter__())
        with pytest.raises(lockkit.LockTimeoutError) as info:
            w.join()
        assert info.value.timeout == 0.05
        assert isinstance(info.value, TimeoutError)
    assert not lock.locked()
    with pytest.raises(KeyError), lock:
        raise KeyError("released on error")
    assert not lock.locked()


@pytest.mark.parametrize("name", NAMES)
def test_statistics_snapshot(name: str) -> None:
    lock = make(name)
    for _ in range(3):
        with lock:
            pass
    lock.acquire()
    w = Worker(lambda: lock.acquire(timeout=5) and lock.release())
    wait_queued(lock, 1)
    s = lock.statistics()
    assert s.held and s.waiting == 1 and s.queue_length == 2
    assert lock.is_locked() and lock.queue_length() == 2
    lock.release()
    w.join()
    s = lock.statistics()
    assert s.acquisitions >= 5
    assert s.contentions >= 1 and s.peak_queue >= 1 and s.wait_max > 0
    assert not s.held and s.waiting == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.acquisitions = 0  # type: ignore[misc]


@pytest.mark.parametrize("name", FIFO_NAMES)
def test_waiter_behind_timed_out_waiter_is_not_stranded(name: str) -> None:
    lock = make(name)
    lock.acquire()
    gives_up = Worker(lambda: lock.acquire(timeout=0.2))
    wait_queued(lock, 1)
    patient = Worker(lambda: lock.acquire(timeout=30) and (lock.release() or True))
    wait_queued(lock, 2)
    assert gives_up.join() is False
    lock.release()
    assert patient.join() is True
    assert not lock.is_locked()


@pytest.mark.parametrize("name", NAMES)
def test_many_short_timeouts_leave_a_clean_lock(name: str) -> None:
    """Hammer the timeout and grant paths together; nobody may be stranded."""
    lock = make(name)
    got = [0]

    def work() -> None:
        for _ in range(300):
            if lock.acquire(timeout=0.0005):
                got[0] += 1
                lock.release()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] > 0
    assert not lock.is_locked()
    assert lock.statistics().waiting == 0
    assert lock.acquire(timeout=1)
    lock.release()


@pytest.mark.parametrize("name", NAMES)
def test_every_locklike_is_weak_referenceable(name: str) -> None:
    import weakref

    lock = make(name)
    assert weakref.ref(lock)() is lock


@pytest.mark.parametrize("name", NAMES)
def test_locked_means_held_by_anyone(name: str) -> None:
    lock = make(name)
    assert not lock.locked()
    t, release = hold_in_thread(lock)
    assert lock.locked()  # held by another thread: still "locked"
    release.set()
    t.join()
    assert not lock.locked()


@pytest.mark.parametrize("name", NAMES)
def test_keyboard_interrupt_while_waiting_leaves_no_ghost(name: str) -> None:
    import signal

    assert threading.current_thread() is threading.main_thread()
    lock = make(name)
    holder, release = hold_in_thread(lock)
    before = lock.statistics().acquisitions
    main = threading.get_ident()

    def interrupt() -> None:
        wait_queued(lock, 1)
        signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        lock.acquire(timeout=30)
    interrupter.join()
    release.set()
    holder.join()
    assert not lock.locked()  # nobody was handed the lock on behalf of the interrupted waiter
    assert lock.acquire(timeout=10)
    lock.release()
    assert lock.statistics().acquisitions == before + 1  # only the real acquisitions count
    assert not lock.is_locked()


@pytest.mark.parametrize("name", NAMES)
def test_log_pipeline_errors_never_corrupt_a_lock(name: str) -> None:
    import logging

    import structlog

    def explode(logger: Any, method: str, event: Any) -> Any:
        raise RuntimeError("a broken log processor")

    old = structlog.get_config()
    structlog.configure(
        processors=[explode],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        lock = make(name)
        holder, release = hold_in_thread(lock)
        waiter = Worker(lambda: lock.acquire(timeout=30) and (lock.release() or True))
        wait_queued(lock, 1)
        assert lock.acquire(timeout=0.05) is False  # a timed-out wait logs too
        release.set()
        holder.join()
        assert waiter.join() is True
        assert lock.acquire(timeout=10)
        lock.release()
        assert not lock.is_locked()
    finally:
        structlog.configure(**old)


@pytest.mark.parametrize("name", NAMES)
def test_fork_keeps_the_forking_threads_hold_and_frees_the_others(name: str) -> None:
    mine = make(name)
    theirs = make(name)
    holder, release = hold_in_thread(theirs)
    in_process = not name.startswith("FileLock")  # a file lock's kernel hold stays the parent's
    try:
        with mine:

            def child() -> bool:
                mine.release()  # leaving the with block in the child: the hold is the child's own
                again = mine.acquire(timeout=0)
                if again:
                    mine.release()
                other = theirs.acquire(timeout=0)  # the other thread does not exist in the child
                if other:
                    theirs.release()
                return again is in_process and other is in_process

            assert run_in_forked_child(child) == 0
            assert mine.locked()  # the parent's hold is untouched
    finally:
        release.set()
        holder.join()
    assert not mine.locked() and not theirs.locked()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("huge", [float("inf"), 1e10, threading.TIMEOUT_MAX * 2])
def test_timeouts_beyond_timeout_max_wait_forever(name: str, huge: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockkit._internal import log as _log

    monkeypatch.setattr(_log, "LONG_WAIT", 0.0)  # take the long-wait branch at once
    lock = make(name)
    holder, release = hold_in_thread(lock)
    waiter = Worker(lambda: lock.acquire(timeout=huge) and (lock.release() or True))
    wait_queued(lock, 1)
    release.set()
    holder.join()
    assert waiter.join() is True
    assert not lock.locked() and not lock.is_locked()


@pytest.mark.parametrize("name", NAMES)
def test_owner_try_acquire_returns_false_and_blocking_reacquire_raises(name: str) -> None:
    lock = make(name)
    assert lock.acquire()
    assert lock.acquire(False) is False  # a try cannot deadlock: threading.Lock answers False
    assert lock.acquire(timeout=0) is False
    with pytest.raises(lockkit.DeadlockError):
        lock.acquire()
    with pytest.raises(lockkit.DeadlockError):
        lock.acquire(timeout=1)
    lock.release()
    assert not lock.locked()


@pytest.mark.parametrize("name", NAMES)
def test_condition_over_every_lock(name: str) -> None:
    lock = make(name)
    cond = threading.Condition(lock)
    items: list[int] = []

    def consume() -> int:
        with cond:
            assert cond.wait_for(lambda: items, timeout=30)
            assert lock.locked()
            return items.pop()

    consumers = [Worker(consume) for _ in range(3)]
    with cond:
        assert cond.wait(0.01) is False  # times out, and holds the lock again afterwards
        assert lock.locked()
        items.extend([1, 2, 3])
        cond.notify_all()
    assert sorted(c.join() for c in consumers) == [1, 2, 3]
    one = Worker(consume)
    with cond:
        items.append(4)
        cond.notify()
    assert one.join() == 4
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        cond.notify()  # not holding the lock


@pytest.mark.parametrize("name", NAMES)
def test_wait_until_queued_sees_a_waiter_that_already_timed_out(name: str) -> None:
    lock = make(name)
    holder, release = hold_in_thread(lock)
    try:
        quick = Worker(lambda: lock.acquire(timeout=0.001))
        assert quick.join() is False  # queued, then gave up before anyone looked
        wait_queued(lock, 1, timeout=10)  # must not miss it
    finally:
        release.set()
        holder.join()
