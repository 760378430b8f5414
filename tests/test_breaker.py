"""CircuitBreaker: state machine, concurrency, composition with RetryPolicy."""

from __future__ import annotations

import threading

import pytest

import lockkit
import lockkit.exceptions
from lockkit import CircuitBreaker, RetryPolicy
from lockkit.resilience import CircuitState
from lockkit.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


def fail() -> None:
    raise ConnectionResetError()


def ok() -> str:
    return "ok"


def test_opens_on_failure_rate_then_half_opens_and_closes() -> None:
    t = FakeClock(0.0)
    changes: list[tuple[CircuitState, CircuitState]] = []
    b = CircuitBreaker("svc", minimum_calls=4, failure_rate=0.5, reset_timeout=10, clock=t)
    b.add_listener(lambda br, old, new: changes.append((old, new)))
    b.call(ok)
    b.call(ok)
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    with pytest.raises(ConnectionResetError):  # the call that trips it raises its own error
        b.call(fail)
    assert b.state is CircuitState.OPEN
    with pytest.raises(lockkit.exceptions.CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == pytest.approx(10)
    t.advance(10)
    assert b.state is CircuitState.HALF_OPEN
    assert b.call(ok) == "ok"
    assert b.state is CircuitState.CLOSED
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    s = b.statistics()
    assert s.rejected == 1 and s.opened == 1


def test_probe_failure_reopens_and_ignored_classes_do_not_count() -> None:
    t = FakeClock(0.0)
    b = CircuitBreaker("svc", minimum_calls=2, reset_timeout=5, clock=t)
    for _ in range(5):
        with pytest.raises(ValueError):  # FATAL is not recorded: neither success nor failure
            b.call(lambda: (_ for _ in ()).throw(ValueError()))
    assert b.statistics().calls == 0
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            b.call(fail)
    assert b.state is CircuitState.OPEN
    t.advance(5)
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    assert b.state is CircuitState.OPEN


def test_window_forgets_old_outcomes() -> None:
    t = FakeClock(0.0)
    b = CircuitBreaker("svc", minimum_calls=3, window=10, clock=t)
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            b.call(fail)
    t.advance(11)
    b.call(ok)
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    assert b.state is CircuitState.CLOSED  # 1 failure of 2 calls in the window: not judged yet


def test_half_open_admits_bounded_probes() -> None:
    t = FakeClock(0.0)
    b = CircuitBreaker("svc", minimum_calls=1, reset_timeout=1, half_open_calls=2, clock=t)
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    t.advance(1)
    inside = threading.Barrier(3, timeout=10)
    release = threading.Event()
    results: list[str] = []

    def probe() -> None:
        def slow() -> str:
            inside.wait()
            release.wait(10)
            return "ok"

        results.append(b.call(slow))

    probes = [threading.Thread(target=probe) for _ in range(2)]
    for p in probes:
        p.start()
    inside.wait()  # both probes are inside the guarded call
    with pytest.raises(lockkit.exceptions.CircuitOpenError, match="probe"):
        b.call(ok)
    release.set()
    for p in probes:
        p.join()
    assert results == ["ok", "ok"] and b.state is CircuitState.CLOSED


def test_breaker_never_serialises_calls_under_16_threads() -> None:
    b = CircuitBreaker("svc", minimum_calls=1000)
    together = threading.Barrier(16, timeout=10)  # breaks unless all 16 are inside at once

    @b
    def slow() -> bool:
        together.wait()
        return True

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(slow())) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [True] * 16
    assert b.statistics().calls == 16


def test_policy_waits_for_open_breaker_only_if_it_fits_the_deadline() -> None:
    t = FakeClock(0.0)
    b = CircuitBreaker("svc", minimum_calls=1, reset_timeout=3, clock=t)
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    fits = RetryPolicy(breaker=b, clock=t, sleep=t.sleep, on_retry=None, timeout=10, jitter=0)
    assert fits.call(ok) == "ok"  # waited the 3 s open period, then the probe succeeded
    assert t.sleeps == [3.0]
    with pytest.raises(ConnectionResetError):
        b.call(fail)
    t.advance(3)
    with pytest.raises(ConnectionResetError):  # half-open probe fails: open again for 3 s
        b.call(fail)
    too_short = fits.replace(timeout=1)
    with pytest.raises(lockkit.exceptions.CircuitOpenError):
        too_short.call(ok)
