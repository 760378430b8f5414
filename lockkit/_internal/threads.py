"""Starting lockkit's helper threads so that they never take the application's signals.

A process-directed signal (SIGTERM from a supervisor, SIGINT from a terminal) goes to any
thread that does not block it. When a helper thread blocked in ``read()`` or ``poll()``
takes it, CPython only notes it, and the main thread, perhaps blocked in ``waitpid()`` or
``accept()``, is never interrupted: the Python handler waits until that call returns on
its own. Every lockkit helper thread therefore starts with the asynchronous signals
blocked (a new thread inherits its creator's mask), so they reach the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

# Signals raised by the faulting thread itself must stay unblocked (blocking them is
# undefined behaviour); SIGKILL and SIGSTOP cannot be blocked at all.
_SYNCHRONOUS = {
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
}
#: The signals a lockkit helper thread blocks for its whole life.
BLOCKED = frozenset(signal.valid_signals()) - _SYNCHRONOUS


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start a daemon thread that runs ``target(*args)`` with the asynchronous signals blocked."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
