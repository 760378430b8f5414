"""FileLock across real processes: exclusion, crash release, staleness, fencing, fork."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import proc_helpers
import pytest
from conftest import Worker, hold_in_thread, wait_queued

import lockkit
from lockkit.files import _holder, _marker

pytestmark = pytest.mark.timeout(120)
ctx = multiprocessing.get_context("fork")


def run_procs(target: Any, args_list: list[tuple[Any, ...]]) -> None:
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0, f"child failed with {p.exitcode}"


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_no_lost_updates_4_processes_x_4_threads(tmp_path: Path, strategy: str) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    cycles = 500 if strategy == "kernel" else 150
    run_procs(proc_helpers.increment_worker, [(str(tmp_path / "c.lock"), str(counter), 4, cycles, strategy)] * 4)
    assert int(counter.read_text()) == 4 * 4 * cycles


def test_shared_readers_never_see_a_torn_value(tmp_path: Path) -> None:
    lock, data = str(tmp_path / "d.lock"), str(tmp_path / "d")
    Path(data).write_bytes(b"0" * proc_helpers.WIDTH)
    errors = ctx.Queue()
    procs = [ctx.Process(target=proc_helpers.torn_writer, args=(lock, data, 150))]
    procs += [ctx.Process(target=proc_helpers.torn_reader, args=(lock, data, 400, errors)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    assert errors.empty()


def test_readers_in_different_processes_share(tmp_path: Path) -> None:
    path = str(tmp_path / "s.lock")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=proc_helpers.hold_shared, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(20)
        reader = lockkit.FileLock(path, shared=True)
        assert reader.acquire(timeout=0)  # shares with the child
        info = reader.holder()
        assert info is not None and info.shared
        reader.release()
        assert lockkit.FileLock(path).acquire(timeout=0.1) is False  # a writer does not get in
    finally:
        release.set()
        child.join(20)


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_sigkilled_holder_releases(tmp_path: Path, strategy: str) -> None:
    path = str(tmp_path / "k.lock")
    ready = ctx.Event()
    child = ctx.Process(target=proc_helpers.hold_forever, args=(path, strategy, ready))
    child.start()
    assert ready.wait(20)
    lock = lockkit.FileLock(path, strategy=strategy)  # type: ignore[arg-type]
    assert lock.acquire(timeout=0) is False
    info = lock.holder()
    assert info is not None and info.pid == child.pid
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    # At once, with no waiting: the kernel freed the lock with the process; a marker
    # naming a dead PID is broken by the first attempt.
    assert lock.acquire(timeout=0)
    lock.release()


def test_live_marker_holder_is_never_broken(tmp_path: Path) -> None:
    path = str(tmp_path / "live.lock")
    with proc_helpers.held_by_child(path, "marker", 1.0):
        lock = lockkit.FileLock(path, strategy="marker", stale_after=1.0)
        assert lock.acquire(timeout=3.0) is False  # three stale periods; the heartbeat kept it fresh
        marker = _marker.read_marker(str(path))
        assert marker is not None and marker.st.st_mtime > time.time() - 1.0


def test_marker_without_heartbeat_goes_stale(tmp_path: Path) -> None:
    path = tmp_path / "old.lock"
    record = {"pid": 1, "host": "some-other-host", "start": "x:1", "thread": "t", "at": time.time() - 100}
    proc_helpers.write_marker(path, record, mtime=time.time() - 100)
    lock = lockkit.FileLock(path, strategy="marker", stale_after=10)
    info = lock.holder()
    assert info is not None and info.hostname == "some-other-host"
    assert lock.acquire(timeout=1)  # another host's marker: never PID-probed, broken by age only
    lock.release()


def test_marker_with_reused_pid_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "reused.lock"
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": f"{_holder.boot_id()}:1",
        "thread": "t",
        "at": time.time(),
    }
    proc_helpers.write_marker(path, record)
    assert _holder.dead_reason(_holder.record_info(record)) == f"pid {os.getpid()} was reused by another process"
    lock = lockkit.FileLock(path, strategy="marker")
    assert lock.acquire(timeout=1)
    lock.release()
    assert lock.holder() is None and list(path.iterdir()) == []


def test_racing_breakers_leave_exactly_one_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "race.lock")
    dead = ctx.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    record = {"pid": dead.pid, "host": socket.gethostname(), "start": None, "thread": "t", "at": time.time()}
    proc_helpers.write_marker(path, record)
    go, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=proc_helpers.race_to_break, args=(path, go, done, results)) for _ in range(8)]
    for p in procs:
        p.start()
    go.set()
    winners = [results.get(timeout=30) for _ in procs]
    done.set()
    for p in procs:
        p.join(30)
    assert len([w for w in winners if w]) == 1


def test_timeout_error_names_the_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "t.lock")
    with proc_helpers.held_by_child(path) as child:
        lock = lockkit.FileLock(path, timeout=0.2)
        with pytest.raises(lockkit.LockTimeoutError) as info, lock:
            pass  # pragma: no cover
        assert f"held by pid {child.pid} on {socket.gethostname()}" in str(info.value)
        assert info.value.resource == path and info.value.timeout == 0.2
        before = lock.statistics()
        assert lock.acquire(timeout=0) is False  # one attempt, no waiting
        after = lock.statistics()
        assert after.contentions == before.contentions + 1 and after.queued == before.queued  # never queued


def test_fencing_tokens_strictly_increase_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "f.lock")
    out = ctx.Queue()
    run_procs(proc_helpers.tokens_worker, [(path, 50, out)] * 4)
    seqs = [out.get(timeout=10) for _ in range(4)]
    for seq in seqs:
        assert seq == sorted(seq)
    flat = sorted(t for seq in seqs for t in seq)
    assert len(set(flat)) == 200  # every token handed out once: no two holders shared one


def test_forked_child_never_releases_the_parent_kernel_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.lock")
    lock = lockkit.FileLock(path)
    lock.acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            lock.release()  # the forking thread's own hold: leaving it works in the child ...
            # ... but the kernel lock is the parent's: still held, and not by us
            code = 0 if lock.acquire(timeout=0) is False and lock.locked() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    info = lock.holder()
    assert info is not None and info.pid == os.getpid()  # still ours
    lock.release()


def test_lock_descriptor_is_close_on_exec(tmp_path: Path) -> None:
    from lockkit.files._filelock import lock_key
    from lockkit.files._kernel import _states

    lock = lockkit.FileLock(tmp_path / "cx.lock")
    with lock:
        fd = _states[lock_key(lock.path)].fd
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("")
    os.symlink(tmp_path / "target", tmp_path / "l.lock")
    with pytest.raises(lockkit.LockFileError, match="symbolic link"):
        lockkit.FileLock(tmp_path / "l.lock").acquire()
    with pytest.raises(lockkit.LockFileError, match="symbolic link"):
        lockkit.FileLock(tmp_path / "l.lock", strategy="marker").acquire()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(lockkit.LockFileError, match="directory does not exist") as info:
        lockkit.FileLock(tmp_path / "nope" / "x.lock").acquire()
    assert info.value.path == str(tmp_path / "nope" / "x.lock")
    assert not lockkit.FileLock(tmp_path / "nope" / "x.lock").locked()


def test_permission_denied_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def denied(path: Any, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("p.lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", denied)  # we run as root in CI: cause EACCES by hand
    with pytest.raises(lockkit.LockFileError, match="permission denied"):
        lockkit.FileLock(tmp_path / "p.lock").acquire()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy"):
        lockkit.FileLock("/tmp/x.lock", strategy="nfs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shared mode"):
        lockkit.FileLock("/tmp/x.lock", shared=True, strategy="marker")
    with pytest.raises(ValueError, match="NUL"):
        lockkit.FileLock("/tmp/x\0.lock")
    with pytest.raises(TypeError):
        lockkit.FileLock(b"/tmp/x.lock")  # type: ignore[arg-type]


def test_deleted_lock_file_is_recreated_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "gone.lock"
    lock = lockkit.FileLock(path)
    with lock:
        pass
    path.unlink()  # an operator removed it: the cached descriptor now guards nothing
    other = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        assert lock.acquire(timeout=0.2) is False  # it sees the new file's holder
    finally:
        os.close(other)
    assert lock.acquire(timeout=1)
    lock.release()


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_locked_is_true_while_another_process_holds_it(tmp_path: Path, strategy: str) -> None:
    path = str(tmp_path / "other.lock")
    with proc_helpers.held_by_child(path, strategy):
        lock = lockkit.FileLock(path, strategy=strategy)  # type: ignore[arg-type]
        assert lock.locked()  # the lock contract: held by anyone, in any process
        assert lock.is_locked()
    if strategy == "kernel":  # the kernel frees a killed holder's lock at once (a dead marker stays until broken)
        assert not lockkit.FileLock(path).locked()


@pytest.mark.timeout(300)
def test_descriptor_eviction_never_breaks_exclusion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockkit.files import _kernel

    monkeypatch.setattr(_kernel, "MAX_IDLE_DESCRIPTORS", 2)  # evict on almost every acquisition
    procs, threads, cycles, files = 3, 4, 400, 12
    errors = ctx.Queue()
    run_procs(proc_helpers.evicting_increments, [(str(tmp_path), files, threads, cycles, errors) for _ in range(procs)])
    seen = []
    while not errors.empty():
        seen.append(errors.get())
    assert seen == []  # no ValueError/OSError from a descriptor closed under a holder
    total = sum(int((tmp_path / f"{i}.count").read_text()) for i in range(files) if (tmp_path / f"{i}.count").exists())
    assert total == procs * threads * cycles  # no lost update: exclusion held


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_a_failed_holder_record_write_leaves_nothing_held(tmp_path: Path, strategy: str) -> None:
    path = str(tmp_path / "full.lock")
    result, go_on = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=proc_helpers.acquire_with_tiny_file_limit, args=(path, strategy, result, go_on))
    child.start()
    try:
        outcome = result.get(timeout=30)
        assert outcome.startswith("LockFileError:"), outcome  # the documented error, with its errno
        lock = lockkit.FileLock(path, strategy=strategy)  # type: ignore[arg-type]
        assert lock.acquire(timeout=0)  # the failing process holds nothing, though it is still alive
        lock.release()
    finally:
        go_on.set()
        child.join(30)


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_fencing_tokens_stay_monotonic_when_the_lock_file_is_recreated(tmp_path: Path, strategy: str) -> None:
    path = tmp_path / "fenced.lock"
    lock = lockkit.FileLock(path, strategy=strategy)  # type: ignore[arg-type]
    tokens = []
    for _ in range(3):
        with lock:
            tokens.append(lock.fencing_token)
    for leftover in tmp_path.iterdir():  # an operator or a tmp cleaner deletes every lock artefact
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    with lock:
        tokens.append(lock.fencing_token)
    assert tokens == sorted(set(tokens)), tokens  # strictly increasing, across the deletion


def test_holder_names_the_thread_that_holds_now_not_an_earlier_one(tmp_path: Path) -> None:
    path = str(tmp_path / "threads.lock")
    lock = lockkit.FileLock(path)
    for name in ("first", "second", "third"):  # thread idents are reused as threads come and go
        t, release = hold_in_thread(lock, name)
        info = lock.holder()
        release.set()
        t.join()
        assert info is not None and info.thread == name


def test_holder_is_the_process_the_kernel_names(tmp_path: Path) -> None:
    import shutil
    import subprocess

    assert shutil.which("flock"), "flock(1) is needed (util-linux)"
    path = str(tmp_path / "foreign.lock")
    run_procs(proc_helpers.increment_worker, [(path, str(tmp_path / "c"), 1, 1, "kernel")])  # leaves a record
    flock = subprocess.Popen(["flock", path, "-c", "echo ready; exec sleep 60"], stdout=subprocess.PIPE, text=True)
    try:
        assert flock.stdout is not None and flock.stdout.readline().strip() == "ready"
        info = lockkit.FileLock(path).holder()
        assert info is not None and info.pid == flock.pid  # not the pid of the record's long-gone writer
        assert "not a lockkit holder" in info.describe()
    finally:
        flock.kill()
        flock.wait()


def test_a_marker_holder_whose_main_thread_exited_is_alive(tmp_path: Path) -> None:
    path = str(tmp_path / "zombie-leader.lock")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=proc_helpers.hold_marker_then_end_main_thread, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(30)
        for _ in range(200):  # wait for the leader to become a zombie (observed, not timed)
            if (proc_helpers.proc_stat(child.pid) or ["?"])[0] == "Z":  # type: ignore[arg-type]
                break
            time.sleep(0.01)
        lock = lockkit.FileLock(path, strategy="marker")
        assert lock.acquire(timeout=0) is False  # its worker thread still holds the lock
    finally:
        # Without its main thread the process cannot run Python's exit (its daemon
        # heartbeat thread would keep it alive): end it.
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(30)


def test_a_clock_step_never_makes_a_live_local_marker_holder_stale(tmp_path: Path) -> None:
    path = str(tmp_path / "stepped.lock")
    with proc_helpers.held_by_child(path, "marker", 60.0):
        hour_ago = time.time() - 3600  # as if the wall clock jumped an hour forward
        marker = _marker.read_marker(path)
        assert marker is not None
        os.utime(marker.owner, (hour_ago, hour_ago))  # the heartbeat: the owner file's mtime
        lock = lockkit.FileLock(path, strategy="marker", stale_after=60)
        assert lock.acquire(timeout=0) is False  # pid and start time match a live process: never stale


def _blocked_in_kernel(pid: int) -> bool:
    with open("/proc/locks") as f:
        return any(line.split()[1:2] == ["->"] and line.split()[5] == str(pid) for line in f if len(line.split()) > 5)


def test_a_waiting_writer_stops_new_readers_of_other_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "rw.lock")
    reader_ready, reader_release = ctx.Event(), ctx.Event()
    reader = ctx.Process(target=proc_helpers.hold_shared, args=(path, reader_ready, reader_release))
    reader.start()
    writer_got = ctx.Event()
    writer = None
    try:
        assert reader_ready.wait(30)
        writer = ctx.Process(target=proc_helpers.acquire_exclusive_and_report, args=(path, writer_got))
        writer.start()
        for _ in range(3000):  # until the kernel shows the writer blocked (an observation, not a timing)
            if _blocked_in_kernel(writer.pid):  # type: ignore[arg-type]
                break
            time.sleep(0.01)
        else:
            pytest.fail("the writer never blocked")
        late = lockkit.FileLock(path, shared=True)
        assert late.acquire(timeout=0) is False  # a new reader may not pass a waiting writer
        reader_release.set()
        assert writer_got.wait(30)  # the writer got in: readers did not starve it
    finally:
        reader_release.set()
        reader.join(30)
        if writer is not None:
            writer.join(30)


def test_a_filelock_collected_while_held_releases_its_lock(tmp_path: Path) -> None:
    import gc
    import subprocess

    from structlog.testing import capture_logs

    path = str(tmp_path / "forgotten.lock")

    def forget() -> None:
        lock = lockkit.FileLock(path)
        assert lock.acquire()

    with capture_logs() as logs:
        forget()
        gc.collect()
        probe = lockkit.FileLock(path)
        # Another thread: this one's ident still owns the orphaned hold until the reaper
        # releases it; the probe is granted then (FIFO hand-off, no sleep).
        assert Worker(lambda: probe.acquire(timeout=30) and (probe.release() or True)).join(40) is True
    assert subprocess.run(["flock", "-n", path, "true"], check=False).returncode == 0  # free for other processes
    assert any(e["event"] == "lockkit.lock_collected_while_held" and e["lock"] == path for e in logs)


@pytest.mark.timeout(30)
def test_marker_release_never_removes_the_next_holders_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The holder pauses inside release; meanwhile its marker is removed (an operator, a
    # breaker on another host with a skewed clock) and another process takes the lock.
    # Whatever release does after the pause, the new holder's marker must survive.
    from lockkit.files._marker import MarkerStrategy
    from lockkit.resilience._backoff import Backoff

    path = str(tmp_path / "m.lock")
    a = lockkit.FileLock(path, strategy="marker")
    a.acquire()
    b = MarkerStrategy(path, path, 60.0, Backoff)
    real_unlink = os.unlink
    taken: list[object] = []

    def paused_unlink(p: Any, *args: Any, **kwargs: Any) -> None:
        if not taken and str(p).startswith(path) and ".tmp" not in str(p) and not str(p).endswith(".fence"):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                real_unlink(path)
            taken.append(b.take(False, None))
            assert taken[0] is not None
        real_unlink(p, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", paused_unlink)
    with contextlib.suppress(lockkit.LockkitError, OSError):  # losing the lock may be reported
        a.release()
    monkeypatch.undo()
    assert taken, "release never removed anything"
    info = lockkit.FileLock(path, strategy="marker").holder()
    assert info is not None and info.pid == os.getpid(), "the next holder's marker was removed"
    b.release(taken[0], False)
    assert lockkit.FileLock(path, strategy="marker").holder() is None


def test_marker_strategy_refuses_a_regular_file_or_a_symlink_at_the_lock_path(tmp_path: Path) -> None:
    plain = tmp_path / "plain.lock"
    plain.write_text("")  # a kernel-strategy lock file, say
    with pytest.raises(lockkit.LockFileError, match="not a marker directory"):
        lockkit.FileLock(plain, strategy="marker").acquire(timeout=0)
    assert plain.read_text() == ""
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.lock"
    link.symlink_to(tmp_path / "real")
    with pytest.raises(lockkit.LockFileError, match="symbolic link"):
        lockkit.FileLock(link, strategy="marker").acquire(timeout=0)
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_lock_file_errors_are_the_matching_builtin_and_carry_errno(tmp_path: Path, strategy: str) -> None:
    import errno as _errno
    import pickle

    with pytest.raises(lockkit.LockFileError) as missing:
        lockkit.FileLock(tmp_path / "no" / "x.lock", strategy=strategy).acquire(timeout=0)  # type: ignore[arg-type]
    assert isinstance(missing.value, FileNotFoundError) and missing.value.errno == _errno.ENOENT
    copy = pickle.loads(pickle.dumps(missing.value))
    assert isinstance(copy, FileNotFoundError) and copy.errno == _errno.ENOENT and copy.path == missing.value.path
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError) as denied:
            lockkit.FileLock(locked / "x.lock", strategy=strategy).acquire(timeout=0)  # type: ignore[arg-type]
        assert isinstance(denied.value, lockkit.LockFileError)
    if strategy == "kernel":
        (tmp_path / "dir.lock").mkdir()
        with pytest.raises(IsADirectoryError) as isdir:
            lockkit.FileLock(tmp_path / "dir.lock").acquire(timeout=0)
        assert isinstance(isdir.value, lockkit.LockFileError)
    else:
        (tmp_path / "file.lock").write_text("")
        with pytest.raises(NotADirectoryError) as notdir:
            lockkit.FileLock(tmp_path / "file.lock", strategy="marker").acquire(timeout=0)
        assert isinstance(notdir.value, lockkit.LockFileError)


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's files needs root")
def test_lock_artefacts_planted_by_another_user_are_refused(tmp_path: Path) -> None:
    planted = tmp_path / "k.lock"
    planted.write_text("")
    os.chown(planted, 65534, 65534)  # another, unprivileged user's lock file
    with pytest.raises(lockkit.LockFileError, match="uid 65534") as info:
        lockkit.FileLock(planted).acquire(timeout=0)
    assert isinstance(info.value, PermissionError)
    shared = lockkit.FileLock(planted, file_mode=0o660)  # a directory users share on purpose
    assert shared.acquire(timeout=0)
    shared.release()

    record = {"pid": 1, "host": socket.gethostname(), "start": None, "thread": "t", "at": time.time()}
    owner = proc_helpers.write_marker(tmp_path / "m.lock", record)  # names PID 1: alive forever
    os.chown(owner, 65534, 65534)
    with pytest.raises(lockkit.LockFileError, match="uid 65534"):
        lockkit.FileLock(tmp_path / "m.lock", strategy="marker").acquire(timeout=0)


@pytest.mark.timeout(60)
def test_sweep_lock_files_removes_only_unused_ones(tmp_path: Path) -> None:
    from lockkit.files import sweep_lock_files

    old = time.time() - 7200
    for name in ("free.lock", "held.lock", "free.lock.gate"):
        with lockkit.FileLock(tmp_path / name):
            pass
    (tmp_path / "young.lock").write_text("")
    (tmp_path / "sub").mkdir()
    with lockkit.FileLock(tmp_path / "sub" / "deep.lock"):
        pass
    (tmp_path / "empty-marker.lock").mkdir()
    with proc_helpers.held_by_child(str(tmp_path / "held.lock")):
        for path in [*tmp_path.glob("*.lock*"), tmp_path / "sub" / "deep.lock"]:
            if path.name != "young.lock":
                os.utime(path, (old, old))
        would = sweep_lock_files(tmp_path, dry_run=True)
        assert sorted(os.path.basename(p) for p in would) == ["empty-marker.lock", "free.lock", "free.lock.gate"]
        assert (tmp_path / "free.lock").exists()
        removed = sweep_lock_files(tmp_path, recursive=True)
        assert sorted(os.path.relpath(p, tmp_path) for p in removed) == [
            "empty-marker.lock", "free.lock", "free.lock.gate", os.path.join("sub", "deep.lock")
        ]  # fmt: skip
        assert (tmp_path / "held.lock").exists() and (tmp_path / "young.lock").exists()
        with lockkit.FileLock(tmp_path / "free.lock") as lock:  # a removed lock file comes back on use
            assert lock.fencing_token


def test_a_waiter_counts_as_queued_only_once_it_is_in_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wait_until_queued() relies on it. Found by the 1 us switch-interval run on Python
    # 3.15: the count went up just before the waiter joined the in-process queue.
    from lockkit.files import _filelock

    lock = lockkit.FileLock(tmp_path / "q.lock")
    lock.acquire()
    at_the_queue, go_on = threading.Event(), threading.Event()
    manager = type(_filelock.process_locks)
    real = manager._try_acquire

    def paused(self: Any, key: Any, timeout: Any, *rest: Any) -> Any:
        if self is _filelock.process_locks and timeout != 0:  # the waiting attempt (the first is a try)
            at_the_queue.set()
            go_on.wait(30)
        return real(self, key, timeout, *rest)

    monkeypatch.setattr(manager, "_try_acquire", paused)
    w = Worker(lambda: lock.acquire(timeout=30) and (lock.release() or True))
    assert at_the_queue.wait(30)
    s = lock.statistics()
    assert (s.queued, s.waiting) == (0, 0)  # about to queue, not queued
    go_on.set()
    wait_queued(lock, 1)
    s = lock.statistics()
    assert (s.queued, s.waiting) == (1, 1)
    lock.release()
    assert w.join(30) is True
