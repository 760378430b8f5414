"""The one ``acquire_all``: several locks in one total order, one deadline, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from lockkit._internal.deadline import Deadline, check_timeout

T = TypeVar("T")
H = TypeVar("H")


def acquire_all(
    items: Iterable[T],
    take: Callable[[T, float | None], H | None],
    release: Callable[[H], None],
    *,
    timeout: float | None,
    order: Callable[[Iterable[T]], list[T]],
) -> tuple[list[H], list[T]]:
    """Take every item in the total order ``order`` gives, within one deadline.

    ``take(item, remaining)`` returns a hold, or ``None`` when ``remaining`` seconds ran
    out (``None`` means wait forever). Callers that take the same items in the same
    order cannot deadlock on each other.

    Returns:
        ``(holds, [])`` when every item was taken (holds in acquisition order), or
        ``([], [item])`` naming the item that could not be had; everything taken
        before it has been released (in reverse order). An exception raised by ``take``
        also releases what was taken, then propagates.

    """
    deadline = Deadline(check_timeout(True, timeout))
    holds: list[H] = []
    try:
        for item in order(items):
            hold = take(item, deadline.remaining())
            if hold is None:
                _release_all(holds, release)
                return [], [item]
            holds.append(hold)
    except BaseException:
        _release_all(holds, release)
        raise
    return holds, []


def _release_all(holds: list[H], release: Callable[[H], None]) -> None:
    while holds:
        release(holds.pop())


def sorted_keys(keys: Iterable[Hashable]) -> list[Hashable]:
    """Distinct keys in one total order, so multi-key acquisition cannot deadlock."""
    unique = list(dict.fromkeys(keys))
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:
        return sorted(unique, key=lambda k: (type(k).__module__, type(k).__qualname__, repr(k)))
