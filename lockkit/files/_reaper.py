"""Releasing the holds of a FileLock that was garbage-collected while held.

A finalizer may run at any allocation, in any thread, even while that thread holds one
of lockkit's internal locks, so ``FileLock.__del__`` must not take a lock. It only
appends the orphaned holds to a deque and writes one byte to a pipe (neither takes a
Python-level lock); a daemon thread, started before any hold exists, wakes on the pipe
and releases them with the normal, locking code.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.threads import start_daemon

#: (release function, lock path) pairs waiting for the reaper thread.
_orphans: deque[tuple[Callable[[], None], str]] = deque()


class _Reaper:
    def __init__(self) -> None:
        self._wake_w = -1
        self._started = False
        self._start_mu = threading.Lock()

    def ensure_started(self) -> None:
        """Start the reaper thread once per process (call where taking locks is safe)."""
        if self._started:
            return
        with self._start_mu:
            self._start_locked()

    def _start_locked(self) -> None:
        if not self._started:
            r, w = os.pipe()
            os.set_blocking(w, False)
            os.set_inheritable(r, False)
            os.set_inheritable(w, False)
            start_daemon(self._run, "lockkit-reaper", r)
            self._wake_w = w
            self._started = True

    def submit(self, release: Callable[[], None], path: str) -> None:
        """Hand a release to the reaper thread: lock-free, safe in a finalizer."""
        _orphans.append((release, path))
        with contextlib.suppress(OSError):  # a full pipe already has a wake-up pending
            os.write(self._wake_w, b"\0")

    def _run(self, r: int) -> None:
        while True:
            try:
                os.read(r, 512)
            except OSError:  # pragma: no cover - the pipe is gone (interpreter shutdown)
                return
            while _orphans:
                release, path = _orphans.popleft()
                _log.warning("lockkit.lock_collected_while_held", lock=path)
                try:
                    release()
                except Exception as exc:
                    _log.warning("lockkit.orphan_release_failed", lock=path, error=type(exc).__name__)

    def _reset_after_fork(self) -> None:
        # The thread does not survive fork(): the child starts its own on first use.
        self._started = False
        self._start_mu = threading.Lock()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self._wake_w)
        self._wake_w = -1
        _orphans.clear()  # the parent's orphans are the parent's to release


reaper = _Reaper()
_fork.register(reaper)
