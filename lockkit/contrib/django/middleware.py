"""Middleware answering lockkit's exceptions as HTTP (the same mapping as the Flask extension)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from lockkit.contrib._http import answer


class LockkitMiddleware:
    """Turn lockkit's exceptions into HTTP answers.

    503 with ``Retry-After`` for a busy lock, 400 for an invalid record key, 409 for a
    conflict, 500 (and a log line) for corrupt data or a storage failure. Bodies never
    contain paths, keys or data.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from lockkit.contrib.django import settings

        self.get_response = get_response
        self.retry_after = settings().retry_after
        try:
            from lockkit.contrib.django import metrics
        except ImportError:  # pragma: no cover - prometheus_client not installed: no metrics
            return
        with contextlib.suppress(ImportError):
            metrics().start_updates()  # every worker exports its repositories, not just the scraped one

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Pass the request on; exceptions come back through :meth:`process_exception`."""
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """The answer for a lockkit exception; ``None`` lets Django handle anything else."""
        found = answer(exception, self.retry_after)
        if found is None:
            return None
        response = JsonResponse(found.body, status=found.status)
        for name, value in found.headers.items():
            response[name] = value
        return response
