"""The kernel strategy: ``flock`` on a sidecar lock file that only a holder of its exclusive lock deletes.

One descriptor per lock file per process (threads of the process are serialised by the
in-process FIFO lock first, so only one of them talks to the kernel). The file holds a
20-digit fencing counter followed by the holder record of the last exclusive holder,
written through the held descriptor. Descriptors are ``O_CLOEXEC`` and are closed
(without unlocking) in a forked child, so a child can never release its parent's hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from lockkit._internal import fork as _fork
from lockkit._internal.deadline import Deadline
from lockkit.files._holder import (
    hostname,
    lock_file_error,
    next_fence,
    open_lock_file,
    parse_json_line,
    record_info,
    record_prefix,
)
from lockkit.files._strategy import LockStrategy, StrategyName
from lockkit.resilience._backoff import Backoff
from lockkit.sync._mutex import Mutex

if TYPE_CHECKING:
    from lockkit.files._info import LockInfo

HEADER = 21  # 20 digits + newline
RECORD_MAX = 4096
MAX_IDLE_DESCRIPTORS = 128


class PathState:
    """This process's view of one lock file: its descriptor, shared-hold and pin counts.

    ``pins`` counts the threads using the descriptor right now (taking, holding or
    releasing the lock); it changes only under ``_states_mu``, and a pinned state is
    never evicted, so no thread's descriptor is closed under it.
    """

    __slots__ = ("dev", "fd", "file_mode", "gate", "ino", "path", "pins", "shared", "writer_gate")

    def __init__(self, path: str, file_mode: int = 0o600) -> None:
        self.path = path
        self.file_mode = file_mode  # for the lock file and its gate, when this process creates them
        self.pins = 0
        self.fd = -1
        self.writer_gate = -1
        self.dev = 0
        self.ino = 0
        self.shared = 0
        self.gate = Mutex(f"filelock-shared:{path}")

    def open(self) -> int:
        if self.fd < 0:
            fd = open_lock_file(self.path, os.O_RDWR | os.O_CREAT, self.file_mode)
            st = os.fstat(fd)
            self.fd, self.dev, self.ino = fd, st.st_dev, st.st_ino
        return self.fd

    def open_writer_gate(self) -> int:
        """The descriptor of ``<lock file>.gate``, which a waiting writer holds exclusively."""
        if self.writer_gate < 0:
            self.writer_gate = open_lock_file(self.path + ".gate", os.O_RDWR | os.O_CREAT, self.file_mode)
        return self.writer_gate

    def close(self) -> None:
        for name in ("fd", "writer_gate"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)  # closing never unlocks another descriptor of the same file

    def replaced(self) -> bool:
        """Whether our file was deleted or replaced (its link count dropped to zero).

        ``fstat`` on the held descriptor, no path lookup: tmp cleaners and operators
        do delete old lock files, and a lock on an orphaned inode excludes nobody.
        """
        return os.fstat(self.fd).st_nlink == 0


_states: OrderedDict[str, PathState] = OrderedDict()
_states_mu = threading.Lock()


def pin_state(key: str, path: str, file_mode: int = 0o600) -> PathState:
    """The process-wide state of ``key``, pinned for the caller (undo with :func:`unpin_state`).

    The cache is LRU-bounded: making a new state closes the descriptors of the least
    recently used states that nobody has pinned.
    """
    with _states_mu:
        st = _states.get(key)
        if st is None:
            st = _states[key] = PathState(path, file_mode)
            if len(_states) > MAX_IDLE_DESCRIPTORS:
                for other_key in list(_states):
                    if len(_states) <= MAX_IDLE_DESCRIPTORS:
                        break
                    other = _states[other_key]
                    if other.pins == 0 and other.shared == 0:
                        other.close()
                        del _states[other_key]
        else:
            _states.move_to_end(key)
            st.file_mode = file_mode  # the latest lock's mode decides at the next open
        st.pins += 1
        return st


def unpin_state(st: PathState) -> None:
    """Give back a pin taken by :func:`pin_state`."""
    with _states_mu:
        st.pins -= 1


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


def flock_until(fd: int, op: int, deadline: Deadline | None, make_backoff: Callable[[], Backoff]) -> bool:
    """``flock(fd, op)`` within ``deadline``: the one kernel wait of lockkit.

    ``deadline=None``: one attempt. A deadline without a time: block in the kernel (the
    GIL is released, no polling). A deadline with a time: non-blocking attempts with
    jittered exponential backoff, never sleeping past it.
    """
    if flock_nb(fd, op):
        return True
    if deadline is None:
        return False
    if deadline.at is None:
        fcntl.flock(fd, op)
        return True
    backoff = make_backoff()
    while deadline.sleep(backoff):
        if flock_nb(fd, op):
            return True
    return False


def kernel_lock(st: PathState, shared: bool, deadline: Deadline | None, make_backoff: Callable[[], Backoff]) -> bool:
    """Take the kernel lock on ``st``'s descriptor within ``deadline`` (see :func:`flock_until`).

    A lock taken on a file that was deleted or replaced meanwhile guards nothing: it is
    dropped and taken again on the file now at the path.

    Returns:
        ``True`` if taken, ``False`` if the attempt failed or the deadline passed.
    """
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        fd = st.open()
        try:
            if not flock_until(fd, op, deadline, make_backoff):
                return False
        except OSError as exc:
            raise lock_file_error(st.path, exc) from exc
        if not st.replaced():
            return True
        # Someone deleted or replaced the lock file: our lock guards nothing. Start over.
        fcntl.flock(fd, fcntl.LOCK_UN)
        st.close()


def gated(st: PathState, gate_op: int, deadline: Deadline | None, make_backoff: Callable[[], Backoff]) -> bool:
    """Pass the writer gate, then take the lock in the matching mode.

    ``gate_op`` is ``LOCK_EX`` for a waiting writer and ``LOCK_SH`` for a reader; the
    gate is held only for this step.

    A writer that must wait holds the gate while it waits, so readers that arrive after
    it queue behind it instead of keeping the lock shared forever: writers have
    priority across processes.
    """
    gate = st.open_writer_gate()
    try:
        try:
            passed = flock_until(gate, gate_op, deadline, make_backoff)
        except OSError as exc:
            raise lock_file_error(st.path + ".gate", exc) from exc
        return passed and kernel_lock(st, gate_op == fcntl.LOCK_SH, deadline, make_backoff)
    finally:
        # Unconditional, so an interruption right after taking the gate cannot leave it
        # held; unlocking a gate we did not get is a no-op (this thread is the only user
        # of the descriptor: the in-process lock serialises callers).
        with contextlib.suppress(OSError):
            fcntl.flock(gate, fcntl.LOCK_UN)


def kernel_unlock(st: PathState) -> None:
    """Release the kernel lock held through ``st``'s descriptor."""
    fcntl.flock(st.fd, fcntl.LOCK_UN)


def read_token(fd: int) -> int:
    """The lock file's fencing counter (0 if none was handed out yet)."""
    head = os.pread(fd, HEADER - 1, 0)
    return int(head) if head.isdigit() else 0


def next_token(fd: int) -> int:
    """Hand out the next fencing token (call under the exclusive lock)."""
    token = next_fence(read_token(fd))
    os.pwrite(fd, b"%020d\n" % token, 0)
    return token


def publish_exclusive(fd: int, path: str) -> None:
    """Write the holder record after the counter (under the exclusive lock).

    The counter itself is bumped only when a token is asked for (:func:`next_token`).
    """
    try:
        os.pwrite(fd, b"%s%.3f}\n" % (record_prefix(), time.time()), HEADER)
    except OSError as exc:  # a full disk, a file size limit: the caller drops the lock
        raise lock_file_error(path, exc) from exc


def read_holder(path: str) -> tuple[int, LockInfo | None]:
    """The fencing counter and the last exclusive holder record of a lock file."""
    fd = open_lock_file(path, os.O_RDONLY, check=False)  # only reading: any owner may be reported
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


def looks_like_lock_file(path: str) -> bool:
    """Whether a regular file can be a lock file rather than data.

    Empty (as ``flock(1)`` and ``touch`` leave a lock file), or starting with lockkit's
    header: the fencing counter's 20 digits, or the zero bytes left before a holder record
    when no token was handed out yet. Reads only the header, never reports content.
    """
    fd = open_lock_file(path, os.O_RDONLY, check=False)
    try:
        head = os.pread(fd, HEADER, 0)
    finally:
        os.close(fd)
    if not head:
        return True
    counter = head[: HEADER - 1]
    return len(head) == HEADER and (counter.isdigit() or counter == bytes(HEADER - 1))


def kernel_mode(path: str) -> str | None:
    """``"exclusive"``, ``"shared"`` or ``None``: how the file is flocked right now."""
    return kernel_state(path)[0]


def kernel_state(path: str) -> tuple[str | None, int | None]:
    """How the file is flocked right now, and the pid the kernel names for an exclusive hold.

    Reads ``/proc/locks`` (Linux), which does not disturb the lock; elsewhere probes
    with a non-blocking shared lock on a fresh descriptor (and knows no pid).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None, None
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return _probe_mode(path), None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    mode = None
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK" or parts[5] != ident:
            continue
        if parts[3] == "WRITE":
            return "exclusive", int(parts[4]) if parts[4].isdigit() else None
        mode = "shared"
    return mode, None


def _probe_mode(path: str) -> str | None:  # pragma: no cover - non-Linux fallback
    fd = open_lock_file(path, os.O_RDONLY, check=False)  # only reading: any owner may be reported
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
    """``flock`` on a sidecar lock file that only a holder of its exclusive lock deletes; the kernel frees it on crash.

    Shared holds of the threads of one process share one kernel ``LOCK_SH``, counted
    under the path's in-process gate. Across processes writers have priority: a writer
    that has to wait holds ``<lock file>.gate`` exclusively while it waits, and readers
    pass that gate (shared, for a moment) before taking the lock.
    """

    __slots__ = ("_make_backoff",)

    name: StrategyName = "kernel"

    def __init__(self, path: str, key: str, make_backoff: Callable[[], Backoff], file_mode: int = 0o600) -> None:
        super().__init__(path, key, file_mode)
        self._make_backoff = make_backoff

    def take(self, shared: bool, deadline: Deadline | None) -> PathState | None:
        st = pin_state(self.key, self.path, self.file_mode)  # unpinned by release(), or below on failure
        try:
            if self._take(st, shared, deadline):
                return st
        except BaseException:
            if not shared:  # whatever happened after flock, drop it (nobody else uses this fd now)
                with contextlib.suppress(OSError, ValueError):
                    if st.fd >= 0:
                        fcntl.flock(st.fd, fcntl.LOCK_UN)
            unpin_state(st)
            raise
        unpin_state(st)
        return None

    def _take(self, st: PathState, shared: bool, deadline: Deadline | None) -> bool:
        if shared:
            return self._take_shared(st, deadline)
        if deadline is None:  # the hot path: one syscall, no clock
            fd = st.fd if st.fd >= 0 else st.open()
            if not flock_nb(fd, fcntl.LOCK_EX):
                return False
            if st.replaced():
                fcntl.flock(fd, fcntl.LOCK_UN)
                st.close()
                if not kernel_lock(st, False, None, self._make_backoff):
                    return False
        elif not kernel_lock(st, False, None, self._make_backoff) and not gated(
            st, fcntl.LOCK_EX, deadline, self._make_backoff
        ):
            return False
        publish_exclusive(st.fd, st.path)
        return True

    def _take_shared(self, st: PathState, deadline: Deadline | None) -> bool:
        if not st.gate.acquire(timeout=0.0 if deadline is None else deadline.remaining()):
            return False
        try:
            if st.shared == 0 and not gated(st, fcntl.LOCK_SH, deadline, self._make_backoff):
                return False
            st.shared += 1
            return True
        finally:
            st.gate.release()

    def release(self, ticket: object, shared: bool) -> None:
        assert isinstance(ticket, PathState)
        try:
            if shared:
                with ticket.gate:
                    ticket.shared -= 1
                    if ticket.shared == 0:
                        kernel_unlock(ticket)
            else:
                kernel_unlock(ticket)
        finally:
            unpin_state(ticket)

    def still_held(self, ticket: object, shared: bool) -> bool:
        assert isinstance(ticket, PathState)
        if ticket.fd < 0:
            return False
        held = os.fstat(ticket.fd)
        try:
            at_path = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return held.st_nlink > 0 and (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)

    def fencing_token(self, ticket: object, shared: bool) -> int:
        assert isinstance(ticket, PathState)
        fd = ticket.open()
        return read_token(fd) if shared else next_token(fd)

    def holder(self) -> LockInfo | None:
        from lockkit.files._info import LockInfo

        mode, pid = kernel_state(self.path)
        if mode is None:
            return None
        token, info = read_holder(self.path)
        if mode == "shared" or (info is None and pid is None):
            return LockInfo(None, None, None, None, mode == "shared", token)
        if pid is not None and (info is None or info.pid != pid or info.hostname != hostname()):
            # The kernel names another process than the last record: a program that
            # writes no record (flock(1), another library) holds the file.
            return LockInfo(pid, hostname(), None, None, False, token, recorded=False)
        return info
