"""Exceptions raised by lockkit.

Every exception derives from :class:`LockkitError`. Messages are lowercase, name the
rule that was broken and never contain secrets, keys or record contents. Every
exception survives a pickle round trip with its attributes (so it can cross a process
boundary intact).
"""

from __future__ import annotations

import errno as _errno
from typing import Any

__all__ = [
    "AbortError",
    "CircuitOpenError",
    "ConflictError",
    "CorruptDataError",
    "DeadlockError",
    "DecryptionError",
    "InvalidKeyError",
    "LockFileError",
    "LockLostError",
    "LockTimeoutError",
    "LockkitError",
    "NotOwnerError",
    "RetryAfterTooLongError",
    "StaleWriterError",
    "StorageError",
    "StoreClosedError",
]


class LockkitError(Exception):
    """Base class of every error lockkit raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take the message positionally and everything else as keyword
        # arguments with defaults, so rebuilding from args and restoring the state works.
        state = dict(self.__dict__)
        if isinstance(self, OSError) and self.errno is not None:
            state["errno"] = self.errno
        return (self.__class__, self.args, state)

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        for key, value in (state or {}).items():
            setattr(self, key, value)


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


class NotOwnerError(LockkitError, RuntimeError):
    """A lock was released (or handed over) by a thread or handle that does not hold it."""


class DeadlockError(LockkitError, RuntimeError):
    """An acquisition can never succeed, so lockkit refuses it instead of hanging.

    Raised when a thread re-acquires a non-reentrant lock it already holds, or a
    reader asks to upgrade to a writer.
    """


class AbortError(LockkitError):
    """Raise it from retried code to stop retrying at once (classified ``CANCELLED``)."""


class RetryAfterTooLongError(LockkitError):
    """The server asked to wait (``Retry-After``) longer than the retry deadline allows.

    Raised at once instead of sleeping into a deadline that cannot be met; the
    original error is chained as ``__cause__``.

    Attributes:
        delay: The delay the server asked for, in seconds.
        remaining: What was left of the deadline, in seconds.

    """

    def __init__(self, message: str, *, delay: float = 0.0, remaining: float = 0.0) -> None:
        super().__init__(message)
        self.delay = delay
        self.remaining = remaining


class CircuitOpenError(LockkitError):
    """A circuit breaker is open: the call was refused without being made.

    Attributes:
        name: The breaker's name.
        retry_after: Seconds until the breaker lets a probe call through.

    """

    def __init__(self, message: str, *, name: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.name = name
        self.retry_after = retry_after


class LockFileError(LockkitError, OSError):
    """A lock file cannot be used: missing directory, permissions, a symbolic link, a full disk, ...

    When an OS call failed, the error is also the matching builtin: a missing directory
    is a ``FileNotFoundError``, a permission problem a ``PermissionError``, a directory
    where a file belongs an ``IsADirectoryError`` (and the reverse a
    ``NotADirectoryError``), so ``except PermissionError`` catches it as it would catch
    the call's own error.

    Attributes:
        path: The lock file's path.
        errno: The operating system's error number, when an OS call failed.
    """

    def __new__(cls, message: str, *, path: str | None = None, errno: int | None = None) -> LockFileError:
        """Make the error for ``errno``: also the builtin OS error class that matches it."""
        kind = _LOCK_FILE_ERRORS.get(errno, cls) if cls is LockFileError and errno is not None else cls
        return super().__new__(kind, message)

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class _LockFileNotFoundError(LockFileError, FileNotFoundError):
    pass


class _LockFilePermissionError(LockFileError, PermissionError):
    pass


class _LockFileIsADirectoryError(LockFileError, IsADirectoryError):
    pass


class _LockFileNotADirectoryError(LockFileError, NotADirectoryError):
    pass


class _LockFileExistsError(LockFileError, FileExistsError):
    pass


_LOCK_FILE_ERRORS: dict[int, type[LockFileError]] = {
    _errno.ENOENT: _LockFileNotFoundError,
    _errno.EACCES: _LockFilePermissionError,
    _errno.EPERM: _LockFilePermissionError,
    _errno.EISDIR: _LockFileIsADirectoryError,
    _errno.ENOTDIR: _LockFileNotADirectoryError,
    _errno.EEXIST: _LockFileExistsError,
}


class InvalidKeyError(LockkitError, ValueError):
    """A record key breaks a rule (empty, too long, a path, not valid Unicode, not NFC...).

    The message names the rule, never the key (keys are often session ids). Nothing
    was read or written.
    """


class LockLostError(LockkitError):
    """A held lock was lost (lease expired, marker broken, server restarted)."""


class StorageError(LockkitError, OSError):
    """A data file cannot be read or written (permissions, missing directory, full disk...).

    Attributes:
        path: The file concerned.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CorruptDataError(LockkitError, ValueError):
    """A data file's content is not what it must be (not JSON, truncated, wrong type).

    The file is left untouched: lockkit never overwrites data it could not read.

    Attributes:
        path: The corrupt file.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ConflictError(LockkitError):
    """An optimistic write found another version than the one it expected.

    Attributes:
        expected: The version the writer expected.
        actual: The version found.
    """

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class StaleWriterError(LockkitError):
    """A write carried a fencing token older than one the storage already accepted.

    Attributes:
        token: The writer's token.
        latest: The highest token accepted so far.
    """

    def __init__(self, message: str, *, token: int | None = None, latest: int | None = None) -> None:
        super().__init__(message)
        self.token = token
        self.latest = latest


class DecryptionError(LockkitError):
    """Encrypted data could not be decrypted: wrong key, tampered, truncated or moved.

    The message names the file, never the key. Nothing is overwritten.

    Attributes:
        path: The file concerned (``None`` for in-memory data).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreClosedError(LockkitError):
    """A change was made to a :class:`~lockkit.PersistentStore` after ``close()``."""
