"""CircuitBreaker: stop calling a dependency that keeps failing, probe it, recover."""

from __future__ import annotations

import enum
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from lockkit._internal import log as _log
from lockkit.exceptions import CircuitOpenError
from lockkit.resilience._classify import ErrorClass, classify

P = ParamSpec("P")
R = TypeVar("R")

_BUCKETS = 10
DEFAULT_RECORD = frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.SERVER_ERROR})


class CircuitState(enum.Enum):
    """The three states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot of a :class:`CircuitBreaker`.

    Attributes:
        name: The breaker's name.
        state: The state now.
        calls: Calls recorded in the sliding window (successes plus failures).
        failures: Failures recorded in the window.
        failure_rate: ``failures / calls`` in the window (0.0 when empty).
        rejected: Calls refused with :class:`~lockkit.exceptions.CircuitOpenError` since creation.
        opened: How many times the breaker opened.

    """

    name: str
    state: CircuitState
    calls: int
    failures: int
    failure_rate: float
    rejected: int
    opened: int


Listener = Callable[["CircuitBreaker", CircuitState, CircuitState], None]


class CircuitBreaker:
    """A failure-rate circuit breaker over a sliding time window.

    Closed: calls go through; outcomes are counted over the last ``window`` seconds.
    When at least ``minimum_calls`` were counted and the failure rate reaches
    ``failure_rate``, it opens: calls fail at once with
    :class:`~lockkit.exceptions.CircuitOpenError` for ``reset_timeout`` seconds. Then it is
    half-open: at most ``half_open_calls`` probe calls run at a time; when that many
    succeed it closes, and a probe failure opens it again.

    Only errors whose class is in ``record`` count as failures; other errors (client
    errors, cancellations) count as neither success nor failure. The call that trips
    the breaker raises its own error; later calls get ``CircuitOpenError``.

    Concurrency: the internal lock covers state changes and counting only, never the
    guarded call, so slow calls run in parallel.

    Args:
        name: Name used in errors, events and statistics.
        failure_rate: Failure ratio (0 < r <= 1) that opens the breaker.
        minimum_calls: Calls needed in the window before the rate is judged.
        window: Length of the sliding window in seconds.
        reset_timeout: Seconds the breaker stays open before probing.
        half_open_calls: Probe calls allowed at once while half-open.
        record: Error classes that count as failures.
        clock: Monotonic clock (injectable).

    """

    def __init__(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        window: float = 30.0,
        reset_timeout: float = 30.0,
        half_open_calls: int = 1,
        record: frozenset[ErrorClass] | set[ErrorClass] = DEFAULT_RECORD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        if minimum_calls < 1 or half_open_calls < 1:
            raise ValueError("minimum_calls and half_open_calls must be >= 1")
        if window <= 0 or reset_timeout < 0:
            raise ValueError("window must be > 0 and reset_timeout >= 0")
        self.name = name
        self._rate = failure_rate
        self._minimum = minimum_calls
        self._width = window / _BUCKETS
        self._reset = reset_timeout
        self._probes_max = half_open_calls
        self._record = frozenset(record)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._ok = [0] * _BUCKETS
        self._bad = [0] * _BUCKETS
        self._bucket = int(clock() / self._width)
        self._opened_at = 0.0
        self._probes = 0
        self._probe_ok = 0
        self._rejected = 0
        self._opened = 0
        self._listeners: list[Listener] = []

    # -- state ------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker whose timeout passed reports half-open)."""
        with self._lock:
            if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._reset:
                return CircuitState.HALF_OPEN
            return self._state

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` on every transition (outside the lock)."""
        self._listeners.append(listener)

    def _advance(self, now: float) -> int:
        # Under the lock: rotate the ring of buckets up to ``now``.
        bucket = int(now / self._width)
        gap = bucket - self._bucket
        if gap > 0:
            for i in range(1, min(gap, _BUCKETS) + 1):
                slot = (self._bucket + i) % _BUCKETS
                self._ok[slot] = 0
                self._bad[slot] = 0
            self._bucket = bucket
        return bucket % _BUCKETS

    def _transition(self, new: CircuitState) -> tuple[CircuitState, CircuitState] | None:
        # Under the lock.
        old = self._state
        if old is new:
            return None
        self._state = new
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
            self._opened += 1
        if new is not CircuitState.CLOSED:
            self._probes = 0
            self._probe_ok = 0
        if new is CircuitState.CLOSED:
            self._ok = [0] * _BUCKETS
            self._bad = [0] * _BUCKETS
        return old, new

    def _notify(self, change: tuple[CircuitState, CircuitState] | None) -> None:
        if change is None:
            return
        old, new = change
        log = _log.warning if new is CircuitState.OPEN else _log.info
        log("lockkit.circuit_" + new.value, breaker=self.name, previous=old.value)
        for listener in list(self._listeners):
            listener(self, old, new)

    # -- calls ------------------------------------------------------------------------

    def _before(self) -> bool:
        """Admit a call or raise CircuitOpenError; returns True for a half-open probe."""
        if self._state is CircuitState.CLOSED:  # read without the lock: a stale read only admits one more call
            return False
        change = None
        with self._lock:
            state = self._state
            if state is CircuitState.OPEN:
                left = self._reset - (self._clock() - self._opened_at)
                if left > 0:
                    self._rejected += 1
                    raise CircuitOpenError(
                        f"circuit {self.name!r} is open: calls are refused for {left:.1f} s more",
                        name=self.name,
                        retry_after=left,
                    )
                change = self._transition(CircuitState.HALF_OPEN)
                state = CircuitState.HALF_OPEN
            probe = state is CircuitState.HALF_OPEN  # False if it closed meanwhile
            if probe:
                if self._probes >= self._probes_max:
                    self._rejected += 1
                    raise CircuitOpenError(
                        f"circuit {self.name!r} is half-open and its probe calls are in flight",
                        name=self.name,
                        retry_after=0.0,
                    )
                self._probes += 1
        self._notify(change)
        return probe

    def _after(self, probe: bool, error: BaseException | None) -> None:
        cls = None if error is None else classify(error)
        failed = cls in self._record
        ignored = error is not None and not failed
        change = None
        with self._lock:
            if probe and self._state is CircuitState.HALF_OPEN:
                self._probes -= 1
                if failed:
                    change = self._transition(CircuitState.OPEN)
                elif not ignored:
                    self._probe_ok += 1
                    if self._probe_ok >= self._probes_max:
                        change = self._transition(CircuitState.CLOSED)
            elif not ignored and self._state is CircuitState.CLOSED:
                slot = self._advance(self._clock())
                if failed:
                    self._bad[slot] += 1
                    bad, total = sum(self._bad), sum(self._bad) + sum(self._ok)
                    if total >= self._minimum and bad / total >= self._rate:
                        change = self._transition(CircuitState.OPEN)
                else:
                    self._ok[slot] += 1
        self._notify(change)

    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn`` through the breaker.

        Raises:
            CircuitOpenError: The breaker is open (``fn`` was not called).

        """
        probe = self._before()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._after(probe, exc)
            raise
        self._after(probe, None)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Use the breaker as a decorator."""

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return guarded

    def reset(self) -> None:
        """Close the breaker and forget the window."""
        with self._lock:
            change = self._transition(CircuitState.CLOSED)
        self._notify(change)

    def statistics(self) -> BreakerStatistics:
        """A snapshot of the breaker."""
        with self._lock:
            self._advance(self._clock())
            bad, ok = sum(self._bad), sum(self._ok)
            total = bad + ok
            state = self._state
            if state is CircuitState.OPEN and self._clock() - self._opened_at >= self._reset:
                state = CircuitState.HALF_OPEN
            return BreakerStatistics(
                name=self.name,
                state=state,
                calls=total,
                failures=bad,
                failure_rate=bad / total if total else 0.0,
                rejected=self._rejected,
                opened=self._opened,
            )

    def __repr__(self) -> str:
        return f"<lockkit.CircuitBreaker {self.name!r} {self._state.value}>"
