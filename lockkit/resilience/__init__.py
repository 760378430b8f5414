"""Retries and their guards, on tenacity (never visible in a public signature).

One classifier (:func:`classify`) feeds the retry decision, the wait (``Retry-After``
as a floor), the :class:`CircuitBreaker` and the :class:`RetryBudget`. :class:`Backoff`
is the one backoff formula of lockkit: every polling loop of every layer uses it.
"""

from __future__ import annotations

from lockkit.resilience._backoff import Backoff
from lockkit.resilience._breaker import BreakerStatistics, CircuitBreaker, CircuitState
from lockkit.resilience._budget import BudgetStatistics, RetryBudget
from lockkit.resilience._classify import (
    RETRY_AFTER_CAP,
    ErrorClass,
    classify,
    parse_retry_after,
    register_rule,
)
from lockkit.resilience._http import fetch_with_retry
from lockkit.resilience._retry import (
    Attempt,
    RetryDetails,
    RetryPolicy,
    retry,
    retry_testing,
)

__all__ = [
    "RETRY_AFTER_CAP",
    "Attempt",
    "Backoff",
    "BreakerStatistics",
    "BudgetStatistics",
    "CircuitBreaker",
    "CircuitState",
    "ErrorClass",
    "RetryBudget",
    "RetryDetails",
    "RetryPolicy",
    "classify",
    "fetch_with_retry",
    "parse_retry_after",
    "register_rule",
    "retry",
    "retry_testing",
]
