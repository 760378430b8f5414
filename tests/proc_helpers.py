"""Functions run in child processes by the process-scope tests (module level, so picklable)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import lockkit


def increment_worker(lock_path: str, counter: str, threads: int, cycles: int, strategy: str) -> None:
    """``threads`` threads each doing ``cycles`` read-increment-write cycles under the lock."""

    def work() -> None:
        lock = lockkit.FileLock(lock_path, strategy=strategy)  # type: ignore[arg-type]
        for _ in range(cycles):
            with lock:
                with open(counter) as f:
                    value = int(f.read() or 0)
                with open(counter, "w") as f:
                    f.write(str(value + 1))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


WIDTH = 2000


def torn_writer(lock_path: str, data: str, rounds: int) -> None:
    """Rewrite ``data`` in two halves under the exclusive lock (a torn read would show)."""
    lock = lockkit.FileLock(lock_path)
    for i in range(rounds):
        digit = str(i % 10).encode()
        with lock:
            fd = os.open(data, os.O_WRONLY | os.O_TRUNC | os.O_CREAT)
            os.write(fd, digit * (WIDTH // 2))
            time.sleep(0.0005)
            os.write(fd, digit * (WIDTH // 2))
            os.close(fd)


def torn_reader(lock_path: str, data: str, rounds: int, errors: Any) -> None:
    """Read under the shared lock; record any torn value."""
    lock = lockkit.FileLock(lock_path, shared=True)
    for _ in range(rounds):
        with lock, open(data, "rb") as f:
            content = f.read()
        if content and (len(content) != WIDTH or len(set(content)) != 1):
            errors.put(len(content))


def hold_forever(lock_path: str, strategy: str, ready: Any, stale_after: float = 300.0) -> None:
    """Take the lock, say so, and hold it until killed."""
    lock = lockkit.FileLock(lock_path, strategy=strategy, stale_after=stale_after)  # type: ignore[arg-type]
    lock.acquire()
    ready.set()
    while True:
        time.sleep(60)


def hold_shared(lock_path: str, ready: Any, release: Any) -> None:
    """Take the lock shared, say so, hold until told."""
    lock = lockkit.FileLock(lock_path, shared=True)
    with lock:
        ready.set()
        release.wait(30)


def tokens_worker(lock_path: str, n: int, out: Any) -> None:
    """Acquire ``n`` times, reporting the fencing tokens in order."""
    lock = lockkit.FileLock(lock_path)
    tokens = []
    for _ in range(n):
        with lock:
            tokens.append(lock.fencing_token)
    out.put(tokens)


def race_to_break(lock_path: str, go: Any, done: Any, results: Any) -> None:
    """Wait for the start signal, try once to take a stale marker, hold until done."""
    lock = lockkit.FileLock(lock_path, strategy="marker", stale_after=300)
    go.wait(30)
    got = lock.acquire(timeout=0)
    results.put(os.getpid() if got else 0)
    done.wait(30)
    if got:
        lock.release()
