"""The one ``acquire_all``: several locks in one total order, one deadline, all or nothing."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

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


def _order_key(key: Hashable) -> tuple[int, str, Any]:
    """A sort key that is a total order over every key: class, then value or ``repr``."""
    if isinstance(key, (int, float)) and not (isinstance(key, float) and math.isnan(key)):
        return (0, "", key)  # bool, int and float compare with each other
    if isinstance(key, str):
        return (1, "", key)
    if isinstance(key, bytes):
        return (2, "", key)
    cls = type(key)
    return (3, f"{cls.__module__}.{cls.__qualname__}", repr(key))


def sorted_keys(keys: Iterable[Hashable]) -> list[Hashable]:
    """Distinct keys in one total order, so multi-key acquisition cannot deadlock.

    Numbers, then strings, then bytes sort by value; other keys by their class's name
    and then their ``repr`` (types such as frozensets or tuples of mixed values that
    ``sorted()`` orders only partially, or not at all, get a total order this way).

    Raises:
        TypeError: Two distinct keys of one class have the same ``repr``, so no order
            can be told between them.

    """
    ordered = sorted(((_order_key(k), k) for k in dict.fromkeys(keys)), key=lambda pair: pair[0])
    for (a, ka), (b, _) in itertools.pairwise(ordered):
        if a == b:
            raise TypeError(
                f"keys of type {type(ka).__qualname__} with equal repr cannot be put in a total order: "
                "give them distinct reprs, or lock them one at a time"
            )
    return [k for _, k in ordered]
