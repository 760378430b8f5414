"""RedisLock against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Worker, blocks_async_signals
from proc_helpers import increment_under_lock
from redis_server import RedisServer, ReplyDroppingProxy, require_redis_server

import lockkit
import lockkit.exceptions
import lockkit.resilience

redis = pytest.importorskip("redis")
from lockkit.redis import RedisLock, RedisLockManager  # noqa: E402

pytestmark = pytest.mark.timeout(120)
ctx = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    require_redis_server()
    srv = RedisServer()
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def client(server: RedisServer) -> Iterator[Any]:
    if server.proc is None:
        server.start()
    c = redis.Redis(port=server.port)
    c.flushall()
    yield c
    c.close()


def test_contract_basics(client: Any) -> None:
    lock = RedisLock(client, "basic", lease=5, timeout=0.2)
    with lock:
        assert lock.locked() and lock.fencing_token > 0
        info = lock.holder()
        assert (
            info is not None and info.pid == os.getpid() and info.hostname and info.fencing_token == lock.fencing_token
        )
        with pytest.raises(lockkit.DeadlockError):
            lock.acquire()
        assert Worker(lambda: lock.acquire(timeout=0)).join() is False
        with pytest.raises(lockkit.NotOwnerError):
            Worker(lock.release).join()
        with pytest.raises(lockkit.LockTimeoutError, match="held by pid"):
            Worker(lambda: RedisLock(client, "basic", timeout=0.1).__enter__()).join()
    assert not lock.locked() and lock.holder() is None
    with pytest.raises(lockkit.NotOwnerError):
        lock.release()
    stats = lock.statistics()
    assert stats.acquisitions == 1 and stats.contentions >= 1


def test_shared_mode(client: Any) -> None:
    a, b = RedisLock(client, "rw", shared=True), RedisLock(client, "rw", shared=True)
    writer = RedisLock(client, "rw")
    assert a.acquire(timeout=0) and Worker(lambda: b.acquire(timeout=0) and (b.release() or True)).join()
    assert Worker(lambda: writer.acquire(timeout=0.1)).join() is False
    with pytest.raises(lockkit.DeadlockError):  # the shared holder asking for exclusive: an upgrade
        writer.acquire(timeout=0.1)
    info = a.holder()
    assert info is not None and info.shared
    a.release()
    assert writer.acquire(timeout=1)
    assert Worker(lambda: b.acquire(timeout=0.1)).join() is False
    writer.release()


def test_release_never_deletes_a_successors_lock(client: Any) -> None:
    first = RedisLock(client, "succ", lease=0.3, auto_renew=False)
    assert first.acquire()
    threading.Event().wait(0.5)  # let the lease run out (the scenario is time itself)
    second = RedisLock(client, "succ", lease=10)
    release_second = threading.Event()

    def successor() -> bool:
        assert second.acquire(timeout=30)  # free once the lease ran out: a bound, not a speed
        release_second.wait(30)
        second.release()
        return True

    worker = Worker(successor)
    while not second.locked():  # sync on the lock's own state: the successor holds it
        threading.Event().wait(0.01)
    with pytest.raises(lockkit.exceptions.LockLostError):
        first.release()
    assert second.locked() and second.holder() is not None  # untouched by the stale release
    release_second.set()
    assert worker.join()


def test_bad_input(client: Any) -> None:
    with pytest.raises(ValueError, match="name"):
        RedisLock(client, "")
    with pytest.raises(ValueError, match="lease"):
        RedisLock(client, "x", lease=0)
    with pytest.raises(ValueError, match="lease"):
        RedisLock(client, "x", lease=-1)
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        RedisLock(object(), "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RedisLockManager("localhost")  # type: ignore[arg-type]


def test_manager_sorted_multi_lock(client: Any) -> None:
    mgr = RedisLockManager(client, prefix="app:")
    done = []

    def work(names: tuple[str, ...]) -> None:
        for _ in range(20):
            with mgr.lock(*names, timeout=20):
                done.append(names)

    threads = [threading.Thread(target=work, args=(n,)) for n in [("a", "b"), ("b", "a"), ("a", "b", "c")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 60
    assert client.exists("app:a:holder") == 0


# -- processes -------------------------------------------------------------------------------------


def test_mutual_exclusion_4_processes_x_4_threads(server: RedisServer, client: Any, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    port = server.port

    def make() -> RedisLock:
        return RedisLock(redis.Redis(port=port), "counter", lease=10)

    procs = [ctx.Process(target=increment_under_lock, args=(make, str(counter), 4, 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    assert int(counter.read_text()) == 4 * 4 * 40


def _fifo_waiters(port: int, n: int) -> None:
    c = redis.Redis(port=port)

    def wait() -> None:
        lock = RedisLock(c, "fifo", lease=10)  # one object per thread: each takes its own ticket
        lock.acquire()
        c.rpush("grants", lock.last_ticket() or -1)  # recorded while holding: the grant order
        lock.release()

    pool = [threading.Thread(target=wait) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_fifo_across_two_processes(server: RedisServer, client: Any) -> None:
    holder = RedisLock(client, "fifo", lease=30)
    holder.acquire()
    procs = [ctx.Process(target=_fifo_waiters, args=(server.port, 5)) for _ in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 20
    while client.zcard("lockkit:fifo:queue") < 10:  # all ten queued in Redis: sync on Redis state
        assert time.monotonic() < deadline, "waiters never queued"
        threading.Event().wait(0.01)
    queued = [int(m.split(b":")[0]) for m in client.zrange("lockkit:fifo:queue", 0, -1)]
    holder.release()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    granted = [int(x) for x in client.lrange("grants", 0, -1)]
    assert granted == queued == sorted(queued)  # every waiter, granted in ticket order


def _hold(port: int, ready: Any, lease: float, out: Any | None = None) -> None:
    c = redis.Redis(port=port)
    lock = RedisLock(c, "crash", lease=lease)
    lock.acquire()
    if out is not None:
        out.put(lock.fencing_token)
    ready.set()
    while True:
        time.sleep(60)


def test_sigkilled_holder_is_replaced_within_the_lease(server: RedisServer, client: Any) -> None:
    ready = ctx.Event()
    child = ctx.Process(target=_hold, args=(server.port, ready, 1.0))
    child.start()
    assert ready.wait(20)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    # The dead holder's key expires within its 1 s lease (nothing renews it any more)...
    ttl = client.pttl("lockkit:crash:holder")
    assert ttl == -2 or 0 < ttl <= 1000, ttl  # gone already, or expiring within the lease
    lock = RedisLock(client, "crash", lease=5)
    assert lock.acquire(timeout=30)  # ...and a new holder gets the lock once it has
    lock.release()


def _paused_holder(port: int, doc_path: str, ready: Any, resumed: Any, out: Any) -> None:
    c = redis.Redis(port=port)
    lost = threading.Event()
    lock = RedisLock(c, "leader", lease=1.0, on_lost=lambda _lock: lost.set())
    lock.acquire()
    token = lock.fencing_token
    out.put(("token", token))
    ready.set()
    resumed.wait(30)  # we are SIGSTOPped meanwhile, past the lease
    out.put(("lost", lost.wait(10)))
    try:
        lockkit.JsonDocument(doc_path).write("from the paused holder", fencing_token=token)
        out.put(("write", "accepted"))
    except lockkit.exceptions.StaleWriterError:
        out.put(("write", "rejected"))
    try:
        lock.release()
        out.put(("release", "ok"))
    except lockkit.exceptions.LockLostError:
        out.put(("release", "LockLostError"))


def test_paused_holder_loses_its_lease_and_its_stale_write_is_rejected(
    server: RedisServer, client: Any, tmp_path: Path
) -> None:
    doc = str(tmp_path / "state.json")
    ready, resumed, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_paused_holder, args=(server.port, doc, ready, resumed, out))
    child.start()
    assert ready.wait(20)
    old_token = out.get(timeout=10)[1]
    os.kill(child.pid, signal.SIGSTOP)  # type: ignore[arg-type]
    try:
        successor = RedisLock(client, "leader", lease=10)
        assert successor.acquire(timeout=5)  # granted once the paused holder's lease ran out
        assert successor.fencing_token > old_token
        lockkit.JsonDocument(doc).write("from the new holder", fencing_token=successor.fencing_token)
    finally:
        os.kill(child.pid, signal.SIGCONT)  # type: ignore[arg-type]
    resumed.set()
    results = dict(out.get(timeout=20) for _ in range(3))
    child.join(20)
    assert results == {"lost": True, "write": "rejected", "release": "LockLostError"}
    assert lockkit.JsonDocument(doc).read() == "from the new holder"
    successor.release()


def test_redis_restart_during_a_hold_fires_on_lost(server: RedisServer, client: Any) -> None:
    lost = threading.Event()
    lock = RedisLock(client, "restart", lease=1.5, on_lost=lambda _l: lost.set())
    lock.acquire()
    server.restart()  # no persistence: the key is gone after the restart
    assert lost.wait(5), "the holder was not told that its lock was lost"
    assert lock.lost
    other = RedisLock(redis.Redis(port=server.port), "restart", lease=5)
    assert other.acquire(timeout=2)  # the new holder; the old one knows it lost
    with pytest.raises(lockkit.exceptions.LockLostError):
        lock.release()
    with pytest.raises(lockkit.exceptions.LockLostError):
        lock.assert_held() if lock._holds else (_ for _ in ()).throw(lockkit.exceptions.LockLostError("released"))
    first = other.fencing_token
    other.release()
    again = RedisLock(redis.Redis(port=server.port), "restart")
    with again:
        assert again.fencing_token > first  # tokens keep increasing after the counter was lost


def test_lease_renewal_keeps_a_long_holder(client: Any) -> None:
    lock = RedisLock(client, "long", lease=1.0)
    lock.acquire()
    threading.Event().wait(2.5)  # hold for more than two leases: renewals must keep it
    lock.assert_held()
    assert RedisLock(client, "long").acquire(timeout=0) is False
    stats = lock.lease_statistics()
    assert stats.renewals >= 2 and stats.losses == 0
    assert blocks_async_signals("lockkit-redis-renew")  # the app's SIGTERM reaches its main thread
    lock.release()


def test_short_lease_renewed_when_the_renewer_was_asleep(client: Any) -> None:
    long = RedisLock(client, "sleepy-1", lease=3.0)
    long.acquire()
    while long.lease_statistics().renewals < 1:  # sync on statistics: the renewer just renewed it ...
        threading.Event().wait(0.01)
    # ... and now sleeps about a second (long's next renewal), past a short lease
    short = RedisLock(client, "sleepy-2", lease=0.5)
    short.acquire()  # due in 1/6 s: adding it must wake the renewer
    threading.Event().wait(1.2)  # more than two short leases pass
    short.assert_held()
    assert short.lease_statistics().renewals >= 2
    short.release()
    long.release()


def test_transient_errors_are_retried_within_the_callers_timeout(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ReplyDroppingProxy(server.port)
    lock = RedisLock(redis.Redis(port=proxy.port), "flaky", lease=5)
    assert lock.acquire(timeout=5)  # loads the scripts
    lock.release()
    proxy.drop_next_reply(b"evalsha")  # a real blip: the connection drops before the reply
    assert lock.acquire(timeout=5)  # retried, then granted
    assert proxy.dropped.is_set()
    lock.release()
    proxy.close()  # nothing listens on its port any more: a server that is down

    retries: list[Any] = []
    slow = lockkit.RetryPolicy(
        attempts=6, timeout=5.0, wait_initial=1.0, wait_max=1.0, jitter=0.0, on_retry=retries.append
    )
    monkeypatch.setattr(
        lockkit.redis, "_TRANSIENT", slow.replace(retry_on=frozenset({lockkit.resilience.ErrorClass.TRANSIENT}))
    )
    down = RedisLock(redis.Redis(port=proxy.port), "flaky", lease=5)
    with pytest.raises(redis.ConnectionError):
        down.acquire(timeout=0.3)
    # A refused connection sent nothing, so nothing can have been granted: no take-back
    # runs in the background (its retries would land here too).
    for t in threading.enumerate():
        if t.name == "lockkit-redis-takeback":
            t.join(30)
    assert retries == []  # a 1 s wait does not fit in the caller's 0.3 s: no retry was started


def test_crashed_waiter_ticket_expires(client: Any) -> None:
    holder = RedisLock(client, "tickets", lease=30)
    holder.acquire()
    client.zadd("lockkit:tickets:queue", {"999:x": 999})  # a waiter that crashed while queued
    client.hset("lockkit:tickets:qexp", "999:x", 0)  # ...and never refreshed its ticket
    holder.release()
    successor = RedisLock(client, "tickets")
    assert successor.acquire(timeout=2)  # not blocked by the dead ticket
    successor.release()


def test_a_forked_child_never_touches_its_parents_redis_hold(client: Any) -> None:
    lock = RedisLock(client, "forked", lease=30)
    assert lock.acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            lock.release()  # leaving the hold in the child: never deletes the parent's lock in Redis
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.exists("lockkit:forked:holder")  # still held in Redis
    lock.assert_held()
    lock.release()  # no LockLostError: the parent's hold was intact
    assert not lock.locked()


def test_a_renewal_racing_a_release_never_reports_a_loss(client: Any) -> None:
    lost: list[Any] = []
    lock = RedisLock(client, "renew-race", lease=30, on_lost=lost.append)
    assert lock.acquire()
    me = threading.get_ident()
    old = lock._holds[me]
    lock.release()
    assert lock.acquire()  # a new hold with a new token
    lock._renew(old, me)  # the renewer thread acting on a snapshot taken before the release
    assert lost == [] and not lock.lost
    lock.release()


def test_nested_manager_lock_on_one_thread_is_a_deadlock_error(client: Any) -> None:
    manager = RedisLockManager(client, lease=5)
    with manager.lock("k", timeout=30):
        with pytest.raises(lockkit.DeadlockError), manager.lock("k", timeout=30):
            pass
        other = manager.get("k")
        assert other.acquire(timeout=0) is False  # a try answers False, like threading.Lock


def test_a_lost_grant_reply_does_not_orphan_the_lock(server: RedisServer, client: Any) -> None:
    # The acquire script runs and grants the lock, but its reply is lost with the
    # connection. The retry must recognise its own grant instead of waiting on itself.
    proxy = ReplyDroppingProxy(server.port)
    try:
        via_proxy = redis.Redis(port=proxy.port)
        lock = RedisLock(via_proxy, "ambiguous", lease=30)
        assert lock.acquire(timeout=10)  # loads the scripts: the next EVALSHA runs the grant
        lock.release()
        proxy.drop_next_reply(b"evalsha")
        assert lock.acquire(timeout=10)
        assert proxy.dropped.is_set()
        assert lock.holder() is not None and lock.holder().pid == os.getpid()  # type: ignore[union-attr]
        lock.release()
        assert RedisLock(client, "ambiguous").acquire(timeout=0)
    finally:
        proxy.close()


def test_a_try_whose_grant_reply_is_lost_leaves_the_lock_free(server: RedisServer, client: Any) -> None:
    # A one-attempt acquire cannot retry: after the ambiguous failure it must release
    # whatever it may have been granted (with its own token) before it reports failure.
    proxy = ReplyDroppingProxy(server.port)
    try:
        via_proxy = redis.Redis(port=proxy.port)
        lock = RedisLock(via_proxy, "ambiguous-try", lease=60)
        assert lock.acquire(timeout=10)
        lock.release()
        proxy.drop_next_reply(b"evalsha")
        got = False
        with contextlib.suppress(redis.exceptions.ConnectionError):
            got = lock.acquire(timeout=0)
        assert proxy.dropped.is_set()
        if got:  # it recognised its own grant: a real hold, released as usual
            lock.release()
        else:  # it reported failure: then it must not hold the lock in Redis either
            # taken back in the background at once; the lease (60 s) would free it only much later
            assert RedisLock(client, "ambiguous-try").acquire(timeout=30), "the lost grant orphaned the lock"
    finally:
        proxy.close()


@pytest.mark.timeout(60)
def test_acquire_honours_its_timeout_while_the_server_is_paused(server: RedisServer) -> None:
    # A paused server accepts connections and never answers: without a bound on every
    # socket operation, acquire(timeout=...) blocks forever.
    c = redis.Redis(port=server.port, socket_timeout=None, socket_connect_timeout=None)
    lock = RedisLock(c, "paused", lease=5)
    assert lock.acquire(timeout=30)
    lock.release()
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        other = RedisLock(c, "paused", lease=5)
        with pytest.raises(lockkit.LockTimeoutError), RedisLock(c, "paused", lease=5, timeout=0.5):
            pass  # pragma: no cover
        assert other.acquire(timeout=0.5) is False
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert lock.acquire(timeout=30)  # nothing left behind for longer than a lease (5 s) once the server answers
    lock.release()


@pytest.mark.timeout(90)
def test_a_holder_learns_of_its_loss_while_the_server_is_paused(server: RedisServer) -> None:
    # The renewal cannot reach a paused server; the hold must be declared lost when its
    # lease runs out, not whenever the server answers again.
    lost = threading.Event()
    # A client without socket timeouts (redis-py's default before 8.0): only lockkit bounds the calls.
    client = redis.Redis(port=server.port, socket_timeout=None, socket_connect_timeout=None)
    lock = RedisLock(client, "paused-holder", lease=1.0, on_lost=lambda _: lost.set())
    assert lock.acquire(timeout=10)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        assert lost.wait(60), "the loss was not reported while the server was paused"
        assert lock.lost
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    with pytest.raises(lockkit.exceptions.LockLostError):
        lock.release()


def test_a_holder_whose_lease_ran_out_after_its_read_cannot_lose_the_next_update(client: Any, tmp_path: Path) -> None:
    # The window behind a lost increment under chaos: holder 1 reads, is paused past its
    # lease; holder 2 takes the lock and reads; holder 1 resumes and writes before holder 2
    # does. With the token on the read, holder 1's write is refused.
    doc = lockkit.JsonDocument(tmp_path / "counter.json")
    doc.write(0)
    first = RedisLock(client, "counter", lease=30, auto_renew=False)
    assert first.acquire(timeout=5)
    seen_by_first = doc.read(fencing_token=first.fencing_token)
    client.delete("lockkit:counter:holder")  # its lease runs out while it is paused

    second = RedisLock(client, "counter", lease=30)
    second_has_read, first_has_tried = threading.Event(), threading.Event()

    def second_holder() -> None:  # a thread of its own: a lock is owned per thread
        assert second.acquire(timeout=5)
        try:
            token = second.fencing_token
            seen = doc.read(fencing_token=token)
            second_has_read.set()
            assert first_has_tried.wait(30)
            doc.write(seen + 1, fencing_token=token)
        finally:
            second.release()

    worker = Worker(second_holder)
    assert second_has_read.wait(30)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.write(seen_by_first + 1, fencing_token=first.fencing_token)
    first_has_tried.set()
    worker.join(30)
    assert doc.read() == 1
    with pytest.raises(lockkit.exceptions.LockLostError):
        first.release()
