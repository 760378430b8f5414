"""The one structlog logger of lockkit and its event names.

lockkit never calls :func:`structlog.configure`. Debug events are emitted only once the
application has configured structlog, so an unconfigured app is not flooded on stdout;
warnings are always emitted. No secret, key or record content is ever logged.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

_logger: Any = None


def _get_logger() -> Any:
    """Return lockkit's structlog logger, importing structlog on first use (it pulls in asyncio)."""
    global _logger
    if _logger is None:
        import structlog

        _logger = structlog.get_logger("lockkit")
    return _logger


def _configured() -> bool:
    """Whether the application configured structlog (it cannot have, if it never imported it)."""
    structlog = sys.modules.get("structlog")
    return structlog is not None and bool(structlog.is_configured())


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
    if _configured():
        _emit("debug", event, fields)


def warning(event: str, **fields: Any) -> None:
    """Emit a warning event."""
    _emit("warning", event, fields)


def info(event: str, **fields: Any) -> None:
    """Emit an info event if the application configured structlog."""
    if _configured():
        _emit("info", event, fields)


def slow_wait(name: str | None, seconds: float, granted: bool) -> None:
    """Emit ``lockkit.lock_wait_slow`` (debug) for a wait longer than :data:`SLOW_WAIT`."""
    if seconds > SLOW_WAIT:
        debug(LOCK_WAIT_SLOW, lock=name, waited=round(seconds, 4), granted=granted)


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    # A broken log pipeline (a processor or handler that raises) must never break a
    # lock: its errors are dropped here, as the standard logging module does.
    with contextlib.suppress(Exception):
        getattr(_get_logger(), level)(event, **fields)
