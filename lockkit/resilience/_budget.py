"""RetryBudget: a shared cap on retries so a failing dependency is not hammered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    """A snapshot of a :class:`RetryBudget`.

    Attributes:
        balance: Retry tokens available now.
        deposits: First attempts seen.
        retries_allowed: Retries that got a token.
        retries_denied: Retries refused because the budget was empty.

    """

    balance: float
    deposits: int
    retries_allowed: int
    retries_denied: int


class RetryBudget:
    """A thread-safe retry budget shared by every caller of a policy.

    Every first attempt deposits ``ratio`` tokens, and ``min_per_second`` tokens trickle
    in each second, up to ``burst``; every retry takes one token. When the budget is
    empty no more retries happen (the first attempt of a call always runs), so at most
    about ``ratio`` extra load reaches a failing dependency, plus a small floor.

    Args:
        ratio: Retries allowed per first attempt (0.1 = 10 % extra load).
        min_per_second: Retries always allowed per second, whatever the traffic.
        burst: The most tokens that can pile up, and the starting balance (default one
            second's worth: ``max(1, min_per_second)``).
        clock: Monotonic clock (injectable).

    """

    __slots__ = ("_allowed", "_balance", "_burst", "_clock", "_denied", "_deposits", "_last", "_lock", "_min", "_ratio")

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_second: float = 10.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= ratio <= 1000.0:
            raise ValueError("ratio must be between 0 and 1000 retries per call")
        if min_per_second < 0:
            raise ValueError("min_per_second must be >= 0")
        self._ratio = float(ratio)
        self._min = float(min_per_second)
        self._burst = float(burst) if burst is not None else max(1.0, self._min)
        self._clock = clock
        self._lock = threading.Lock()
        self._balance = self._burst
        self._last = clock()
        self._deposits = 0
        self._allowed = 0
        self._denied = 0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._balance = min(self._burst, self._balance + elapsed * self._min)
            self._last = now

    def deposit(self) -> None:
        """Record a first attempt (adds ``ratio`` tokens)."""
        with self._lock:
            self._deposits += 1
            self._balance = min(self._burst, self._balance + self._ratio)

    def try_withdraw(self) -> bool:
        """Take one token for a retry; ``False`` when the budget is exhausted."""
        with self._lock:
            self._refill()
            if self._balance >= 1.0:
                self._balance -= 1.0
                self._allowed += 1
                return True
            self._denied += 1
            return False

    def statistics(self) -> BudgetStatistics:
        """A snapshot of the budget."""
        with self._lock:
            self._refill()
            return BudgetStatistics(self._balance, self._deposits, self._allowed, self._denied)
