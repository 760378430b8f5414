"""FileLockService: lock files derived from resource paths, failures reported as results instead of exceptions."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from lockkit._internal.deadline import Deadline, check_timeout
from lockkit.exceptions import (
    DeadlockError,
    LockkitError,
    LockTimeoutError,
    NotOwnerError,
)
from lockkit.files._filelock import FileLock, lock_key
from lockkit.files._strategy import StrategyName
from lockkit.resilience._backoff import Backoff
from lockkit.sync._multi import acquire_all

if TYPE_CHECKING:
    from lockkit.files._info import LockInfo

R = TypeVar("R")
Reason = Literal["timeout", "locked", "error"]
LockType = Literal["exclusive", "shared"]


class FileLockHandle:
    """A successful acquisition: release it, or use it as a context manager.

    Owned by the thread that acquired it; releasing twice raises
    :class:`~lockkit.exceptions.NotOwnerError`.
    """

    __slots__ = ("_locks",)

    def __init__(self, locks: list[FileLock]) -> None:
        self._locks = locks

    @property
    def lock_path(self) -> str:
        """The lock file (the first one for a multi-path handle)."""
        return self._locks[0].path

    @property
    def lock_paths(self) -> list[str]:
        """Every lock file this handle holds, in acquisition order."""
        return [lock.path for lock in self._locks]

    @property
    def fencing_token(self) -> int:
        """The fencing token of the (first) lock."""
        return self._locks[0].fencing_token

    def is_held(self) -> bool:
        """Whether the calling thread still holds every lock of this handle."""
        return bool(self._locks) and all(lock.held_by_me() for lock in self._locks)

    def release(self) -> None:
        """Release every lock of this handle (in reverse order).

        Raises:
            NotOwnerError: Already released, or called from another thread.
        """
        if not self._locks:
            raise NotOwnerError("this lock handle was already released")
        locks, self._locks = self._locks, []
        for lock in reversed(locks):
            lock.release()

    def __enter__(self) -> FileLockHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._locks:
            self.release()


@dataclass(frozen=True, slots=True)
class LockResult:
    """The outcome of :meth:`FileLockService.acquire`. True when it succeeded.

    Attributes:
        success: Whether the lock is held.
        handle: The handle to release (``None`` on failure).
        reason: ``"timeout"``, ``"locked"`` (a single attempt found it held) or
            ``"error"`` on failure; ``None`` on success.
        message: What went wrong, naming the holder where known.
        lock_path: The lock file used.
    """

    success: bool
    handle: FileLockHandle | None
    reason: Reason | None
    message: str | None
    lock_path: str

    def __bool__(self) -> bool:
        return self.success


class FileLockService:
    """Inter-process locks for resources (files), keyed by the resource's path.

    The lock file is ``<resource>.lock`` beside the resource, or, with ``lock_dir``,
    ``<lock_dir>/<name>.<hash of the full path>.lock``. Built on :class:`FileLock`, so
    it has the same fairness (FIFO among threads of a process), ownership (per
    thread) and reentrancy (none) rules.

    Args:
        lock_dir: Directory for lock files (default: beside each resource).
        default_timeout: Timeout used when ``acquire`` gets none (seconds).
        strategy: ``"kernel"`` or ``"marker"`` (see :class:`FileLock`).
    """

    def __init__(
        self,
        lock_dir: str | os.PathLike[str] | None = None,
        default_timeout: float = 30.0,
        strategy: StrategyName = "kernel",
    ) -> None:
        if strategy not in ("kernel", "marker"):
            raise ValueError(f"strategy must be 'kernel' or 'marker', not {strategy!r}")
        self._lock_dir = None if lock_dir is None else os.path.abspath(os.fspath(lock_dir))
        self._default_timeout = check_timeout(True, default_timeout)
        self._strategy: StrategyName = strategy

    def lock_path_for(self, resource_path: str | os.PathLike[str]) -> str:
        """The lock file used for ``resource_path``."""
        resource = os.path.abspath(os.fspath(resource_path))
        if self._lock_dir is None:
            return resource + ".lock"
        digest = hashlib.sha256(resource.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return os.path.join(self._lock_dir, f"{os.path.basename(resource)}.{digest}.lock")

    def _lock(self, resource_path: str | os.PathLike[str], type: LockType) -> FileLock:
        if type not in ("exclusive", "shared"):
            raise ValueError(f"type must be 'exclusive' or 'shared', not {type!r}")
        return FileLock(self.lock_path_for(resource_path), shared=type == "shared", strategy=self._strategy)

    def acquire(
        self,
        resource_path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        retry_interval: float = 0.1,
        max_retries: int | None = None,
        type: LockType = "exclusive",
    ) -> LockResult:
        """Try to lock ``resource_path``; never raises for a busy or broken lock.

        Args:
            resource_path: The resource (the lock file is derived from it).
            timeout: Seconds to wait (default: the service's ``default_timeout``).
            retry_interval: With ``max_retries``: seconds between attempts.
            max_retries: Make ``1 + max_retries`` single attempts, ``retry_interval``
                apart (polling instead of waiting in the kernel), within ``timeout``.
            type: ``"exclusive"`` or ``"shared"``.

        Returns:
            A :class:`LockResult`; ``reason`` says why it failed.
        """
        lock = self._lock(resource_path, type)
        t = self._default_timeout if timeout is None else check_timeout(True, timeout)
        try:
            ok = lock.acquire(timeout=t) if max_retries is None else self._poll(lock, t, retry_interval, max_retries)
        except DeadlockError:
            raise
        except (LockkitError, OSError) as exc:
            return LockResult(False, None, "error", str(exc), lock.path)
        if ok:
            return LockResult(True, FileLockHandle([lock]), None, None, lock.path)
        single = t == 0 or max_retries == 0
        message = str(lock._timeout_error(t))
        return LockResult(False, None, "locked" if single else "timeout", message, lock.path)

    @staticmethod
    def _poll(lock: FileLock, timeout: float | None, interval: float, retries: int) -> bool:
        if retries < 0 or interval < 0:
            raise ValueError("max_retries and retry_interval must be >= 0")
        deadline = Deadline(timeout)
        fixed = Backoff(interval, interval, jitter=0.0) if interval > 0 else None
        for attempt in range(retries + 1):
            if lock.acquire(timeout=0):
                return True
            if attempt == retries or deadline.expired():
                break
            if fixed is not None:
                deadline.sleep(fixed)
        return False

    def with_lock(self, resource_path: str | os.PathLike[str], fn: Callable[[], R], **options: Any) -> R:
        """Call ``fn()`` holding the lock; raise if it cannot be had.

        Raises:
            LockTimeoutError: The lock could not be acquired (names the holder).
            LockkitError: The lock file cannot be used.
        """
        result = self.acquire(resource_path, **options)
        if not result.success or result.handle is None:
            if result.reason == "error":
                raise LockkitError(result.message or "lock error")
            raise LockTimeoutError(
                result.message or "lock busy", resource=result.lock_path, timeout=options.get("timeout")
            )
        with result.handle:
            return fn()

    def acquire_many(
        self,
        resource_paths: Iterable[str | os.PathLike[str]],
        *,
        timeout: float | None = None,
        type: LockType = "exclusive",
    ) -> LockResult:
        """Lock several resources, in one sorted order (deadlock-free), within one deadline.

        On failure every lock already taken is released.
        """
        locks = list({lock_key(self.lock_path_for(p)): self._lock(p, type) for p in resource_paths}.values())
        if not locks:
            raise ValueError("acquire_many needs at least one path")
        t = self._default_timeout if timeout is None else check_timeout(True, timeout)
        failed: list[BaseException] = []

        def take(lock: FileLock, left: float | None) -> FileLock | None:
            try:
                return lock if lock.acquire(timeout=left) else None
            except (LockkitError, OSError) as exc:
                failed.append(exc)
                return None

        def by_lock_file(ls: Iterable[FileLock]) -> list[FileLock]:
            return sorted(ls, key=lambda lock: lock_key(lock.path))

        taken, missed = acquire_all(locks, take, FileLock.release, timeout=t, order=by_lock_file)
        if missed:
            if failed:
                return LockResult(False, None, "error", str(failed[0]), missed[0].path)
            return LockResult(False, None, "timeout", str(missed[0]._timeout_error(t)), missed[0].path)
        return LockResult(True, FileLockHandle(taken), None, None, taken[0].path)

    def is_locked(self, resource_path: str | os.PathLike[str]) -> bool:
        """Whether anyone (any process) holds or waits for the resource's lock."""
        return self._lock(resource_path, "exclusive").is_locked()

    def holder(self, resource_path: str | os.PathLike[str]) -> LockInfo | None:
        """Who holds the resource's lock, or ``None``."""
        return self._lock(resource_path, "exclusive").holder()
