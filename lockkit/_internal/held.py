"""Which threads of this process hold which host-scope lock names, through any lock object.

Two lock objects (or two keyed-manager calls) for one name on one thread would wait on
each other until their timeout: the Redis and PostgreSQL locks claim the name here first
and refuse re-entry at once.
"""

from __future__ import annotations

import threading

from lockkit._internal import fork as _fork


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
