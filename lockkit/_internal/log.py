"""The one place lockkit emits events: structlog when the app configured it, else ``logging``.

lockkit never configures logging. When the application has configured structlog,
events go to ``structlog.get_logger("lockkit")`` as key-value events. Otherwise they go
to the standard :mod:`logging` logger ``lockkit`` (level names as usual), so
``logging.config.dictConfig``, Django's ``LOGGING`` or
``logging.getLogger("lockkit").setLevel(...)`` control them; with no logging
configured at all, Python's last-resort handler prints warnings to stderr, never to
stdout.

Warnings are rate-limited per event and resource (the lock file, lock name or store
path): one per :data:`WARNING_INTERVAL` seconds, and the next one that is emitted
carries ``suppressed=N``, the number dropped meanwhile. No secret, key or record
content is ever logged.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from lockkit._internal import fork as _fork

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
#: At most one warning per event and resource in this many seconds.
WARNING_INTERVAL = 60.0
#: How many (event, resource) pairs the rate limiter remembers (least recently warned go first).
_LIMITER_SIZE = 1024

#: The fields that name the resource a warning is about, in order of preference.
_RESOURCE_FIELDS = ("lock", "store", "breaker", "document", "path")

_clock = time.monotonic
_structlog_logger: Any = None
_std_logger: Any = None
_limiter: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # -> [last emitted, suppressed]
_limiter_mu = threading.Lock()


def _configured() -> bool:
    """Whether the application configured structlog (it cannot have, if it never imported it)."""
    structlog = sys.modules.get("structlog")
    return structlog is not None and bool(structlog.is_configured())


def _std() -> Any:
    global _std_logger
    if _std_logger is None:
        import logging  # imported at the first event: a lock that never warns does not pay for it

        _std_logger = logging.getLogger("lockkit")
    return _std_logger


def _levelno(level: str) -> int:
    return {"debug": 10, "info": 20, "warning": 30}[level]


def enabled(level: str) -> bool:
    """Whether an event at ``level`` would be emitted (skip building costly fields otherwise)."""
    if _configured():
        return True
    return bool(_std().isEnabledFor(_levelno(level)))


def debug(event: str, **fields: Any) -> None:
    """Emit a debug event."""
    _emit("debug", event, fields)


def info(event: str, **fields: Any) -> None:
    """Emit an info event."""
    _emit("info", event, fields)


def warning(event: str, **fields: Any) -> None:
    """Emit a warning, at most one per event and resource per :data:`WARNING_INTERVAL`."""
    resource = next((str(fields[f]) for f in _RESOURCE_FIELDS if fields.get(f) is not None), "")
    now = _clock()
    with _limiter_mu:
        slot = _limiter.get((event, resource))
        if slot is not None and now - slot[0] < WARNING_INTERVAL:
            slot[1] += 1
            return
        suppressed = 0 if slot is None else int(slot[1])
        _limiter[(event, resource)] = [now, 0]
        _limiter.move_to_end((event, resource))
        while len(_limiter) > _LIMITER_SIZE:
            _limiter.popitem(last=False)
    if suppressed:
        fields["suppressed"] = suppressed
    _emit("warning", event, fields)


def slow_wait(name: str | None, seconds: float, granted: bool) -> None:
    """Emit ``lockkit.lock_wait_slow`` (debug) for a wait longer than :data:`SLOW_WAIT`."""
    if seconds > SLOW_WAIT:
        debug(LOCK_WAIT_SLOW, lock=name, waited=round(seconds, 4), granted=granted)


def reset_rate_limits() -> None:
    """Forget every rate-limit window (tests; a forked child starts afresh)."""
    with _limiter_mu:
        _limiter.clear()


class _ForkHook:
    def _reset_after_fork(self) -> None:
        global _limiter_mu
        _limiter_mu = threading.Lock()  # another thread of the parent may have held it
        _limiter.clear()


_hook = _ForkHook()
_fork.register(_hook)


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    # A broken log pipeline (a processor or handler that raises) must never break a
    # lock: its errors are dropped here, as the standard logging module does.
    with contextlib.suppress(Exception):
        if _configured():
            global _structlog_logger
            if _structlog_logger is None:
                import structlog

                _structlog_logger = structlog.get_logger("lockkit")
            getattr(_structlog_logger, level)(event, **fields)
            return
        logger = _std()
        levelno = _levelno(level)
        if logger.isEnabledFor(levelno):
            text = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items())
            logger.log(
                levelno,
                "%s %s" if text else "%s%s",
                event,
                text,
                extra={"lockkit_event": event, "lockkit_fields": dict(fields)},
            )
