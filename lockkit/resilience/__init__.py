"""Retries and their guards, on tenacity (never visible in a public signature).

One classifier (:func:`classify`) feeds the retry decision, the wait (``Retry-After``
as a floor), the :class:`CircuitBreaker` and the :class:`RetryBudget`. :class:`Backoff`
is the one backoff formula of lockkit: every polling loop of every layer uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockkit._internal.lazy import lazy_names

if TYPE_CHECKING:
    from lockkit.resilience._backoff import Backoff
    from lockkit.resilience._breaker import (
        BreakerStatistics,
        CircuitBreaker,
        CircuitState,
    )
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

#: Where each name lives: loaded on first use, so that a polling loop's Backoff does not
#: load tenacity (``lockkit run`` must start fast).
_LAZY = {
    "Backoff": "._backoff",
    **dict.fromkeys(["BreakerStatistics", "CircuitBreaker", "CircuitState"], "._breaker"),
    **dict.fromkeys(["BudgetStatistics", "RetryBudget"], "._budget"),
    **dict.fromkeys(["RETRY_AFTER_CAP", "ErrorClass", "classify", "parse_retry_after", "register_rule"], "._classify"),
    "fetch_with_retry": "._http",
    **dict.fromkeys(["Attempt", "RetryDetails", "RetryPolicy", "retry", "retry_testing"], "._retry"),
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

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
