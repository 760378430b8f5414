"""The marker strategy: a marker directory, for file systems without working locks.

A marker is a directory at the lock path holding one uniquely named owner file,
``owner.<token>``, with the holder's record; the owner file's mtime is the heartbeat,
refreshed by a live holder every ``stale_after / 3`` seconds. The directory is built
under a temporary name and published with ``rename()``, which fails while the lock
path is a non-empty directory: it appears complete or not at all, and only one
publisher wins.

Every removal names one owner file: release unlinks the holder's own owner file, and
a breaker unlinks the owner file it judged stale. Neither ever removes a name that
another holder published, so neither a paused holder nor a slow breaker can remove
someone else's marker. The empty directory left behind means "free": the next
``rename()`` replaces it (``rename()`` replaces an empty directory, never a full one).

A marker is stale only on proof: its holder is on this host and is dead or its PID
was reused, or (for a holder that cannot be checked directly) its heartbeat is older
than ``stale_after``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline
from lockkit._internal.threads import start_daemon
from lockkit.exceptions import LockFileError
from lockkit.files._holder import (
    alive_here,
    check_owner,
    dead_reason,
    lock_file_error,
    next_fence,
    open_lock_file,
    parse_json_line,
    record_for,
    record_info,
    record_prefix,
)
from lockkit.files._info import LockInfo
from lockkit.files._strategy import LockStrategy, StrategyName
from lockkit.resilience._backoff import Backoff

_OWNER = "owner."


@dataclass(frozen=True, slots=True)
class Marker:
    """A published marker as read: its owner file's path, stat and parsed record."""

    owner: str
    st: os.stat_result
    info: LockInfo | None


def _not_a_marker(path: str) -> LockFileError:
    return LockFileError(
        f"cannot use lock file {path!r}: it is not a marker directory (marker locks publish a directory "
        "there; a regular file is a kernel-strategy lock file or left by another program)",
        path=path,
        errno=errno.ENOTDIR,
    )


def _refuse_non_directory(path: str, exc: OSError) -> None:
    """Raise for a symbolic link or a regular file at the lock path."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise lock_file_error(path, OSError(errno.ELOOP, "symbolic link")) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise _not_a_marker(path) from exc


def _owner_names(path: str) -> list[str]:
    """The owner files in the marker directory at ``path`` (empty if there is none)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []  # no marker (one may be published meanwhile: the caller tries again)
    except NotADirectoryError as exc:
        _refuse_non_directory(path, exc)
        return []  # replaced by a marker meanwhile
    except OSError as exc:
        raise lock_file_error(path, exc) from exc
    if os.path.islink(path):
        raise lock_file_error(path, OSError(errno.ELOOP, "symbolic link"))
    return [n for n in names if n.startswith(_OWNER)]


def looks_like_marker(path: str) -> bool:
    """Whether a directory can be a marker: it holds nothing but owner files (or nothing)."""
    return all(n.startswith(_OWNER) for n in os.listdir(path))


def read_marker(path: str, file_mode: int | None = None) -> Marker | None:
    """The marker at ``path``: its owner file, stat and record; ``None`` if there is none.

    With ``file_mode`` (the lock's), a marker owned by another non-root user is refused
    (see :func:`~lockkit.files._holder.check_owner`); without it, any marker is reported.

    Raises:
        LockFileError: The path is a regular file or a symbolic link, cannot be read,
            or (with ``file_mode``) another user owns the marker.
    """
    for name in _owner_names(path):
        owner = os.path.join(path, name)
        try:
            fd = os.open(owner, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        except OSError as exc:
            raise lock_file_error(owner, exc) from exc
        try:
            st = os.fstat(fd)
            if file_mode is not None:
                check_owner(owner, st, file_mode)
            record = parse_json_line(os.pread(fd, 4096, 0))
        finally:
            os.close(fd)
        return Marker(owner, st, None if record is None else record_info(record))
    return None


def stale_reason(marker: Marker, stale_after: float) -> str | None:
    """Why this marker is stale, or ``None`` while its holder may be alive.

    A holder on this host whose pid and start time match a live process is never
    stale, whatever its heartbeat says (a wall-clock step forward must not break it);
    the heartbeat age judges only holders that cannot be checked directly.
    """
    info = marker.info
    if info is not None:
        dead = dead_reason(info)
        if dead is not None:
            return dead
        if alive_here(info):
            return None
    age = time.time() - marker.st.st_mtime
    if age > stale_after:
        return f"no heartbeat for {age:.1f} s (stale after {stale_after:g} s)"
    return None


class MarkerHold:
    """A marker this process holds: its owner file and that file's descriptor."""

    __slots__ = ("dev", "fd", "ino", "owner", "path", "stale_after")

    def __init__(self, path: str, owner: str, fd: int, stale_after: float) -> None:
        st = os.fstat(fd)
        self.path = path
        self.owner = owner
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.stale_after = stale_after

    def still_ours(self) -> bool:
        """Whether our owner file is still published at the lock path."""
        try:
            st = os.stat(self.owner, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
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
                self._thread = start_daemon(self._run, "lockkit-heartbeat")
            elif hold.stale_after / 3 < self._interval:
                self._wake.set()  # a shorter period than the thread sleeps for: wake it now
            else:
                return

    def remove(self, hold: MarkerHold) -> None:
        with self._mu:
            self._holds.pop(id(hold), None)

    def _run(self) -> None:
        while True:
            # Clear before the snapshot: an add() after it sets the event again. (Cleared
            # after the wait, a wake-up set in between was lost, and a marker with a
            # shorter period went without heartbeat for a whole longer one.)
            self._wake.clear()
            with self._mu:
                holds = list(self._holds.values())
                interval = min((h.stale_after / 3 for h in holds), default=60.0)
                self._interval = interval
            for hold in holds:
                with contextlib.suppress(OSError):  # released meanwhile
                    os.utime(hold.fd)  # touches our own owner file, even if it was unlinked
            self._wake.wait(max(0.01, interval))

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._holds = {}  # the child holds none of its parent's markers
        self._wake = threading.Event()
        self._thread = None
        self._interval = 60.0


heartbeat = _Heartbeat()
_fork.register(heartbeat)


def fence_bump(path: str, file_mode: int = 0o600) -> int:
    fd = open_lock_file(path + ".fence", os.O_RDWR | os.O_CREAT, file_mode)
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
        fd = os.open(path + ".fence", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise lock_file_error(path + ".fence", exc) from exc
    try:
        head = os.pread(fd, 20, 0)
    finally:
        os.close(fd)
    return int(head) if head.isdigit() else 0


def _directory_mode(file_mode: int) -> int:
    """A marker directory's mode for ``file_mode``: whoever may write the files may break markers."""
    mode = 0o700
    if file_mode & 0o060:
        mode |= 0o070
    if file_mode & 0o006:
        mode |= 0o007
    return mode


def try_publish(path: str, stale_after: float, file_mode: int = 0o600) -> MarkerHold | None:
    """Publish our marker if there is none; ``None`` if one is published."""
    token = os.urandom(8).hex()
    tmp = f"{path}.{token}.tmp"
    name = _OWNER + token
    try:
        os.mkdir(tmp, _directory_mode(file_mode))
    except OSError as exc:
        raise lock_file_error(path, exc) from exc
    fd = -1
    published = False
    try:
        # O_EXCL in our own new directory: the file is ours, no owner check to make
        fd = open_lock_file(os.path.join(tmp, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, file_mode, check=False)
        try:
            record = memoryview(b"%s%.3f}\n" % (record_prefix(), time.time()))
            while record:  # a short write (a size limit, a nearly full disk) must not publish half a record
                record = record[os.write(fd, record) :]
            os.rename(tmp, path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return None  # someone else's marker is published
            if exc.errno == errno.ENOTDIR:
                _refuse_non_directory(path, exc)
                return None  # a marker was published meanwhile
            raise lock_file_error(path, exc) from exc
        published = True
        return MarkerHold(path, os.path.join(path, name), fd, stale_after)
    finally:
        if not published:  # take our temporary directory away
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(tmp, name))
            with contextlib.suppress(OSError):
                os.rmdir(tmp)


def break_marker(path: str, judged: Marker, stale_after: float, reason: str) -> bool:
    """Remove the marker judged stale; ``True`` if this call removed it.

    Only the judged owner file is unlinked, after checking it once more: a marker
    released and re-taken meanwhile has another owner file and is left alone.
    """
    try:
        st = os.stat(judged.owner, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False  # released or broken meanwhile
    again = Marker(judged.owner, st, judged.info)
    if (st.st_dev, st.st_ino) != (judged.st.st_dev, judged.st.st_ino) or stale_reason(again, stale_after) is None:
        return False  # it showed a heartbeat: not ours to break
    try:
        os.unlink(judged.owner)
    except (FileNotFoundError, NotADirectoryError):
        return False
    info = judged.info
    _log.warning("lockkit.marker_broken", lock=path, reason=reason, holder_pid=info.pid if info else None)
    return True


class MarkerStrategy(LockStrategy):
    """A marker directory published by ``rename()``, for file systems without working locks.

    Exclusive only. A stale marker is broken only on proof (see :func:`stale_reason`).
    """

    __slots__ = ("_make_backoff", "_stale_after")

    name: StrategyName = "marker"

    def __init__(
        self,
        path: str,
        key: str,
        stale_after: float,
        make_backoff: Callable[[], Backoff],
        file_mode: int = 0o600,
    ) -> None:
        super().__init__(path, key, file_mode)
        self._stale_after = stale_after
        self._make_backoff = make_backoff

    def take(self, shared: bool, deadline: Deadline | None) -> MarkerHold | None:
        backoff: Backoff | None = None
        while True:
            hold = try_publish(self.path, self._stale_after, self.file_mode)
            if hold is not None:
                heartbeat.add(hold)
                return hold
            seen = read_marker(self.path, self.file_mode)
            if seen is None:
                continue  # released meanwhile: try again at once
            reason = stale_reason(seen, self._stale_after)
            if reason is not None and break_marker(self.path, seen, self._stale_after, reason):
                continue
            # A live holder: wait our turn.
            if deadline is None:
                return None
            backoff = backoff or self._make_backoff()
            if not deadline.sleep(backoff):
                return None

    def release(self, ticket: object, shared: bool) -> None:
        """Unlink our own owner file; the empty directory is replaced by the next ``rename()``."""
        assert isinstance(ticket, MarkerHold)
        heartbeat.remove(ticket)
        try:
            try:
                os.unlink(ticket.owner)
            except (FileNotFoundError, NotADirectoryError):
                _log.warning("lockkit.marker_lost", lock=ticket.path)
        finally:
            os.close(ticket.fd)

    def still_held(self, ticket: object, shared: bool) -> bool:
        assert isinstance(ticket, MarkerHold)
        return ticket.still_ours()

    def fencing_token(self, ticket: object, shared: bool) -> int:
        return fence_bump(self.path, self.file_mode)

    @staticmethod
    def hand_over(ticket: object, pid: int, thread: str) -> None:
        """Make the marker name process ``pid`` as its holder (it works under the lock).

        Staleness is then judged on that process: while it lives on this host the
        marker is never stale, even if the process that took the lock is gone.
        """
        assert isinstance(ticket, MarkerHold)
        record = record_for(pid, thread)
        os.pwrite(ticket.fd, record, 0)
        os.ftruncate(ticket.fd, len(record))

    def holder(self) -> LockInfo | None:
        seen = read_marker(self.path)
        if seen is None:
            return None
        info = seen.info
        token = fence_value(self.path)
        if info is None:
            return LockInfo(None, None, None, seen.st.st_mtime, False, token)
        return LockInfo(info.pid, info.hostname, info.thread, info.acquired_at, False, token, info.start_token)
