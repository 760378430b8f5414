"""Typed usage of lockkit's public API, checked by ``mypy --strict`` (tox -e typing)."""

from __future__ import annotations

import lockkit
import lockkit.sync


def use_mutex() -> int:
    m = lockkit.Mutex("accounts", timeout=2.0)
    with m:
        pass
    ok: bool = m.acquire(timeout=0.5)
    if ok:
        m.release()
    stats: lockkit.LockStatistics = m.statistics()
    return m.run_exclusive(lambda a, b: a + b, 1, stats.acquisitions)


def use_rwlock() -> bool:
    rw = lockkit.RWLock("fifo", name="config")
    with rw.read():
        pass
    with rw.write(timeout=1.0):
        pass
    return rw.acquire_read(blocking=False)


def use_manager() -> str:
    manager = lockkit.LockManager()
    handle: lockkit.sync.LockHandle = manager.acquire("user:1", timeout=1.0)
    handle()
    with manager.lock("a", "b", timeout=1.0) as handles:
        assert len(handles) == 2
    return lockkit.with_lock("k", lambda: "done")


def use_filemutex() -> float:
    fm = lockkit.sync.FileMutex()
    result: int = fm.with_lock("data.json", lambda: 3)
    metrics: lockkit.sync.FileMutexMetrics = fm.metrics()
    return metrics.average_wait + result


def use_errors() -> str | None:
    try:
        lockkit.Mutex(timeout=0).__enter__()
    except lockkit.LockTimeoutError as exc:
        return exc.holder
    return None
