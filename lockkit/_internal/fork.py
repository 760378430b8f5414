"""Fork safety: in a forked child every lockkit lock starts free with an empty queue.

Threads do not survive ``fork()``: a lock held or waited on by another thread of the
parent would stay held forever in the child (gunicorn ``--preload`` forks workers from
a parent that may have used lockkit). Every in-process lock registers here and is reset
by an ``os.register_at_fork(after_in_child=...)`` hook.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class _Resettable(Protocol):
    def _reset_after_fork(self) -> None: ...


_registry: weakref.WeakSet[_Resettable] = weakref.WeakSet()


def register(obj: _Resettable) -> None:
    """Reset ``obj`` in every forked child."""
    _registry.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_registry):
        obj._reset_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
