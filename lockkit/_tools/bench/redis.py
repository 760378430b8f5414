"""Redis benchmarks: RedisLock beside redis-py's Lock and python-redis-lock, on one server."""

from __future__ import annotations

import os
import shutil
import socket
import statistics as _st
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lockkit._tools.bench import Table, churn, race_processes
from lockkit._tools.bench.peers import optional


def _server() -> tuple[subprocess.Popen[bytes], int, str] | None:
    exe = shutil.which("redis-server")
    if exe is None or optional("redis") is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-redis-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, port, tmp


def _factories(port: int) -> list[tuple[str, Callable[[], Any]]]:
    import redis

    from lockkit.redis import RedisLock

    out: list[tuple[str, Callable[[], Any]]] = [
        ("lockkit RedisLock", lambda: RedisLock(redis.Redis(port=port), "bench", lease=30)),
        (
            "redis-py Lock (SET NX PX + Lua)",
            lambda: redis.Redis(port=port).lock("bench-py", timeout=30, blocking_timeout=60),
        ),
    ]
    prl = optional("redis_lock")
    if prl is not None:
        out.append(("python-redis-lock", lambda: prl.Lock(redis.Redis(port=port), "bench-prl", expire=30)))
    return out


def uncontended(port: int, quick: bool) -> Table:
    """Acquire + release with nobody else around."""
    n, rounds = (300, 5) if quick else (2000, 7)
    t = Table("RedisLock uncontended acquire+release (same server)", [("us", "us/op"), ("x", "x redis-py Lock")])
    locks = [(name, make()) for name, make in _factories(port)]
    res: dict[str, list[float]] = {name: [] for name, _ in locks}
    for _ in range(rounds):
        for name, lock in locks:
            t0 = time.perf_counter()
            for _ in range(n):
                lock.acquire()
                lock.release()
            res[name].append((time.perf_counter() - t0) / n * 1e6)
    for name, _ in locks:
        t.add(name, us=_st.median(res[name]))
    base = t.value("redis-py Lock (SET NX PX + Lua)", "us")
    for row in t.rows:
        row.values["x"] = float(row.values["us"]) / base
    ours = t.value("lockkit RedisLock", "us")
    t.bar("RedisLock vs redis-py Lock (bar <= 1.3x)", ours / base, 1.3, at_most=True)
    t.bar(
        "python-redis-lock / RedisLock (bar >= 1x, faster)",
        t.value("python-redis-lock", "us") / ours,
        1.0,
        at_most=False,
    )
    return t


def contended(port: int, quick: bool) -> Table:
    """Four processes taking turns."""
    procs, n = (4, 100) if quick else (4, 500)
    t = Table(
        f"RedisLock: {procs} processes x {n} acquire+release (same server)",
        [("ops", "ops/s"), ("x", "x redis-py Lock")],
    )
    for kind, make in _factories(port):
        t.add(kind, ops=procs * n / race_processes(churn, (make, n), procs))
    base = t.value("redis-py Lock (SET NX PX + Lua)", "ops")
    for row in t.rows:
        row.values["x"] = float(row.values["ops"]) / base
    t.notes.append("redis-py's Lock and python-redis-lock are not FIFO: a releasing process may re-acquire at once")
    return t


def guarantees() -> Table:
    """What each peer guarantees."""
    t = Table(
        "Redis locks: what each guarantees",
        [
            ("fencing", "fencing tokens"),
            ("fifo", "FIFO"),
            ("renew", "lease renewal"),
            ("loss", "loss detection"),
            ("shared", "shared mode"),
        ],
    )
    t.add(
        "lockkit RedisLock",
        fencing="yes (INCR, never below server clock)",
        fifo="yes (tickets)",
        renew="yes (lease/3)",
        loss="yes (on_lost, LockLostError)",
        shared="yes",
    )
    t.add(
        "redis-py Lock",
        fencing="no",
        fifo="no (polls)",
        renew="manual extend()",
        loss="no (release raises)",
        shared="no",
    )
    t.add(
        "python-redis-lock", fencing="no", fifo="no (BLPOP signal)", renew="yes (auto_renewal)", loss="no", shared="no"
    )
    return t


def run(quick: bool) -> list[Table]:
    """Every Redis table (needs redis-server and redis-py)."""
    started = _server()
    if started is None:
        t = Table("Redis benchmarks", [])
        t.notes.append("skipped: redis-server or redis-py not installed")
        return [t]
    proc, port, tmp = started
    try:
        return [uncontended(port, quick), contended(port, quick), guarantees()]
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop("LOCKKIT_BENCH_REDIS", None)
