"""Thread-scope benchmarks: Mutex, RWLock and LockManager beside their peers."""

from __future__ import annotations

import gc
import statistics as _st
import threading
import time
import tracemalloc
from _thread import allocate_lock
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from lockkit import LockManager, Mutex, RWLock
from lockkit._tools.bench import Table, median_ns_per_op


def _rwlock() -> Any:
    """Return readerwriterlock's ``rwlock`` module (a bench peer, imported when a table needs it)."""
    from readerwriterlock import rwlock

    return rwlock


class TicketLock:
    """The naive FIFO lock: a ticket counter on a Condition, woken with ``notify_all``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._cond.wait()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class BareFifo:
    """The floor of FIFO handoff under the GIL: the same handoff with no bookkeeping at all."""

    def __init__(self) -> None:
        self._gate = allocate_lock()
        self._mu = allocate_lock()
        self._q: deque[Any] = deque()

    def __enter__(self) -> None:
        if not self._q and self._gate.acquire(False):
            return
        with self._mu:
            w = allocate_lock()
            w.acquire()
            self._q.append(w)
            if self._q[0] is w and self._gate.acquire(False):
                self._q.popleft()
                return
        w.acquire()

    def __exit__(self, *exc: object) -> None:
        if self._q:
            with self._mu:
                if self._q:
                    self._q.popleft().release()
                    return
                self._gate.release()
                return
        self._gate.release()
        if self._q:
            with self._mu:
                if self._q and self._gate.acquire(False):
                    self._q.popleft().release()


class _RWFairWriter:
    """readerwriterlock's RWLockFair writer as a plain context manager."""

    def __init__(self) -> None:
        self._w = _rwlock().RWLockFair().gen_wlock()

    def __enter__(self) -> None:
        self._w.acquire()

    def __exit__(self, *exc: object) -> None:
        self._w.release()


def _with_loop(lock: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with lock:
                pass

    return run


def uncontended(quick: bool) -> Table:
    """``with lock: pass`` on one thread."""
    n, rounds = (100_000, 5) if quick else (300_000, 9)
    t = Table("uncontended acquire+release (one thread)", [("ns", "ns/op"), ("x_rlock", "x RLock")])
    rwf = _rwlock().RWLockFair()
    peers: list[tuple[str, Any]] = [
        ("threading.Lock", threading.Lock()),
        ("threading.RLock", threading.RLock()),
        ("lockkit.Mutex", Mutex()),
        ("lockkit.RWLock write (fifo)", RWLock().write()),
        ("readerwriterlock RWLockFair write", rwf.gen_wlock()),
    ]
    results = {name: [] for name, _ in peers}  # type: dict[str, list[float]]
    for _ in range(rounds):  # interleave implementations so drift hits all alike
        for name, lock in peers:
            results[name].append(median_ns_per_op(_with_loop(lock), n, 1))
    for name, _ in peers:
        ns = _st.median(results[name])
        t.add(name, ns=ns)
    rlock = t.value("threading.RLock", "ns")
    for row in t.rows:
        row.values["x_rlock"] = float(row.values["ns"]) / rlock
    mutex = t.value("lockkit.Mutex", "ns")
    t.bar("Mutex vs threading.RLock (bar <= 2.0x)", mutex / rlock, 2.0, at_most=True)
    t.bar(
        "Mutex vs RWLockFair write (bar <= 0.5x)",
        mutex / t.value("readerwriterlock RWLockFair write", "ns"),
        0.5,
        at_most=True,
    )
    return t


def _hammer(lock: Any, threads: int, seconds: float) -> tuple[float, float]:
    """Throughput (ops/s) and the longest single wait (s) of ``threads`` threads for ``seconds``.

    Time-boxed rather than a fixed count, so a slow peer (or a loaded machine) cannot
    stretch the run: every implementation gets the same wall time.
    """
    longest = [0.0] * threads
    done = [0] * threads
    count = [0]
    stop = [False]
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        barrier.wait()
        worst = 0.0
        n = 0
        clock = time.perf_counter
        while not stop[0]:
            t0 = clock()
            with lock:
                t1 = clock()
                count[0] += 1
            n += 1
            worst = max(worst, t1 - t0)
        longest[i] = worst
        done[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop[0] = True
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t0
    if count[0] != sum(done):  # pragma: no cover - a broken lock
        raise AssertionError(f"lost updates: {count[0]} != {sum(done)}")
    return count[0] / elapsed, max(longest)


def contended(quick: bool) -> Table:
    """Eight threads hammering one lock."""
    threads, seconds, rounds = (8, 0.25, 3) if quick else (8, 1.0, 5)
    t = Table(
        f"{threads} threads hammering one lock ({seconds} s per round)",
        [("ops", "ops/s"), ("x_mutex", "x Mutex"), ("wait_ms", "longest wait ms"), ("fair", "fairness")],
    )
    peers: list[tuple[str, Callable[[], Any], str]] = [
        ("lockkit.Mutex", Mutex, "strict FIFO"),
        ("bare FIFO handoff (floor)", BareFifo, "strict FIFO"),
        ("Condition ticket lock (notify_all)", TicketLock, "strict FIFO"),
        ("readerwriterlock RWLockFair write", _RWFairWriter, "barging"),
        ("threading.Lock", threading.Lock, "barging"),
    ]
    ops: dict[str, list[float]] = {p[0]: [] for p in peers}
    waits: dict[str, list[float]] = {p[0]: [] for p in peers}
    for _ in range(rounds):
        for name, make, _f in peers:
            o, w = _hammer(make(), threads, seconds)
            ops[name].append(o)
            waits[name].append(w)
    for name, _m, fair in peers:
        t.add(name, ops=_st.median(ops[name]), wait_ms=max(waits[name]) * 1000, fair=fair)
    mutex = t.value("lockkit.Mutex", "ops")
    for row in t.rows:
        row.values["x_mutex"] = float(row.values["ops"]) / mutex
    t.bar(
        "Mutex vs ticket lock throughput (bar >= 4x)",
        mutex / t.value("Condition ticket lock (notify_all)", "ops"),
        4.0,
        at_most=False,
    )
    t.bar(
        "Mutex vs RWLockFair throughput (bar >= 0.6x)",
        mutex / t.value("readerwriterlock RWLockFair write", "ops"),
        0.6,
        at_most=False,
    )
    t.bar("Mutex longest wait (bar <= 10 ms)", t.value("lockkit.Mutex", "wait_ms"), 10.0, at_most=True, unit=" ms")
    t.notes.append("strict FIFO needs a thread switch per handoff; the bare-handoff row is that floor under the GIL")
    t.notes.append("longest wait is the worst over all rounds")
    return t


class _RWAdapter:
    def __init__(self, read: Callable[[], Any], write: Callable[[], Any]) -> None:
        self.read = read
        self.write = write


def _rw_peers() -> list[tuple[str, Callable[[], _RWAdapter]]]:
    def rwl(factory: Callable[[], Any]) -> Callable[[], _RWAdapter]:
        def make() -> _RWAdapter:
            lock = factory()
            return _RWAdapter(lambda: _Gen(lock.gen_rlock()), lambda: _Gen(lock.gen_wlock()))

        return make

    def ours(policy: Any) -> Callable[[], _RWAdapter]:
        def make() -> _RWAdapter:
            lock = RWLock(policy)
            return _RWAdapter(lock.read, lock.write)

        return make

    return [
        ("lockkit.RWLock fifo", ours("fifo")),
        ("lockkit.RWLock read-pref", ours("read")),
        ("lockkit.RWLock write-pref", ours("write")),
        ("readerwriterlock RWLockFair", rwl(_rwlock().RWLockFair)),
        ("readerwriterlock RWLockRead", rwl(_rwlock().RWLockRead)),
        ("readerwriterlock RWLockWrite", rwl(_rwlock().RWLockWrite)),
    ]


class _Gen:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._lock.release()


def _rw_run(make: Callable[[], _RWAdapter], readers: int, seconds: float) -> tuple[float, float, int]:
    lock = make()
    stop = threading.Event()
    reads = [0] * readers
    wmax = [0.0]
    writes = [0]
    barrier = threading.Barrier(readers + 2)

    def reader(i: int) -> None:
        barrier.wait()
        n = 0
        read = lock.read
        while not stop.is_set():
            with read():
                n += 1
        reads[i] = n

    def writer() -> None:
        barrier.wait()
        clock = time.perf_counter
        while not stop.is_set():
            t0 = clock()
            with lock.write():
                w = clock() - t0
                writes[0] += 1
            wmax[0] = max(wmax[0], w)
            time.sleep(0.001)

    pool = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    pool.append(threading.Thread(target=writer))
    for th in pool:
        th.start()
    barrier.wait()
    time.sleep(seconds)
    stop.set()
    for th in pool:
        th.join()
    return sum(reads) / seconds, wmax[0], writes[0]


def rw_mixed(quick: bool) -> Table:
    """Eight readers and one writer."""
    readers, seconds, rounds = (8, 0.25, 3) if quick else (8, 1.5, 5)
    t = Table(
        f"RWLock: {readers} readers + 1 writer for {seconds} s",
        [("reads", "reads/s"), ("x_fair", "x RWLockFair"), ("writes", "writes"), ("wmax", "writer longest wait ms")],
    )
    peers = _rw_peers()
    res: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _ in peers}
    for _ in range(rounds):
        for name, make in peers:
            res[name].append(_rw_run(make, readers, seconds))
    for name, _ in peers:
        r = res[name]
        t.add(
            name,
            reads=_st.median(x[0] for x in r),
            wmax=max(x[1] for x in r) * 1000,
            writes=float(_st.median(x[2] for x in r)),
        )
    fair = t.value("readerwriterlock RWLockFair", "reads")
    for row in t.rows:
        row.values["x_fair"] = float(row.values["reads"]) / fair
    t.bar(
        "RWLock fifo reads vs RWLockFair (bar >= 1.0x)",
        t.value("lockkit.RWLock fifo", "reads") / fair,
        1.0,
        at_most=False,
    )
    t.bar(
        "RWLock fifo writer longest wait / 10 ms (bar <= 1.0)",
        t.value("lockkit.RWLock fifo", "wmax") / 10.0,
        1.0,
        at_most=True,
    )
    return t


def manager(quick: bool) -> Table:
    """A million distinct keys through LockManager."""
    keys = 200_000 if quick else 1_000_000
    t = Table(
        f"LockManager: {keys:,} distinct keys acquired and released",
        [("ns", "ns/op"), ("x_mutex", "x Mutex"), ("entries", "entries left"), ("kib", "retained KiB")],
    )
    m = LockManager()

    def run(n: int) -> None:
        acquire = m.acquire
        for k in range(n):
            acquire(k).release()

    ns = median_ns_per_op(run, keys, 3)
    mutex = median_ns_per_op(_with_loop(Mutex()), keys, 3)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    m2 = LockManager()
    for k in range(keys):
        m2.acquire(("key", k)).release()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    t.add("lockkit.LockManager acquire+release", ns=ns, x_mutex=ns / mutex, entries=float(len(m2)), kib=retained / 1024)
    t.add("lockkit.Mutex (reference)", ns=mutex, x_mutex=1.0, entries="", kib="")
    t.bar("entries left (bar == 0)", float(len(m2)), 0.0, at_most=True, unit="")
    t.bar("retained memory (bar < 1 MiB)", retained / 2**20, 1.0, at_most=True, unit=" MiB")
    t.bar("per-op cost vs uncontended Mutex (bar <= 3x)", ns / mutex, 3.0, at_most=True)
    return t


def run(quick: bool) -> list[Table]:
    """Every thread-scope table."""
    _rwlock()  # every table has readerwriterlock rows: an ImportError skips the group
    return [uncontended(quick), contended(quick), rw_mixed(quick), manager(quick)]
