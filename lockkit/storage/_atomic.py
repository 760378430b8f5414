"""Durable atomic writes: the whole new file or the whole old one, never a torn one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal, overload

from lockkit._internal import fork as _fork
from lockkit._internal.paths import check_file_mode
from lockkit.exceptions import LockkitError, StorageError

#: Temp files of atomic_write: ``<name>.tmp.<12 hex digits>``.
TEMP_PATTERN = re.compile(r"\.tmp\.[0-9a-f]{12}$")
#: Leftovers of the marker strategy: unpublished marker directories ``<name>.<16 hex>.tmp``.
MARKER_LEFTOVER = re.compile(r"\.[0-9a-f]{16}\.tmp$")


#: Errors of the device rather than of the caller: a write that hits one is a StorageError.
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def storage_error(path: str, exc: OSError, action: str) -> StorageError:
    """A :class:`StorageError` naming ``path`` and why ``action`` failed."""
    reasons = {
        errno.ENOENT: "the directory does not exist",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file size limit is exceeded",
        errno.EIO: "input/output error on the device",
        errno.EISDIR: "it is a directory",
        errno.ELOOP: "too many levels of symbolic links",
    }
    why = reasons.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return StorageError(f"cannot {action} {path!r}: {why}", path=path)


def read_optional(path: str) -> bytes | None:
    """The whole content of ``path``, or ``None`` if it does not exist.

    Raises:
        StorageError: The file exists but cannot be read (the message names the path).
    """
    found = read_with_stat(path)
    return None if found is None else found[0]


def read_with_stat(path: str) -> tuple[bytes, os.stat_result] | None:
    """The whole content of ``path`` and the status of the file it was read from (``None`` if missing).

    Four system calls (open, fstat, read, close) where ``open(path, "rb").read()`` makes
    about eight: this is every lock-free read's path.

    Raises:
        StorageError: The file exists but cannot be read (the message names the path).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(path, exc, "read") from exc
    try:
        st = os.fstat(fd)
        size = st.st_size
        data = os.read(fd, size + 1)  # one byte more than expected: a short answer means the end
        if len(data) != size:  # the file is being changed in place (not by lockkit): read to its end
            chunks = [data]
            while chunk := os.read(fd, max(size, 1 << 16)):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data, st
    except OSError as exc:
        raise storage_error(path, exc, "read") from exc
    finally:
        os.close(fd)


def _trusted_link(st: os.stat_result) -> bool:
    """A symlink the caller may follow without asking: its own, or root's."""
    return st.st_uid in (os.geteuid(), 0)


def resolve_target(path: str, follow_symlinks: bool | None = None) -> str:
    """The file a write to ``path`` must replace, following symlinks at ``path``.

    ``follow_symlinks=None`` (the default) follows a symlink only when it is owned by
    the caller or by root (the kernel's ``fs.protected_symlinks`` rule for shared
    directories): a link another user planted is refused, so a privileged process is
    never redirected to a file of the planter's choosing. ``True`` follows any link,
    ``False`` none.

    Raises:
        StorageError: A symbolic link that may not be followed, or a loop.
    """
    current = path
    for _ in range(40):
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return current
        except OSError as exc:
            raise storage_error(path, exc, "write") from exc
        if not stat.S_ISLNK(st.st_mode):
            return current
        if follow_symlinks is False or (follow_symlinks is None and not _trusted_link(st)):
            why = (
                "symbolic links are not followed"
                if follow_symlinks is False
                else (
                    f"it is a symbolic link owned by uid {st.st_uid}, neither you nor root; "
                    "pass follow_symlinks=True to follow it"
                )
            )
            raise StorageError(f"refusing to write {path!r}: {why}", path=path)
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    raise storage_error(path, OSError(errno.ELOOP, "too many levels of symbolic links"), "write")


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable: one ``fsync`` of the directory, now."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Group:
    """The group commit state of one directory (guarded by its condition)."""

    __slots__ = ("cond", "failed", "flushing", "pending", "started")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.started = 0  # fsyncs begun; the one running, if any, is number ``started``
        self.flushing = False
        self.pending: dict[int, int] = {}  # target fsync number -> writers waiting for it
        self.failed: dict[int, OSError] = {}  # fsync number -> its error, while someone waits for it


class DirectorySync:
    """Group commit of directory fsyncs: writers that renamed at about the same time share one.

    A writer calls :meth:`sync` after its rename and returns only once a directory
    ``fsync`` that *started after* that call completed (an fsync already running when it
    arrives may have missed its rename, so it does not count). One thread per directory
    runs the fsync; writers that arrive meanwhile wait for the next one, which covers all
    of them. A lone writer runs its fsync at once: no delay is added to wait for others.

    If the fsync that covers a writer fails, that writer gets the error (as a
    :class:`StorageError`); a later successful fsync does not vouch for an earlier
    failed one.

    Interrupts: a ``KeyboardInterrupt`` in a waiting writer leaves the others waiting
    correctly; one in the flushing writer hands the flush to a waiter. In a forked child
    the state starts empty (the parent's waiters do not exist there).
    """

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._groups: dict[str, _Group] = {}
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._groups = {}

    def waiting(self, directory: str) -> int:
        """How many writers are in :meth:`sync` for ``directory`` now (the flushing one included)."""
        with self._mu:
            group = self._groups.get(os.path.abspath(directory or "."))
        if group is None:
            return 0
        with group.cond:
            return sum(group.pending.values())

    def sync(self, directory: str) -> None:
        """Return once a directory fsync that started after this call has completed.

        Raises:
            StorageError: That fsync failed (the message names the directory).
        """
        directory = os.path.abspath(directory or ".")  # one group per directory, whatever the cwd
        with self._mu:
            group = self._groups.get(directory)
            if group is None:
                group = self._groups[directory] = _Group()
        with group.cond:
            target = group.started + 1  # the first fsync to begin from now on
            group.pending[target] = group.pending.get(target, 0) + 1
            try:
                while group.started < target or (group.flushing and group.started == target):
                    if group.flushing:
                        group.cond.wait()
                        continue
                    self._flush(group, directory)
                error = group.failed.get(target)
            finally:
                left = group.pending[target] - 1
                if left:
                    group.pending[target] = left
                else:
                    del group.pending[target]
                    group.failed.pop(target, None)
                idle = not group.pending and not group.flushing
        if idle:
            self._forget(directory, group)
        if error is not None:
            raise storage_error(directory, error, "sync directory") from error

    def _forget(self, directory: str, group: _Group) -> None:
        """Drop an idle group, so that state is kept only for directories being written.

        A writer that looked the group up just before may still join it afterwards; it
        then syncs on its own (an fsync that started after its rename still covers it):
        only the sharing is lost, never the guarantee.
        """
        with self._mu:
            if self._groups.get(directory) is group:
                with group.cond:
                    if not group.pending and not group.flushing:
                        del self._groups[directory]

    def _flush(self, group: _Group, directory: str) -> None:
        """Run one fsync of ``directory`` (called holding ``group.cond``, which it drops meanwhile)."""
        group.flushing = True
        group.started += 1
        number = group.started
        error: OSError | None = None
        try:
            group.cond.release()
            try:
                fsync_directory(directory)
            except OSError as exc:
                error = exc
            finally:
                group.cond.acquire()
        finally:
            group.flushing = False
            if error is not None and number in group.pending:
                group.failed[number] = error
            # Everyone waiting is done (this fsync covered them) or must start the next
            # one: a broadcast is the group commit itself, not a lock hand-off.
            group.cond.notify_all()


#: The process's group commit of directory fsyncs (used by every durable write).
directory_sync = DirectorySync()


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w"] = "w",
    *,
    encoding: str = "utf-8",
    fsync: bool = True,
    preserve_mode: bool = True,
    file_mode: int = 0o600,
    follow_symlinks: bool | None = None,
) -> contextlib.AbstractContextManager[IO[str]]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["wb"],
    *,
    encoding: str = "utf-8",
    fsync: bool = True,
    preserve_mode: bool = True,
    file_mode: int = 0o600,
    follow_symlinks: bool | None = None,
) -> contextlib.AbstractContextManager[IO[bytes]]: ...


def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "w",
    *,
    encoding: str = "utf-8",
    fsync: bool = True,
    preserve_mode: bool = True,
    file_mode: int = 0o600,
    follow_symlinks: bool | None = None,
) -> contextlib.AbstractContextManager[IO[Any]]:
    """Write a file atomically and durably: readers see the old or the new content, whole.

    The recipe: a temp file ``<path>.tmp.<random>`` in the same directory
    (``O_CREAT|O_EXCL|O_NOFOLLOW``), write, flush, ``fsync``, ``os.replace`` over the
    target, ``fsync`` of the directory. The target keeps its mode (and owner where
    permitted); a new file gets ``file_mode & ~umask`` (``0o600``: readable by its
    owner only, unless you ask for more). Any exception inside the block or
    while publishing removes the temp file and leaves the target untouched.

    A symlink at ``path`` is written through (its target file is replaced and the link
    stays a link) when it is owned by the caller or by root, or when
    ``follow_symlinks=True``; a link planted by another user is refused.

    This does not lock: concurrent writers each publish a whole file and the last one
    wins. Use :class:`~lockkit.JsonDocument` (or a :class:`~lockkit.FileLock`) for
    read-modify-write.

    Args:
        path: The file to write.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: Text encoding for ``"w"``.
        fsync: Flush to stable storage (file and directory). ``False`` keeps atomicity
            but not durability across a power loss.
        preserve_mode: Keep the existing file's permission bits and owner.
        file_mode: Permission bits of a new file (minus the umask).
        follow_symlinks: ``None``: follow a symlink at ``path`` only if the caller or
            root owns it; ``True``: always; ``False``: never.

    Raises:
        StorageError: The directory is missing, read-only or not writable.
        ValueError: ``mode`` is not ``"w"`` or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError("mode must be 'w' or 'wb'")
    return _atomic_write(
        os.fspath(path),
        mode,
        encoding,
        fsync,
        preserve_mode,
        file_mode=check_file_mode(file_mode),
        follow_symlinks=follow_symlinks,
    )


@contextlib.contextmanager
def _atomic_write(
    path: str,
    mode: str,
    encoding: str,
    fsync: bool,
    preserve_mode: bool,
    commit: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
    file_mode: int = 0o600,
    follow_symlinks: bool | None = None,
    sync_directory: bool = True,
    fsynced: Callable[[float], None] | None = None,
) -> Iterator[IO[Any]]:
    """:func:`atomic_write`; ``commit(target)``, if given, is held around the final rename.

    ``sync_directory=False`` leaves the directory fsync to the caller (who calls
    ``directory_sync.sync``, after releasing its locks or once for several files);
    ``fsynced(seconds)`` is told how long the file's fsync took.
    """
    target = resolve_target(path, follow_symlinks)
    directory = os.path.dirname(target)
    existing: os.stat_result | None = None
    if preserve_mode:
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(target)
    tmp = f"{target}.tmp.{secrets.token_hex(6)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode)
    except OSError as exc:
        raise storage_error(target, exc, "write") from exc
    try:
        if existing is not None:
            os.fchmod(fd, existing.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, existing.st_uid, existing.st_gid)
        # An explicit buffer size: no isatty() probe of a file that is never a terminal.
        f = os.fdopen(fd, mode, buffering=1 << 16, encoding=None if "b" in mode else encoding)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        # No ``with f``: closing flushes what is still buffered, and on a full disk that
        # raises again; an OSError from an implicit close would replace the
        # StorageError below (it does on Python 3.15). Closed explicitly here, and
        # quietly on the way out of a failure.
        try:
            yield f
        except OSError as exc:
            if isinstance(exc, LockkitError) or exc.errno not in _DISK_ERRORS:
                raise
            raise storage_error(target, exc, "write") from exc  # the caller's write hit a full disk
        try:
            f.flush()
            if fsync:
                t0 = time.monotonic()
                os.fsync(f.fileno())
                if fsynced is not None:
                    fsynced(time.monotonic() - t0)
            f.close()
        except OSError as exc:
            raise storage_error(target, exc, "write") from exc
        try:
            if commit is None:
                os.replace(tmp, target)
            else:
                with commit(target):
                    os.replace(tmp, target)
        except OSError as exc:
            if isinstance(exc, LockkitError):
                raise
            raise storage_error(target, exc, "replace") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # closing flushes again: on a full disk that fails too
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync and sync_directory:
        directory_sync.sync(directory)


class AtomicWriter:
    """An object-style writer over :func:`atomic_write`, for code that passes a writer around.

    Args:
        fsync: Durable writes (see :func:`atomic_write`).
    """

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync

    def write(self, path: str | os.PathLike[str], content: str | bytes) -> None:
        """Replace ``path`` with ``content`` (text is UTF-8 encoded), atomically."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        if not isinstance(data, bytes):
            raise TypeError(f"content must be str or bytes, not {type(content).__name__}")
        with atomic_write(path, "wb", fsync=self.fsync) as f:
            f.write(data)

    def write_json(self, path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> None:
        """Serialise ``data`` as JSON (before touching the file) and write it atomically."""
        text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
        self.write(path, text)


def _open_paths() -> set[str] | None:
    """Paths any process we can inspect has open (``None`` without ``/proc``)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    found: set[str] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                found.add(os.readlink(f"{fd_dir}/{fd}"))
    return found


def sweep_temp_files(
    directory: str | os.PathLike[str], older_than: float = 3600.0, *, dry_run: bool = False
) -> list[str]:
    """Remove leftovers of crashed writers in ``directory`` and return their paths.

    Removes ``atomic_write`` temp files and marker-strategy leftovers that are older
    than ``older_than`` seconds and that no process has open (checked in ``/proc``
    where available). Data files and lock files are never touched.
    """
    base = os.fspath(directory)
    now = time.time()
    candidates = []
    for entry in os.scandir(base):
        if not (TEMP_PATTERN.search(entry.name) or MARKER_LEFTOVER.search(entry.name)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if now - st.st_mtime < older_than:
            continue
        if entry.is_file(follow_symlinks=False) or (
            entry.is_dir(follow_symlinks=False) and MARKER_LEFTOVER.search(entry.name)
        ):
            candidates.append(entry.path)
    if not candidates:
        return []
    busy = _open_paths() or set()
    removed = []
    for path in candidates:
        if os.path.abspath(path) in busy:
            continue
        if dry_run:
            removed.append(path)
            continue
        if os.path.isdir(path):
            if _remove_marker_leftover(path, busy):
                removed.append(path)
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def _remove_marker_leftover(path: str, busy: set[str]) -> bool:
    """Remove an unpublished marker directory of a crashed process (its owner file, then it)."""
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    for name in names:
        inner = os.path.join(path, name)
        if not name.startswith("owner.") or os.path.abspath(inner) in busy:
            return False  # not ours to judge, or still open
        with contextlib.suppress(FileNotFoundError):
            os.unlink(inner)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True
