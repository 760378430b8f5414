"""The ``/metrics`` view (needs ``prometheus_client``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: every :func:`~lockkit.contrib.django.repository` and the file locks."""
    from lockkit.contrib.django import metrics as app_metrics

    body, content_type = app_metrics().exposition()
    return HttpResponse(body, content_type=content_type)
