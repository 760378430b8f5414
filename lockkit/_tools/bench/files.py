"""File-lock benchmarks: FileLock beside raw flock, filelock, portalocker and fasteners."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import statistics as _st
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from lockkit import FileLock
from lockkit._tools.bench import Table, median_ns_per_op, race_processes
from lockkit._tools.bench.peers import optional


class _RawFlock:
    """flock on a descriptor opened once: the floor."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class _RawExcl:
    """O_CREAT|O_EXCL create + unlink: the cheapest (but racy to release) marker, for scale."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        while True:
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return
            except FileExistsError:
                time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


class _RawMarkerDir:
    """The race-free marker protocol done by hand: the floor of lockkit's marker strategy.

    mkdir a unique directory, create the owner file in it, rename the directory to the
    lock path; release unlinks the owner file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.owner = ""

    def __enter__(self) -> None:
        while True:
            token = secrets.token_hex(8)
            tmp = f"{self.path}.{token}.tmp"
            os.mkdir(tmp)
            os.close(os.open(os.path.join(tmp, "owner." + token), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            try:
                os.rename(tmp, self.path)
            except OSError:
                os.unlink(os.path.join(tmp, "owner." + token))
                os.rmdir(tmp)
                time.sleep(0.0005)
                continue
            self.owner = os.path.join(self.path, "owner." + token)
            return

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.owner)


def _peer_factories(marker: bool = False) -> list[tuple[str, Callable[[str], AbstractContextManager[Any]]]]:
    out: list[tuple[str, Callable[[str], AbstractContextManager[Any]]]] = []
    filelock = optional("filelock")
    if marker:
        out.append(("raw marker directory + rename", _RawMarkerDir))
        out.append(("raw O_EXCL create + unlink", _RawExcl))
        out.append(("lockkit.FileLock marker", lambda p: FileLock(p, strategy="marker")))
        if filelock is not None:
            out.append(("filelock.SoftFileLock", filelock.SoftFileLock))
        return out
    out.append(("raw flock (open fd)", _RawFlock))
    out.append(("lockkit.FileLock", FileLock))
    if filelock is not None:
        out.append(("filelock.FileLock", filelock.FileLock))
    portalocker = optional("portalocker")
    if portalocker is not None:
        out.append(("portalocker.Lock", lambda p: portalocker.Lock(p, timeout=60, fail_when_locked=False)))
    fasteners = optional("fasteners")
    if fasteners is not None:
        out.append(("fasteners.InterProcessLock", fasteners.InterProcessLock))
    return out


def _uncontended(title: str, peers: list[tuple[str, Callable[[str], Any]]], quick: bool) -> Table:
    n, rounds = (2000, 5) if quick else (10000, 7)
    t = Table(title, [("us", "us/op"), ("x_floor", "x floor")])
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    try:
        locks = [(name, make(os.path.join(tmp, f"{i}.lock"))) for i, (name, make) in enumerate(peers)]
        res: dict[str, list[float]] = {name: [] for name, _ in locks}
        for _ in range(rounds):
            for name, lock in locks:

                def run(k: int, lock: Any = lock) -> None:
                    for _ in range(k):
                        with lock:
                            pass

                res[name].append(median_ns_per_op(run, n, 1) / 1000)
        for name, _ in locks:
            t.add(name, us=_st.median(res[name]))
        floor = t.rows[0].values["us"]
        for row in t.rows:
            row.values["x_floor"] = float(row.values["us"]) / float(floor)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t


def uncontended(quick: bool) -> Table:
    """One process, one thread: acquire + release."""
    t = _uncontended("FileLock uncontended acquire+release (kernel strategy)", _peer_factories(), quick)
    ours = t.value("lockkit.FileLock", "us")
    t.bar(
        "FileLock vs raw flock on an open fd (bar <= 3x)",
        ours / t.value("raw flock (open fd)", "us"),
        3.0,
        at_most=True,
    )
    t.bar(
        "filelock.FileLock / FileLock (bar >= 10x faster)",
        t.value("filelock.FileLock", "us") / ours,
        10.0,
        at_most=False,
    )
    t.notes.append(
        "FileLock also writes its holder record (pid, host, thread, time) and checks the file was not deleted"
    )
    return t


def marker_uncontended(quick: bool) -> Table:
    """The marker strategy against its floor and filelock's SoftFileLock."""
    t = _uncontended("FileLock uncontended acquire+release (marker strategy)", _peer_factories(marker=True), quick)
    ours = t.value("lockkit.FileLock marker", "us")
    t.bar(
        "marker vs the same directory protocol by hand (bar <= 2x)",
        ours / t.value("raw marker directory + rename", "us"),
        2.0,
        at_most=True,
    )
    t.bar(
        "SoftFileLock / marker (bar >= 1x, faster)", t.value("filelock.SoftFileLock", "us") / ours, 1.0, at_most=False
    )
    t.notes.append(
        "the marker is a directory with a JSON owner record published with rename(), with a heartbeat thread; "
        "O_EXCL + unlink is shown for scale: it cannot release without a check-then-unlink race"
    )
    return t


def _counter_worker(kind: str, lock_path: str, counter: str, n: int, start: Any) -> None:
    factories = dict(_peer_factories())
    if kind == "lockkit.FileLock (timeout=30)":
        lock: Any = FileLock(lock_path, timeout=30)

        class _Timed:
            def __enter__(self) -> None:
                if not lock.acquire(timeout=30):
                    raise TimeoutError

            def __exit__(self, *exc: object) -> None:
                lock.release()

        guard: Any = _Timed()
    else:
        guard = factories[kind](lock_path)
    start.wait()
    for _ in range(n):
        with guard:
            fd = os.open(counter, os.O_RDWR)
            value = int(os.pread(fd, 32, 0) or b"0")
            os.pwrite(fd, b"%-20d" % (value + 1), 0)
            os.close(fd)


def contended(quick: bool) -> Table:
    """Four processes incrementing one counter file under each lock."""
    procs, n, rounds = (4, 300, 2) if quick else (4, 1500, 3)
    t = Table(
        f"{procs} processes x {n} counter increments under one lock file",
        [("ops", "ops/s"), ("x_raw", "x raw flock"), ("lost", "lost updates")],
    )
    kinds = [name for name, _ in _peer_factories()]
    kinds.insert(2, "lockkit.FileLock (timeout=30)")
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    res: dict[str, list[float]] = {k: [] for k in kinds}
    lost: dict[str, int] = dict.fromkeys(kinds, 0)
    try:
        for _ in range(rounds):
            for i, kind in enumerate(kinds):
                counter = os.path.join(tmp, f"counter{i}")
                with open(counter, "w") as f:
                    f.write("0")
                elapsed = race_processes(_counter_worker, (kind, os.path.join(tmp, f"c{i}.lock"), counter, n), procs)
                with open(counter) as f:
                    lost[kind] += procs * n - int(f.read().strip() or 0)
                res[kind].append(procs * n / elapsed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for kind in kinds:
        t.add(kind, ops=_st.median(res[kind]), lost=float(lost[kind]))
    raw = t.value("raw flock (open fd)", "ops")
    for row in t.rows:
        row.values["x_raw"] = float(row.values["ops"]) / raw
    t.bar(
        "FileLock (blocking) vs raw blocking flock (bar >= 0.8x)",
        t.value("lockkit.FileLock", "ops") / raw,
        0.8,
        at_most=False,
    )
    t.bar(
        "FileLock (finite timeout) vs raw blocking flock (bar >= 0.5x)",
        t.value("lockkit.FileLock (timeout=30)", "ops") / raw,
        0.5,
        at_most=False,
    )
    t.bar("lost updates, every library (bar == 0)", sum(lost.values()), 0, at_most=True, unit="")
    return t


def run(quick: bool) -> list[Table]:
    """Every file-lock table."""
    return [uncontended(quick), contended(quick), marker_uncontended(quick)]
