"""The one structlog logger of lockkit and its event names.

lockkit never calls :func:`structlog.configure`. Debug events are emitted only once the
application has configured structlog, so an unconfigured app is not flooded on stdout;
warnings are always emitted. No secret, key or record content is ever logged.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

logger = structlog.get_logger("lockkit")

LOCK_CONTENDED = "lockkit.lock_contended"
LOCK_WAIT_SLOW = "lockkit.lock_wait_slow"
LOCK_WAIT_LONG = "lockkit.lock_wait_long"
QUEUE_DEEP = "lockkit.queue_deep"

#: A wait longer than this (seconds) emits ``lockkit.lock_wait_slow`` at debug level.
SLOW_WAIT = 0.1
#: A wait longer than this (seconds) emits ``lockkit.lock_wait_long`` as a warning.
LONG_WAIT = 5.0
#: A queue deeper than this emits ``lockkit.queue_deep`` as a warning.
DEEP_QUEUE = 10


def debug(event: str, **fields: Any) -> None:
    """Emit a debug event if the application configured structlog."""
    if structlog.is_configured():
        _emit(logger.debug, event, fields)


def warning(event: str, **fields: Any) -> None:
    """Emit a warning event."""
    _emit(logger.warning, event, fields)


def info(event: str, **fields: Any) -> None:
    """Emit an info event if the application configured structlog."""
    if structlog.is_configured():
        _emit(logger.info, event, fields)


def slow_wait(name: str | None, seconds: float, granted: bool) -> None:
    """Emit ``lockkit.lock_wait_slow`` (debug) for a wait longer than :data:`SLOW_WAIT`."""
    if seconds > SLOW_WAIT:
        debug(LOCK_WAIT_SLOW, lock=name, waited=round(seconds, 4), granted=granted)


def _emit(method: Any, event: str, fields: dict[str, Any]) -> None:
    # A broken log pipeline (a processor or handler that raises) must never break a
    # lock: its errors are dropped here, as the standard logging module does.
    with contextlib.suppress(Exception):
        method(event, **fields)
