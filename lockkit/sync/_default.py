"""The process-wide default :class:`LockManager` and :func:`with_lock`."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from lockkit.sync._manager import LockManager

R = TypeVar("R")

#: The process-wide default :class:`~lockkit.LockManager` used by :func:`with_lock`.
lock_manager = LockManager("default")


def with_lock(key: Hashable, fn: Callable[[], R], *, timeout: float | None = None, shared: bool = False) -> R:
    """Call ``fn()`` while holding ``key`` in the default :data:`lock_manager`.

    Fairness: FIFO per key. Reentrancy: none (:class:`~lockkit.exceptions.DeadlockError` if the
    calling thread already holds ``key``).

    Raises:
        LockTimeoutError: ``timeout`` seconds passed before the key was free.

    """
    return lock_manager.with_lock(key, fn, timeout=timeout, shared=shared)
