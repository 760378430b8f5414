"""A Django app: lockkit settings, error answers as middleware, ``lockkit_status``, ``/metrics``.

Add it to ``INSTALLED_APPS`` and the middleware to ``MIDDLEWARE``::

    INSTALLED_APPS = [..., "lockkit.contrib.django"]
    MIDDLEWARE = [..., "lockkit.contrib.django.middleware.LockkitMiddleware"]
    LOCKKIT = {
        "DATA_DIR": BASE_DIR / "data",   # where repositories() and file_lock() put their files
        "TIMEOUT": 5.0,                  # lock timeout in seconds (None waits forever)
        "STRATEGY": "kernel",            # or "marker" for file systems without working locks
        "RETRY_AFTER": 1,                # the Retry-After of a 503 for a busy lock
    }

Then ``repository("accounts")`` is a :class:`~lockkit.JsonRepository` in
``DATA_DIR/accounts`` with those settings, ``file_lock("nightly-report")`` a
:class:`~lockkit.FileLock` in ``DATA_DIR/locks``, and ``manage.py lockkit_status`` shows
who holds what. Include ``lockkit.contrib.django.urls`` for a ``metrics/`` page (needs
``prometheus_client``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockkit.contrib.prometheus import LockkitMetrics
    from lockkit.files._filelock import FileLock
    from lockkit.files._strategy import StrategyName
    from lockkit.storage._repository import JsonRepository

__all__ = ["Settings", "file_lock", "metrics", "repository", "settings"]


@dataclass(frozen=True)
class Settings:
    """The ``LOCKKIT`` setting, checked.

    Attributes:
        data_dir: Where repositories and lock files go.
        timeout: Lock timeout in seconds, or ``None`` to wait forever.
        strategy: ``"kernel"`` or ``"marker"``.
        retry_after: Seconds for the ``Retry-After`` header of a 503.
    """

    data_dir: str
    timeout: float | None
    strategy: StrategyName
    retry_after: float


_KNOWN = {"DATA_DIR", "TIMEOUT", "STRATEGY", "RETRY_AFTER"}


def settings() -> Settings:
    """Read and check ``settings.LOCKKIT``.

    Raises:
        django.core.exceptions.ImproperlyConfigured: An unknown key, a missing
            ``DATA_DIR``, a negative timeout or an unknown strategy.
    """
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured

    raw: dict[str, Any] = dict(getattr(django_settings, "LOCKKIT", {}))
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ImproperlyConfigured(f"LOCKKIT has unknown keys {sorted(unknown)}; known: {sorted(_KNOWN)}")
    if "DATA_DIR" not in raw:
        raise ImproperlyConfigured("LOCKKIT['DATA_DIR'] is required: the directory for data and lock files")
    timeout = raw.get("TIMEOUT", 5.0)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
        raise ImproperlyConfigured("LOCKKIT['TIMEOUT'] must be None or a number of seconds >= 0")
    strategy = raw.get("STRATEGY", "kernel")
    if strategy not in ("kernel", "marker"):
        raise ImproperlyConfigured("LOCKKIT['STRATEGY'] must be 'kernel' or 'marker'")
    retry_after = raw.get("RETRY_AFTER", 1)
    if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)) or retry_after < 0:
        raise ImproperlyConfigured("LOCKKIT['RETRY_AFTER'] must be a number of seconds >= 0")
    return Settings(os.fspath(raw["DATA_DIR"]), None if timeout is None else float(timeout), strategy, retry_after)


_mu = threading.Lock()
_repositories: dict[str, JsonRepository] = {}
_metrics: list[LockkitMetrics] = []


def repository(name: str, **options: Any) -> JsonRepository:
    """The :class:`~lockkit.JsonRepository` ``DATA_DIR/<name>`` (one object per name and process).

    ``options`` are passed to the repository the first time (``plain=True``, say);
    ``timeout`` and ``strategy`` default to the settings. With ``prometheus_client``
    installed, the repository's statistics are exported under ``storage=<name>``.
    """
    from lockkit.storage._repository import JsonRepository, check_key

    check_key(name)
    with _mu:
        repo = _repositories.get(name)
        if repo is None:
            s = settings()
            options.setdefault("timeout", s.timeout)
            options.setdefault("strategy", s.strategy)
            repo = _repositories[name] = JsonRepository(os.path.join(s.data_dir, name), **options)
            if _metrics:
                _metrics[0].track(name, repo)
        return repo


def file_lock(name: str, **options: Any) -> FileLock:
    """A :class:`~lockkit.FileLock` on ``DATA_DIR/locks/<name>.lock`` with the settings' timeout and strategy."""
    from lockkit.files._filelock import FileLock
    from lockkit.storage._repository import check_key

    check_key(name)
    s = settings()
    options.setdefault("timeout", s.timeout)
    options.setdefault("strategy", s.strategy)
    directory = os.path.join(s.data_dir, "locks")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return FileLock(os.path.join(directory, name + ".lock"), **options)


def metrics() -> LockkitMetrics:
    """The app's :class:`~lockkit.contrib.prometheus.LockkitMetrics`, tracking every :func:`repository`."""
    from lockkit.contrib.prometheus import LockkitMetrics

    with _mu:
        if not _metrics:
            _metrics.append(LockkitMetrics())
            for name, repo in _repositories.items():
                _metrics[0].track(name, repo)
        return _metrics[0]
