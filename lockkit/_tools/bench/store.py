"""Persistent store benchmarks: debounce coalescing and the cost of encryption."""

from __future__ import annotations

import json
import os
import shutil
import statistics as _st
import tempfile
import threading
import time

from lockkit import PersistentStore, atomic_write
from lockkit._tools.bench import Table
from lockkit.storage import EncryptionService


def debounced(quick: bool) -> Table:
    """Eight threads making many changes to a debounced store."""
    changes = 20_000 if quick else 100_000
    t = Table(
        f"debounced store: 8 threads making {changes:,} changes (debounce 1 s, the default)",
        [
            ("changes", "changes"),
            ("saves", "saves"),
            ("per", "changes per save"),
            ("flush_ms", "flush ms"),
            ("save_ms", "one save ms"),
        ],
    )
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    try:
        store = PersistentStore(os.path.join(tmp, "s.json"), save="debounced", debounce=1.0)
        store["warm-up"] = 0  # the first save creates the data and lock files: keep it out of the figures
        store.flush()
        warm_saves = store.statistics().saves
        per = changes // 8

        def work(i: int) -> None:
            for n in range(per):
                store[f"t{i}-{n % 200}"] = n

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        before = store.statistics().saves
        t0 = time.perf_counter()
        store.flush()
        flush_ms = (time.perf_counter() - t0) * 1000
        stats = store.statistics()
        flush_saves = stats.saves - before
        saves = stats.saves - warm_saves
        samples = []
        for i in range(5):  # the reference: one save of the same map, median of five
            store["one-more"] = i
            t1 = time.perf_counter()
            store.flush()
            samples.append((time.perf_counter() - t1) * 1000)
        save_ms = _st.median(samples)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    made = stats.changes - 1
    t.add(
        "lockkit.PersistentStore debounced",
        changes=float(made),
        saves=float(saves),
        per=made / max(1, saves),
        flush_ms=flush_ms,
        save_ms=save_ms,
    )
    t.bar("saves per change (bar <= 1/1000)", saves / made * 1000, 1.0, at_most=True, unit=" per 1000")
    t.bar("saves performed by flush() (bar <= 1)", float(flush_saves), 1.0, at_most=True, unit="")
    t.bar("flush latency / one warm save (bar <= 1.25)", flush_ms / save_ms, 1.25, at_most=True, unit="x")
    t.notes.append("the flush right after the burst is one save whose JSON encoding runs on cold caches")
    return t


def encrypted(quick: bool) -> Table:
    """Saving a 1 MiB map encrypted versus the same bytes unencrypted."""
    rounds = 5 if quick else 15
    data = {f"key-{i}": "v" * 1000 for i in range(1000)}
    payload = json.dumps(data).encode()
    key = EncryptionService.generate_key()
    t = Table(f"save of a {len(payload) / 2**20:.1f} MiB map", [("ms", "ms/save"), ("x", "x plain atomic_write")])
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    try:
        plain_path = os.path.join(tmp, "plain.json")
        enc = PersistentStore(os.path.join(tmp, "enc.json"), codec=EncryptionService(key))
        enc.update(data)
        plain: list[float] = []
        ours: list[float] = []
        for i in range(rounds):
            t0 = time.perf_counter()
            with atomic_write(plain_path, "wb") as f:
                f.write(json.dumps({"lockkit_store": 1, "entries": {k: [v, None] for k, v in data.items()}}).encode())
            plain.append((time.perf_counter() - t0) * 1000)
            enc.set("key-0", "v" * 1000 + str(i))
            t1 = time.perf_counter()
            enc.set("key-1", "w" * 1000 + str(i))  # immediate mode: one full encrypted save
            ours.append((time.perf_counter() - t1) * 1000)
        enc.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = _st.median(plain)
    t.add("atomic_write of the serialised map", ms=base, x=1.0)
    t.add("PersistentStore(codec=EncryptionService)", ms=_st.median(ours), x=_st.median(ours) / base)
    t.bar("encrypted save vs plain atomic_write (bar <= 1.3x)", _st.median(ours) / base, 1.3, at_most=True)
    return t


def run(quick: bool) -> list[Table]:
    """Every store table."""
    return [debounced(quick), encrypted(quick)]
