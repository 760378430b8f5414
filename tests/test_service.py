"""FileLockService: results, polling, lock_dir, acquire_many."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import proc_helpers
import pytest
from conftest import Worker

import lockkit
import lockkit.files

pytestmark = pytest.mark.timeout(60)
ctx = multiprocessing.get_context("fork")


def test_acquire_release_and_paths(tmp_path: Path) -> None:
    svc = lockkit.files.FileLockService()
    resource = tmp_path / "data.json"
    result = svc.acquire(resource)
    assert result and result.handle is not None
    assert result.lock_path == str(resource) + ".lock"
    assert result.handle.is_held() and result.handle.fencing_token >= 1
    assert svc.is_locked(resource)
    info = svc.holder(resource)
    assert info is not None and info.pid == os.getpid()
    result.handle.release()
    assert not result.handle.is_held()
    with pytest.raises(lockkit.NotOwnerError):
        result.handle.release()
    assert not svc.is_locked(resource)


def test_lock_dir_names_are_unique_per_path(tmp_path: Path) -> None:
    svc = lockkit.files.FileLockService(lock_dir=tmp_path / "locks")
    (tmp_path / "locks").mkdir()
    a = svc.lock_path_for(tmp_path / "a" / "x.json")
    b = svc.lock_path_for(tmp_path / "b" / "x.json")
    assert a != b and os.path.dirname(a) == str(tmp_path / "locks")
    with svc.acquire(tmp_path / "a" / "x.json").handle as handle:  # type: ignore[union-attr]
        assert handle.lock_path == a


def test_failure_reasons(tmp_path: Path) -> None:
    svc = lockkit.files.FileLockService(default_timeout=0.1)
    resource = tmp_path / "busy.json"
    ready = ctx.Event()
    child = ctx.Process(target=proc_helpers.hold_forever, args=(str(resource) + ".lock", "kernel", ready))
    child.start()
    try:
        assert ready.wait(20)
        timed = svc.acquire(resource)
        assert not timed and timed.reason == "timeout" and f"pid {child.pid}" in (timed.message or "")
        single = svc.acquire(resource, timeout=0)
        assert single.reason == "locked"
        polled = svc.acquire(resource, retry_interval=0.01, max_retries=3)
        assert polled.reason == "timeout"
        with pytest.raises(lockkit.LockTimeoutError):
            svc.with_lock(resource, lambda: None, timeout=0)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
    broken = svc.acquire(tmp_path / "missing-dir" / "x.json")
    assert broken.reason == "error" and "directory does not exist" in (broken.message or "")


def test_with_lock_and_shared(tmp_path: Path) -> None:
    svc = lockkit.files.FileLockService()
    assert svc.with_lock(tmp_path / "r.json", lambda: 7) == 7
    a = svc.acquire(tmp_path / "r.json", type="shared")

    def second_reader() -> bool:
        result = svc.acquire(tmp_path / "r.json", type="shared", timeout=1)
        if result.handle is not None:
            result.handle.release()  # a thread must not end holding a lock
        return result.success

    b = Worker(second_reader).join()
    assert a and b is True
    a.handle.release()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="type"):
        svc.acquire(tmp_path / "r.json", type="upgrade")  # type: ignore[arg-type]


def test_acquire_many_sorted_and_all_or_nothing(tmp_path: Path) -> None:
    svc = lockkit.files.FileLockService()
    paths = [tmp_path / n for n in ("c.json", "a.json", "b.json", "a.json")]
    result = svc.acquire_many(paths)
    assert result and result.handle is not None
    assert [os.path.basename(p) for p in result.handle.lock_paths] == ["a.json.lock", "b.json.lock", "c.json.lock"]
    busy = Worker(lambda: svc.acquire_many([tmp_path / "z.json", tmp_path / "b.json"], timeout=0.05)).join()
    assert not busy and busy.reason == "timeout"
    assert not svc.is_locked(tmp_path / "z.json")  # released again after the failure
    result.handle.release()
