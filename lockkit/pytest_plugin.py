"""lockkit's pytest plugin (loaded through the ``pytest11`` entry point).

Fixtures: ``lock_dir`` (a fresh directory for lock files), ``mock_lock_service`` (a
:class:`lockkit.testing.MockFileLockService`), ``fake_clock`` (a
:class:`lockkit.testing.FakeClock`). Marker: ``@pytest.mark.lockkit_no_leaks`` fails a
test that leaves a lockkit lock held or a thread waiting for one. Tests that use none
of these are not affected.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from lockkit.testing import FakeClock, MockFileLockService, busy_locks


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line("markers", "lockkit_no_leaks: fail if the test leaves a lockkit lock held or waited for")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Check for leaked locks around tests marked ``lockkit_no_leaks``."""
    if item.get_closest_marker("lockkit_no_leaks") is None:
        return (yield)
    before = {id(lock) for lock in busy_locks()}
    result = yield
    leaked = [lock for lock in busy_locks() if id(lock) not in before]
    if leaked:
        names = ", ".join(repr(lock) for lock in leaked[:10])
        pytest.fail(f"lockkit_no_leaks: the test left {len(leaked)} lock(s) held or waited for: {names}", pytrace=False)
    return result


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory for lock files."""
    path = tmp_path / "locks"
    path.mkdir()
    return path


@pytest.fixture
def mock_lock_service() -> Iterator[MockFileLockService]:
    """A :class:`~lockkit.testing.MockFileLockService`, reset after the test."""
    service = MockFileLockService()
    yield service
    service.reset()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`~lockkit.testing.FakeClock` starting at 1000.0."""
    return FakeClock()
