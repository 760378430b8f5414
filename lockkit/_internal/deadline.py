"""The one deadline helper: argument checks, remaining time, backoff sleeps, timeout errors.

Every loop in lockkit that waits for something (a kernel lock, a marker, a Redis
ticket, a polled resource) measures its time through :class:`Deadline`, sleeps through
:meth:`Deadline.sleep` with a backoff from :class:`lockkit.resilience.Backoff`, and
builds its :class:`~lockkit.exceptions.LockTimeoutError` with :func:`timeout_error`.
"""

from __future__ import annotations

import math
import time
from threading import TIMEOUT_MAX
from typing import Protocol

from lockkit.exceptions import LockTimeoutError

monotonic = time.monotonic
_sleep = time.sleep


def check_timeout(blocking: bool, timeout: float | None) -> float | None:
    """Normalise ``acquire`` arguments to ``None`` (forever) or seconds >= 0.

    ``-1`` (threading's spelling), infinity and anything at or above
    :data:`threading.TIMEOUT_MAX` (about 292 years) mean "wait forever".

    Raises:
        ValueError: ``blocking=False`` with a timeout, or a negative timeout.
        TypeError: a timeout that is not a number.

    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
        if timeout == -1 or timeout >= TIMEOUT_MAX:  # threading's "forever", or longer than any wait can be
            timeout = None
        elif timeout < 0 or math.isnan(timeout):
            raise ValueError("timeout must be None or a number of seconds >= 0")
    if not blocking:
        if timeout is not None:
            raise ValueError("a non-blocking acquire cannot take a timeout")
        return 0.0
    return timeout


class _Backoff(Protocol):
    def next(self, remaining: float | None = None) -> float: ...


class Deadline:
    """A point on the monotonic clock by which a wait must end (or none: wait forever).

    Args:
        timeout: Seconds from now (already checked by :func:`check_timeout`), or ``None``.
        start: The monotonic time the wait started (default: now); kept as
            :attr:`start` for wait-time statistics.

    """

    __slots__ = ("at", "start", "timeout")

    def __init__(self, timeout: float | None, start: float | None = None) -> None:
        self.timeout = timeout
        self.start = monotonic() if start is None else start
        self.at = None if timeout is None else self.start + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` for no deadline."""
        return None if self.at is None else max(0.0, self.at - monotonic())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.at is not None and monotonic() >= self.at

    def sleep(self, backoff: _Backoff) -> bool:
        """Sleep for the backoff's next delay, never past the deadline.

        Returns:
            ``False`` without sleeping when the deadline has already passed.

        """
        left = self.remaining()
        if left == 0.0:
            return False
        _sleep(backoff.next(left))
        return True


def timeout_error(
    what: str, timeout: float | None, *, resource: str | None, holder: str | None = None
) -> LockTimeoutError:
    """The :class:`~lockkit.exceptions.LockTimeoutError` for a wait on ``what`` that ran out.

    The message reads ``timed out after 2.0 s waiting for lock file '/x.lock': held by pid
    812 on web-3 for 41.2 s``; ``holder`` is omitted when unknown.
    """
    message = f"timed out after {timeout} s waiting for {what}"
    if holder:
        message += f": held by {holder}"
    return LockTimeoutError(message, resource=resource, timeout=timeout, holder=holder)
