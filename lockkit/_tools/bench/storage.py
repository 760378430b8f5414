"""Storage benchmarks: atomic_write and JsonDocument.modify beside the bare recipe and peers."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import statistics as _st
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lockkit import JsonDocument, atomic_write
from lockkit._tools.bench import Table, race_processes
from lockkit._tools.bench.peers import optional


def bare_durable(path: str, data: bytes) -> None:
    """The bare durable recipe: temp file, write, fsync, rename, directory fsync."""
    tmp = f"{path}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _writers() -> list[tuple[str, str, Callable[[str, bytes], None]]]:
    def ours(path: str, data: bytes) -> None:
        with atomic_write(path, "wb") as f:
            f.write(data)

    out: list[tuple[str, str, Callable[[str, bytes], None]]] = [
        ("bare durable recipe", "yes", bare_durable),
        ("lockkit.atomic_write", "yes", ours),
    ]
    aw = optional("atomicwrites")
    if aw is not None:

        def theirs(path: str, data: bytes) -> None:
            with aw.atomic_write(path, mode="wb", overwrite=True) as f:
                f.write(data)

        out.append(("atomicwrites.atomic_write", "yes", theirs))
    safer = optional("safer")
    if safer is not None:

        def safe(path: str, data: bytes) -> None:
            with safer.open(path, "wb", temp_file=True) as f:
                f.write(data)

        out.append(("safer.open(temp_file=True)", "no (no fsync)", safe))
    return out


def atomic(quick: bool, size: int, label: str) -> Table:
    """Durable replacement of a file of ``size`` bytes."""
    n, rounds = (20, 5) if quick else (60, 7)
    if size >= 1 << 20:
        n = max(5, n // 3)
    t = Table(f"atomic write of {label}", [("ms", "ms/write"), ("x_bare", "x bare recipe"), ("durable", "durable")])
    data = os.urandom(size)
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    writers = _writers()
    res: dict[str, list[float]] = {name: [] for name, _, _ in writers}
    try:
        for _ in range(rounds):
            for i, (name, _, write) in enumerate(writers):
                path = os.path.join(tmp, f"f{i}")
                t0 = time.perf_counter()
                for _ in range(n):
                    write(path, data)
                res[name].append((time.perf_counter() - t0) / n * 1000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, durable, _ in writers:
        t.add(name, ms=_st.median(res[name]), durable=durable)
    bare = t.value("bare durable recipe", "ms")
    for row in t.rows:
        row.values["x_bare"] = float(row.values["ms"]) / bare
    t.bar(
        f"atomic_write {label} vs bare recipe (bar <= 1.15x)",
        t.value("lockkit.atomic_write", "ms") / bare,
        1.15,
        at_most=True,
    )
    return t


def _modify_worker(kind: str, path: str, n: int, start: Any) -> None:
    start.wait()
    if kind == "lockkit JsonDocument.modify":
        doc = JsonDocument(path, plain=True)
        for _ in range(n):
            doc.modify(lambda v: {"n": (v or {"n": 0})["n"] + 1})
        return
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT)
    for _ in range(n):
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            try:
                with open(path, "rb") as f:
                    value = json.loads(f.read())
            except FileNotFoundError:
                value = {"n": 0}
            value["n"] += 1
            bare_durable(path, json.dumps(value).encode())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def modify(quick: bool) -> Table:
    """Four processes doing read-modify-write on one JSON document."""
    procs, n, rounds = (4, 40, 2) if quick else (4, 150, 3)
    t = Table(
        f"{procs} processes x {n} read-modify-write of one JSON file (durable)",
        [("ops", "ops/s"), ("x_raw", "x raw"), ("lost", "lost updates")],
    )
    kinds = ["raw flock + bare recipe", "lockkit JsonDocument.modify"]
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    res: dict[str, list[float]] = {k: [] for k in kinds}
    lost = dict.fromkeys(kinds, 0)
    try:
        for r in range(rounds):
            for kind in kinds:
                path = os.path.join(tmp, f"{r}-{kinds.index(kind)}.json")
                res[kind].append(procs * n / race_processes(_modify_worker, (kind, path, n), procs))
                with open(path, "rb") as f:
                    lost[kind] += procs * n - json.loads(f.read())["n"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for kind in kinds:
        t.add(kind, ops=_st.median(res[kind]), lost=float(lost[kind]))
    raw = t.value("raw flock + bare recipe", "ops")
    for row in t.rows:
        row.values["x_raw"] = float(row.values["ops"]) / raw
    t.bar(
        "JsonDocument.modify vs raw flock + bare recipe (bar >= 0.7x)",
        t.value("lockkit JsonDocument.modify", "ops") / raw,
        0.7,
        at_most=False,
    )
    return t


def run(quick: bool) -> list[Table]:
    """Every storage table."""
    return [atomic(quick, 1024, "1 KiB"), atomic(quick, 1 << 20, "1 MiB"), modify(quick)]
