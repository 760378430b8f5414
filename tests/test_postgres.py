"""PgLock against a real PostgreSQL cluster started here (initdb + pg_ctl on a free loopback port)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import blocks_async_signals
from postgres_server import PostgresServer, require_postgres
from proc_helpers import increment_under_lock

require_postgres()

import psycopg  # noqa: E402

import lockkit  # noqa: E402
from lockkit.postgres import KEY_ROWS, PgLock, advisory_key  # noqa: E402

pytestmark = pytest.mark.timeout(120)
ctx = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


def admin(pg: PostgresServer) -> Any:
    return psycopg.connect(pg.conninfo, autocommit=True)


def waiting(pg: PostgresServer, lock: PgLock, what: str = "count(*)") -> int:
    """``what`` over the sessions waiting for ``lock`` in the server (by default: how many)."""
    with admin(pg) as c:
        rows = c.execute(f"SELECT {what} FROM pg_locks WHERE {KEY_ROWS} AND NOT granted", lock.key).fetchall()
    return len(rows) if what != "count(*)" else int(rows[0][0])


def test_contract_basics(pg: PostgresServer) -> None:
    lock = PgLock(pg.conninfo, "basics")
    assert lock.acquire(timeout=5)
    assert lock.fencing_token is not None and lock.locked()
    assert blocks_async_signals("lockkit-pg-watch")  # the app's SIGTERM reaches its main thread
    with pytest.raises(lockkit.DeadlockError):
        lock.acquire()
    assert lock.acquire(timeout=0) is False  # a try cannot deadlock
    info = lock.holder()
    assert info is not None and info.pid == os.getpid() and info.thread == threading.current_thread().name
    other = PgLock(pg.conninfo, "basics")
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(other.acquire(timeout=0)))
    t.start()
    t.join()
    assert result == [False]
    lock.release()
    with pytest.raises(lockkit.NotOwnerError):
        lock.release()
    assert not lock.locked()
    with lock:
        first = lock.fencing_token
    with lock:
        assert lock.fencing_token is not None and first is not None and lock.fencing_token > first
    s = lock.statistics()
    assert s.acquisitions == 3 and s.contentions >= 0
    lock.close()
    other.close()


def test_holder_names_a_thread_whose_name_has_spaces(pg: PostgresServer) -> None:
    lock = PgLock(pg.conninfo, "names")
    seen: list[Any] = []

    def hold() -> None:
        with lock:
            seen.append(lock.holder())

    t = threading.Thread(target=hold, name="worker 7 (deposits)")
    t.start()
    t.join(30)
    assert seen[0] is not None and seen[0].thread == "worker 7 (deposits)" and seen[0].pid == os.getpid()


def test_shared_mode(pg: PostgresServer) -> None:
    r1, r2 = PgLock(pg.conninfo, "rw", shared=True), PgLock(pg.conninfo, "rw", shared=True)
    w = PgLock(pg.conninfo, "rw")
    assert r1.acquire(timeout=5)
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(r2.acquire(timeout=5)))
    t.start()
    t.join()
    assert got == [True]  # readers share
    assert w.acquire(timeout=0) is False
    info = w.holder()
    assert info is not None and info.shared
    r1.release()
    t = threading.Thread(target=r2.release)
    t.start()
    t.join()
    assert w.acquire(timeout=5)
    w.release()


def test_timeout_waits_in_the_server_and_gives_up(pg: PostgresServer) -> None:
    holder = PgLock(pg.conninfo, "timeout")
    holder.acquire()
    waiter = PgLock(pg.conninfo, "timeout")
    out: list[Any] = []

    def wait() -> None:
        t0 = time.monotonic()
        out.append(waiter.acquire(timeout=0.3))
        out.append(time.monotonic() - t0)

    t = threading.Thread(target=wait)
    t.start()
    t.join(60)
    assert out[0] is False and out[1] >= 0.3  # never earlier than asked
    with pytest.raises(lockkit.LockTimeoutError, match=f"held by pid {os.getpid()}"):
        t = threading.Thread(target=lambda: out.append(_enter(PgLock(pg.conninfo, "timeout", timeout=0.05))))
        t.start()
        t.join(60)
        raise out[-1]
    holder.release()


def _enter(lock: PgLock) -> BaseException | None:
    try:
        with lock:
            return None
    except BaseException as exc:
        return exc


def test_bad_input(pg: PostgresServer) -> None:
    with pytest.raises(ValueError):
        PgLock(pg.conninfo, "")
    with pytest.raises(TypeError):
        PgLock(pg.conninfo, 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PgLock(pg.conninfo, "a\0b")
    with admin(pg) as conn, pytest.raises(TypeError, match="sessions of its own"):
        PgLock(conn, "x")  # type: ignore[arg-type]
    with pytest.raises(psycopg.OperationalError):
        PgLock("host=127.0.0.1 port=1 connect_timeout=2 user=postgres", "x").acquire(timeout=1)
    closed = psycopg.connect(pg.conninfo)
    closed.close()
    with pytest.raises(psycopg.OperationalError):
        PgLock(lambda: closed, "x").acquire(timeout=1)  # a factory that hands back a closed connection
    assert advisory_key("a") == advisory_key("a") != advisory_key("a", "other-app")


def test_mutual_exclusion_4_processes_x_4_threads(pg: PostgresServer, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    conninfo = pg.conninfo

    def make() -> PgLock:
        return PgLock(conninfo, "counter")

    procs = [ctx.Process(target=increment_under_lock, args=(make, str(counter), 4, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    assert int(counter.read_text()) == 4 * 4 * 25


def _fifo_waiter(conninfo: str, index: int, grants: str) -> None:
    lock = PgLock(conninfo, "fifo")
    lock.acquire()
    with open(grants, "a") as f:
        f.write(f"{index}\n")  # written while holding: the grant order
    lock.release()


def test_fifo_across_processes(pg: PostgresServer, tmp_path: Path) -> None:
    holder = PgLock(pg.conninfo, "fifo")
    holder.acquire()
    grants = tmp_path / "grants"
    procs = []
    for i in range(6):
        p = ctx.Process(target=_fifo_waiter, args=(pg.conninfo, i, str(grants)))
        p.start()
        procs.append(p)
        while waiting(pg, holder) < i + 1:  # queued in the server before the next one starts
            threading.Event().wait(0.01)
    holder.release()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert grants.read_text().split() == [str(i) for i in range(6)]


def _hold_forever(conninfo: str, ready: Any) -> None:
    lock = PgLock(conninfo, "crash")
    lock.acquire()
    ready.set()
    while True:
        time.sleep(60)


def test_kill_9_of_a_holder_frees_the_lock(pg: PostgresServer) -> None:
    ready = ctx.Event()
    child = ctx.Process(target=_hold_forever, args=(pg.conninfo, ready))
    child.start()
    assert ready.wait(30)
    lock = PgLock(pg.conninfo, "crash")
    assert lock.acquire(timeout=0) is False
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    assert lock.acquire(timeout=30)  # the server ends the dead client's session and its locks
    lock.release()


def test_terminated_session_fires_on_lost_and_its_stale_write_is_rejected(pg: PostgresServer, tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "leader.json")
    lost = threading.Event()
    first = PgLock(pg.conninfo, "leader", on_lost=lambda _lock: lost.set())
    first.acquire()
    stale_token = first.fencing_token
    assert stale_token is not None
    info = first.holder()
    assert info is not None
    with admin(pg) as c:
        backend = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", (f"lockkit pid={os.getpid()} %",)
        ).fetchall()
        for (pid,) in backend:
            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert lost.wait(30)  # the watcher noticed the session end
    assert first.lost
    with pytest.raises(lockkit.exceptions.LockLostError):
        first.release()
    second = PgLock(pg.conninfo, "leader")
    with second:
        token = second.fencing_token
        assert token is not None and token > stale_token
        doc.write({"leader": "second"}, fencing_token=token)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.write({"leader": "first"}, fencing_token=stale_token)
    assert doc.read() == {"leader": "second"}


def test_an_interrupted_wait_leaves_nothing_held(pg: PostgresServer) -> None:
    holder = PgLock(pg.conninfo, "interrupt")
    holder.acquire()
    waiter = PgLock(pg.conninfo, "interrupt")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire(timeout=60)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    while waiting(pg, holder) < 1:
        threading.Event().wait(0.01)
    waiting(pg, holder, "pg_cancel_backend(pid)")  # cancel the waiting statement, as an interrupt would
    t.join(30)
    assert errors and isinstance(errors[0], psycopg.errors.QueryCanceled)
    holder.release()
    assert not holder.locked()  # the cancelled waiter's session was closed: nothing granted to it


def test_a_forked_child_never_ends_its_parents_session(pg: PostgresServer) -> None:
    lock = PgLock(pg.conninfo, "fork")
    lock.acquire()
    idle = PgLock(pg.conninfo, "fork-idle")
    with idle:
        pass  # leaves an idle session to be inherited too
    child = ctx.Process(target=lambda: None)  # exits at once: its copies are finalised
    child.start()
    child.join(30)
    assert child.exitcode == 0
    lock.assert_held()  # still our session, still held
    assert lock.holder() is not None
    lock.release()


def test_manager_takes_several_names_in_one_order(pg: PostgresServer) -> None:
    from lockkit.postgres import PgLockManager

    manager = PgLockManager(pg.conninfo, namespace="accounts")
    inside = [0]
    overlap: list[int] = []

    def transfer(names: tuple[str, str]) -> None:
        for _ in range(20):
            with manager.lock(*names, timeout=30):
                inside[0] += 1
                overlap.append(inside[0])
                inside[0] -= 1

    pool = [threading.Thread(target=transfer, args=(pair,)) for pair in [("a", "b"), ("b", "a")] * 2]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert len(overlap) == 80 and max(overlap) == 1  # opposite orders never deadlock, never overlap
    blocker = manager.get("b")
    blocker.acquire()
    got: list[BaseException] = []

    def busy() -> None:
        try:
            with manager.lock("a", "b", timeout=0.2):
                pass
        except BaseException as exc:
            got.append(exc)

    t = threading.Thread(target=busy)
    t.start()
    t.join(30)
    assert got and isinstance(got[0], lockkit.LockTimeoutError)
    assert not manager.get("a").locked()  # what was taken before the timeout was released
    blocker.release()
    manager.close()


def test_lockkit_status_postgres_names_the_holder(pg: PostgresServer) -> None:
    import subprocess
    import sys

    lock = PgLock(pg.conninfo, "report")
    lock.acquire()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "lockkit", "status", "--postgres", pg.conninfo, "report", "other"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        lock.release()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"report: held exclusive by pid {os.getpid()} on ") and "[postgres]" in lines[0]
    assert lines[1] == "other: free"
    down = subprocess.run(
        [sys.executable, "-m", "lockkit", "status", "--postgres", "host=127.0.0.1 port=1 connect_timeout=2", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 69 and "Traceback" not in down.stderr


def test_the_watcher_thread_outlives_a_release(pg: PostgresServer) -> None:
    """One watcher thread per process, kept between holds: no thread start per acquisition."""
    from lockkit.postgres import _watcher

    lock = PgLock(pg.conninfo, "watcher-kept")
    with lock:
        watcher = _watcher._thread
    assert watcher is not None
    # A watcher that ended when nothing was held would be gone well within this wait (it
    # looks at its holds every 0.25 s); one that parks until the next hold never ends.
    watcher.join(1.0)
    assert watcher.is_alive()
    with lock:
        assert _watcher._thread is watcher


def test_a_hold_takes_a_fencing_token_only_when_asked(pg: PostgresServer) -> None:
    """The token costs a sequence update only for holds that read it, and a lost hold never gets one."""
    lock = PgLock(pg.conninfo, "lazy-token")
    with lock:
        first = lock.fencing_token
    assert first is not None

    def last_value() -> int:
        with admin(pg) as c:
            row = c.execute("SELECT last_value FROM lockkit_fence").fetchone()
        assert row is not None
        return int(row[0])

    before = last_value()
    for _ in range(5):
        with lock:
            pass
    assert last_value() == before  # no token read: none taken
    with lock:
        assert lock.fencing_token == lock.fencing_token > first  # one token per hold, however often read
    calls: list[PgLock] = []
    victim = PgLock(pg.conninfo, "lazy-token-lost", on_lost=calls.append)
    victim.acquire()
    with admin(pg) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE " + KEY_ROWS + " AND granted", victim.key)
    with pytest.raises(lockkit.exceptions.LockLostError):
        victim.fencing_token  # noqa: B018
    assert victim.lost and calls == [victim]  # told once, whoever noticed first (this read or the watcher)
    with pytest.raises(lockkit.exceptions.LockLostError):
        victim.release()


def test_a_parked_watcher_wakes_for_the_next_hold(pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import lockkit.postgres as pgmod

    monkeypatch.setattr(pgmod, "_PARK_AFTER", 0.0)  # park as soon as nothing is held
    lock = PgLock(pg.conninfo, "parked")
    with lock:
        pass
    while not pgmod._watcher._parked:  # counter-style wait: the watcher's own flag
        threading.Event().wait(0.01)
    calls: list[PgLock] = []
    victim = PgLock(pg.conninfo, "parked-victim", on_lost=calls.append)
    victim.acquire()
    with admin(pg) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE " + KEY_ROWS + " AND granted", victim.key)
    while not calls:  # only the (woken) watcher can notice: nobody else touches the session
        threading.Event().wait(0.01)
    assert calls == [victim] and victim.lost
    with pytest.raises(lockkit.exceptions.LockLostError):
        victim.release()
