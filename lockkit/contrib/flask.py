"""A Flask extension: lockkit's errors as HTTP answers, and a ``/metrics`` page.

Needs Flask (and ``prometheus_client`` for metrics)::

    from flask import Flask
    from lockkit import JsonRepository
    from lockkit.contrib.flask import Lockkit

    app = Flask(__name__)
    accounts = JsonRepository("data/accounts", timeout=5)
    lockkit_ext = Lockkit(app, metrics_path="/metrics")
    lockkit_ext.track("accounts", accounts)

Answers (JSON bodies that never contain paths, keys or data):

* :class:`~lockkit.LockTimeoutError`, :class:`~lockkit.exceptions.CircuitOpenError`:
  ``503`` with ``Retry-After`` (``LOCKKIT_RETRY_AFTER`` seconds, default 1);
* :class:`~lockkit.exceptions.InvalidKeyError`: ``400``, naming the rule broken;
* :class:`~lockkit.exceptions.ConflictError`, :class:`~lockkit.exceptions.StaleWriterError`: ``409``;
* :class:`~lockkit.CorruptDataError`, :class:`~lockkit.StorageError`,
  :class:`~lockkit.exceptions.LockLostError`: ``500``, and a ``lockkit.request_failed``
  warning in the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, jsonify

from lockkit.contrib._http import HANDLED, answer

if TYPE_CHECKING:
    from lockkit.contrib.prometheus import LockkitMetrics

__all__ = ["Lockkit"]


class Lockkit:
    """Register lockkit's error handlers (and optionally ``/metrics``) on a Flask app.

    Args:
        app: The app, or ``None`` to call :meth:`init_app` later (application factories).
        metrics_path: Serve Prometheus metrics here (needs ``prometheus_client``);
            ``None`` serves none.
        metrics: The :class:`~lockkit.contrib.prometheus.LockkitMetrics` to serve
            (one is made on first use otherwise).
    """

    def __init__(
        self, app: Flask | None = None, *, metrics_path: str | None = None, metrics: LockkitMetrics | None = None
    ) -> None:
        self.metrics_path = metrics_path
        self._metrics = metrics
        if app is not None:
            self.init_app(app)

    @property
    def metrics(self) -> LockkitMetrics:
        """The metrics this extension serves (made on first use)."""
        if self._metrics is None:
            from lockkit.contrib.prometheus import LockkitMetrics

            self._metrics = LockkitMetrics()
        return self._metrics

    def track(self, name: str, obj: Any) -> None:
        """Export ``obj``'s statistics under ``name`` (see :meth:`LockkitMetrics.track`)."""
        self.metrics.track(name, obj)

    def init_app(self, app: Flask) -> None:
        """Register the error handlers (and the metrics view) on ``app``."""
        app.config.setdefault("LOCKKIT_RETRY_AFTER", 1.0)
        app.extensions["lockkit"] = self
        for exc_type in HANDLED:
            app.register_error_handler(exc_type, _handle)
        if self.metrics_path is not None:
            metrics = self.metrics
            app.add_url_rule(self.metrics_path, "lockkit_metrics", self._serve_metrics)
            app.after_request(self._after_request)
            metrics.update()

    def _serve_metrics(self) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, content_type=content_type)

    def _after_request(self, response: Response) -> Response:
        # This process's counters are copied once a second by a thread started on the
        # first request (after a fork), so multiprocess scrapes see every worker.
        self.metrics.start_updates()
        return response


def _handle(exc: Exception) -> Response:
    found = answer(exc, float(current_app.config.get("LOCKKIT_RETRY_AFTER", 1.0)))
    if found is None:  # pragma: no cover - registered only for HANDLED
        raise exc
    response = jsonify(found.body)
    response.status_code = found.status
    response.headers.update(found.headers)
    return response
