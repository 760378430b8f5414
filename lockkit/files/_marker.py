"""The marker strategy: an ``O_EXCL``-style marker file, for file systems without locks.

A marker appears complete or not at all: the record is written to a unique temp file
and ``link()``-ed to the lock name. A marker is stale only on proof: its holder is on
this host and is dead or its PID was reused, or its heartbeat (the marker's mtime,
refreshed by a live holder every ``stale_after / 3`` seconds) is older than
``stale_after``. Breaking is race-safe: breakers are serialised by a short-lived
``.break`` marker, re-verify what they judged stale, rename it aside, check that the
renamed file is the one they judged, put it back otherwise, and only then unlink it.
Release unlinks the marker only if the name still points at the holder's own inode.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline
from lockkit.files._holder import (
    LockInfo,
    alive_here,
    dead_reason,
    lock_file_error,
    next_fence,
    open_lock_file,
    parse_json_line,
    record_info,
    record_prefix,
)
from lockkit.files._strategy import LockStrategy, StrategyName
from lockkit.resilience._backoff import Backoff

#: A ``.break`` marker older than this (seconds) belongs to a crashed breaker.
BREAKER_STALE = 30.0


def read_marker(path: str) -> tuple[os.stat_result, LockInfo | None] | None:
    """The marker's stat and parsed record; ``None`` if there is no marker."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise lock_file_error(path, exc) from exc
    try:
        st = os.fstat(fd)
        record = parse_json_line(os.pread(fd, 4096, 0))
    finally:
        os.close(fd)
    return st, None if record is None else record_info(record)


def stale_reason(st: os.stat_result, info: LockInfo | None, stale_after: float) -> str | None:
    """Why this marker is stale, or ``None`` while its holder may be alive.

    A holder on this host whose pid and start time match a live process is never
    stale, whatever its heartbeat says (a wall-clock step forward must not break it);
    the heartbeat age judges only holders that cannot be checked directly.
    """
    if info is not None:
        dead = dead_reason(info)
        if dead is not None:
            return dead
        if alive_here(info):
            return None
    age = time.time() - st.st_mtime
    if age > stale_after:
        return f"no heartbeat for {age:.1f} s (stale after {stale_after:g} s)"
    return None


class MarkerHold:
    """A marker this process holds: its descriptor (same inode as the marker)."""

    __slots__ = ("dev", "fd", "ino", "path", "stale_after")

    def __init__(self, path: str, fd: int, stale_after: float) -> None:
        st = os.fstat(fd)
        self.path = path
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.stale_after = stale_after

    def still_ours(self) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == (self.dev, self.ino)


class _Heartbeat:
    """One daemon thread per process refreshing the mtime of every held marker."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._holds: dict[int, MarkerHold] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = 60.0

    def add(self, hold: MarkerHold) -> None:
        with self._mu:
            self._holds[id(hold)] = hold
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lockkit-heartbeat", daemon=True)
                self._thread.start()
            elif hold.stale_after / 3 < self._interval:
                self._wake.set()  # a shorter period than the thread sleeps for: wake it now
            else:
                return

    def remove(self, hold: MarkerHold) -> None:
        with self._mu:
            self._holds.pop(id(hold), None)

    def _run(self) -> None:
        while True:
            with self._mu:
                holds = list(self._holds.values())
            interval = min((h.stale_after / 3 for h in holds), default=60.0)
            self._interval = interval
            for hold in holds:
                with contextlib.suppress(OSError):  # released meanwhile
                    os.utime(hold.fd)  # touches our own inode, even if the name was taken away
            self._wake.wait(max(0.01, interval))
            self._wake.clear()

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._holds = {}  # the child holds none of its parent's markers
        self._wake = threading.Event()
        self._thread = None
        self._interval = 60.0


heartbeat = _Heartbeat()
_fork.register(heartbeat)


def fence_bump(path: str) -> int:
    fd = open_lock_file(path + ".fence", os.O_RDWR | os.O_CREAT)
    try:
        head = os.pread(fd, 20, 0)
        token = next_fence(int(head) if head.isdigit() else 0)
        os.pwrite(fd, b"%020d" % token, 0)
        return token
    finally:
        os.close(fd)


def fence_value(path: str) -> int:
    """The marker lock's last fencing token (0 if none)."""
    try:
        with open(path + ".fence", "rb") as f:
            head = f.read(20)
    except FileNotFoundError:
        return 0
    return int(head) if head.isdigit() else 0


def try_link(path: str, stale_after: float) -> MarkerHold | None:
    """Publish our marker if there is none; ``None`` if one exists."""
    tmp = f"{path}.{secrets.token_hex(8)}.tmp"
    fd = open_lock_file(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            record = memoryview(b"%s%.3f}\n" % (record_prefix(), time.time()))
            while record:  # a short write (a size limit, a nearly full disk) must not publish half a record
                record = record[os.write(fd, record) :]
        except OSError as exc:  # a full disk, a file size limit: nothing was published
            os.close(fd)
            raise lock_file_error(path, exc) from exc
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise lock_file_error(path, exc) from exc
        return MarkerHold(path, fd, stale_after)
    finally:
        os.unlink(tmp)


def break_marker(path: str, judged: os.stat_result, stale_after: float, reason: str) -> bool:
    """Remove a marker judged stale, race-safely; ``True`` if this call removed it."""
    breaker = path + ".break"
    try:
        bfd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.stat(breaker, follow_symlinks=False).st_mtime > BREAKER_STALE:
                os.unlink(breaker)  # a breaker crashed while breaking
        except FileNotFoundError:
            pass
        return False
    except OSError as exc:
        raise lock_file_error(breaker, exc) from exc
    try:
        again = read_marker(path)
        if again is None:
            return False
        st, info = again
        if (st.st_dev, st.st_ino) != (judged.st_dev, judged.st_ino) or stale_reason(st, info, stale_after) is None:
            return False  # it changed or showed a heartbeat: not ours to break
        aside = f"{path}.broken.{secrets.token_hex(8)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        moved = os.stat(aside, follow_symlinks=False)
        if (moved.st_dev, moved.st_ino) != (judged.st_dev, judged.st_ino):
            try:  # we took a fresh marker: put it back
                os.link(aside, path, follow_symlinks=False)
            except FileExistsError:  # pragma: no cover - needs a release and a link in microseconds
                _log.warning("lockkit.marker_restore_failed", lock=path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        _log.warning("lockkit.marker_broken", lock=path, reason=reason, holder_pid=info.pid if info else None)
        return True
    finally:
        os.close(bfd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(breaker)


class MarkerStrategy(LockStrategy):
    """An atomically published marker file, for file systems without working locks.

    Exclusive only. A stale marker is broken only on proof (see :func:`stale_reason`).
    """

    __slots__ = ("_make_backoff", "_stale_after")

    name: StrategyName = "marker"

    def __init__(self, path: str, key: str, stale_after: float, make_backoff: Callable[[], Backoff]) -> None:
        super().__init__(path, key)
        self._stale_after = stale_after
        self._make_backoff = make_backoff

    def take(self, shared: bool, deadline: Deadline | None) -> MarkerHold | None:
        backoff: Backoff | None = None
        while True:
            hold = try_link(self.path, self._stale_after)
            if hold is not None:
                heartbeat.add(hold)
                return hold
            seen = read_marker(self.path)
            if seen is None:
                continue  # released meanwhile: try again at once
            reason = stale_reason(seen[0], seen[1], self._stale_after)
            if reason is not None and break_marker(self.path, seen[0], self._stale_after, reason):
                continue
            # A live holder, or another process is breaking the marker: wait our turn.
            if deadline is None:
                return None
            backoff = backoff or self._make_backoff()
            if not deadline.sleep(backoff):
                return None

    def release(self, ticket: object, shared: bool) -> None:
        """Remove our marker (only if the name still points at our inode)."""
        assert isinstance(ticket, MarkerHold)
        heartbeat.remove(ticket)
        try:
            if ticket.still_ours():
                os.unlink(ticket.path)
            else:
                _log.warning("lockkit.marker_lost", lock=ticket.path)
        finally:
            os.close(ticket.fd)

    def fencing_token(self, ticket: object, shared: bool) -> int:
        return fence_bump(self.path)

    def holder(self) -> LockInfo | None:
        seen = read_marker(self.path)
        if seen is None:
            return None
        info = seen[1]
        token = fence_value(self.path)
        if info is None:
            return LockInfo(None, None, None, seen[0].st_mtime, False, token)
        return LockInfo(info.pid, info.hostname, info.thread, info.acquired_at, False, token, info.start_token)
