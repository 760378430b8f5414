"""Statistics snapshots shared by every lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from lockkit._internal import log as _log


@dataclass(frozen=True, slots=True)
class LockStatistics:
    """A frozen snapshot of one lock's counters, returned by ``statistics()``.

    Times are in seconds. Wait times are measured only for acquisitions that had to
    wait (the uncontended fast path reads no clock); hold times are measured for every
    hold when the lock was built with ``track_hold_time=True`` and for holds granted
    after a wait otherwise.

    Attributes:
        name: The lock's name (``None`` when it has none).
        acquisitions: Successful acquisitions since creation.
        contentions: Acquisitions that found the lock busy (waited or failed at once).
        timeouts: Acquisitions that gave up because their timeout ran out.
        wait_total: Total time spent waiting by acquisitions that waited.
        wait_max: The longest single wait.
        hold_total: Total measured hold time.
        hold_max: The longest measured hold.
        held: Whether the lock is held right now (in any mode).
        readers: How many threads hold it in shared mode right now.
        owner: The name of the thread holding it exclusively, or ``None``.
        waiting: Threads queued right now (not counting holders).
        queue_length: Holders plus waiters right now.
        peak_queue: The most threads ever waiting at once.
        queued: Acquisitions that joined the wait queue since creation (a
            monotonic count: it includes waits that later timed out, so tests can
            synchronise on it without missing a waiter that left quickly).

    """

    name: str | None
    acquisitions: int
    contentions: int
    timeouts: int
    wait_total: float
    wait_max: float
    hold_total: float
    hold_max: float
    held: bool
    readers: int
    owner: str | None
    waiting: int
    queue_length: int
    peak_queue: int
    queued: int = 0


class Counters:
    """Mutable slow-path counters; every update happens under the owner's internal lock."""

    __slots__ = (
        "contentions",
        "hold_max",
        "hold_total",
        "peak_queue",
        "queued_total",
        "timeouts",
        "wait_max",
        "wait_total",
        "warned_deep",
    )

    def __init__(self) -> None:
        self.contentions = 0
        self.timeouts = 0
        self.wait_total = 0.0
        self.wait_max = 0.0
        self.hold_total = 0.0
        self.hold_max = 0.0
        self.peak_queue = 0
        self.queued_total = 0
        self.warned_deep = False

    def queued(self, depth: int, name: str | None = None, *, warn: bool = True) -> int:
        """Account one more waiter; ``depth`` is the number now waiting.

        Returns:
            ``depth`` when a ``lockkit.queue_deep`` warning is due (once per episode),
            else 0. The caller emits it after leaving its internal lock.

        """
        self.contentions += 1
        self.queued_total += 1
        self.peak_queue = max(self.peak_queue, depth)
        if warn and depth > _log.DEEP_QUEUE and not self.warned_deep:
            self.warned_deep = True
            return depth
        return 0

    def drained(self) -> None:
        """The queue emptied: a later deep queue is a new episode and warns again."""
        self.warned_deep = False

    def waited(self, seconds: float, granted: bool, name: str | None = None) -> float:
        """Account one finished wait; returns ``seconds`` (for :func:`lockkit._internal.log.slow_wait`)."""
        self.wait_total += seconds
        self.wait_max = max(self.wait_max, seconds)
        if not granted:
            self.timeouts += 1
        return seconds

    def snapshot(
        self,
        name: str | None,
        acquisitions: int,
        *,
        held: bool,
        readers: int,
        owner: str | None,
        waiting: int,
        queue_length: int,
        peak_queue: int | None = None,
    ) -> LockStatistics:
        """A frozen :class:`LockStatistics` of these counters and the given live state."""
        return LockStatistics(
            name=name,
            acquisitions=acquisitions,
            contentions=self.contentions,
            timeouts=self.timeouts,
            wait_total=self.wait_total,
            wait_max=self.wait_max,
            hold_total=self.hold_total,
            hold_max=self.hold_max,
            held=held,
            readers=readers,
            owner=owner,
            waiting=waiting,
            queue_length=queue_length,
            peak_queue=self.peak_queue if peak_queue is None else peak_queue,
            queued=self.queued_total,
        )

    def merged(self, local: LockStatistics, name: str | None, acquisitions: int, *, held: bool) -> LockStatistics:
        """These counters added to a local layer's snapshot (whose live state is kept)."""
        return LockStatistics(
            name=name,
            acquisitions=acquisitions,
            contentions=self.contentions + local.contentions,
            timeouts=self.timeouts + local.timeouts,
            wait_total=self.wait_total + local.wait_total,
            wait_max=max(self.wait_max, local.wait_max),
            hold_total=self.hold_total + local.hold_total,
            hold_max=max(self.hold_max, local.hold_max),
            held=held,
            readers=local.readers,
            owner=local.owner,
            waiting=local.waiting,
            queue_length=local.queue_length,
            peak_queue=max(self.peak_queue, local.peak_queue),
            queued=self.queued_total + local.queued,
        )

    def held_for(self, seconds: float) -> None:
        """Account one finished hold."""
        self.hold_total += seconds
        self.hold_max = max(self.hold_max, seconds)


def thread_name(ident: int | None) -> str | None:
    """The name of the live thread with this ident (slow; for reports only)."""
    if ident is None:
        return None
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"
