"""Holder records: who holds a lock, and proof that a process is dead."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lockkit.exceptions import LockFileError

if TYPE_CHECKING:
    from lockkit.files._info import LockInfo


@lru_cache(maxsize=1)
def hostname() -> str:
    """This host's name (cached)."""
    return os.uname().nodename  # what gethostname() returns, without loading socket


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's boot id (changes at every boot), or ``""`` when unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot, from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    return rest[19] if len(rest) > 19 else None


_start_tokens: dict[int, str | None] = {}


def start_token(pid: int | None = None) -> str | None:
    """``"<boot id>:<start time>"`` for ``pid`` (default: this process), or ``None``."""
    pid = os.getpid() if pid is None else pid
    if pid == os.getpid() and pid in _start_tokens:
        return _start_tokens[pid]
    start = process_start(pid)
    token = None if start is None else f"{boot_id()}:{start}"
    if pid == os.getpid():
        _start_tokens[pid] = token
    return token


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie answers kill(0) but has finished: it holds nothing. A zombie *leader*
    # whose other threads still run is alive, though: judge the whole thread group.
    if _task_state(f"/proc/{pid}/stat") != "Z":
        return True
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any(_task_state(f"/proc/{pid}/task/{tid}/stat") not in ("Z", "X", None) for tid in tasks)


def _task_state(stat_path: str) -> str | None:
    """The state letter of ``/proc/.../stat`` (``None`` if it cannot be read)."""
    try:
        with open(stat_path, encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2 : data.rfind(")") + 3] or None


def alive_here(info: LockInfo) -> bool:
    """Whether the holder is provably alive: this host, its pid alive, and the same process (start token)."""
    if info.pid is None or info.hostname != hostname() or not info.start_token:
        return False
    return pid_alive(info.pid) and start_token(info.pid) == info.start_token


def dead_reason(info: LockInfo) -> str | None:
    """Why the holder is provably dead, or ``None`` if it may be alive.

    Only records from this host are judged; a record from another host is never
    PID-probed.
    """
    if info.pid is None or info.hostname != hostname():
        return None
    recorded = info.start_token
    if recorded and boot_id() and not recorded.startswith(boot_id() + ":"):
        return "the host rebooted since the lock was taken"
    if not pid_alive(info.pid):
        return f"process {info.pid} is dead"
    if recorded:
        now = start_token(info.pid)
        if now is not None and now != recorded:
            return f"pid {info.pid} was reused by another process"
    return None


class _ThreadRecord(threading.local):
    """The calling thread's cached record prefix (a new thread starts without one)."""

    key: tuple[int, str] | None = None
    prefix: bytes = b""


_record = _ThreadRecord()
_pid = [os.getpid()]  # this process's pid, kept current by a fork hook (no getpid() per acquisition)
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def record_prefix() -> bytes:
    """The calling thread's holder record up to ``"at":`` (cached per thread and process).

    Callers append the acquisition time and a closing brace and newline. The cache is
    thread-local, so a new thread that reuses a finished thread's ident never inherits
    its name, and it is rebuilt when the thread is renamed or the process forks.
    """
    thread = threading.current_thread()
    key = (_pid[0], thread.name)
    if _record.key != key:
        record = {"pid": key[0], "host": hostname(), "start": start_token(), "thread": thread.name}
        body = json.dumps(record, separators=(",", ":")).encode()
        _record.prefix = body[:-1] + b',"shared":false,"at":'
        _record.key = key
    return _record.prefix


def record_for(pid: int, thread: str) -> bytes:
    """A complete holder record naming another process of this host (``lockkit run``'s command)."""
    record = {"pid": pid, "host": hostname(), "start": start_token(pid), "thread": thread, "shared": False}
    body = json.dumps(record, separators=(",", ":")).encode()
    return body[:-1] + b',"at":%.3f}\n' % time.time()


def next_fence(stored: int) -> int:
    """The fencing token after ``stored``: strictly greater, and at least the clock in µs.

    Seeding from the clock keeps tokens increasing when the counter is lost (its file
    deleted and recreated): a new counter starts above every token handed out before,
    unless the clock stepped back further than the time since.
    """
    return max(stored + 1, time.time_ns() // 1000)


def record_info(record: dict[str, Any]) -> LockInfo:
    """Build a :class:`LockInfo` from a parsed record (tolerating missing fields)."""
    from lockkit.files._info import LockInfo

    pid = record.get("pid")
    token = record.get("token")
    at = record.get("at")
    return LockInfo(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        hostname=record.get("host") if isinstance(record.get("host"), str) else None,
        thread=record.get("thread") if isinstance(record.get("thread"), str) else None,
        acquired_at=float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None,
        shared=bool(record.get("shared", False)),
        fencing_token=token if isinstance(token, int) and not isinstance(token, bool) else 0,
        start_token=record.get("start") if isinstance(record.get("start"), str) else None,
    )


def shares_with_others(file_mode: int) -> bool:
    """Whether ``file_mode`` lets other users write: then their lock files are trusted."""
    return bool(file_mode & 0o022)


def check_owner(path: str, st: os.stat_result, file_mode: int) -> None:
    """Refuse a lock artefact owned by another non-root user, unless the lock is shared.

    A lock file, gate, fence or marker that another local user controls lets them block
    the lock forever or rewind its fencing tokens (ssh's StrictModes rule for its files).

    Raises:
        LockFileError: (also a ``PermissionError``) naming the file and its owner.
    """
    if st.st_uid in (os.geteuid(), 0) or shares_with_others(file_mode):
        return
    raise LockFileError(
        f"cannot use lock file {path!r}: it is owned by uid {st.st_uid}, neither you nor root "
        "(another user's lock file could block this lock or rewind its fencing tokens); remove it, "
        "or give the lock a file_mode with group access (0o660) if users share this directory",
        path=path,
        errno=errno.EPERM,
    )


def open_lock_file(path: str, flags: int, mode: int = 0o600, *, check: bool = True) -> int:
    """Open a lock-related file with ``O_NOFOLLOW|O_CLOEXEC``, translating errors.

    With ``check`` the file must be owned by the caller or root (see :func:`check_owner`,
    with ``mode`` as the lock's file mode).

    Raises:
        LockFileError: The path is a symbolic link, its directory is missing,
            permissions forbid it, or another user owns it; the message names the path
            and the rule.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise lock_file_error(path, exc) from exc
    if check:
        try:
            check_owner(path, os.fstat(fd), mode)
        except BaseException:
            os.close(fd)
            raise
    return fd


def lock_file_error(path: str, exc: OSError) -> LockFileError:
    """A :class:`LockFileError` explaining ``exc`` for ``path``."""
    if exc.errno == errno.ELOOP:
        why = "it is a symbolic link (lock files must not be links)"
    elif exc.errno == errno.ENOENT:
        why = "its directory does not exist"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif exc.errno == errno.EROFS:
        why = "the file system is read-only"
    elif exc.errno == errno.EISDIR:
        why = "it is a directory"
    else:
        why = exc.strerror or str(exc)
    return LockFileError(f"cannot use lock file {path!r}: {why}", path=path, errno=exc.errno)


def parse_json_line(data: bytes) -> dict[str, Any] | None:
    """The first line of ``data`` as a JSON object, or ``None`` if it is not one."""
    line = data.split(b"\n", 1)[0].strip(b"\0 ")
    if not line:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
