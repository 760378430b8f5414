"""Shared helpers for lockkit's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from lockkit.testing import wait_until_queued as wait_queued  # noqa: F401 - re-exported for the tests


class Worker:
    """A thread running ``fn`` that records its result or error."""

    def __init__(self, fn: Callable[[], Any], name: str | None = None) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def join(self, timeout: float = 10.0) -> Any:
        assert self.done.wait(timeout), "worker did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def hold_in_thread(lock: Any, name: str | None = None) -> tuple[threading.Thread, threading.Event]:
    """Hold ``lock`` from another thread (named ``name``) until the returned event is set.

    Returns once the thread holds it; set the event, then join the thread.
    """
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold, name=name, daemon=True)
    t.start()
    assert held.wait(30)
    return t, release


def blocks_async_signals(thread_name: str) -> bool:
    """Whether the live thread called ``thread_name`` blocks SIGTERM, SIGINT and SIGHUP (Linux)."""
    import signal

    (thread,) = [t for t in threading.enumerate() if t.name == thread_name]
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    return all(mask & (1 << (sig - 1)) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))


def run_in_forked_child(check: Callable[[], Any]) -> int:
    """Run ``check()`` in a forked child: its exit code, 0 when it returned true.

    3 when it returned false, 4 (with the traceback printed) when it raised.
    """
    import os
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "fork() with threads" on 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if check() else 3
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def worker() -> Callable[..., Worker]:
    return Worker


pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    """``LOCKKIT_SWITCH_INTERVAL=1e-6`` makes the interpreter switch threads (almost) after every bytecode."""
    import os
    import sys

    interval = os.environ.get("LOCKKIT_SWITCH_INTERVAL")
    if interval:
        sys.setswitchinterval(float(interval))


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    """Every test starts as an app that never configured structlog, with no rate-limit window open.

    (``structlog.testing.capture_logs`` leaves structlog marked configured; warnings of
    one test must never hide another's.)
    """
    import structlog

    from lockkit._internal import log

    structlog.reset_defaults()
    log.reset_rate_limits()
