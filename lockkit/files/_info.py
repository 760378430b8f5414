"""Who holds a lock: the record type every strategy reports (loaded when first needed)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a lock.

    For a shared hold the holder's identity is not recorded (many processes hold it
    at once): only ``shared=True`` and the last fencing token are known.

    Attributes:
        pid: The holding process, or ``None`` for a shared hold.
        hostname: The host it runs on.
        thread: The holding thread's name.
        acquired_at: When it was acquired (seconds since the epoch).
        shared: Whether the lock is held in shared mode.
        fencing_token: The token of the latest exclusive acquisition (0 if none).
        start_token: Identity of the holding process (boot id and start time) that
            tells a reused PID apart.
        recorded: ``False`` when the kernel names a holder that left no lockkit
            holder record (flock(1) or another program): only its pid is known.
    """

    pid: int | None
    hostname: str | None
    thread: str | None
    acquired_at: float | None
    shared: bool
    fencing_token: int
    start_token: str | None = None
    recorded: bool = True

    @property
    def held_for(self) -> float | None:
        """Seconds since acquisition (``None`` if unknown)."""
        return None if self.acquired_at is None else max(0.0, time.time() - self.acquired_at)

    def describe(self) -> str:
        """A one-line description: ``pid 812 on web-3 (thread 'worker-2') for 41.2 s``."""
        if self.pid is None:
            return "shared holders"
        held = self.held_for
        text = f"pid {self.pid} on {self.hostname}"
        if not self.recorded:
            return text + " (not a lockkit holder: it wrote no holder record)"
        if self.thread:
            text += f" (thread {self.thread!r})"
        if held is not None:
            text += f" for {held:.1f} s"
        return text
