"""PostgreSQL benchmarks: PgLock beside a bare advisory-lock pair, RedisLock and redis-py's Lock."""

from __future__ import annotations

import statistics as _st
import time
from collections.abc import Callable
from typing import Any

import psycopg  # an ImportError skips the group

from lockkit._tools.bench import Table, churn, race_processes
from lockkit._tools.pgcluster import PostgresCluster, bindir


class _BareAdvisory:
    """``SELECT pg_advisory_lock(k1, k2)`` / ``pg_advisory_unlock`` on one connection: the floor."""

    def __init__(self, conninfo: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)

    def acquire(self) -> None:
        self._conn.execute("SELECT pg_advisory_lock(17, 42)")

    def release(self) -> None:
        self._conn.execute("SELECT pg_advisory_unlock(17, 42)")


class _FencedPgLock:
    """A PgLock whose every hold reads its fencing token (one more round trip, one sequence update)."""

    def __init__(self, conninfo: str) -> None:
        from lockkit.postgres import PgLock

        self._lock = PgLock(conninfo, "bench-fenced")

    def acquire(self) -> None:
        self._lock.acquire()
        if self._lock.fencing_token is None:
            raise RuntimeError("a fenced PgLock hold has no token")

    def release(self) -> None:
        self._lock.release()


def _factories(conninfo: str, redis_port: int | None) -> list[tuple[str, Callable[[], Any]]]:
    from lockkit.postgres import PgLock

    out: list[tuple[str, Callable[[], Any]]] = [
        ("lockkit PgLock", lambda: PgLock(conninfo, "bench")),
        ("bare pg_advisory_lock/unlock pair", lambda: _BareAdvisory(conninfo)),
    ]
    if redis_port is not None:
        import redis

        from lockkit.redis import RedisLock

        out.append(("lockkit RedisLock", lambda: RedisLock(redis.Redis(port=redis_port), "bench-pg", lease=30)))
        out.append(
            (
                "redis-py Lock",
                lambda: redis.Redis(port=redis_port).lock("bench-pg-py", timeout=30, blocking_timeout=60),
            )
        )
    return out


def uncontended(conninfo: str, redis_port: int | None, quick: bool) -> Table:
    """Acquire + release with nobody else around."""
    n, rounds = (200, 5) if quick else (1000, 7)
    t = Table("PgLock uncontended acquire+release", [("us", "us/op"), ("x", "x bare advisory pair")])
    factories = _factories(conninfo, redis_port)
    factories.insert(1, ("lockkit PgLock, token read", lambda: _FencedPgLock(conninfo)))
    locks = [(name, make()) for name, make in factories]
    res: dict[str, list[float]] = {name: [] for name, _ in locks}
    for _name, lock in locks:  # warm-up, not measured: connections, prepared statements, scripts
        for _ in range(n):
            lock.acquire()
            lock.release()
    for _ in range(rounds):  # interleaved rounds: drift hits every row alike
        for name, lock in locks:
            t0 = time.perf_counter()
            for _ in range(n):
                lock.acquire()
                lock.release()
            res[name].append((time.perf_counter() - t0) / n * 1e6)
    for name, _ in locks:
        t.add(name, us=_st.median(res[name]))
    base = t.value("bare pg_advisory_lock/unlock pair", "us")
    for row in t.rows:
        row.values["x"] = float(row.values["us"]) / base
    t.bar("PgLock vs bare advisory pair (bar <= 1.5x)", t.value("lockkit PgLock", "us") / base, 1.5, at_most=True)
    t.notes.append(
        "PgLock waits FIFO locally first; its fencing token is taken when first read during a hold "
        "(the 'token read' row: one more round trip); RedisLock's acquire script always takes one"
    )
    return t


def contended(conninfo: str, redis_port: int | None, quick: bool) -> Table:
    """Four processes taking turns on one lock."""
    procs, n, rounds = (4, 100, 3) if quick else (4, 400, 5)
    t = Table(f"{procs} processes on one lock ({n} acquisitions each)", [("ops", "ops/s"), ("x", "x PgLock")])
    res: dict[str, list[float]] = {}
    factories = _factories(conninfo, redis_port)
    for _ in range(rounds):
        for name, make in factories:
            seconds = race_processes(churn, (make, n), procs)
            res.setdefault(name, []).append(procs * n / seconds)
    for name, _ in factories:
        t.add(name, ops=_st.median(res[name]))
    ours = t.value("lockkit PgLock", "ops")
    for row in t.rows:
        row.values["x"] = float(row.values["ops"]) / ours
    t.notes.append("the bare pair and redis-py's Lock do not queue waiters fairly; PgLock and RedisLock do")
    return t


def guarantees(redis_port: int | None) -> Table:
    """What each lock promises, beside the figures."""
    t = Table(
        "guarantees",
        [
            ("fence", "fencing"),
            ("fifo", "FIFO"),
            ("shared", "shared mode"),
            ("loss", "loss detection"),
            ("crash", "crash release"),
        ],
    )
    t.add(
        "lockkit PgLock",
        fence="sequence",
        fifo="server queue",
        shared="yes",
        loss="session watcher",
        crash="session end",
    )
    t.add(
        "bare pg_advisory_lock/unlock pair",
        fence="no",
        fifo="server queue",
        shared="yes",
        loss="no",
        crash="session end",
    )
    if redis_port is not None:
        t.add("lockkit RedisLock", fence="counter", fifo="tickets", shared="yes", loss="renewer", crash="lease expiry")
        t.add("redis-py Lock", fence="no", fifo="no (polling)", shared="no", loss="no", crash="lease expiry")
    return t


def run(quick: bool) -> list[Table]:
    """Every PostgreSQL table (with the Redis rows when redis-server and redis-py are installed)."""
    if bindir() is None:
        raise ImportError("PostgreSQL server binaries are not installed", name="postgresql")
    from lockkit._tools.bench.redis import _server

    cluster = PostgresCluster()
    redis_server = _server()
    try:
        port = None if redis_server is None else redis_server[1]
        return [uncontended(cluster.conninfo, port, quick), contended(cluster.conninfo, port, quick), guarantees(port)]
    finally:
        cluster.close()
        if redis_server is not None:
            import shutil

            redis_server[0].terminate()
            redis_server[0].wait(10)
            shutil.rmtree(redis_server[2], ignore_errors=True)
