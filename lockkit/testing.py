"""Test helpers for code that uses lockkit (and for concurrent code in general).

Nothing here is needed at run time; import it from tests. The pytest plugin
(:mod:`lockkit.pytest_plugin`, loaded automatically when lockkit is installed) exposes
the fixtures ``lock_dir``, ``mock_lock_service`` and ``fake_clock`` and the marker
``lockkit_no_leaks``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from lockkit.exceptions import LockkitError, LockTimeoutError, NotOwnerError
from lockkit.files._info import LockInfo
from lockkit.files._service import LockResult
from lockkit.sync._manager import LockHandle, LockManager

R = TypeVar("R")
Behavior = Literal["success", "timeout", "error", "locked"]

__all__ = [
    "CrashResult",
    "FakeClock",
    "HammerReport",
    "LostUpdateReport",
    "MockFileLockService",
    "MockLockHandle",
    "Outcome",
    "crash_child",
    "hammer",
    "run_concurrent",
    "verify_no_lost_updates",
    "wait_until_queued",
]


# -- mock lock service --------------------------------------------------------------------


class MockLockHandle:
    """The handle of a successful :meth:`MockFileLockService.acquire`."""

    def __init__(self, service: MockFileLockService, path: str, inner: LockHandle | None, token: int) -> None:
        self._service = service
        self._inner = inner
        self._held = True
        self.lock_path = path + ".lock"
        self.resource_path = path
        self.fencing_token = token

    def is_held(self) -> bool:
        """Whether the handle still holds its lock."""
        return self._held

    def release(self) -> None:
        """Release the lock (``NotOwnerError`` if already released)."""
        if not self._held:
            raise NotOwnerError("this lock handle was already released")
        self._held = False
        self._service._record("release", self.resource_path, {})
        if self._inner is not None:
            self._inner.release()

    def __enter__(self) -> MockLockHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self.release()


class MockFileLockService:
    """An in-memory stand-in for :class:`~lockkit.files.FileLockService`, with controls.

    It enforces real mutual exclusion between threads (a FIFO lock per path), unless
    built with ``enforce_exclusion=False``, so tests that use it still catch races.

    Controls: :meth:`set_lock_behavior` makes ``acquire`` on a path succeed, time out,
    fail with an error or report it locked; :meth:`simulate_contention` makes a path
    look held by someone else; :meth:`reset` forgets everything. ``calls`` records every
    call as ``(method, path, options)`` and ``acquired_paths`` every successful acquisition.
    """

    def __init__(self, *, enforce_exclusion: bool = True, default_timeout: float = 30.0) -> None:
        self._enforce = enforce_exclusion
        self._default_timeout = default_timeout
        self._mu = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget behaviours, contention, recorded calls and held locks."""
        with self._mu:
            self._locks = LockManager("mock-lock-service")
            self._behavior: dict[str, Behavior] = {}
            self._contention: dict[str, str] = {}
            self._tokens = itertools.count(1)
            self.calls: list[tuple[str, str, dict[str, Any]]] = []
            self.acquired_paths: list[str] = []

    def _record(self, method: str, path: str, options: dict[str, Any]) -> None:
        with self._mu:
            self.calls.append((method, path, options))

    def set_lock_behavior(self, path: str | os.PathLike[str], behavior: Behavior) -> None:
        """Make ``acquire(path)`` succeed, time out, fail with an error, or report it locked."""
        if behavior not in ("success", "timeout", "error", "locked"):
            raise ValueError("behavior must be 'success', 'timeout', 'error' or 'locked'")
        with self._mu:
            self._behavior[os.fspath(path)] = behavior

    def simulate_contention(self, path: str | os.PathLike[str], holder: str = "pid 4242 on other-host") -> None:
        """Make ``path`` look held by ``holder`` until :meth:`clear_contention`."""
        with self._mu:
            self._contention[os.fspath(path)] = holder

    def clear_contention(self, path: str | os.PathLike[str]) -> None:
        """Stop simulating contention on ``path``."""
        with self._mu:
            self._contention.pop(os.fspath(path), None)

    def acquire(
        self,
        resource_path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        retry_interval: float = 0.1,
        max_retries: int | None = None,
        type: Literal["exclusive", "shared"] = "exclusive",
    ) -> LockResult:
        """Like :meth:`FileLockService.acquire`, in memory."""
        path = os.fspath(resource_path)
        options = {"timeout": timeout, "retry_interval": retry_interval, "max_retries": max_retries, "type": type}
        self._record("acquire", path, options)
        with self._mu:
            behavior = self._behavior.get(path, "success")
            holder = self._contention.get(path)
        lock_path = path + ".lock"
        if behavior == "error":
            return LockResult(False, None, "error", f"simulated error on {lock_path!r}", lock_path)
        if behavior == "locked" or (holder is not None and timeout == 0):
            return LockResult(
                False, None, "locked", f"{lock_path!r} is held by {holder or 'another process'}", lock_path
            )
        if behavior == "timeout" or holder is not None:
            return LockResult(
                False,
                None,
                "timeout",
                f"timed out waiting for {lock_path!r}: held by {holder or 'another process'}",
                lock_path,
            )
        inner = None
        if self._enforce:
            t = self._default_timeout if timeout is None else timeout
            inner = self._locks.try_acquire(path, t, type == "shared")
            if inner is None:
                return LockResult(False, None, "timeout", f"timed out after {t} s waiting for {lock_path!r}", lock_path)
        with self._mu:
            self.acquired_paths.append(path)
            token = next(self._tokens)
        return LockResult(True, MockLockHandle(self, path, inner, token), None, None, lock_path)  # type: ignore[arg-type]

    def with_lock(self, resource_path: str | os.PathLike[str], fn: Callable[[], R], **options: Any) -> R:
        """Call ``fn()`` holding the lock; raise like :meth:`FileLockService.with_lock`."""
        result = self.acquire(resource_path, **options)
        if not result.success or result.handle is None:
            if result.reason == "error":
                raise LockkitError(result.message or "simulated error")
            raise LockTimeoutError(result.message or "busy", resource=result.lock_path, timeout=options.get("timeout"))
        with result.handle:
            return fn()

    def is_locked(self, resource_path: str | os.PathLike[str]) -> bool:
        """Whether the path is held (really, or by simulated contention)."""
        path = os.fspath(resource_path)
        self._record("is_locked", path, {})
        return path in self._contention or self._locks.is_locked(path)

    def holder(self, resource_path: str | os.PathLike[str]) -> LockInfo | None:
        """A :class:`~lockkit.files.LockInfo` for simulated contention, or for a real in-memory hold."""
        path = os.fspath(resource_path)
        self._record("holder", path, {})
        if path in self._contention:
            return LockInfo(None, None, self._contention[path], time.time(), False, 0)
        if self._locks.is_locked(path):
            return LockInfo(os.getpid(), "localhost", None, None, False, 0)
        return None


# -- concurrency utilities -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One operation's result or error, from :func:`run_concurrent`."""

    result: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the operation returned without raising."""
        return self.error is None


def run_concurrent(
    operations: Sequence[Callable[[], Any]],
    *,
    threads: int | None = None,
    start_together: bool = True,
    timeout: float = 30.0,
) -> list[Outcome]:
    """Run callables concurrently and return their outcomes in input order.

    A barrier releases the first ``threads`` operations together to maximise
    contention. Errors are captured, not raised.

    Args:
        operations: The callables.
        threads: How many run at once (default: all of them).
        start_together: Release the threads together through a barrier.
        timeout: Seconds to wait for all operations.

    Raises:
        TimeoutError: Some operations were still running after ``timeout`` (their
            indexes are named); their threads are daemons and do not block exit.
    """
    ops = list(operations)
    if not ops:
        return []
    width = min(len(ops), threads or len(ops))
    outcomes: list[Outcome | None] = [None] * len(ops)
    next_op = iter(range(len(ops)))
    mu = threading.Lock()
    barrier = threading.Barrier(width) if start_together and width > 1 else None

    def worker() -> None:
        if barrier is not None:
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                return
        while True:
            with mu:
                i = next(next_op, None)
            if i is None:
                return
            try:
                outcomes[i] = Outcome(result=ops[i]())
            except BaseException as exc:
                outcomes[i] = Outcome(error=exc)

    pool = [threading.Thread(target=worker, daemon=True, name=f"run_concurrent-{n}") for n in range(width)]
    for t in pool:
        t.start()
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, o in enumerate(outcomes) if o is None]
    if hung:
        raise TimeoutError(f"run_concurrent: operations {hung} still running after {timeout} s (deadlock or hang?)")
    return [o for o in outcomes if o is not None]


@dataclass(frozen=True, slots=True)
class LostUpdateReport:
    """The verdict of :func:`verify_no_lost_updates`.

    Attributes:
        success: Whether the final value equals the sequential result.
        expected: Every modification applied one after another.
        actual: What the concurrent run left.
        lost: How many updates went missing (numbers: the difference; collections:
            the size difference; otherwise 1 when they differ).
    """

    success: bool
    expected: Any
    actual: Any
    lost: int


def verify_no_lost_updates(
    initial: Any,
    modifications: Sequence[Callable[[Any], Any]],
    read: Callable[[], Any],
    write: Callable[[Any], None],
    *,
    threads: int = 8,
) -> LostUpdateReport:
    """Apply every modification concurrently through ``read``/``write`` and compare.

    The storage behind ``read`` must hold ``initial`` when this is called (it is not
    written here, so that a ``read`` that takes a lock and a ``write`` that releases it
    work as a pair). Each modification then does ``write(modification(read()))`` in a
    pool of ``threads`` threads released together; the interpreter's switch interval is
    shortened meanwhile so that an unprotected read-modify-write really interleaves.
    """
    expected = initial
    for mod in modifications:
        expected = mod(expected)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        outcomes = run_concurrent([_apply(m, read, write) for m in modifications], threads=threads)
    finally:
        sys.setswitchinterval(previous)
    errors = [o.error for o in outcomes if o.error is not None]
    if errors:
        raise errors[0]
    actual = read()
    if actual == expected:
        lost = 0
    elif isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        lost = int(abs(expected - actual))
    elif hasattr(expected, "__len__") and hasattr(actual, "__len__"):
        lost = abs(len(expected) - len(actual)) or 1
    else:
        lost = 1
    return LostUpdateReport(actual == expected, expected, actual, lost)


def _apply(mod: Callable[[Any], Any], read: Callable[[], Any], write: Callable[[Any], None]) -> Callable[[], None]:
    def step() -> None:
        write(mod(read()))

    return step


@dataclass(frozen=True, slots=True)
class HammerReport:
    """What :func:`hammer` measured.

    Attributes:
        counts: Calls made by each thread (skewed counts mean an unfair lock).
        longest_wait: The longest single call, in seconds.
        total: All calls.
        elapsed: Wall time in seconds.
    """

    counts: list[int]
    longest_wait: float
    total: int
    elapsed: float


def hammer(fn: Callable[[], Any], *, threads: int = 8, iterations: int = 1000) -> HammerReport:
    """Call ``fn`` ``iterations`` times in total from ``threads`` competing threads.

    Threads take calls from a shared pool, so a lock that lets one thread barge in
    shows up as skewed per-thread counts and a long ``longest_wait``.
    """
    counts = [0] * threads
    longest = [0.0] * threads
    remaining = itertools.count()
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        clock = time.perf_counter
        while next(remaining) < iterations:
            t0 = clock()
            fn()
            d = clock() - t0
            counts[i] += 1
            longest[i] = max(longest[i], d)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return HammerReport(counts, max(longest), sum(counts), time.perf_counter() - t0)


def wait_until_queued(lock: Any, n: int, timeout: float = 5.0) -> None:
    """Block until ``n`` acquisitions have joined ``lock``'s wait queue: the sleep-free way to set up a race.

    Counts ``lock.statistics().queued``, which only grows: a waiter that queued and
    timed out before this call looked is still counted. Counts from the lock's
    creation, so for a lock that had waiters before, add their number to ``n``.

    Raises:
        TimeoutError: Fewer than ``n`` acquisitions queued within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while lock.statistics().queued < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{lock!r} never had {n} waiters within {timeout} s (has {lock.statistics().queued})")
        time.sleep(0.0005)


class FakeClock:
    """A controllable clock: ``clock()`` reads it, ``clock.sleep(s)`` and ``advance(s)`` move it.

    Pass it where lockkit takes a clock and a sleep (``RetryPolicy(clock=fc, sleep=fc.sleep)``,
    ``CircuitBreaker(clock=fc)``, ``RetryBudget(clock=fc)``): waits then cost no time.
    ``sleeps`` records every sleep.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._mu = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The current fake time."""
        with self._mu:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._mu:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record a sleep and advance by it."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class CrashResult:
    """What :func:`crash_child` did: the child's pid, whether it was killed, its exit code."""

    pid: int
    killed: bool
    exitcode: int | None = field(default=None)


def crash_child(
    fn: Callable[..., Any], *args: Any, kill_after: float | None = None, seed: int | None = None
) -> CrashResult:
    """Run ``fn(*args)`` in a forked child process and SIGKILL it.

    Args:
        fn: What the child runs (it may loop forever).
        args: Its arguments (picklable).
        kill_after: Seconds before the kill; ``None`` picks a random moment in
            [0, 0.1) s (reproducible with ``seed``).
        seed: Seed for the random moment.

    Returns:
        The child's pid, ``killed=True`` if it was still running when the signal
        arrived, and its exit code.
    """
    delay = kill_after if kill_after is not None else random.Random(seed).uniform(0.0, 0.1)
    child = multiprocessing.get_context("fork").Process(target=fn, args=args, daemon=True)
    child.start()
    assert child.pid is not None
    child.join(delay)
    killed = child.is_alive()
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    return CrashResult(child.pid, killed, child.exitcode)


def busy_locks() -> list[Hashable]:
    """Every live lockkit lock that is held or waited for right now (for leak checks)."""
    from lockkit._internal import fork as _fork
    from lockkit.files._filelock import FileLock
    from lockkit.sync._mutex import Mutex
    from lockkit.sync._rwlock import RWLock

    out: list[Hashable] = []
    for obj in list(_fork._registry):
        if isinstance(obj, (Mutex, RWLock)):
            busy = obj.is_locked()
        elif isinstance(obj, LockManager):
            busy = len(obj) > 0
        elif isinstance(obj, FileLock):
            busy = bool(obj._holds)
        else:
            continue
        if busy:
            out.append(obj)
    return out
