"""RWLock: sharing, writer preference in the queue, upgrade refusal, downgrade."""

from __future__ import annotations

import threading

import pytest
from conftest import Worker, wait_queued

import lockkit

pytestmark = pytest.mark.timeout(60)
POLICIES = ["fifo", "read", "write"]


@pytest.mark.parametrize("policy", POLICIES)
def test_readers_share(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    inside = threading.Barrier(3, timeout=10)

    def read() -> None:
        with lock.read():
            inside.wait()  # all three are inside at once, or the barrier breaks

    workers = [Worker(read) for _ in range(3)]
    for w in workers:
        w.join()
    assert lock.statistics().acquisitions == 3


@pytest.mark.parametrize("policy", POLICIES)
def test_writer_excludes_readers(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    with lock.write():
        assert Worker(lambda: lock.acquire_read(timeout=0.05)).join() is False
    with lock.read():
        assert Worker(lambda: lock.acquire_write(timeout=0.05)).join() is False


@pytest.mark.parametrize("policy", POLICIES)
def test_upgrade_and_reentry_raise_deadlock(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    with lock.read():
        with pytest.raises(lockkit.DeadlockError):
            lock.acquire_write()
        with pytest.raises(lockkit.DeadlockError):
            lock.acquire_read()
    with lock.write(), pytest.raises(lockkit.DeadlockError):
        lock.acquire_read()


def test_fifo_reader_waits_behind_queued_writer() -> None:
    lock = lockkit.RWLock()
    order: list[str] = []
    lock.acquire_read()
    writer = Worker(lambda: lock.write().__enter__() or order.append("w") or lock.release())
    wait_queued(lock, 1)
    late_reader = Worker(lambda: lock.acquire_read() and (order.append("r") or lock.release()))
    wait_queued(lock, 2)
    assert order == []  # the late reader did not overtake the writer
    lock.release()
    writer.join()
    late_reader.join()
    assert order == ["w", "r"]


def test_fifo_readers_queued_together_are_granted_as_one_batch() -> None:
    lock = lockkit.RWLock()
    lock.acquire_write()
    together = threading.Barrier(4, timeout=10)
    readers = [Worker(lambda: lock.acquire_read() and (together.wait() or lock.release())) for _ in range(4)]
    wait_queued(lock, 4)
    lock.release()
    for r in readers:
        r.join()  # the barrier needed all four inside at once


@pytest.mark.parametrize("policy", ["fifo", "read", "write"])
def test_downgrade_is_atomic(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    lock.acquire_write()
    reader = Worker(lambda: lock.acquire_read(timeout=10) and (lock.release() or True))
    if policy == "fifo":
        wait_queued(lock, 1)
    lock.downgrade()
    assert reader.join() is True  # a reader gets in beside the downgraded holder
    assert Worker(lambda: lock.acquire_write(timeout=0.05)).join() is False  # a writer does not
    lock.release()
    with pytest.raises(lockkit.NotOwnerError):
        lock.downgrade()


def test_bad_policy() -> None:
    with pytest.raises(ValueError, match="policy"):
        lockkit.RWLock("lifo")  # type: ignore[arg-type]


def test_read_write_guards_raise_on_timeout() -> None:
    lock = lockkit.RWLock(name="cfg")
    with lock.write():
        w = Worker(lambda: lock.read(timeout=0.05).__enter__())
        with pytest.raises(lockkit.LockTimeoutError, match="cfg"):
            w.join()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("policy", POLICIES)
def test_downgrade_with_a_queued_writer_returns_at_once(policy: str) -> None:
    lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
    threads_before = threading.active_count()
    assert lock.acquire_write()
    writer = Worker(lambda: lock.acquire_write(timeout=30) and (lock.release() or True))
    wait_queued(lock, 1)
    lock.downgrade()  # must not wait for the queued writer
    s = lock.statistics()
    assert s.readers == 1 and s.owner is None and s.waiting == 1
    lock.release()
    assert writer.join() is True
    writer.thread.join(10)
    assert threading.active_count() == threads_before  # no helper thread left behind


def test_read_policy_lets_readers_pass_a_queued_writer() -> None:
    for policy, passes in (("read", True), ("fifo", False), ("write", False)):
        lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
        assert lock.acquire_read()
        writer = Worker(lambda lock=lock: lock.acquire_write(timeout=30) and (lock.release() or True))  # type: ignore[misc]
        wait_queued(lock, 1)
        late_reader = Worker(lambda lock=lock: lock.acquire_read(timeout=0) and (lock.release() or True))  # type: ignore[misc]
        assert late_reader.join() is passes, policy
        lock.release()
        assert writer.join() is True


def test_write_policy_grants_a_queued_writer_before_earlier_readers() -> None:
    for policy, first in (("write", "writer"), ("fifo", "reader")):
        lock = lockkit.RWLock(policy)  # type: ignore[arg-type]
        order: list[str] = []
        assert lock.acquire_write()

        def take(shared: bool, who: str, lock: lockkit.RWLock = lock, order: list[str] = order) -> bool:
            assert lock.acquire(timeout=30, shared=shared)
            order.append(who)
            lock.release()
            return True

        reader = Worker(lambda: take(True, "reader"))
        wait_queued(lock, 1)
        writer = Worker(lambda: take(False, "writer"))
        wait_queued(lock, 2)
        lock.release()
        assert reader.join() and writer.join()
        assert order[0] == first, policy
