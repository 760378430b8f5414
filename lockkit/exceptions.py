"""Exceptions raised by lockkit.

Every exception derives from :class:`LockkitError`. Messages are lowercase, name the
rule that was broken and never contain secrets, keys or record contents. Every
exception survives a pickle round trip (so it can cross a process boundary intact).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DeadlockError",
    "LockTimeoutError",
    "LockkitError",
    "NotOwnerError",
]


class LockkitError(Exception):
    """Base class of every error lockkit raises on purpose."""


class LockTimeoutError(LockkitError, TimeoutError):
    """A lock could not be acquired before its timeout ran out.

    Attributes:
        resource: What was being locked (a lock name or a path), or ``None``.
        timeout: The timeout in seconds that ran out.
        holder: A human-readable description of who held the lock, or ``None``
            when it is unknown.

    """

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        timeout: float | None = None,
        holder: str | None = None,
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.timeout = timeout
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_timeout,
            (str(self), self.resource, self.timeout, self.holder),
        )


def _rebuild_timeout(message: str, resource: str | None, timeout: float | None, holder: str | None) -> LockTimeoutError:
    return LockTimeoutError(message, resource=resource, timeout=timeout, holder=holder)


class NotOwnerError(LockkitError, RuntimeError):
    """A lock was released (or handed over) by a thread or handle that does not hold it."""


class DeadlockError(LockkitError, RuntimeError):
    """An acquisition can never succeed, so lockkit refuses it instead of hanging.

    Raised when a thread re-acquires a non-reentrant lock it already holds, or a
    reader asks to upgrade to a writer.
    """
