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


@pytest.fixture
def worker() -> Callable[..., Worker]:
    return Worker


def pytest_configure(config: pytest.Config) -> None:
    """Keep lockkit's debug events out of the test output (warnings still flow)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


pytest_plugins = ["pytester"]
