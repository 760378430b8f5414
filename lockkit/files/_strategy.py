"""The one interface every file-lock mechanism implements.

:class:`~lockkit.FileLock` holds the in-process FIFO lock for its path before it calls
a strategy, so a strategy is only ever entered by one thread of this process per lock
file in exclusive mode (shared holds of one process are counted by the kernel strategy
itself). A strategy never measures time for statistics and never logs while it
succeeds at once: the caller does that, only when it had to wait.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Literal

from lockkit._internal.deadline import Deadline

if TYPE_CHECKING:
    from lockkit.files._info import LockInfo

#: The mechanisms a :class:`~lockkit.FileLock` can use.
StrategyName = Literal["kernel", "marker"]


class LockStrategy(ABC):
    """One mechanism that excludes other processes from a lock file.

    Args:
        path: The absolute path of the lock file.
        key: The canonical identity of the lock file in this process.
        file_mode: Permission bits for the files the strategy creates (minus the umask).

    """

    __slots__ = ("file_mode", "key", "path")

    name: StrategyName

    def __init__(self, path: str, key: str, file_mode: int = 0o600) -> None:
        self.path = path
        self.key = key
        self.file_mode = file_mode

    @abstractmethod
    def take(self, shared: bool, deadline: Deadline | None) -> object | None:
        """Take the lock; ``deadline=None`` makes one attempt and reads no clock.

        Returns:
            A ticket that :meth:`release` and :meth:`fencing_token` take back, or
            ``None`` when the attempt failed or the deadline passed.

        Raises:
            LockFileError: The lock file cannot be used.

        """

    @abstractmethod
    def release(self, ticket: object, shared: bool) -> None:
        """Give up the hold that :meth:`take` returned ``ticket`` for."""

    @abstractmethod
    def still_held(self, ticket: object, shared: bool) -> bool:
        """Whether the hold still excludes others: its lock file or marker is still the one at the path."""

    @abstractmethod
    def fencing_token(self, ticket: object, shared: bool) -> int:
        """A new fencing token for an exclusive hold; the latest one for a shared hold."""

    @abstractmethod
    def holder(self) -> LockInfo | None:
        """Who holds the lock in any process, read without touching the lock; ``None`` if free."""
