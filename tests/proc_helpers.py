"""Functions run in child processes by the process-scope tests (module level, so picklable)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
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


def evicting_increments(directory: str, files: int, threads: int, cycles: int, errors: Any) -> None:
    """Threads incrementing counters over more lock files than the descriptor cache keeps.

    The caller lowers the cache size, so every acquisition of a new file evicts others
    while threads are between taking their path state and locking it.
    """
    import random

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        locks = [lockkit.FileLock(os.path.join(directory, f"{i}.lock")) for i in range(files)]
        try:
            for _ in range(cycles):
                i = rnd.randrange(files)
                with locks[i]:
                    counter = os.path.join(directory, f"{i}.count")
                    try:
                        with open(counter) as f:
                            value = int(f.read() or 0)
                    except FileNotFoundError:
                        value = 0
                    with open(counter, "w") as f:
                        f.write(str(value + 1))
        except BaseException as exc:
            errors.put(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=work, args=(os.getpid() * 100 + n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def acquire_with_tiny_file_limit(lock_path: str, strategy: str, result: Any, go_on: Any) -> None:
    """Try to take the lock while files may not grow past 10 bytes (a real write failure)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    lock = lockkit.FileLock(lock_path, strategy=strategy)  # type: ignore[arg-type]
    try:
        got = lock.acquire(timeout=5)
        result.put(f"acquired={got}")
    except OSError as exc:
        result.put(f"{type(exc).__name__}:{exc.errno}")
    go_on.wait(30)  # stay alive while the parent checks that nothing is left held


def hold_marker_then_end_main_thread(lock_path: str, ready: Any, release: Any) -> None:
    """Hold a marker lock from a worker thread while the main thread exits (a zombie leader)."""
    import ctypes

    def worker() -> None:
        lock = lockkit.FileLock(lock_path, strategy="marker")
        with lock:
            ready.set()
            release.wait(60)

    threading.Thread(target=worker).start()
    ready.wait(30)
    ctypes.CDLL(None).pthread_exit(None)  # ctypes drops the GIL first: the worker thread goes on


def acquire_exclusive_and_report(lock_path: str, got: Any) -> None:
    """Wait (blocking) for the exclusive lock, report it, release."""
    lock = lockkit.FileLock(lock_path)
    with lock:
        got.set()


def write_marker(lock_path: str | os.PathLike[str], record: dict[str, Any], mtime: float | None = None) -> str:
    """Publish a marker-strategy marker with ``record`` by hand, as a crashed holder leaves it."""
    directory = os.fspath(lock_path)
    os.mkdir(directory, 0o700)
    owner = os.path.join(directory, "owner.0123456789abcdef")
    with open(owner, "w", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if mtime is not None:
        os.utime(owner, (mtime, mtime))
    return owner


def acknowledged_increments(doc_path: str, cycles: int, out: Any) -> None:
    """``cycles`` attempts to increment a JsonDocument; reports how many were acknowledged."""
    from lockkit.exceptions import ConflictError, LockLostError

    doc = lockkit.JsonDocument(doc_path, fsync=False)
    done = 0
    for _ in range(cycles):
        try:
            doc.modify(lambda v: v + 1)
        except (LockLostError, ConflictError):
            continue  # refused, not acknowledged: nothing was written
        done += 1
    out.put(done)


def storage_with_tiny_file_limit(directory: str, result: Any) -> None:
    """Write through every storage entry point while files may not grow past 4 KiB (EFBIG)."""
    import resource
    import signal

    from lockkit.storage import atomic_write

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    big = "x" * 10_000

    def attempt(name: str, fn: Any) -> None:
        try:
            fn()
            result.put((name, "ok"))
        except Exception as exc:
            result.put((name, type(exc).__name__))

    def write() -> None:
        with atomic_write(os.path.join(directory, "a.txt"), "w") as f:
            f.write(big)

    attempt("atomic_write", write)
    attempt("JsonDocument.write", lambda: lockkit.JsonDocument(os.path.join(directory, "d.json")).write(big))
    store = lockkit.PersistentStore(os.path.join(directory, "s.json"), save="immediate")
    attempt("PersistentStore.set", lambda: store.set("k", big))
    later = lockkit.PersistentStore(os.path.join(directory, "t.json"), save="debounced")
    later["k"] = big
    attempt("PersistentStore.flush", later.flush)
    result.put(("done", ""))


def sigterm_while_holding_a_store_lock(path: str, ready: Any) -> None:
    """Hold a store's internal lock (as a long ``items()`` loop would) when SIGTERM arrives.

    The lock is held until the signal handler has run (it restores the previous
    disposition), however late the signal comes.
    """
    import signal

    store = lockkit.PersistentStore(path, save="debounced", debounce=3600)
    lockkit.storage.flush_stores_on_signal()
    store.set("k", "unsaved")  # pending: only the shutdown flush can save it
    installed = signal.getsignal(signal.SIGTERM)
    with store._mu:  # what items() holds while it copies the map
        ready.set()
        for _ in range(6000):  # until the handler has run, in here, on this thread
            if signal.getsignal(signal.SIGTERM) is not installed:
                break
            time.sleep(0.01)
    while True:
        time.sleep(0.1)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` (-1 if it is gone)."""
    fields = proc_stat(pid)
    return -1 if fields is None else int(fields[1])


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (any process, not only a child) has exited; ``False`` if it has not in time.

    Waits on a pidfd, which becomes readable when the process exits: an event, not a poll.
    """
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0]) or gone(pid)
    finally:
        os.close(fd)


@contextlib.contextmanager
def held_by_child(lock_path: str, strategy: str = "kernel", stale_after: float = 300.0) -> Iterator[Any]:
    """A forked child holding the lock (``hold_forever``) for the block; SIGKILLed after it."""
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=hold_forever, args=(lock_path, strategy, ready, stale_after))
    child.start()
    try:
        assert ready.wait(30), "the child never took the lock"
        yield child
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)


def storage_writes(page: str, storage: str = "accounts") -> list[float]:
    """The ``lockkit_storage_operations_total{outcome="writes"}`` samples of a /metrics page (it must parse)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(page)}
    return [
        s.value
        for s in families["lockkit_storage_operations"].samples
        if s.name.endswith("_total") and s.labels == {"storage": storage, "outcome": "writes"}
    ]


def increment_under_lock(make_lock: Any, counter: str, threads: int, cycles: int) -> None:
    """In a process: ``threads`` threads, each with its own lock from ``make_lock()``, add 1 to a file ``cycles`` times.

    Read-modify-write of a plain file under the lock; any failed thread fails the process.
    """
    import threading

    failures: list[BaseException] = []

    def work() -> None:
        lock = make_lock()
        try:
            for _ in range(cycles):
                with lock:
                    with open(counter) as f:
                        value = int(f.read())
                    with open(counter, "w") as f:
                        f.write(str(value + 1))
        except BaseException as exc:
            failures.append(exc)
        finally:
            close = getattr(lock, "close", None)
            if close is not None:
                close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} thread(s) failed: {failures[0]!r}")
