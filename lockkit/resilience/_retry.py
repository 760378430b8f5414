"""RetryPolicy and the ``retry`` decorator, built on tenacity (a private detail)."""

from __future__ import annotations

import dataclasses
import functools
import random as _random
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar

import tenacity

from lockkit._internal import log as _log
from lockkit.exceptions import CircuitOpenError, RetryAfterTooLongError
from lockkit.resilience._backoff import backoff_delay
from lockkit.resilience._breaker import CircuitBreaker
from lockkit.resilience._budget import RetryBudget
from lockkit.resilience._classify import RETRYABLE, ErrorClass, classify, retry_after

P = ParamSpec("P")
R = TypeVar("R")

RetryOn = (
    AbstractSet[ErrorClass] | type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


@dataclass(frozen=True, slots=True)
class RetryDetails:
    """What a retry hook is told before each wait. Never contains call arguments.

    Attributes:
        name: The policy's (or decorated function's) name.
        attempt: The attempt that just failed (1-based).
        error_class: How the failure was classified.
        error_type: The exception's class name.
        wait: Seconds it will sleep before the next attempt.
        elapsed: Seconds since the first attempt started.
        retry_after: The server's ``Retry-After`` in seconds, if it sent one.

    """

    name: str | None
    attempt: int
    error_class: ErrorClass
    error_type: str
    wait: float
    elapsed: float
    retry_after: float | None


def log_retry(details: RetryDetails) -> None:
    """The default retry hook: emit ``lockkit.retry_scheduled`` (info)."""
    _log.info(
        "lockkit.retry_scheduled",
        name=details.name,
        attempt=details.attempt,
        error_class=details.error_class.value,
        error_type=details.error_type,
        wait=round(details.wait, 4),
        elapsed=round(details.elapsed, 4),
    )


_testing = threading.local()


@contextmanager
def retry_testing(*, max_attempts: int | None = None) -> Iterator[None]:
    """Within this block, on this thread only, retries do not wait.

    Args:
        max_attempts: Also cap every policy's attempts at this number.

    """
    previous = getattr(_testing, "state", None)
    _testing.state = (max_attempts,)
    try:
        yield
    finally:
        _testing.state = previous


def _no_sleep(_: float) -> None:
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry: a frozen value object, shared freely between threads.

    The wait before attempt ``n + 1`` is ``min(wait_max, wait_initial * 2 ** (n - 1))``
    with full jitter applied after the cap, raised to the server's ``Retry-After`` (itself
    capped by ``retry_after_max``) when ``respect_retry_after`` is set. No wait ever
    runs past the total ``timeout``: a retry that cannot start before the deadline is
    not made, and the last error is raised as is.

    Attributes:
        attempts: Total attempts, the first included (>= 1).
        timeout: Total deadline in seconds from the first attempt (``None``: no deadline).
        wait_initial: The first backoff cap in seconds.
        wait_max: The largest backoff cap in seconds.
        jitter: Fraction of each wait that is random (1.0 = full jitter, 0.0 = none).
        retry_on: What to retry: a set of :class:`ErrorClass`, exception types, or a
            predicate on the exception. ``CANCELLED`` errors are never retried.
        respect_retry_after: Use ``Retry-After`` as a floor for the wait.
        retry_after_max: The largest ``Retry-After`` honoured, in seconds.
        idempotent_only: For HTTP: retry read errors and 5xx only for idempotent
            methods or requests with an ``Idempotency-Key`` (connect errors always).
        budget: A shared :class:`RetryBudget`, or ``None``.
        breaker: A :class:`CircuitBreaker` every attempt goes through, or ``None``.
        on_retry: Hook called with :class:`RetryDetails` before each wait (tenacity's
            ``before_sleep``); defaults to logging ``lockkit.retry_scheduled``.
        name: Name used in events (defaults to the decorated function's name).
        clock: Monotonic clock (injectable).
        sleep: Sleep function (injectable).
        random: Uniform [0, 1) source for jitter (injectable).

    """

    attempts: int = 3
    timeout: float | None = 10.0
    wait_initial: float = 0.1
    wait_max: float = 2.0
    jitter: float = 1.0
    retry_on: RetryOn = RETRYABLE
    respect_retry_after: bool = True
    retry_after_max: float = 30.0
    idempotent_only: bool = True
    budget: RetryBudget | None = None
    breaker: CircuitBreaker | None = None
    on_retry: Callable[[RetryDetails], None] | None = log_retry
    name: str | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError("attempts must be an integer >= 1")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be > 0 seconds or None")
        if self.wait_initial < 0 or self.wait_max < self.wait_initial:
            raise ValueError("waits must satisfy 0 <= wait_initial <= wait_max")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0.0 and 1.0")
        if self.retry_after_max < 0:
            raise ValueError("retry_after_max must be >= 0")
        if isinstance(self.retry_on, AbstractSet) and not isinstance(self.retry_on, frozenset):
            object.__setattr__(self, "retry_on", frozenset(self.retry_on))

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    # -- decisions ----------------------------------------------------------------------

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one this policy retries (ignoring attempts, deadline and budget)."""
        cls = classify(exc)
        if cls is ErrorClass.CANCELLED:
            return False
        if cls is ErrorClass.CIRCUIT_OPEN and self.breaker is not None:
            return True  # waits only if the open period fits the deadline (see the wait)
        on = self.retry_on
        if isinstance(on, AbstractSet):
            return cls in on
        if isinstance(on, (type, tuple)):
            return isinstance(exc, on)
        return bool(on(exc))

    # -- running ----------------------------------------------------------------------

    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying as this policy says.

        A first attempt that succeeds costs one clock read and no retry machinery. The
        last error is re-raised as is (no wrapper).

        Raises:
            RetryAfterTooLongError: The server's ``Retry-After`` exceeds what is left of
                the deadline.

        """
        start = self.clock()
        if self.budget is not None:
            self.budget.deposit()
        try:
            if self.breaker is None:
                return fn(*args, **kwargs)
            return self.breaker.call(fn, *args, **kwargs)
        except BaseException as exc:
            if self.attempts == 1 or not self.should_retry(exc):
                raise
            first = exc
        return self._after_failure(fn, args, kwargs, first, start)

    def _after_failure(self, fn: Callable[..., R], args: Any, kwargs: Any, first: BaseException, start: float) -> R:
        pending = [first]
        breaker = self.breaker

        def attempt(*a: Any, **k: Any) -> R:
            if pending:  # replay the first attempt's failure into tenacity's loop
                raise pending.pop()
            if breaker is None:
                return fn(*a, **k)
            return breaker.call(fn, *a, **k)

        name = self.name or getattr(fn, "__qualname__", None)
        return self._retrying(start, name)(attempt, *args, **kwargs)

    def _retrying(self, start: float, name: str | None) -> tenacity.Retrying:
        testing = getattr(_testing, "state", None)
        attempts = self.attempts
        sleep = self.sleep
        if testing is not None:
            sleep = _no_sleep
            if testing[0] is not None:
                attempts = min(attempts, testing[0])
        return _Controller(self, start, name, attempts, testing is not None).retrying(sleep)

    def iter_attempts(self) -> Iterator[Attempt]:
        """Retry a block of code: ``for attempt in policy.iter_attempts(): with attempt: ...``.

        (The field ``attempts`` is the number of attempts, so the block form has its own
        name.)

        The block's exception is swallowed while more attempts are allowed, and the
        last one is raised as is.
        """
        for tattempt in self._retrying(self.clock(), self.name):
            yield Attempt(tattempt)


class Attempt:
    """One attempt of a retried code block; use it as a context manager."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def number(self) -> int:
        """The attempt number (1-based)."""
        return int(self._inner.retry_state.attempt_number)

    def __enter__(self) -> Attempt:
        self._inner.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._inner.__exit__(exc_type, exc, tb)  # type: ignore[no-any-return]


class _Controller:
    """Per-call decisions fed to tenacity: retry, wait, stop, before_sleep."""

    __slots__ = ("attempts", "name", "no_wait", "policy", "start", "wait_floor")

    def __init__(self, policy: RetryPolicy, start: float, name: str | None, attempts: int, no_wait: bool) -> None:
        self.policy = policy
        self.start = start
        self.name = name
        self.attempts = attempts
        self.no_wait = no_wait
        self.wait_floor: float | None = None

    def retrying(self, sleep: Callable[[float], None]) -> tenacity.Retrying:
        def nap(seconds: float) -> None:
            if seconds > 0:  # a zero wait costs no syscall and no GIL hand-off
                sleep(seconds)

        return tenacity.Retrying(
            sleep=nap,
            stop=self.stop,
            wait=self.wait,
            retry=self.retry,
            before_sleep=self.before_sleep,
            reraise=True,
        )

    def _remaining(self) -> float | None:
        timeout = self.policy.timeout
        return None if timeout is None else timeout - (self.policy.clock() - self.start)

    def retry(self, state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if exc is None or not self.policy.should_retry(exc) or state.attempt_number >= self.attempts:
            return False
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            return False
        budget = self.policy.budget
        return budget is None or budget.try_withdraw()

    def wait(self, state: tenacity.RetryCallState) -> float:
        p = self.policy
        delay = backoff_delay(state.attempt_number, p.wait_initial, p.wait_max, p.jitter, p.random())
        exc = state.outcome.exception() if state.outcome is not None else None
        floor: float | None = None
        remaining = self._remaining()
        if isinstance(exc, CircuitOpenError):
            floor = exc.retry_after
            if remaining is not None and floor > remaining:
                raise exc  # the open period does not fit the deadline: stop, as is
        elif p.respect_retry_after and exc is not None:
            asked = retry_after(exc)
            if asked is not None:
                floor = min(asked, p.retry_after_max)
                if remaining is not None and floor > remaining:
                    raise RetryAfterTooLongError(
                        f"the server asked to wait {asked:.1f} s but only {max(remaining, 0):.1f} s "
                        "of the retry deadline are left",
                        delay=asked,
                        remaining=max(remaining, 0.0),
                    ) from exc
        self.wait_floor = floor
        if floor is not None:
            delay = max(delay, floor)
        return 0.0 if self.no_wait else delay

    def stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.attempts:
            return True
        remaining = self._remaining()
        upcoming = state.upcoming_sleep or 0.0
        return remaining is not None and upcoming >= remaining

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        hook = self.policy.on_retry
        if hook is None or state.outcome is None:
            return
        exc = state.outcome.exception()
        assert exc is not None
        hook(
            RetryDetails(
                name=self.name,
                attempt=state.attempt_number,
                error_class=classify(exc) or ErrorClass.FATAL,
                error_type=type(exc).__name__,
                wait=state.upcoming_sleep or 0.0,
                elapsed=self.policy.clock() - self.start,
                retry_after=self.wait_floor,
            )
        )


def _refuse_policy(policy: object) -> NoReturn:
    if callable(policy):
        raise TypeError(
            "@retry needs arguments: write @retry(on=...) (what to retry), not a bare @retry, "
            f"above {getattr(policy, '__qualname__', policy)!r}"
        )
    raise TypeError(f"retry()'s policy must be a RetryPolicy, not {type(policy).__name__}")


def retry(
    policy: RetryPolicy | None = None, *, on: RetryOn | None = None, **overrides: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so that it is retried.

    Either ``on=`` (what to retry: error classes, exception types or a predicate) or a
    ``policy`` with its ``retry_on`` must say what is retried: there is no silent
    retry-everything default.

    Args:
        policy: The base policy (default :class:`RetryPolicy()`).
        on: What to retry; overrides ``policy.retry_on``.
        overrides: Any other :class:`RetryPolicy` field.

    Raises:
        TypeError: Neither ``policy`` nor ``on`` was given, ``policy`` is not a
            :class:`RetryPolicy`, or the decorator was used without parentheses.

    """
    if policy is not None and not isinstance(policy, RetryPolicy):
        _refuse_policy(policy)
    if policy is None and on is None:
        raise TypeError("retry() needs on= (what to retry) or a policy that says it")
    base = policy or RetryPolicy()
    if on is not None:
        overrides["retry_on"] = on
    final = base.replace(**overrides) if overrides else base

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        named = final if final.name else final.replace(name=getattr(fn, "__qualname__", None))
        call = named.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return call(fn, *args, **kwargs)

        return wrapper

    return decorate
