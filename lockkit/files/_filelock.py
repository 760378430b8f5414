"""FileLock: one lock for threads and processes, crash-safe, with holder records."""

from __future__ import annotations

import os
from _thread import allocate_lock
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING

from lockkit._internal import fork as _fork
from lockkit._internal.deadline import Deadline, check_timeout, monotonic, timeout_error
from lockkit._internal.paths import check_file_mode, check_path
from lockkit._internal.stats import Counters
from lockkit.exceptions import DeadlockError, LockLostError, LockTimeoutError, NotOwnerError
from lockkit.files._kernel import KernelStrategy
from lockkit.files._reaper import reaper
from lockkit.files._strategy import LockStrategy, StrategyName
from lockkit.resilience._backoff import Backoff
from lockkit.sync._guard import ConditionSupport
from lockkit.sync._manager import LockHandle, LockManager

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics
    from lockkit.files._info import LockInfo

#: The in-process layer of every FileLock: FIFO among the threads of this process.
process_locks = LockManager("filelock", show_keys=True)  # keys are lock file paths
#: Slow-path counters over every FileLock of this process (waits on other threads or processes).
_process_counters = Counters()
_process_mu = allocate_lock()


class _ModuleState:
    def _reset_after_fork(self) -> None:
        global _process_mu
        _process_mu = allocate_lock()


_module_state = _ModuleState()
_fork.register(_module_state)


def _release_orphans(strategy: LockStrategy, holds: list[_FileHold]) -> None:
    for hold in holds:
        try:
            if not hold.inherited:
                strategy.release(hold.ticket, hold.shared)
        finally:
            hold.handle._release_for_owner()


def lock_key(path: str) -> str:
    """The canonical identity of a lock file: real directory + file name (not followed)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.normcase(os.path.join(os.path.realpath(directory), name))


class _FileHold:
    """One thread's hold: the in-process handle, the strategy's ticket, wait accounting."""

    __slots__ = ("handle", "inherited", "shared", "ticket", "token", "waited")

    def __init__(self, handle: LockHandle, shared: bool, ticket: object) -> None:
        self.handle = handle
        self.inherited = False  # taken by the parent before a fork: its kernel part is not ours
        self.shared = shared
        self.ticket = ticket
        self.token: int | None = None
        self.waited: float | None = None  # seconds waited for another process, if any


class FileLock(ConditionSupport):
    """A lock on a file that excludes other threads *and* other processes.

    ``path`` is the lock file itself (a sidecar such as ``data.json.lock``, never the
    data file: an atomic rename gives the data file a new inode).

    Strategies:

    * ``"kernel"`` (default): ``flock`` on the lock file, which only a holder of its exclusive lock deletes. The
      kernel releases it when the holder dies, even on ``kill -9``. Shared mode makes
      readers in different processes hold it together. Needs a local file system (or
      NFS with working locks).
    * ``"marker"``: a marker directory published by ``rename()`` for file systems without
      working locks; a stale marker is broken only on proof (dead or reused PID on this
      host, or no heartbeat for ``stale_after`` seconds). Exclusive only.

    Fairness: threads of one process queue FIFO (only the head talks to the kernel);
    between processes the kernel decides. Ownership: each hold belongs to the thread
    that took it. Reentrancy: none (:class:`~lockkit.exceptions.DeadlockError`).

    Every exclusive acquisition gets a fencing token strictly greater than every
    earlier one for this lock file (a counter kept in the lock file), readable as
    :attr:`fencing_token` while held.

    Args:
        path: The lock file.
        shared: Acquire in shared mode (kernel strategy only).
        timeout: Default timeout for ``with`` (``None`` waits forever).
        strategy: ``"kernel"`` or ``"marker"``.
        stale_after: Marker strategy: seconds without heartbeat after which a marker
            is stale (a live holder refreshes it every ``stale_after / 3``).
        poll_initial: First backoff cap (seconds) while waiting with a finite timeout.
        poll_max: Largest backoff cap while waiting with a finite timeout.
        file_mode: Permission bits of the lock file and its sidecars when this lock
            creates them (minus the umask). The default ``0o600`` lets only the owner
            open them: anyone who can open a lock file can lock it and block every
            writer. Use ``0o660`` for a group of users sharing the directory.

    Raises:
        LockFileError: (on acquire) the lock file is a symlink, its directory is
            missing, or permissions forbid it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        shared: bool = False,
        timeout: float | None = None,
        strategy: StrategyName = "kernel",
        stale_after: float = 300.0,
        poll_initial: float = 0.0002,
        poll_max: float = 0.01,
        file_mode: int = 0o600,
    ) -> None:
        file_mode = check_file_mode(file_mode)
        if strategy not in ("kernel", "marker"):
            raise ValueError(f"strategy must be 'kernel' or 'marker', not {strategy!r}")
        if shared and strategy == "marker":
            raise ValueError("shared mode needs the kernel strategy (markers are exclusive)")
        if not stale_after > 0:
            raise ValueError("stale_after must be > 0 seconds")
        if not 0 < poll_initial <= poll_max:
            raise ValueError("poll intervals must satisfy 0 < poll_initial <= poll_max")
        self._path = os.path.abspath(check_path(path, "lock path"))
        self._key = lock_key(self._path)
        self._shared = shared
        self._timeout = check_timeout(True, timeout)
        self._poll = (float(poll_initial), float(poll_max))
        self._strategy: LockStrategy
        if strategy == "kernel":
            self._strategy = KernelStrategy(self._path, self._key, self._backoff, file_mode)
        else:
            from lockkit.files._marker import (
                MarkerStrategy,  # loaded only by those who use it
            )

            self._strategy = MarkerStrategy(self._path, self._key, float(stale_after), self._backoff, file_mode)
        self._stats = Counters()
        self._acquisitions = 0
        self._reset_after_fork()
        _fork.register(self)
        reaper.ensure_started()

    def _reset_after_fork(self) -> None:
        # In a forked child the forking thread keeps its in-process hold, so leaving a
        # ``with`` block works; the kernel lock or marker stays the parent's, and the
        # child's release never touches it. Holds of other threads are dropped.
        mine = getattr(self, "_holds", {}).get(get_ident())
        if mine is not None:
            mine.inherited = True
        self._holds: dict[int, _FileHold] = {} if mine is None else {get_ident(): mine}
        self._mu = allocate_lock()

    @property
    def path(self) -> str:
        """The absolute path of the lock file."""
        return self._path

    @property
    def shared(self) -> bool:
        """Whether this lock acquires in shared mode."""
        return self._shared

    @property
    def strategy(self) -> StrategyName:
        """``"kernel"`` or ``"marker"``."""
        return self._strategy.name

    def _backoff(self) -> Backoff:
        return Backoff(*self._poll)

    # -- acquire / release ------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock for the calling thread.

        Args:
            blocking: ``False`` makes one attempt.
            timeout: Seconds to wait at most (threads of this process and the kernel
                together); ``None`` waits forever, blocking in the kernel without
                polling; ``0`` is one attempt.

        Returns:
            ``True`` if acquired, ``False`` if the attempt or the timeout ran out.

        Raises:
            DeadlockError: The calling thread already holds this lock file.
            LockFileError: The lock file cannot be used (the message says why).
        """
        t = check_timeout(blocking, timeout)
        me = get_ident()
        if me in self._holds:
            if t == 0:  # a try cannot deadlock: answer like threading.Lock
                return False
            raise DeadlockError(f"lock file {self._path!r} is not reentrant: this thread already holds it")
        deadline: Deadline | None = None  # made on the first wait: the uncontended path reads no clock
        handle = process_locks._take(self._key, 0.0, self._shared)
        if handle is None:  # another thread of this process holds it: queue FIFO
            if t == 0:
                self._account(None, granted=False)
                return False
            deadline = Deadline(t)
            queued = False

            def count_queued() -> None:
                # Counted once this thread is in the queue, never before: a test (or
                # wait_until_queued) that sees the count may rely on the waiter being there.
                nonlocal queued
                queued = True
                with self._mu:
                    self._stats.queued(process_locks.queue_length(self._key) - 1, self._path, warn=False)

            handle = process_locks._take(self._key, deadline.remaining(), self._shared, count_queued)
            waited = monotonic() - deadline.start
            with self._mu:
                if not queued:  # the holder left before we queued: contended all the same
                    self._stats.contentions += 1
                self._stats.waited(waited, handle is not None, self._path)
            if handle is None:
                return False
        try:
            hold = self._take(handle, t, deadline)
        except BaseException:
            handle.release()
            raise
        if hold is None:
            handle.release()
            return False
        self._holds[me] = hold
        return True

    def _take(self, handle: LockHandle, t: float | None, deadline: Deadline | None) -> _FileHold | None:
        ticket = self._strategy.take(self._shared, None)  # one attempt, no clock
        if ticket is not None:
            self._acquisitions += 1  # under the in-process lock (exclusive) or the GIL (shared)
            return _FileHold(handle, self._shared, ticket)
        if t == 0:
            self._account(None, granted=False)
            return None
        since = monotonic()
        ticket = self._strategy.take(self._shared, Deadline(t) if deadline is None else deadline)
        if ticket is None:
            self._account(monotonic() - since, granted=False)
            return None
        hold = _FileHold(handle, self._shared, ticket)
        hold.waited = monotonic() - since  # accounted at release, outside the critical section
        return hold

    def _account(self, waited: float | None, *, granted: bool) -> None:
        """Count one acquisition that found another process in the way (``waited=None``: one attempt)."""
        with self._mu:
            if granted:
                self._acquisitions += 1
            self._stats.contentions += 1
            if waited is not None:
                self._stats.waited(waited, granted, self._path)
        with _process_mu:
            _process_counters.contentions += 1
            if waited is not None:
                _process_counters.waited(waited, granted, None)

    @staticmethod
    def process_statistics() -> LockStatistics:
        """Counters over every FileLock of this process (all lock files together).

        ``acquisitions``, ``waiting`` and ``peak_queue`` come from the in-process FIFO
        layer; ``contentions``, ``timeouts`` and wait times include waits for other
        processes (the kernel) as well as for other threads.
        """
        local = process_locks.statistics()
        with _process_mu:
            return _process_counters.merged(local, "filelocks", local.acquisitions, held=local.held)

    def release(self) -> None:
        """Release the calling thread's hold.

        Raises:
            NotOwnerError: The calling thread does not hold this lock.
        """
        hold = self._holds.pop(get_ident(), None)
        if hold is None:
            raise NotOwnerError(f"cannot release lock file {self._path!r}: this thread does not hold it")
        try:
            if not hold.inherited:
                self._strategy.release(hold.ticket, hold.shared)
        finally:
            hold.handle.release()
        if hold.waited is not None:
            self._account(hold.waited, granted=True)

    def __del__(self) -> None:
        # Collected while held: the lock would stay held for the life of the process.
        # A finalizer must not take locks, so the release goes to the reaper thread.
        holds = getattr(self, "_holds", None)
        if holds:
            strategy, orphans = self._strategy, list(holds.values())
            holds.clear()
            reaper.submit(lambda: _release_orphans(strategy, orphans), self._path)

    def __enter__(self) -> FileLock:
        if not self.acquire(True, self._timeout):
            raise self._timeout_error(self._timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _timeout_error(self, timeout: float | None) -> LockTimeoutError:
        """The :class:`~lockkit.exceptions.LockTimeoutError` for a timed-out wait, naming the holder."""
        return timeout_error(f"lock file {self._path!r}", timeout, resource=self._path, holder=self._describe_holder())

    # -- threading.Condition support --------------------------------------------------

    def _is_owned(self) -> bool:
        return get_ident() in self._holds

    def _describe_holder(self) -> str | None:
        try:
            info = self.holder()
        except OSError:
            return None
        if info is not None and info.pid is not None:
            return info.describe()
        local = process_locks.get_lock(self._key).statistics().owner
        if local is not None:
            return f"thread {local!r} of this process"
        return None if info is None else info.describe()

    # -- introspection ----------------------------------------------------------------

    @property
    def fencing_token(self) -> int:
        """The fencing token of the calling thread's hold.

        For an exclusive hold it is this acquisition's own token, strictly greater than
        every token handed out before for this lock file (it is allocated, under the
        lock, the first time it is read, so holds that never use a token cost no
        counter update). For a shared hold, the latest exclusive token.

        Raises:
            NotOwnerError: The calling thread does not hold this lock.
        """
        hold = self._holds.get(get_ident())
        if hold is None:
            raise NotOwnerError(f"this thread does not hold lock file {self._path!r}")
        if hold.token is None:
            if hold.inherited:
                raise NotOwnerError(f"lock file {self._path!r} is held by the parent process, not this forked child")
            # Exclusive: handed out now, under the lock (strictly above every earlier token).
            hold.token = self._strategy.fencing_token(hold.ticket, hold.shared)
        return hold.token

    def verify(self) -> None:
        """Check that the calling thread's hold still excludes everyone else.

        A lock file deleted or replaced while held (a tmp cleaner, an operator) guards
        nothing: another process can lock the new file at the path. A marker can be
        broken by another host that judged it stale. Call this right before an action
        that must not happen without the lock; lockkit's storage calls it at its commit
        point, under a short directory lock, so no commit follows a lost lock.

        Raises:
            LockLostError: The lock file or marker is no longer the one this hold locked.
            NotOwnerError: The calling thread does not hold this lock.
        """
        hold = self._holds.get(get_ident())
        if hold is None:
            raise NotOwnerError(f"this thread does not hold lock file {self._path!r}")
        if not self._strategy.still_held(hold.ticket, hold.shared):
            what = "marker was broken or removed" if self._strategy.name == "marker" else "file was deleted or replaced"
            raise LockLostError(
                f"lock file {self._path!r}: its {what} while held, so the lock no longer excludes other "
                "processes (lock files must not be deleted while in use)"
            )

    def holder(self) -> LockInfo | None:
        """Who holds the lock right now (any process), or ``None`` if it is free.

        The kernel strategy reads ``/proc/locks`` and the holder record, without
        touching the lock; the marker strategy reads the marker.
        """
        return self._strategy.holder()

    def held_by_me(self) -> bool:
        """Whether the calling thread holds this lock (through this object)."""
        return get_ident() in self._holds

    def locked(self) -> bool:
        """Whether anyone holds this lock file: a thread of this process or another process."""
        return process_locks.get_lock(self._key).locked() or self._strategy.holder() is not None

    def is_locked(self) -> bool:
        """Whether anyone holds or waits for it: threads of this process or other processes."""
        return process_locks.is_locked(self._key) or self._strategy.holder() is not None

    def queue_length(self) -> int:
        """Holders plus waiters among the threads of this process."""
        return process_locks.queue_length(self._key)

    def statistics(self) -> LockStatistics:
        """Counters of this FileLock object plus this process's queue for the file."""
        local = process_locks.get_lock(self._key).statistics()
        with self._mu:
            return self._stats.snapshot(
                self._path,
                self._acquisitions,
                held=local.held,
                readers=local.readers,
                owner=local.owner,
                waiting=local.waiting,
                queue_length=local.queue_length,
                peak_queue=max(self._stats.peak_queue, local.waiting),
            )

    def __repr__(self) -> str:
        mode = "shared" if self._shared else "exclusive"
        return f"<lockkit.FileLock {self._path!r} {self._strategy.name} {mode}>"
