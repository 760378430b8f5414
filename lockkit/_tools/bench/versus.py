"""Durable records: lockkit's JsonRepository beside what users pick instead.

P processes x T threads do per-record increments (and, in a second table, a mix of 90%
reads and 10% increments) over R records, in:

* ``JsonRepository.modify`` / ``get``, durable and with ``fsync=False``;
* SQLite in WAL mode, one ``BEGIN IMMEDIATE`` transaction per update, with
  ``synchronous=FULL`` (durable) and ``synchronous=NORMAL`` (not durable against a power
  loss: a commit waits for no fsync);
* the hand glue: filelock's ``FileLock`` on a sidecar lock file around a read and an
  ``atomicwrites.atomic_write`` (durable), reads under the same lock.

Every run checks the totals (0 lost updates) and prints updates/s, reads/s, the 99th
percentile latency and the ratio to SQLite FULL, the medians of several rounds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics as _st
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from lockkit._tools.bench import Table, race_processes
from lockkit._tools.bench.peers import optional

DURABLE = "lockkit JsonRepository"
FAST = "lockkit JsonRepository fsync=False"
SQL_FULL = "SQLite WAL synchronous=FULL"
SQL_NORMAL = "SQLite WAL synchronous=NORMAL"
GLUE = "filelock + atomicwrites"
KINDS = [DURABLE, FAST, SQL_FULL, SQL_NORMAL, GLUE]
_DURABLE_KINDS = {DURABLE: "yes", FAST: "no (no fsync)", SQL_FULL: "yes", SQL_NORMAL: "no (power loss)", GLUE: "yes"}

Ops = tuple[Callable[[str], Any], Callable[[str], None]]  # (read, increment)


def _bump(value: Any) -> dict[str, int]:
    return {"n": (value or {"n": 0})["n"] + 1}


def _sqlite_ops(directory: str, synchronous: str) -> Ops:
    local = threading.local()  # one connection per thread, as sqlite3 expects

    def conn() -> sqlite3.Connection:
        c: sqlite3.Connection | None = getattr(local, "c", None)
        if c is None:
            c = sqlite3.connect(os.path.join(directory, "kv.db"), timeout=600, isolation_level=None)
            c.execute(f"PRAGMA synchronous={synchronous}")
            local.c = c
        return c

    def read(key: str) -> Any:
        row = conn().execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0])

    def increment(key: str) -> None:
        c = conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            (raw,) = c.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            c.execute("UPDATE kv SET v = ? WHERE k = ?", (json.dumps(_bump(json.loads(raw))), key))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    return read, increment


def _glue_ops(directory: str) -> Ops:
    filelock: Any = optional("filelock")  # both bench extras; _has_glue() checked them
    atomicwrites: Any = optional("atomicwrites")

    def path(key: str) -> str:
        return os.path.join(directory, key + ".json")

    def read(key: str) -> Any:
        with filelock.FileLock(path(key) + ".lock"), open(path(key), "rb") as f:
            return json.loads(f.read())

    def increment(key: str) -> None:
        with filelock.FileLock(path(key) + ".lock"):
            with open(path(key), "rb") as f:
                value = json.loads(f.read())
            with atomicwrites.atomic_write(path(key), mode="w", overwrite=True) as out:
                out.write(json.dumps(_bump(value)))

    return read, increment


def _ops(kind: str, directory: str) -> Ops:
    if kind in (DURABLE, FAST):
        from lockkit import JsonRepository

        repo = JsonRepository(directory, fsync=kind == DURABLE)

        def increment(key: str) -> None:
            repo.modify(key, _bump)

        return repo.get, increment
    if kind in (SQL_FULL, SQL_NORMAL):
        return _sqlite_ops(directory, "FULL" if kind == SQL_FULL else "NORMAL")
    return _glue_ops(directory)


def _setup(kind: str, directory: str, keys: list[str]) -> None:
    if kind in (SQL_FULL, SQL_NORMAL):
        db = sqlite3.connect(os.path.join(directory, "kv.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        db.executemany("INSERT INTO kv VALUES (?, ?)", [(k, json.dumps({"n": 0})) for k in keys])
        db.close()
        return
    for key in keys:
        with open(os.path.join(directory, key + ".json"), "w") as f:
            f.write(json.dumps({"n": 0}))


def _total(kind: str, directory: str, keys: list[str]) -> int:
    read, _ = _ops(kind, directory)
    return sum(int(read(k)["n"]) for k in keys)


def _worker(
    kind: str, directory: str, keys: list[str], threads: int, ops: int, reads: float, out: str, start: Any
) -> None:
    read, increment = _ops(kind, directory)
    lat: dict[str, list[float]] = {"read": [], "update": []}
    mu = threading.Lock()
    go = threading.Barrier(threads + 1)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mine: dict[str, list[float]] = {"read": [], "update": []}
        go.wait()
        for _ in range(ops):
            key = rng.choice(keys)
            op = "read" if rng.random() < reads else "update"
            t0 = time.perf_counter()
            if op == "read":
                read(key)
            else:
                increment(key)
            mine[op].append(time.perf_counter() - t0)
        with mu:
            for k, v in mine.items():
                lat[k] += v

    pool = [threading.Thread(target=work, args=(os.getpid() * 1000 + i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    go.wait()
    for t in pool:
        t.join()
    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
        json.dump(lat, f)


def _p99(samples: list[float]) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _round(kind: str, procs: int, threads: int, records: int, ops: int, reads: float) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="lockkit-bench-")
    out = tempfile.mkdtemp(prefix="lockkit-bench-out-")
    keys = [f"r{i:03d}" for i in range(records)]
    try:
        _setup(kind, directory, keys)
        seconds = race_processes(_worker, (kind, directory, keys, threads, ops, reads, out), procs)
        lat: dict[str, list[float]] = {"read": [], "update": []}
        for name in os.listdir(out):
            with open(os.path.join(out, name)) as f:
                for k, v in json.load(f).items():
                    lat[k] += v
        updates = len(lat["update"])
        lost = updates - _total(kind, directory, keys)
        return {
            "updates": updates / seconds,
            "reads": len(lat["read"]) / seconds,
            "p99u": _p99(lat["update"]),
            "p99r": _p99(lat["read"]),
            "lost": float(lost),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def _table(quick: bool, reads: float) -> Table:
    procs, threads, records = (2, 4, 16) if quick else (4, 8, 64)
    ops, rounds = (20, 3) if quick else (40, 5)
    if reads:
        ops *= 5
    mix = f", {reads:.0%} reads" if reads else ""
    t = Table(
        f"durable records, vs what users pick instead: {procs} processes x {threads} threads, {records} records{mix}",
        [
            ("updates", "updates/s"),
            ("reads", "reads/s"),
            ("p99u", "p99 update ms"),
            ("p99r", "p99 read ms"),
            ("x_full", "x SQLite FULL"),
            ("lost", "lost"),
            ("durable", "durable"),
        ],
    )
    kinds = [k for k in KINDS if k != GLUE or _has_glue()]
    res: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:  # interleaved: a slow spell of the shared disk hits every kind
            res[kind].append(_round(kind, procs, threads, records, ops, reads))
    for kind in kinds:
        rows = res[kind]
        med = {k: _st.median(r[k] for r in rows) for k in ("updates", "reads", "p99u", "p99r")}
        t.add(kind, **med, lost=sum(r["lost"] for r in rows), durable=_DURABLE_KINDS[kind])
    if not reads:
        t.notes.append("p99 read ms: no reads in this run")
    if GLUE not in kinds:
        t.add(GLUE, updates=float("nan"), durable="not installed")
    full = t.value(SQL_FULL, "updates")
    for row in t.rows:
        row.values["x_full"] = t.value(row.name, "updates") / full
    if reads:
        t.bar(
            "JsonRepository.get reads/s vs SQLite FULL's in the read-heavy mix (bar >= 1x)",
            t.value(DURABLE, "reads") / t.value(SQL_FULL, "reads"),
            1.0,
            at_most=False,
        )
    else:
        t.bar(
            "durable JsonRepository.modify vs SQLite WAL FULL (bar >= 1.5x)",
            t.value(DURABLE, "updates") / full,
            1.5,
            at_most=False,
        )
    t.bar(
        "durable JsonRepository vs filelock + atomicwrites, updates/s (bar >= 2x)",
        t.value(DURABLE, "updates") / t.value(GLUE, "updates"),
        2.0,
        at_most=False,
    )
    lost = sum(float(r.values["lost"]) for r in t.rows if isinstance(r.values.get("lost"), float))
    t.bar("lost updates, all kinds (bar: 0)", lost, 0, at_most=True, unit="")
    return t


def _has_glue() -> bool:
    return optional("atomicwrites") is not None and optional("filelock") is not None


def run(quick: bool) -> list[Table]:
    """The update-only table and the read-heavy table."""
    return [_table(quick, 0.0), _table(quick, 0.9)]
