"""The one mapping of lockkit's exceptions to HTTP answers, shared by the Flask and Django glue."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lockkit._internal import log as _log
from lockkit.exceptions import (
    CircuitOpenError,
    ConflictError,
    CorruptDataError,
    InvalidKeyError,
    LockLostError,
    LockTimeoutError,
    StaleWriterError,
    StorageError,
)

#: The exceptions the glue answers for; anything else is left to the framework.
HANDLED: tuple[type[Exception], ...] = (
    LockTimeoutError,
    CircuitOpenError,
    InvalidKeyError,
    ConflictError,
    StaleWriterError,
    CorruptDataError,
    StorageError,
    LockLostError,
)


@dataclass(frozen=True)
class Answer:
    """What to send for one exception: status, JSON body and headers."""

    status: int
    body: dict[str, str]
    headers: dict[str, str]


def answer(exc: BaseException, retry_after: float) -> Answer | None:
    """The HTTP answer for ``exc``, or ``None`` if it is not one of :data:`HANDLED`.

    Bodies never contain paths, record keys or data: a lock timeout names the locked
    file in its message, and the file name is often a record key. Server-side
    failures (corrupt data, storage errors, a lost lock) are logged as
    ``lockkit.request_failed`` warnings with the exception's class and resource.
    """
    if isinstance(exc, LockTimeoutError):
        wait = retry_after
        return Answer(503, {"error": "busy", "detail": "the resource is locked; retry later"}, _retry(wait))
    if isinstance(exc, CircuitOpenError):
        wait = max(retry_after, exc.retry_after)
        return Answer(503, {"error": "unavailable", "detail": "a dependency is failing; retry later"}, _retry(wait))
    if isinstance(exc, InvalidKeyError):
        return Answer(400, {"error": "invalid_key", "detail": str(exc)}, {})  # names the rule, never the key
    if isinstance(exc, (ConflictError, StaleWriterError)):
        return Answer(409, {"error": "conflict", "detail": "the record changed meanwhile; reload and retry"}, {})
    if isinstance(exc, (CorruptDataError, StorageError, LockLostError)):
        resource = getattr(exc, "path", None) or getattr(exc, "filename", None)
        _log.warning("lockkit.request_failed", error=type(exc).__name__, path=resource)
        return Answer(500, {"error": "internal", "detail": "stored data could not be used"}, {})
    return None


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
