"""The one backoff formula of lockkit: capped exponential growth, then full jitter."""

from __future__ import annotations

import random as _random
from collections.abc import Callable


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rnd: float) -> float:
    """The wait after failed attempt number ``attempt`` (1-based).

    ``min(maximum, initial * 2 ** (attempt - 1))`` is the cap; jitter is applied after the
    cap: ``jitter=1.0`` is full jitter (uniform between 0 and the cap), ``0.0`` none.
    """
    # 2.0 ** 1023 is the largest finite power of two: past it the product is at least
    # ``maximum`` for any ``initial`` that matters, and a float power would overflow.
    capped = min(maximum, initial * (2.0 ** min(attempt - 1, 1023)))
    return capped * (1.0 - jitter * rnd)


class Backoff:
    """Successive backoff delays for a polling loop, never past a deadline.

    Args:
        initial: The first cap, in seconds.
        maximum: The largest cap.
        jitter: Fraction of each delay that is random (1.0 = full jitter).
        random: Source of uniform numbers in [0, 1) (injectable for tests).

    """

    __slots__ = ("_attempt", "_initial", "_jitter", "_maximum", "_random")

    def __init__(
        self, initial: float, maximum: float, *, jitter: float = 1.0, random: Callable[[], float] = _random.random
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._jitter = jitter
        self._random = random
        self._attempt = 0

    def next(self, remaining: float | None = None) -> float:
        """The next delay, cut to ``remaining`` seconds when a deadline is given."""
        self._attempt += 1
        delay = backoff_delay(self._attempt, self._initial, self._maximum, self._jitter, self._random())
        if remaining is not None:
            delay = min(delay, max(0.0, remaining))
        return delay
