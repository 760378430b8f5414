"""RetryPolicy, retry(), budget, breaker: behaviour with fake clocks and real threads."""

from __future__ import annotations

import io
import threading
import urllib.error
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import lockkit
import lockkit.exceptions
import lockkit.resilience
from lockkit import RetryPolicy
from lockkit.resilience import ErrorClass
from lockkit.resilience._backoff import backoff_delay
from lockkit.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


def flaky(failures: list[BaseException], result: Any = "ok") -> Any:
    calls = [0]

    def fn() -> Any:
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def policy(t: FakeClock, **kw: Any) -> RetryPolicy:
    return RetryPolicy(clock=t, sleep=t.sleep, random=lambda: 0.0, jitter=0.0, on_retry=None, **kw)


def test_retries_transient_then_succeeds() -> None:
    t = FakeClock(0.0)
    fn = flaky([ConnectionResetError(), TimeoutError()])
    assert policy(t).call(fn) == "ok"
    assert fn.calls[0] == 3
    assert t.sleeps == [0.1, 0.2]


def test_last_exception_is_reraised_as_is() -> None:
    t = FakeClock(0.0)
    errors = [ConnectionResetError("a"), ConnectionResetError("b"), ConnectionResetError("c")]
    last = errors[-1]
    with pytest.raises(ConnectionResetError) as info:
        policy(t).call(flaky(errors))
    assert info.value is last


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), lockkit.exceptions.AbortError("stop"), SystemExit(3), GeneratorExit()]
)
def test_cancellation_is_never_retried_even_by_a_catch_all_predicate(exc: BaseException) -> None:
    t = FakeClock(0.0)
    fn = flaky([exc])
    with pytest.raises(type(exc)):
        policy(t, retry_on=lambda e: True).call(fn)
    assert fn.calls[0] == 1
    assert t.sleeps == []


@pytest.mark.parametrize(
    "exc", [ValueError("bug"), PermissionError(13, "denied"), lockkit.exceptions.CircuitOpenError("x")]
)
def test_fatal_errors_are_not_retried_by_default(exc: BaseException) -> None:
    t = FakeClock(0.0)
    fn = flaky([exc])
    with pytest.raises(type(exc)):
        policy(t).call(fn)
    assert fn.calls[0] == 1


def test_retry_on_exception_types_and_predicate() -> None:
    t = FakeClock(0.0)
    assert policy(t, retry_on=KeyError).call(flaky([KeyError("x")])) == "ok"
    assert policy(t, retry_on=lambda e: "again" in str(e)).call(flaky([RuntimeError("again")])) == "ok"
    with pytest.raises(RuntimeError):
        policy(t, retry_on=lambda e: False).call(flaky([RuntimeError("again")]))


def test_deadline_is_never_overrun() -> None:
    t = FakeClock(0.0)
    p = policy(t, attempts=100, timeout=1.0, wait_initial=0.3, wait_max=0.3)

    def slow_fail() -> None:
        t.advance(0.05)
        raise ConnectionResetError()

    with pytest.raises(ConnectionResetError):
        p.call(slow_fail)
    assert t() <= 1.0
    assert sum(t.sleeps) < 1.0


def test_retry_after_is_a_floor_and_capped() -> None:
    t = FakeClock(0.0)
    err = urllib.error.HTTPError("http://x", 503, "busy", {"Retry-After": "2"}, io.BytesIO())  # type: ignore[arg-type]
    assert policy(t).call(flaky([err])) == "ok"
    assert t.sleeps == [2.0]
    t2 = FakeClock(0.0)
    err2 = urllib.error.HTTPError("http://x", 503, "busy", {"Retry-After": "4"}, io.BytesIO())  # type: ignore[arg-type]
    assert policy(t2, retry_after_max=1.5).call(flaky([err2])) == "ok"
    assert t2.sleeps == [1.5]


def test_retry_after_beyond_deadline_fails_at_once() -> None:
    t = FakeClock(0.0)
    err = urllib.error.HTTPError("http://x", 429, "slow down", {"Retry-After": "8"}, io.BytesIO())  # type: ignore[arg-type]
    with pytest.raises(lockkit.exceptions.RetryAfterTooLongError) as info:
        policy(t, timeout=5.0).call(flaky([err]))
    assert info.value.delay == 8.0
    assert info.value.__cause__ is err
    assert t.sleeps == []


@example(attempt=64, initial=1.3030105159728788e-22, extra=1.0, jitter=0.0, rnd=0.0)  # the cap was clamped at 2**62
@given(
    attempt=st.integers(1, 80),
    initial=st.floats(0, 10),
    extra=st.floats(0, 100),
    jitter=st.floats(0, 1),
    rnd=st.floats(0, 1, exclude_max=True),
)
def test_jitter_bounds(attempt: int, initial: float, extra: float, jitter: float, rnd: float) -> None:
    maximum = initial + extra
    cap = min(maximum, initial * 2 ** (attempt - 1))
    d = backoff_delay(attempt, initial, maximum, jitter, rnd)
    assert cap * (1 - jitter) - 1e-9 <= d <= cap + 1e-9
    assert d <= maximum + 1e-9


def test_hooks_get_details_without_arguments() -> None:
    t = FakeClock(0.0)
    seen: list[lockkit.resilience.RetryDetails] = []
    p = policy(t).replace(on_retry=seen.append)
    secret = "tok_live_123"

    def fn(token: str) -> str:
        if not seen:
            raise ConnectionResetError()
        return token

    assert p.call(fn, secret) == secret
    (d,) = seen
    assert d.attempt == 1 and d.error_class is ErrorClass.TRANSIENT and d.error_type == "ConnectionResetError"
    assert secret not in repr(d)


def test_default_hook_logs_retry_scheduled() -> None:
    t = FakeClock(0.0)
    p = RetryPolicy(clock=t, sleep=t.sleep, name="svc")
    with capture_logs() as logs:
        p.call(flaky([ConnectionResetError()]))
    assert [e["event"] for e in logs] == ["lockkit.retry_scheduled"]
    assert logs[0]["name"] == "svc" and logs[0]["error_class"] == "transient"


def test_decorator_needs_explicit_on_and_keeps_metadata() -> None:
    with pytest.raises(TypeError, match="on="):
        lockkit.retry()

    @lockkit.retry(on=ConnectionError, wait_initial=0, wait_max=0)
    def ping(x: int) -> int:
        """Doc."""
        return x

    assert ping(3) == 3 and ping.__doc__ == "Doc." and ping.__name__ == "ping"


def test_iter_attempts_block_form() -> None:
    t = FakeClock(0.0)
    tries = []
    for attempt in policy(t).iter_attempts():
        with attempt:
            tries.append(attempt.number)
            if len(tries) < 3:
                raise ConnectionResetError()
    assert tries == [1, 2, 3]


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match="wait"):
        RetryPolicy(wait_initial=3, wait_max=1)
    p = RetryPolicy().replace(retry_on={ErrorClass.TIMEOUT})
    assert p.retry_on == frozenset({ErrorClass.TIMEOUT})


def test_retry_testing_is_scoped_to_the_thread() -> None:
    p = RetryPolicy(wait_initial=5, wait_max=5, on_retry=None)
    with lockkit.resilience.retry_testing(max_attempts=2):
        fn = flaky([ConnectionResetError(), ConnectionResetError()])
        with pytest.raises(ConnectionResetError):
            p.call(fn)  # no 5 s wait, and only two attempts
        assert fn.calls[0] == 2
        flag: list[bool] = []

        def other_thread() -> None:
            from lockkit.resilience import _retry

            flag.append(getattr(_retry._testing, "state", None) is None)

        th = threading.Thread(target=other_thread)
        th.start()
        th.join()
        assert flag == [True]


def test_budget_exhaustion_across_threads() -> None:
    budget = lockkit.resilience.RetryBudget(ratio=0.0, min_per_second=0.0, burst=5)
    p = RetryPolicy(budget=budget, attempts=10, on_retry=None, wait_initial=0, wait_max=0)
    calls = [0]
    lock = threading.Lock()

    def always_fails() -> None:
        with lock:
            calls[0] += 1
        raise ConnectionResetError()

    def run() -> None:
        with pytest.raises(ConnectionResetError):
            p.call(always_fails)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert calls[0] == 8 + 5  # every first attempt ran, plus exactly the 5 budgeted retries
    s = budget.statistics()
    assert s.retries_allowed == 5 and s.retries_denied == 8


def test_budget_refills_over_time() -> None:
    t = FakeClock(0.0)
    b = lockkit.resilience.RetryBudget(ratio=0.5, min_per_second=1.0, burst=2, clock=t)
    assert b.try_withdraw() and b.try_withdraw()
    assert b.try_withdraw() is False
    b.deposit()
    b.deposit()
    assert b.try_withdraw()
    t.advance(1.0)
    assert b.try_withdraw()


def test_retry_without_parentheses_is_refused_at_decoration_time() -> None:
    with pytest.raises(TypeError, match=r"@retry\(on="):

        @lockkit.retry  # type: ignore[arg-type]
        def fetch() -> int:  # pragma: no cover
            return 1

    with pytest.raises(TypeError, match="RetryPolicy"):
        lockkit.retry("fast", on=ValueError)  # type: ignore[arg-type]
