"""Which threads of this process hold which host-scope lock names, through any lock object.

Two lock objects (or two keyed-manager calls) for one name on one thread would wait on
each other until their timeout: the Redis and PostgreSQL locks claim the name here first
and refuse re-entry at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from threading import get_ident
from typing import Any, Protocol, TypeVar

from lockkit._internal import fork as _fork
from lockkit._internal.deadline import Deadline
from lockkit.exceptions import DeadlockError

H = TypeVar("H")


class _LocalLayer(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float | None = ..., *, shared: bool = ...) -> bool: ...

    def release(self) -> None: ...


class HeldNames:
    """A set of ``(name, thread ident)`` pairs; reset in a forked child."""

    def __init__(self) -> None:
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._held: set[tuple[str, int]] = set()

    def claim(self, key: str, ident: int) -> bool:
        """Record that ``ident`` holds ``key``; ``False`` if it already does."""
        with self._mu:
            if (key, ident) in self._held:
                return False
            self._held.add((key, ident))
            return True

    def drop(self, key: str, ident: int) -> None:
        """Forget that ``ident`` holds ``key``."""
        with self._mu:
            self._held.discard((key, ident))


#: The one registry of the process (keys carry their backend and server, so they never clash).
held_names = HeldNames()
_fork.register(held_names)


def acquire_layered(
    name_key: str,
    label: str,
    t: float | None,
    local: _LocalLayer | Any,
    shared: bool,
    contended: Callable[[], None],
    remote: Callable[[Deadline], H | None],
) -> H | None:
    """The acquire of a host-scope lock: claim the name, queue locally, then ask the server.

    One order for every backend: the name is claimed for the calling thread (re-entry is
    refused at once: ``None`` for a try, :class:`DeadlockError` otherwise); the thread
    queues FIFO on ``local`` (``contended()`` counts a local timeout); ``remote`` gets the
    deadline left. Whatever fails or is not granted is undone in reverse order.

    Returns:
        The hold ``remote`` returned, or ``None`` (not acquired).

    """
    me = get_ident()
    if not held_names.claim(name_key, me):  # this thread holds the name already
        if t == 0:  # a try cannot deadlock: answer like threading.Lock
            return None
        raise DeadlockError(f"{label} is not reentrant: this thread already holds it")
    try:
        deadline = Deadline(t)
        if not local.acquire(timeout=t, shared=shared):
            contended()
            held_names.drop(name_key, me)
            return None
        try:
            hold = remote(deadline)
        except BaseException:
            local.release()
            raise
    except BaseException:
        held_names.drop(name_key, me)
        raise
    if hold is None:
        local.release()
        held_names.drop(name_key, me)
    return hold
