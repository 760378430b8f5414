"""The classification table, over real exception types and fake responses."""

from __future__ import annotations

import email.utils
import errno
import io
import socket
import urllib.error
from typing import Any

import pytest

import lockkit
import lockkit.exceptions
import lockkit.resilience
from lockkit.resilience import ErrorClass, classify


class FakeResponse:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class Urllib3Like:
    def __init__(self, status: int) -> None:
        self.status = status


class RequestsHTTPError(Exception):
    def __init__(self, response: Any) -> None:
        super().__init__("http error")
        self.response = response


class ConnectTimeout(Exception):  # httpx.ConnectTimeout / requests.ConnectTimeout by name
    pass


class ConnectError(Exception):  # httpx.ConnectError by name
    pass


def http_error(code: int, headers: dict[str, str] | None = None) -> urllib.error.HTTPError:
    import email.message

    msg = email.message.Message()
    for k, v in (headers or {}).items():
        msg[k] = v
    return urllib.error.HTTPError("http://x", code, "err", msg, io.BytesIO(b""))


CASES: list[tuple[Any, ErrorClass | None]] = [
    (ConnectionRefusedError(), ErrorClass.TRANSIENT),
    (ConnectionResetError(), ErrorClass.TRANSIENT),
    (BrokenPipeError(), ErrorClass.TRANSIENT),
    (TimeoutError(), ErrorClass.TIMEOUT),
    (TimeoutError(), ErrorClass.TIMEOUT),
    (lockkit.LockTimeoutError("t"), ErrorClass.TIMEOUT),
    (socket.gaierror(), ErrorClass.TRANSIENT),
    (OSError(errno.EAGAIN, "again"), ErrorClass.TRANSIENT),
    (OSError(errno.ENOENT, "gone"), ErrorClass.FATAL),
    (urllib.error.URLError(ConnectionRefusedError()), ErrorClass.TRANSIENT),
    (urllib.error.URLError(TimeoutError()), ErrorClass.TIMEOUT),
    (urllib.error.URLError("unknown"), ErrorClass.TRANSIENT),
    (http_error(503), ErrorClass.SERVER_ERROR),
    (http_error(500), ErrorClass.SERVER_ERROR),
    (http_error(501), ErrorClass.FATAL),
    (http_error(429), ErrorClass.RATE_LIMIT),
    (http_error(408), ErrorClass.TIMEOUT),
    (http_error(404), ErrorClass.CLIENT_ERROR),
    (FakeResponse(502), ErrorClass.SERVER_ERROR),
    (FakeResponse(400), ErrorClass.CLIENT_ERROR),
    (FakeResponse(200), None),
    (FakeResponse(302), None),
    (Urllib3Like(504), ErrorClass.SERVER_ERROR),
    (RequestsHTTPError(FakeResponse(429)), ErrorClass.RATE_LIMIT),
    (ConnectTimeout(), ErrorClass.TIMEOUT),
    (ConnectError(), ErrorClass.TRANSIENT),
    (KeyboardInterrupt(), ErrorClass.CANCELLED),
    (SystemExit(), ErrorClass.CANCELLED),
    (GeneratorExit(), ErrorClass.CANCELLED),
    (lockkit.exceptions.AbortError("stop"), ErrorClass.CANCELLED),
    (lockkit.exceptions.CircuitOpenError("open"), ErrorClass.CIRCUIT_OPEN),
    (ValueError("bug"), ErrorClass.FATAL),
    (object(), ErrorClass.FATAL),
]


@pytest.mark.parametrize(("obj", "expected"), CASES, ids=[f"{type(o).__name__}-{i}" for i, (o, _) in enumerate(CASES)])
def test_classification_table(obj: Any, expected: ErrorClass | None) -> None:
    assert classify(obj) is expected


def test_user_rules_come_first_and_can_be_removed() -> None:
    class QuotaExceeded(Exception):
        pass

    remove = lockkit.resilience.register_rule(lambda e: ErrorClass.RATE_LIMIT if isinstance(e, QuotaExceeded) else None)
    try:
        assert classify(QuotaExceeded()) is ErrorClass.RATE_LIMIT
        assert classify(ValueError()) is ErrorClass.FATAL
    finally:
        remove()
    assert classify(QuotaExceeded()) is ErrorClass.FATAL


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        (b"3", 3.0),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_retry_after(value: Any, expected: float | None) -> None:
    got = lockkit.resilience.parse_retry_after(value, now=lambda: NOW)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize("value", ["²", "¹", "٣", "1" * 400, "9" * 30, "Fri, 31 Dec 99999 23:59:59 GMT", "-5", "1.5"])
def test_parse_retry_after_treats_odd_values_as_absent_or_caps_them(value: str) -> None:
    got = lockkit.resilience.parse_retry_after(value, now=lambda: NOW)
    assert got is None or 0 <= got <= lockkit.resilience.RETRY_AFTER_CAP
