"""lockkit.testing and the pytest plugin."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from typing import Any

import pytest

import lockkit
from lockkit import testing

pytestmark = pytest.mark.timeout(60)


# -- MockFileLockService ---------------------------------------------------------------------


@pytest.mark.parametrize(("behavior", "reason"), [("timeout", "timeout"), ("error", "error"), ("locked", "locked")])
def test_mock_behaviours(mock_lock_service: testing.MockFileLockService, behavior: Any, reason: str) -> None:
    mock_lock_service.set_lock_behavior("/data/a.json", behavior)
    result = mock_lock_service.acquire("/data/a.json")
    assert not result and result.reason == reason
    assert mock_lock_service.acquire("/data/b.json")  # other paths still succeed
    assert mock_lock_service.calls[0] == (
        "acquire",
        "/data/a.json",
        {"timeout": None, "retry_interval": 0.1, "max_retries": None, "type": "exclusive"},
    )
    with pytest.raises(lockkit.LockkitError):
        mock_lock_service.with_lock("/data/a.json", lambda: None)
    with pytest.raises(ValueError, match="behavior"):
        mock_lock_service.set_lock_behavior("/x", "maybe")  # type: ignore[arg-type]


def test_mock_contention_simulation(mock_lock_service: testing.MockFileLockService) -> None:
    mock_lock_service.simulate_contention("/q.json", holder="pid 812 on web-3")
    assert mock_lock_service.is_locked("/q.json")
    info = mock_lock_service.holder("/q.json")
    assert info is not None and info.thread == "pid 812 on web-3"
    failed = mock_lock_service.acquire("/q.json", timeout=1)
    assert failed.reason == "timeout" and "pid 812 on web-3" in (failed.message or "")
    assert mock_lock_service.acquire("/q.json", timeout=0).reason == "locked"
    mock_lock_service.clear_contention("/q.json")
    ok = mock_lock_service.acquire("/q.json")
    assert ok and ok.handle is not None and ok.handle.fencing_token == 1
    assert mock_lock_service.is_locked("/q.json")
    ok.handle.release()
    assert mock_lock_service.acquired_paths == ["/q.json"] and not mock_lock_service.is_locked("/q.json")
    mock_lock_service.reset()
    assert mock_lock_service.calls == [] and mock_lock_service.acquired_paths == []


def test_mock_enforces_mutual_exclusion() -> None:
    mock = testing.MockFileLockService()
    box = {"n": 0}

    def bump() -> None:
        for _ in range(200):

            def step() -> None:
                value = box["n"]
                time.sleep(0)  # an I/O pause inside the critical section
                box["n"] = value + 1

            mock.with_lock("/counter.json", step)

    outcomes = testing.run_concurrent([bump] * 8)
    assert all(o.ok for o in outcomes) and box["n"] == 1600


# -- run_concurrent, verify_no_lost_updates, hammer ---------------------------------------------


def test_run_concurrent_order_and_errors() -> None:
    def fails() -> None:
        raise ValueError("boom")

    outcomes = testing.run_concurrent([lambda: 1, fails, lambda: 3], threads=2)
    assert [o.result for o in outcomes] == [1, None, 3]
    assert isinstance(outcomes[1].error, ValueError) and not outcomes[1].ok


def test_run_concurrent_starts_together() -> None:
    together = threading.Barrier(4, timeout=10)
    outcomes = testing.run_concurrent([together.wait] * 4)  # would break unless all four run at once
    assert all(o.ok for o in outcomes)


def test_run_concurrent_names_hung_operations() -> None:
    release = threading.Event()
    with pytest.raises(TimeoutError, match=r"operations \[1\] still running"):
        testing.run_concurrent([lambda: None, lambda: release.wait(30)], timeout=0.3)
    release.set()


def _racy() -> tuple[Any, Any]:
    """An unprotected read/write pair that is certain to lose an update when run concurrently.

    The first read holds its value until a second thread has read too, so two
    modifications start from the same value however the threads are scheduled.
    """
    box = {"n": 0}
    second_read = threading.Event()
    reads = itertools.count()

    def read() -> int:
        value = box["n"]
        if next(reads) == 0:
            second_read.wait(30)  # only a bound for a tool that is not concurrent at all
        else:
            second_read.set()
        return value

    def write(v: int) -> None:
        box["n"] = v

    return read, write


def test_verify_detects_a_racy_pair_and_passes_a_locked_one() -> None:
    read, write = _racy()
    report = testing.verify_no_lost_updates(0, [lambda v: v + 1] * 400, read, write)
    assert not report.success and report.lost > 0 and report.expected == 400

    lock = lockkit.Mutex()
    box = {"n": 0}

    def locked_read() -> int:
        lock.acquire()
        time.sleep(0)
        return box["n"]

    def locked_write(v: int) -> None:
        box["n"] = v
        lock.release()

    report = testing.verify_no_lost_updates(0, [lambda v: v + 1] * 400, locked_read, locked_write)
    assert report.success and report.lost == 0 and report.actual == 400


def test_hammer_reports_counts_and_longest_wait() -> None:
    m = lockkit.Mutex()

    def critical() -> None:
        with m:
            pass

    report = testing.hammer(critical, threads=4, iterations=2000)
    assert report.total == 2000 == sum(report.counts) and len(report.counts) == 4
    assert report.longest_wait > 0 and report.elapsed > 0


def test_wait_until_queued() -> None:
    m = lockkit.Mutex()
    m.acquire()
    t = threading.Thread(target=lambda: m.acquire(timeout=10) and m.release())
    t.start()
    testing.wait_until_queued(m, 1)
    m.release()
    t.join()
    with pytest.raises(TimeoutError, match="never had 2 waiters"):  # the count only grows: one queued so far
        testing.wait_until_queued(m, 2, timeout=0.05)


def test_fake_clock_drives_retries_without_waiting(
    fake_clock: testing.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def real_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s on the real clock")

    monkeypatch.setattr(time, "sleep", real_sleep)
    calls = []

    def flaky() -> str:
        calls.append(fake_clock())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    policy = lockkit.RetryPolicy(clock=fake_clock, sleep=fake_clock.sleep, jitter=0, on_retry=None)
    assert policy.call(flaky) == "up"
    assert fake_clock.sleeps == [0.1, 0.2] and calls == [1000.0, 1000.1, pytest.approx(1000.3)]
    with pytest.raises(ValueError):
        fake_clock.advance(-1)


def _spin_forever() -> None:
    while True:
        pass


def test_crash_child_kills() -> None:
    result = testing.crash_child(_spin_forever, kill_after=0.05)
    assert result.killed and result.exitcode == -signal.SIGKILL
    assert testing.crash_child(lambda: None, kill_after=5).killed is False


def test_lock_dir_fixture(lock_dir: Any) -> None:
    assert lock_dir.is_dir() and list(lock_dir.iterdir()) == []
    with lockkit.FileLock(lock_dir / "x.lock"):
        pass


# -- the plugin ------------------------------------------------------------------------------------


def test_plugin_fixtures_and_leak_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import lockkit

        KEEP = []

        def test_fixtures(lock_dir, mock_lock_service, fake_clock):
            assert lock_dir.exists() and mock_lock_service.acquire("x") and fake_clock() == 1000.0

        @pytest.mark.lockkit_no_leaks
        def test_clean():
            with lockkit.Mutex():
                pass

        @pytest.mark.lockkit_no_leaks
        def test_leaky():
            m = lockkit.Mutex("leaked")
            KEEP.append(m)
            m.acquire()

        def test_unmarked_leak_is_not_checked():
            m = lockkit.Mutex("ignored")
            KEEP.append(m)
            m.acquire()
        """
    )
    result = pytester.runpytest("-q")  # the plugin is loaded by the pytest11 entry point
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*lockkit_no_leaks: the test left 1 lock(s) held*leaked*"])


def test_plugin_changes_nothing_for_other_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest("-q", "--strict-markers")  # loaded by the pytest11 entry point
    result.assert_outcomes(passed=1)
