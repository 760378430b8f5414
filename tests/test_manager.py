"""LockManager and FileMutex: per-key FIFO, reference counting, multi-key order."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from conftest import Worker, hold_in_thread, wait_queued
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import lockkit
import lockkit.sync

pytestmark = pytest.mark.timeout(60)


def test_entries_are_deleted_at_zero() -> None:
    m = lockkit.LockManager()
    h = m.acquire("a")
    assert len(m) == 1 and m.is_locked("a") and m.queue_length("a") == 1
    h.release()
    assert len(m) == 0 and not m.is_locked("a")
    with m.acquire("b", shared=True), m.acquire("c"):
        assert len(m) == 2
    assert len(m) == 0


def test_handle_release_rules() -> None:
    m = lockkit.LockManager()
    h = m.acquire("k")
    assert Worker(lambda: pytest.raises(lockkit.NotOwnerError, h.release)).join()
    h()
    assert h.released
    with pytest.raises(lockkit.NotOwnerError, match="already released"):
        h.release()


def test_different_keys_never_block() -> None:
    m = lockkit.LockManager()
    with m.acquire("a"):
        assert Worker(lambda: m.acquire("b", timeout=0).release() or True).join()


def test_timeout_names_the_holder() -> None:
    m = lockkit.LockManager(show_keys=True)
    with m.acquire("acct:1"):
        w = Worker(lambda: m.acquire("acct:1", timeout=0.05))
        with pytest.raises(lockkit.LockTimeoutError) as info:
            w.join()
    assert "acct:1" in str(info.value)
    assert info.value.holder is not None and "MainThread" in info.value.holder
    assert len(m) == 0


def test_reacquire_same_key_is_deadlock() -> None:
    m = lockkit.LockManager()
    with m.acquire("k"), pytest.raises(lockkit.DeadlockError):
        m.acquire("k")
    assert len(m) == 0


def test_multi_key_lock_takes_sorted_order_without_deadlock() -> None:
    m = lockkit.LockManager()
    counter = {"a": 0, "b": 0, "c": 0}

    def work(keys: tuple[str, ...]) -> None:
        for _ in range(500):
            with m.lock(*keys):
                for k in set(keys):  # duplicates are taken once
                    counter[k] += 1

    threads = [
        threading.Thread(target=work, args=(keys,))
        for keys in [("a", "b", "c"), ("c", "b", "a"), ("b", "a"), ("c", "a", "a")]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter == {"a": 2000, "b": 1500, "c": 1500}
    assert len(m) == 0


def test_multi_key_timeout_releases_what_it_took() -> None:
    m = lockkit.LockManager()
    with m.acquire("b"):

        def take() -> None:
            with m.lock("a", "b", timeout=0.05):
                pass  # pragma: no cover

        with pytest.raises(lockkit.LockTimeoutError):
            Worker(take).join()
        assert not m.is_locked("a")
    assert len(m) == 0


def test_mixed_type_keys_are_ordered() -> None:
    m = lockkit.LockManager()
    with m.lock(3, "x", (1, 2), 3) as handles:
        assert len(handles) == 3
    assert len(m) == 0


def test_module_level_with_lock() -> None:
    assert lockkit.with_lock("global-key", lambda: 42) == 42
    assert len(lockkit.lock_manager) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["hold", "timeout", "shared"])),
        min_size=1,
        max_size=12,
    )
)
def test_reference_counting_any_interleaving(ops: list[tuple[int, str]]) -> None:
    """After any mix of holds, shared holds and timeouts on random keys, nothing is left."""
    m = lockkit.LockManager()
    blockers = {}
    for key, kind in ops:
        if kind == "timeout" and key in blockers:
            assert Worker(lambda key=key: pytest.raises(lockkit.LockTimeoutError, m.acquire, key, 0.001)).join()
        elif kind == "shared" and key not in blockers:
            h = m.acquire(key, shared=True)
            assert Worker(lambda key=key: m.acquire(key, 1.0, shared=True).release() or True).join()
            h.release()
        elif key not in blockers:
            blockers[key] = m.acquire(key)
    for h in blockers.values():
        h.release()
    assert len(m) == 0
    assert m.statistics().waiting == 0


def test_wait_for_pending(tmp_path: Path) -> None:
    fm = lockkit.sync.FileMutex()
    h = fm.acquire(tmp_path / "x.json")
    assert fm.has_pending_operations()
    w = Worker(lambda: fm.wait_for_pending(timeout=10))
    wait_queued(fm, 1)
    h.release()
    assert w.join() is True
    assert not fm.has_pending_operations()
    assert fm.wait_for_pending(0)


def test_filemutex_normalises_paths(tmp_path: Path) -> None:
    fm = lockkit.sync.FileMutex()
    (tmp_path / "sub").mkdir()
    target = tmp_path / "b.json"
    target.write_text("{}")
    os.symlink(target, tmp_path / "link.json")
    with fm.acquire(tmp_path / "sub" / ".." / "b.json"):
        assert fm.is_locked(target)
        assert fm.is_locked(tmp_path / "link.json")
        with pytest.raises(lockkit.LockTimeoutError):
            Worker(lambda: fm.acquire(str(target), timeout=0.02)).join()
        with fm.acquire(tmp_path / "other.json", timeout=0):  # a different file never blocks
            pass
    assert len(fm) == 0


def test_filemutex_metrics_and_deep_queue_warning(tmp_path: Path) -> None:
    fm = lockkit.sync.FileMutex()
    path = tmp_path / "hot.json"
    with capture_logs() as logs:
        h = fm.acquire(path)
        workers = [Worker(lambda: fm.with_lock(path, lambda: None)) for _ in range(12)]
        wait_queued(fm, 12)
        h.release()
        for w in workers:
            w.join()
    deep = [e for e in logs if e["event"] == "lockkit.queue_deep"]
    assert len(deep) == 1 and deep[0]["log_level"] == "warning" and deep[0]["waiting"] == 11
    m = fm.metrics()
    assert m.overall.acquisitions == 13
    assert m.overall.contentions == 12 and m.overall.peak_queue == 12
    (key,) = m.files
    assert key == lockkit.sync.normalize_path(path)
    assert m.files[key].acquisitions == 13 and m.files[key].peak_queue == 12
    assert m.average_wait > 0


@pytest.mark.parametrize("bad", ["", "a\0b"])
def test_normalize_path_rejects_bad_paths(bad: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        lockkit.sync.normalize_path(bad)


def test_normalize_path_rejects_bytes() -> None:
    with pytest.raises(TypeError):
        lockkit.sync.normalize_path(b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-5, float("nan"), "1"])
def test_try_acquire_checks_its_timeout(bad: object) -> None:
    manager = lockkit.LockManager("checked")
    with pytest.raises((ValueError, TypeError)):
        manager.try_acquire("k", bad)  # type: ignore[arg-type]
    assert len(manager) == 0


@pytest.mark.parametrize(
    "keys",
    [
        [frozenset({1}), frozenset({2}), frozenset({1, 2})],  # subsets: sorted() gives a partial order
        [1, "a", b"b", 2.5, ("t", 1), None],  # mixed types
        [float("nan"), 1.0, 0.5],
    ],
)
def test_multi_key_lock_takes_keys_in_one_total_order(keys: list[object]) -> None:
    manager = lockkit.LockManager("order")
    orders = set()
    for rotation in range(len(keys)):
        given = keys[rotation:] + keys[:rotation]
        with manager.lock(*given) as handles:  # type: ignore[arg-type]
            orders.add(tuple(repr(h.key) for h in handles))
        with manager.lock(*reversed(given)) as handles:  # type: ignore[arg-type]
            orders.add(tuple(repr(h.key) for h in handles))
    assert len(orders) == 1


def test_keys_that_cannot_be_ordered_are_refused() -> None:
    class Same:
        def __repr__(self) -> str:
            return "same"

    manager = lockkit.LockManager("order")
    with pytest.raises(TypeError, match="total order"), manager.lock(Same(), Same()):
        pass
    assert len(manager) == 0


@pytest.mark.timeout(30)
def test_keys_are_redacted_in_timeout_errors_unless_asked() -> None:
    secret = "session-3f9a1c0ffee"
    for show, visible in ((False, False), (True, True)):
        manager = lockkit.LockManager("sessions", show_keys=show)
        t, release = hold_in_thread(manager.lock(secret))
        try:
            with pytest.raises(lockkit.LockTimeoutError) as info, manager.lock(secret, timeout=0):
                pass  # pragma: no cover
        finally:
            release.set()
            t.join()
        text = f"{info.value} {info.value.resource}"
        assert (secret in text) is visible, text
        if not visible:
            assert "key#" in text  # a short hash still tells two keys apart
