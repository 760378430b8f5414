"""Fork safety: in a forked child every lockkit lock starts free with an empty queue.

Threads do not survive ``fork()``: a lock held or waited on by another thread of the
parent would stay held forever in the child (gunicorn ``--preload`` forks workers from
a parent that may have used lockkit). Every in-process lock registers here and is reset
by an ``os.register_at_fork(after_in_child=...)`` hook.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol


class _Resettable(Protocol):
    def _reset_after_fork(self) -> None: ...


_registry: weakref.WeakSet[_Resettable] = weakref.WeakSet()
#: Guards ``_registry``: a WeakSet is not safe to change from several threads at once
#: without the GIL (and never safe to iterate while another thread adds).
_registry_mu = threading.Lock()


def register(obj: _Resettable) -> None:
    """Reset ``obj`` in every forked child."""
    with _registry_mu:
        _registry.add(obj)


def _before_fork() -> None:
    _registry_mu.acquire()  # no thread is mid-add when the child's copy is taken


def _after_fork_in_parent() -> None:
    _registry_mu.release()


def _after_fork_in_child() -> None:
    global _registry_mu
    _registry_mu = threading.Lock()  # the parent's is held (by _before_fork) in the copy
    for obj in list(_registry):
        obj._reset_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
