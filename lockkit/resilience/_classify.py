"""Error classification: one place decides what a failure means."""

from __future__ import annotations

import email.utils
import enum
import errno
import socket
import time
import urllib.error
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError as FuturesCancelledError
from typing import Any

from lockkit.exceptions import AbortError, CircuitOpenError


class ErrorClass(enum.Enum):
    """What a failure means for retrying, waiting and circuit breaking.

    * ``TRANSIENT``: a connection failed or was reset; the next try may work.
    * ``TIMEOUT``: no answer in time (the request may or may not have been processed).
    * ``RATE_LIMIT``: the server asked us to slow down (HTTP 429).
    * ``SERVER_ERROR``: the server failed (HTTP 500, 502, 503, 504 and similar).
    * ``CLIENT_ERROR``: the request is wrong (HTTP 4xx); retrying cannot help.
    * ``CANCELLED``: the caller is stopping (``KeyboardInterrupt``, ``SystemExit``,
      ``GeneratorExit``, :class:`~lockkit.exceptions.AbortError`); never retried.
    * ``CIRCUIT_OPEN``: a circuit breaker refused the call.
    * ``FATAL``: anything else: a bug or a permanent failure; not retried.
    """

    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"
    CIRCUIT_OPEN = "circuit_open"
    FATAL = "fatal"


#: The classes retried by default: the failures a later attempt can cure.
RETRYABLE = frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT, ErrorClass.RATE_LIMIT, ErrorClass.SERVER_ERROR})

Rule = Callable[[Any], "ErrorClass | None"]
_rules: list[Rule] = []

_CANCEL = (KeyboardInterrupt, SystemExit, GeneratorExit, AbortError, FuturesCancelledError)
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
    }
)
_FATAL_5XX = frozenset({501, 505, 506, 510, 511})


def register_rule(rule: Rule) -> Callable[[], None]:
    """Add a classification rule, consulted before the built-in ones (newest first).

    Args:
        rule: ``rule(exc_or_response)`` returning an :class:`ErrorClass`, or ``None``
            to let the next rule decide.

    Returns:
        A function that removes the rule again.

    """
    _rules.insert(0, rule)

    def remove() -> None:
        if rule in _rules:
            _rules.remove(rule)

    return remove


def status_class(status: int) -> ErrorClass | None:
    """The class of an HTTP status code; ``None`` for success and redirects."""
    if status < 400:
        return None
    if status == 429:
        return ErrorClass.RATE_LIMIT
    if status == 408:
        return ErrorClass.TIMEOUT
    if status >= 500:
        return ErrorClass.FATAL if status in _FATAL_5XX else ErrorClass.SERVER_ERROR
    return ErrorClass.CLIENT_ERROR


def _status_of(obj: Any) -> int | None:
    for attr in ("status_code", "status", "code"):
        value = getattr(obj, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _by_name(exc: BaseException) -> ErrorClass | None:
    # Duck typing for libraries we do not import (requests, httpx, urllib3, redis).
    for klass in type(exc).__mro__:
        name = klass.__name__
        if "Timeout" in name:
            return ErrorClass.TIMEOUT
        if name in (
            "ConnectionError",
            "ConnectError",
            "NetworkError",
            "ProtocolError",
            "RemoteProtocolError",
            "ReadError",
            "WriteError",
            "ChunkedEncodingError",
            "BusyLoadingError",
        ):
            return ErrorClass.TRANSIENT
    return None


def classify(obj: Any) -> ErrorClass | None:
    """Classify an exception or an HTTP response.

    Works on exceptions (builtin, ``urllib``, and by duck typing requests, httpx,
    urllib3 and redis-py), on response objects with ``status_code`` or ``status``,
    and on exceptions carrying a ``response``. User rules (see :func:`register_rule`)
    are consulted first.

    Returns:
        The :class:`ErrorClass`, or ``None`` for a response that is not an error.

    """
    for rule in _rules:
        decided = rule(obj)
        if decided is not None:
            return decided
    if not isinstance(obj, BaseException):
        status = _status_of(obj)
        return status_class(status) if status is not None else ErrorClass.FATAL
    if isinstance(obj, _CANCEL):
        return ErrorClass.CANCELLED
    if isinstance(obj, CircuitOpenError):
        return ErrorClass.CIRCUIT_OPEN
    if isinstance(obj, urllib.error.HTTPError):
        return status_class(obj.code) or ErrorClass.FATAL
    status = _status_of(obj) or _status_of(getattr(obj, "response", None))
    if status is not None:
        return status_class(status) or ErrorClass.FATAL
    if isinstance(obj, urllib.error.URLError):
        reason = obj.reason
        if isinstance(reason, BaseException):
            return classify(reason) if isinstance(reason, (TimeoutError, OSError)) else ErrorClass.TRANSIENT
        return ErrorClass.TRANSIENT
    if isinstance(obj, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return ErrorClass.TIMEOUT
    if isinstance(obj, (ConnectionError, socket.gaierror, socket.herror)):
        return ErrorClass.TRANSIENT
    named = _by_name(obj)
    if named is not None:
        return named
    if isinstance(obj, OSError) and obj.errno in _TRANSIENT_ERRNOS:
        return ErrorClass.TRANSIENT
    return ErrorClass.FATAL


def is_connect_error(exc: BaseException) -> bool:
    """Whether ``exc`` happened before a request was sent (safe to retry for any method)."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return isinstance(reason, (ConnectionRefusedError, socket.gaierror, OSError)) and not isinstance(
            reason, TimeoutError
        )
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return True
    return any(k.__name__ in ("ConnectError", "ConnectTimeout", "NewConnectionError") for k in type(exc).__mro__)


def _headers_of(obj: Any) -> Any:
    headers = getattr(obj, "headers", None)
    if headers is None:
        headers = getattr(getattr(obj, "response", None), "headers", None)
    return headers


def retry_after(obj: Any, *, now: Callable[[], float] = time.time) -> float | None:
    """The ``Retry-After`` delay of a response or HTTP error, in seconds, or ``None``.

    Accepts delta-seconds and HTTP-dates; a date in the past gives ``0.0``; missing or
    garbage values give ``None``.
    """
    headers = _headers_of(obj)
    if headers is None:
        return None
    value: Any = None
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        value = headers.get("Retry-After")
        if value is None and isinstance(headers, Mapping):
            for k, v in headers.items():
                if isinstance(k, str) and k.lower() == "retry-after":
                    value = v
                    break
    return parse_retry_after(value, now=now) if value is not None else None


#: The largest ``Retry-After`` parse_retry_after returns (one day, in seconds).
RETRY_AFTER_CAP = 86400.0


def parse_retry_after(value: Any, *, now: Callable[[], float] = time.time) -> float | None:
    """Parse a ``Retry-After`` header value (seconds or HTTP-date); ``None`` if unusable.

    Only ASCII digits count as seconds (no signs, fractions or other scripts' digits);
    any value is capped at :data:`RETRY_AFTER_CAP`. Anything else, including a date that
    cannot be represented, is treated as absent: this never raises.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        if len(text) > 12:  # more than 30,000 years: capped without converting huge numbers
            return RETRY_AFTER_CAP
        return min(float(int(text)), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when is None or when.tzinfo is None:
            return None
        return min(RETRY_AFTER_CAP, max(0.0, when.timestamp() - now()))
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
