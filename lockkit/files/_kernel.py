"""The kernel strategy: ``flock`` on a sidecar lock file that is never deleted.

One descriptor per lock file per process (threads of the process are serialised by the
in-process FIFO lock first, so only one of them talks to the kernel). The file holds a
20-digit fencing counter followed by the holder record of the last exclusive holder,
written through the held descriptor. Descriptors are ``O_CLOEXEC`` and are closed
(without unlocking) in a forked child, so a child can never release its parent's hold.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from lockkit._internal import fork as _fork
from lockkit._internal.deadline import Deadline
from lockkit.files._holder import (
    LockInfo,
    lock_file_error,
    open_lock_file,
    parse_json_line,
    record_info,
    record_prefix,
)
from lockkit.files._strategy import LockStrategy, StrategyName
from lockkit.resilience._backoff import Backoff
from lockkit.sync._mutex import Mutex

HEADER = 21  # 20 digits + newline
RECORD_MAX = 4096
MAX_IDLE_DESCRIPTORS = 128


class PathState:
    """This process's view of one lock file: its descriptor and shared-hold count."""

    __slots__ = ("dev", "fd", "gate", "ino", "path", "shared")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.dev = 0
        self.ino = 0
        self.shared = 0
        self.gate = Mutex(f"filelock-shared:{path}")

    def open(self) -> int:
        if self.fd < 0:
            fd = open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
            st = os.fstat(fd)
            self.fd, self.dev, self.ino = fd, st.st_dev, st.st_ino
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)  # closing never unlocks another descriptor of the same file

    def replaced(self) -> bool:
        """Whether our file was deleted or replaced (its link count dropped to zero).

        ``fstat`` on the held descriptor, no path lookup: tmp cleaners and operators
        do delete old lock files, and a lock on an orphaned inode excludes nobody.
        """
        return os.fstat(self.fd).st_nlink == 0


_states: OrderedDict[str, PathState] = OrderedDict()
_states_mu = threading.Lock()


def state_for(key: str, path: str, busy: Callable[[str], bool]) -> PathState:
    """The process-wide state of ``key`` (LRU-bounded: idle descriptors get closed)."""
    st = _states.get(key)
    if st is not None:  # callers hold the in-process lock for key, so it cannot be evicted now
        return st
    with _states_mu:
        st = _states.get(key)
        if st is None:
            st = _states[key] = PathState(path)
            if len(_states) > MAX_IDLE_DESCRIPTORS:
                for other_key in list(_states):
                    if len(_states) <= MAX_IDLE_DESCRIPTORS:
                        break
                    other = _states[other_key]
                    if other is not st and not busy(other_key) and other.shared == 0:
                        other.close()
                        del _states[other_key]
        return st


def _reset_after_fork() -> None:
    global _states_mu
    _states_mu = threading.Lock()
    for st in _states.values():
        st.close()
    _states.clear()


class _ForkHook:
    def _reset_after_fork(self) -> None:
        _reset_after_fork()


_hook = _ForkHook()
_fork.register(_hook)


def flock_nb(fd: int, op: int) -> bool:
    """One non-blocking ``flock``: ``True`` if taken."""
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def kernel_lock(st: PathState, shared: bool, deadline: Deadline | None, make_backoff: Callable[[], Backoff]) -> bool:
    """Take the kernel lock on ``st``'s descriptor.

    ``deadline=None``: one attempt. A deadline without a time: block in the kernel (the
    GIL is released, no polling). A deadline with a time: non-blocking attempts with
    jittered exponential backoff, never sleeping past it. A lock taken on a file that
    was deleted or replaced meanwhile guards nothing: it is dropped and taken again on
    the file now at the path.

    Returns:
        ``True`` if taken, ``False`` if the attempt failed or the deadline passed.
    """
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        fd = st.open()
        try:
            if not flock_nb(fd, op):
                if deadline is None:
                    return False
                if deadline.at is None:
                    fcntl.flock(fd, op)
                else:
                    backoff = make_backoff()
                    while True:
                        if not deadline.sleep(backoff):
                            return False
                        if flock_nb(fd, op):
                            break
        except OSError as exc:
            raise lock_file_error(st.path, exc) from exc
        if not st.replaced():
            return True
        # Someone deleted or replaced the lock file: our lock guards nothing. Start over.
        fcntl.flock(fd, fcntl.LOCK_UN)
        st.close()


def kernel_unlock(st: PathState) -> None:
    """Release the kernel lock held through ``st``'s descriptor."""
    fcntl.flock(st.fd, fcntl.LOCK_UN)


def read_token(fd: int) -> int:
    """The lock file's fencing counter (0 if none was handed out yet)."""
    head = os.pread(fd, HEADER - 1, 0)
    return int(head) if head.isdigit() else 0


def next_token(fd: int) -> int:
    """Hand out the next fencing token (call under the exclusive lock)."""
    token = read_token(fd) + 1
    os.pwrite(fd, b"%020d\n" % token, 0)
    return token


def publish_exclusive(fd: int) -> None:
    """Write the holder record after the counter (under the exclusive lock).

    The counter itself is bumped only when a token is asked for (:func:`next_token`).
    """
    os.pwrite(fd, b"%s%.3f}\n" % (record_prefix(), time.time()), HEADER)


def read_holder(path: str) -> tuple[int, LockInfo | None]:
    """The fencing counter and the last exclusive holder record of a lock file."""
    fd = open_lock_file(path, os.O_RDONLY)
    try:
        data = os.pread(fd, RECORD_MAX, 0)
    finally:
        os.close(fd)
    head = data[: HEADER - 1]
    token = int(head) if head.isdigit() else 0
    record = parse_json_line(data[HEADER:])
    if record is not None:
        record["token"] = token
    return token, None if record is None else record_info(record)


def kernel_mode(path: str) -> str | None:
    """``"exclusive"``, ``"shared"`` or ``None``: how the file is flocked right now.

    Reads ``/proc/locks`` (Linux), which does not disturb the lock; elsewhere probes
    with a non-blocking shared lock on a fresh descriptor.
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return _probe_mode(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    mode = None
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK" or parts[5] != ident:
            continue
        if parts[3] == "WRITE":
            return "exclusive"
        mode = "shared"
    return mode


def _probe_mode(path: str) -> str | None:  # pragma: no cover - non-Linux fallback
    fd = open_lock_file(path, os.O_RDONLY)
    try:
        if not flock_nb(fd, fcntl.LOCK_SH):
            return "exclusive"
        fcntl.flock(fd, fcntl.LOCK_UN)
        if not flock_nb(fd, fcntl.LOCK_EX):
            return "shared"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class KernelStrategy(LockStrategy):
    """``flock`` on a sidecar lock file that is never deleted; the kernel frees it on crash.

    Shared holds of the threads of one process share one kernel ``LOCK_SH``, counted
    under the path's gate.
    """

    __slots__ = ("_busy", "_make_backoff")

    name: StrategyName = "kernel"

    def __init__(self, path: str, key: str, busy: Callable[[str], bool], make_backoff: Callable[[], Backoff]) -> None:
        super().__init__(path, key)
        self._busy = busy
        self._make_backoff = make_backoff

    def take(self, shared: bool, deadline: Deadline | None) -> PathState | None:
        st = state_for(self.key, self.path, self._busy)
        if shared:
            return st if self._take_shared(st, deadline) else None
        if deadline is None:  # the hot path: one syscall, no clock
            fd = st.fd if st.fd >= 0 else st.open()
            if not flock_nb(fd, fcntl.LOCK_EX):
                return None
            if st.replaced():
                fcntl.flock(fd, fcntl.LOCK_UN)
                st.close()
                if not kernel_lock(st, False, None, self._make_backoff):
                    return None
        elif not kernel_lock(st, False, deadline, self._make_backoff):
            return None
        publish_exclusive(st.fd)
        return st

    def _take_shared(self, st: PathState, deadline: Deadline | None) -> bool:
        if not st.gate.acquire(timeout=0.0 if deadline is None else deadline.remaining()):
            return False
        try:
            if st.shared == 0 and not kernel_lock(st, True, deadline, self._make_backoff):
                return False
            st.shared += 1
            return True
        finally:
            st.gate.release()

    def release(self, ticket: object, shared: bool) -> None:
        assert isinstance(ticket, PathState)
        if shared:
            with ticket.gate:
                ticket.shared -= 1
                if ticket.shared == 0:
                    kernel_unlock(ticket)
        else:
            kernel_unlock(ticket)

    def fencing_token(self, ticket: object, shared: bool) -> int:
        assert isinstance(ticket, PathState)
        fd = ticket.open()
        return read_token(fd) if shared else next_token(fd)

    def holder(self) -> LockInfo | None:
        mode = kernel_mode(self.path)
        if mode is None:
            return None
        token, info = read_holder(self.path)
        if mode == "shared" or info is None:
            return LockInfo(None, None, None, None, mode == "shared", token)
        return info
