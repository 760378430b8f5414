"""Small context-manager helpers shared by the locks."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol


class _ModeLock(Protocol):
    def _enter_mode(self, shared: bool, timeout: float | None) -> None: ...
    def release(self) -> None: ...


class ModeGuard:
    """``with lock.read():`` / ``with lock.write():`` — acquire in one mode, release on exit."""

    __slots__ = ("_lock", "_shared", "_timeout")

    def __init__(self, lock: _ModeLock, shared: bool, timeout: float | None) -> None:
        self._lock = lock
        self._shared = shared
        self._timeout = timeout

    def __enter__(self) -> None:
        self._lock._enter_mode(self._shared, self._timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


class ConditionSupport:
    """What :class:`threading.Condition` needs from an exclusive lock besides ``_is_owned``."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, state: None) -> None:
        self.acquire()
