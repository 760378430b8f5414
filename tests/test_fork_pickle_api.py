"""Fork safety, exception pickling, the public API and log events."""

from __future__ import annotations

import pickle
import threading

import pytest
from conftest import Worker, run_in_forked_child, wait_queued
from structlog.testing import capture_logs

import lockkit
import lockkit.sync
from lockkit._internal import log as _log

pytestmark = pytest.mark.timeout(60)


def test_child_starts_with_free_locks() -> None:
    mutex = lockkit.Mutex()
    rw = lockkit.RWLock()
    manager = lockkit.LockManager()
    fm = lockkit.sync.FileMutex()
    release = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with mutex, rw.read(), manager.acquire("k"), fm.acquire("/tmp/x.json"):
            held.set()
            release.wait(30)

    h = Worker(holder)
    assert held.wait(10)
    waiter = Worker(lambda: mutex.acquire(timeout=30) and (mutex.release() or True))
    wait_queued(mutex, 1)

    def child_check() -> bool:
        ok = mutex.acquire(timeout=1) and not mutex.statistics().waiting
        mutex.release()
        ok = ok and rw.acquire_write(timeout=1)
        rw.release()
        with manager.acquire("k", timeout=1), fm.acquire("/tmp/x.json", timeout=1):
            pass
        return bool(ok) and len(manager) == 0

    assert run_in_forked_child(child_check) == 0
    release.set()
    h.join()
    assert waiter.join() is True


@pytest.mark.parametrize(
    "exc",
    [
        lockkit.LockkitError("boom"),
        lockkit.LockTimeoutError("timed out", resource="r", timeout=1.5, holder="pid 1 on h"),
        lockkit.NotOwnerError("not yours"),
        lockkit.DeadlockError("again"),
    ],
)
def test_exceptions_pickle(exc: Exception) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    for attr in ("resource", "timeout", "holder"):
        assert getattr(back, attr, None) == getattr(exc, attr, None)


def test_exception_hierarchy() -> None:
    assert issubclass(lockkit.LockTimeoutError, TimeoutError)
    assert issubclass(lockkit.NotOwnerError, RuntimeError)
    assert issubclass(lockkit.DeadlockError, RuntimeError)
    for name in ("LockTimeoutError", "NotOwnerError", "DeadlockError"):
        assert issubclass(getattr(lockkit, name), lockkit.LockkitError)


def test_public_api_sorted_importable_documented() -> None:
    assert lockkit.__all__ == sorted(lockkit.__all__)
    for name in lockkit.__all__:
        obj = getattr(lockkit, name)
        if callable(obj) and not isinstance(obj, lockkit.LockManager):
            assert obj.__doc__, f"{name} has no docstring"


def test_long_wait_warning_names_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_log, "LONG_WAIT", 0.05)
    m = lockkit.Mutex("slow")
    with capture_logs() as logs:
        m.acquire()
        w = Worker(lambda: m.acquire(timeout=10))
        wait_queued(m, 1)
        while not any(e["event"] == _log.LOCK_WAIT_LONG for e in logs):
            threading.Event().wait(0.01)
        m.release()
        assert w.join() is True
    (event,) = [e for e in logs if e["event"] == _log.LOCK_WAIT_LONG]
    assert event["log_level"] == "warning" and event["lock"] == "slow"
    assert "MainThread" in event["holder"]
