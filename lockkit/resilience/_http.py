"""fetch_with_retry: urllib with lockkit's retry policy, Retry-After and idempotency rules."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping
from typing import Any

from lockkit.resilience._classify import ErrorClass, classify, is_connect_error
from lockkit.resilience._retry import RetryPolicy

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class _RetryableStatus(urllib.error.HTTPError):
    """Marks an HTTP error whose status is in ``retry_on_status``."""


def _is_idempotent(method: str, headers: Mapping[str, str]) -> bool:
    return method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in headers)


def fetch_with_retry(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    policy: RetryPolicy | None = None,
    retry_on_status: Collection[int] = (429, 500, 502, 503, 504),
) -> http.client.HTTPResponse:
    """Fetch ``url`` with ``urllib.request``, retrying what is safe to retry.

    * A status in ``retry_on_status`` is retried (honouring ``Retry-After``); any other
      error status raises its :class:`urllib.error.HTTPError` at once.
    * Connection failures before the request was sent are retried for every method.
    * Read timeouts and 5xx are retried only for idempotent methods (GET, HEAD, OPTIONS,
      PUT, DELETE, TRACE) or when an ``Idempotency-Key`` header is sent, unless the
      policy sets ``idempotent_only=False``. A 429 means the server did not process the
      request, so it is retried for every method.

    Args:
        url: The URL.
        method: The HTTP method.
        data: The request body.
        headers: Request headers.
        timeout: Per-attempt socket timeout in seconds.
        policy: The retry policy (default :class:`RetryPolicy()`).
        retry_on_status: Statuses that are retried.

    Returns:
        The open response (use it as a context manager).

    """
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError("url must be an http:// or https:// URL")
    method = method.upper()
    hdrs = dict(headers or {})
    base = policy or RetryPolicy()
    idempotent = _is_idempotent(method, hdrs) or not base.idempotent_only
    statuses = frozenset(retry_on_status)

    def retry_on(exc: BaseException) -> bool:
        cls = classify(exc)
        if isinstance(exc, urllib.error.HTTPError):
            if exc.code not in statuses:
                return False
            return cls is ErrorClass.RATE_LIMIT or idempotent
        if is_connect_error(exc):
            return True
        return idempotent and cls in (ErrorClass.TRANSIENT, ErrorClass.TIMEOUT)

    def attempt() -> http.client.HTTPResponse:
        request = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        try:
            response: Any = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in statuses:
                exc.read()  # drain so the connection can be reused
                exc.close()
            raise
        return response  # type: ignore[no-any-return]

    final = base.replace(retry_on=retry_on, name=base.name or f"fetch {method}")
    return final.call(attempt)
