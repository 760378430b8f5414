"""Counters of JsonDocument and JsonRepository operations, and their snapshot."""

from __future__ import annotations

import contextlib
from _thread import allocate_lock
from collections.abc import Iterator
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING

from lockkit._internal import fork as _fork
from lockkit.exceptions import ConflictError, LockTimeoutError, StaleWriterError

if TYPE_CHECKING:
    from lockkit.files._filelock import FileLock


@dataclass(frozen=True, slots=True)
class DocumentStatistics:
    """A snapshot of what a :class:`~lockkit.JsonDocument` or :class:`~lockkit.JsonRepository` did.

    A repository counts over all its records (one set of counters per repository,
    never one per key). Times are in seconds.

    Attributes:
        reads: Completed reads.
        writes: Completed writes (``write``, ``put``, ``modify``; a fenced read that
            records its token counts as a read).
        deletes: Completed deletes (whether or not the record existed).
        conflicts: Operations refused with ``ConflictError`` or ``StaleWriterError``.
        timeouts: Operations that gave up because the lock timeout ran out.
        failures: Operations that failed otherwise while holding the lock (corrupt
            data, a full disk, an exception from a ``modify`` function...), and
            writes whose shared directory fsync then failed (also counted as writes).
        lock_wait_total: Total time spent taking record locks.
        lock_wait_max: The longest single lock wait.
        hold_total: Total time record locks were held (measured only with
            ``track_hold_time=True``, else 0).
        hold_max: The longest single hold (likewise).
        fsync_total: Total time writers spent making their writes durable: the new
            file's ``fsync`` (under the record's lock) and the directory's (after it,
            shared with the writers that renamed at about the same time). 0 with
            ``fsync=False``.
    """

    reads: int
    writes: int
    deletes: int
    conflicts: int
    timeouts: int
    failures: int
    lock_wait_total: float
    lock_wait_max: float
    hold_total: float
    hold_max: float
    fsync_total: float = 0.0


class Tally:
    """The mutable counters behind :class:`DocumentStatistics`, shared by a repository's documents."""

    __slots__ = (
        "__weakref__",
        "_mu",
        "conflicts",
        "deletes",
        "failures",
        "fsync_total",
        "hold_max",
        "hold_total",
        "reads",
        "timeouts",
        "track_hold_time",
        "wait_max",
        "wait_total",
        "writes",
    )

    def __init__(self, track_hold_time: bool = False) -> None:
        self.track_hold_time = track_hold_time
        self._mu = allocate_lock()
        self.reads = self.writes = self.deletes = self.conflicts = self.timeouts = self.failures = 0
        self.wait_total = self.wait_max = self.hold_total = self.hold_max = self.fsync_total = 0.0
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        self._mu = allocate_lock()  # another thread of the parent may have held it

    @contextlib.contextmanager
    def locked(self, lock: FileLock, timeout: float | None, op: str) -> Iterator[None]:
        """Hold ``lock`` for one operation ``op`` (``reads``, ``writes`` or ``deletes``), counting it.

        Raises:
            LockTimeoutError: The lock was not had within ``timeout``.
        """
        t0 = monotonic()
        if not lock.acquire(timeout=timeout):
            with self._mu:
                self.timeouts += 1
                self._waited(monotonic() - t0)
            raise lock._timeout_error(timeout)
        t1 = monotonic()
        try:
            with self.unlocked(op):
                yield
        finally:
            held = monotonic() - t1 if self.track_hold_time else 0.0
            lock.release()
            with self._mu:
                self._waited(t1 - t0)
                if held:
                    self.hold_total += held
                    self.hold_max = max(self.hold_max, held)

    @contextlib.contextmanager
    def unlocked(self, op: str) -> Iterator[None]:
        """Count one operation ``op`` by how it ended (also the counting inside :meth:`locked`)."""
        outcome = op
        try:
            yield
        except BaseException as exc:
            outcome = _outcome(exc)
            raise
        finally:
            self.count(outcome)

    def fsynced(self, seconds: float) -> None:
        """Add time spent in ``fsync`` (of a file or, shared, of a directory)."""
        with self._mu:
            self.fsync_total += seconds

    def count(self, outcome: str) -> None:
        """Count one operation done outside :meth:`locked` (``modify_many``'s writes)."""
        with self._mu:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def _waited(self, seconds: float) -> None:
        self.wait_total += seconds
        self.wait_max = max(self.wait_max, seconds)

    def snapshot(self) -> DocumentStatistics:
        """A frozen snapshot of the counters."""
        with self._mu:
            return DocumentStatistics(
                reads=self.reads,
                writes=self.writes,
                deletes=self.deletes,
                conflicts=self.conflicts,
                timeouts=self.timeouts,
                failures=self.failures,
                lock_wait_total=self.wait_total,
                lock_wait_max=self.wait_max,
                hold_total=self.hold_total,
                hold_max=self.hold_max,
                fsync_total=self.fsync_total,
            )


def _outcome(exc: BaseException) -> str:
    """The counter an operation that raised ``exc`` goes to."""
    if isinstance(exc, (ConflictError, StaleWriterError)):
        return "conflicts"
    if isinstance(exc, LockTimeoutError):
        return "timeouts"
    return "failures"
