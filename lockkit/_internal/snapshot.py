"""The statistics snapshot every lock returns (its own module: loaded when first asked for)."""

from __future__ import annotations

from dataclasses import dataclass


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
