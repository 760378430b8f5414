"""Prometheus metrics for lockkit's locks, file locks, repositories and stores.

Needs ``prometheus_client`` (the extra ``prometheus``).

:class:`LockkitMetrics` owns ordinary ``prometheus_client`` counters and gauges and
copies lockkit's statistics into them when :meth:`LockkitMetrics.update` runs (the
Flask extension and the Django app call it before serving ``/metrics`` and, at most
once a second, after requests). Because they are ordinary metrics, they work both in
one process and in ``prometheus_client``'s multiprocess mode (gunicorn with several
workers: every worker's counters are summed at scrape time).

Labels are the names you give when tracking objects, never record keys or lock
file names, so the number of time series stays bounded. Every file lock of the
process is reported together as ``lock="filelocks"``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from lockkit._internal import fork as _fork
from lockkit._internal.threads import start_daemon
from lockkit.files._filelock import FileLock
from lockkit.storage._document import JsonDocument
from lockkit.storage._repository import JsonRepository
from lockkit.storage._store import PersistentStore

__all__ = ["LockkitMetrics"]

_LOCK_COUNTERS = {
    "acquisitions": ("lock_acquisitions", "Successful acquisitions"),
    "contentions": ("lock_contentions", "Acquisitions that found the lock busy"),
    "timeouts": ("lock_timeouts", "Acquisitions that gave up when their timeout ran out"),
    "wait_total": ("lock_wait_seconds", "Time spent waiting for the lock"),
}
_STORAGE_OPS = ("reads", "writes", "deletes", "conflicts", "timeouts", "failures")
_STORE_COUNTERS = {
    "changes": ("store_changes", "Changes made to the store"),
    "saves": ("store_saves", "Successful saves to disk"),
    "failures": ("store_save_failures", "Failed save attempts (each is retried)"),
}


class _Families:
    """The metric objects of one registry and namespace (shared by every LockkitMetrics on it)."""

    def __init__(self, registry: CollectorRegistry | None, namespace: str) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.lock_counters = {
            field: Counter(name, doc, ["lock"], **kw) for field, (name, doc) in _LOCK_COUNTERS.items()
        }
        self.lock_waiting = Gauge(
            "lock_waiting", "Threads waiting for the lock now", ["lock"], multiprocess_mode="livesum", **kw
        )
        self.lock_wait_max = Gauge(
            "lock_wait_max_seconds", "The longest single wait", ["lock"], multiprocess_mode="max", **kw
        )
        self.storage_ops = Counter(
            "storage_operations", "Repository and document operations by outcome", ["storage", "outcome"], **kw
        )
        self.storage_wait = Counter("storage_lock_wait_seconds", "Time spent taking record locks", ["storage"], **kw)
        self.storage_hold = Counter(
            "storage_lock_hold_seconds", "Time record locks were held (with track_hold_time=True)", ["storage"], **kw
        )
        self.store_counters = {
            field: Counter(name, doc, ["store"], **kw) for field, (name, doc) in _STORE_COUNTERS.items()
        }
        self.store_entries = Gauge(
            "store_entries", "Live entries in memory", ["store"], multiprocess_mode="livemax", **kw
        )
        self.store_pending = Gauge(
            "store_pending", "1 while changes wait to be saved", ["store"], multiprocess_mode="livemax", **kw
        )


_families_mu = threading.Lock()
_registered: dict[tuple[int, str], tuple[CollectorRegistry, _Families]] = {}


def _families(registry: CollectorRegistry | None, namespace: str) -> _Families:
    """The metrics of ``registry`` (made once: a second extension or app on it shares them)."""
    if registry is None:
        return _Families(None, namespace)
    with _families_mu:
        found = _registered.get((id(registry), namespace))
        if found is None or found[0] is not registry:
            found = _registered[(id(registry), namespace)] = (registry, _Families(registry, namespace))
        return found[1]


class LockkitMetrics:
    """lockkit's statistics as Prometheus metrics, with bounded labels.

    Args:
        registry: Where the metrics are registered (the default registry unless
            given; ``None`` in multiprocess mode is fine too, as the values live in
            ``PROMETHEUS_MULTIPROC_DIR``).
        namespace: Metric name prefix.
        file_locks: Also report every :class:`~lockkit.FileLock` of the process
            together (``lock="filelocks"``).

    Thread-safe: :meth:`track` and :meth:`update` may be called from any thread.
    """

    def __init__(
        self, registry: CollectorRegistry | None = REGISTRY, *, namespace: str = "lockkit", file_locks: bool = True
    ) -> None:
        self._mu = threading.Lock()
        self._updater_pid = 0
        _fork.register(self)
        self._registry = registry
        self._sources: dict[tuple[str, str], Callable[[], Any]] = {}
        self._seen: dict[tuple[str, str, str], float] = {}
        self._last_update = 0.0
        m = _families(registry, namespace)
        self._lock_counters = m.lock_counters
        self._lock_waiting, self._lock_wait_max = m.lock_waiting, m.lock_wait_max
        self._storage_ops, self._storage_wait, self._storage_hold = m.storage_ops, m.storage_wait, m.storage_hold
        self._store_counters = m.store_counters
        self._store_entries, self._store_pending = m.store_entries, m.store_pending
        if file_locks:
            self._sources[("lock", "filelocks")] = FileLock.process_statistics

    def track(self, name: str, obj: Any) -> None:
        """Report ``obj`` under the label ``name``.

        ``obj`` is a :class:`~lockkit.JsonRepository` or :class:`~lockkit.JsonDocument`
        (label ``storage``), a :class:`~lockkit.PersistentStore` (label ``store``), or
        any lock with ``statistics()`` returning a :class:`~lockkit.LockStatistics`
        (label ``lock``: a Mutex, RWLock, LockManager, FileLock, RedisLock...). Use a
        fixed name per object (``"accounts"``), never a per-request value.

        Raises:
            TypeError: ``obj`` has no statistics lockkit knows how to export.
        """
        if isinstance(obj, (JsonRepository, JsonDocument)):
            kind = "storage"
        elif isinstance(obj, PersistentStore):
            kind = "store"
        elif callable(getattr(obj, "statistics", None)):
            kind = "lock"
        else:
            raise TypeError(f"cannot export statistics of a {type(obj).__name__}")
        with self._mu:
            self._sources[(kind, name)] = obj.statistics

    def update(self, *, at_most_every: float = 0.0) -> None:
        """Copy the tracked objects' statistics into the metrics.

        Args:
            at_most_every: Skip the update if the last one was less than this many
                seconds ago (cheap enough to call after every request).
        """
        now = time.monotonic()
        with self._mu:
            if at_most_every and now - self._last_update < at_most_every:
                return
            self._last_update = now
            for (kind, name), read in list(self._sources.items()):
                stats = read()
                if kind == "lock":
                    for field, counter in self._lock_counters.items():
                        self._advance(counter.labels(name), (kind, name, field), float(getattr(stats, field)))
                    self._lock_waiting.labels(name).set(stats.waiting)
                    self._lock_wait_max.labels(name).set(stats.wait_max)
                elif kind == "storage":
                    for op in _STORAGE_OPS:
                        self._advance(self._storage_ops.labels(name, op), (kind, name, op), getattr(stats, op))
                    self._advance(self._storage_wait.labels(name), (kind, name, "wait"), stats.lock_wait_total)
                    self._advance(self._storage_hold.labels(name), (kind, name, "hold"), stats.hold_total)
                else:
                    for field, counter in self._store_counters.items():
                        self._advance(counter.labels(name), (kind, name, field), float(getattr(stats, field)))
                    self._store_entries.labels(name).set(stats.entries)
                    self._store_pending.labels(name).set(1 if stats.pending else 0)

    def start_updates(self, interval: float = 1.0) -> None:
        """Update every ``interval`` seconds in a daemon thread of this process.

        Idempotent, and fork-aware: a forked worker (gunicorn ``--preload``) starts its
        own thread on its first call. In multiprocess mode this keeps every worker's
        counters at most ``interval`` seconds old, busy or idle.
        """
        with self._mu:
            if self._updater_pid == os.getpid():
                return
            self._updater_pid = os.getpid()
        start_daemon(self._update_forever, "lockkit-metrics", interval)

    def _update_forever(self, interval: float) -> None:
        tick = threading.Event()
        while not tick.wait(interval):
            with contextlib.suppress(Exception):  # a failing statistics() must not end the updates
                self.update()

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()  # another thread of the parent may have held it
        self._updater_pid = 0  # threads do not survive fork: the child starts its own

    def exposition(self) -> tuple[bytes, str]:
        """An up-to-date ``/metrics`` page: ``(body, content type)``.

        With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with several workers), the page
        sums every worker's metrics; otherwise it shows this registry.
        """
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.update()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call,unused-ignore]
        else:
            registry = self._registry or REGISTRY
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def _advance(self, counter: Any, key: tuple[str, str, str], total: float) -> None:
        """Add what ``total`` grew by since the last update (all of it, if its object was replaced)."""
        before = self._seen.get(key, 0.0)
        delta = total - before if total >= before else total
        if delta > 0:
            counter.inc(delta)
        self._seen[key] = total
