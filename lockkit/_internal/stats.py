"""The counters behind every lock's statistics, and the helpers that build their snapshots."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from lockkit._internal import log as _log

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics


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
        from lockkit._internal.snapshot import LockStatistics

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
        from lockkit._internal.snapshot import LockStatistics

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
