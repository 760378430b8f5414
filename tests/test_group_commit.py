"""Durable writes share directory fsyncs (group commit), reads take no lock, batches sync once."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import hold_in_thread

import lockkit
import lockkit.storage._atomic as atomic_mod

pytestmark = pytest.mark.timeout(120)


class DirectoryFsyncs:
    """Counts real directory fsyncs; can hold the first one until released, or fail chosen ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold_first: bool = False) -> None:
        self.calls = 0
        self.log: list[tuple[str, Any]] = []
        self.fail: set[int] = set()  # call numbers (1-based) that raise EIO after the real fsync
        self._mu = threading.Lock()
        self.first_in = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        real = atomic_mod.fsync_directory

        def spy(directory: str) -> None:
            with self._mu:
                self.calls += 1
                n = self.calls
                self.log.append(("fsync-start", n))
            if n == 1:
                self.first_in.set()
                assert self.release.wait(60)
            real(directory)
            with self._mu:
                self.log.append(("fsync-end", n))
            if n in self.fail:
                raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(atomic_mod, "fsync_directory", spy)

    def note(self, event: str, who: Any) -> None:
        with self._mu:
            self.log.append((event, who))


def in_sync(directory: str) -> int:
    """Writers waiting for (or running) a directory fsync of ``directory`` now."""
    sync = getattr(atomic_mod, "directory_sync", None)  # absent before group commit: -1
    return -1 if sync is None else int(sync.waiting(directory))


def wait_for(check: Callable[[], bool]) -> None:
    """Poll a counter until ``check()`` holds (the test's timeout bounds it)."""
    while not check():
        time.sleep(0.001)


def start_writers(repo: lockkit.JsonRepository, keys: list[str]) -> tuple[list[threading.Thread], list[BaseException]]:
    errors: list[BaseException] = []

    def put(key: str) -> None:
        try:
            repo.put(key, {"k": key})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    return threads, errors


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[lockkit.JsonRepository]:
    yield lockkit.JsonRepository(tmp_path / "records")


def test_concurrent_writers_share_one_directory_fsync(
    repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DirectoryFsyncs(monkeypatch, hold_first=True)
    first, errors = start_writers(repo, ["first"])
    assert spy.first_in.wait(30)  # the first writer's directory fsync is running (held)
    others, more_errors = start_writers(repo, [f"k{i}" for i in range(7)])
    # Seven writers renamed while that fsync ran: it may have missed their renames, so
    # none of them may return on it; all seven wait, and the next fsync covers them all.
    wait_for(lambda: spy.calls >= 8 or in_sync(repo.directory) == 8)
    spy.release.set()
    for t in first + others:
        t.join()
    assert errors == more_errors == []
    assert spy.calls == 2  # instead of 8, one per writer
    assert sorted(repo) == sorted(["first", *[f"k{i}" for i in range(7)]])


def test_a_writer_returns_only_after_an_fsync_that_started_after_its_rename(
    repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DirectoryFsyncs(monkeypatch)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        spy.note("rename", threading.get_ident())

    monkeypatch.setattr(os, "replace", replace)

    def writer(n: int) -> None:
        for i in range(15):
            repo.modify(f"k{(n + i) % 3}", lambda v: (v or 0) + 1)
            spy.note("return", threading.get_ident())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(repo.get(f"k{i}") for i in range(3)) == 6 * 15
    log = spy.log
    pending: dict[int, int] = {}  # writer -> index of its latest rename
    started: dict[int, int] = {}  # fsync number -> index where it started
    for i, (event, who) in enumerate(log):
        if event == "rename":
            pending[who] = i
        elif event == "fsync-start":
            started[who] = i
        elif event == "return":
            renamed = pending.pop(who)
            covering = [n for n, s in started.items() if s > renamed and ("fsync-end", n) in log[:i]]
            assert covering, f"a writer returned at {i} without an fsync that started after its rename at {renamed}"
    assert spy.calls <= 6 * 15


def test_a_failed_shared_fsync_fails_every_writer_it_covers(
    repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DirectoryFsyncs(monkeypatch, hold_first=True)
    spy.fail = {2}
    first, errors = start_writers(repo, ["first"])
    assert spy.first_in.wait(30)
    others, more_errors = start_writers(repo, [f"k{i}" for i in range(5)])
    wait_for(lambda: spy.calls >= 6 or in_sync(repo.directory) == 6)
    spy.release.set()
    for t in first + others:
        t.join()
    assert errors == []  # the first fsync succeeded
    assert len(more_errors) == 5 and all(isinstance(e, lockkit.exceptions.StorageError) for e in more_errors)
    assert all("input/output error" in str(e) for e in more_errors)
    assert repo.statistics().failures == 5
    repo.put("after", 1)  # nothing is stuck: the next writer syncs on its own
    assert spy.calls == 3 and in_sync(repo.directory) == 0


def test_an_interrupted_waiter_leaves_the_group_working(
    repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert threading.current_thread() is threading.main_thread()
    spy = DirectoryFsyncs(monkeypatch, hold_first=True)
    first, errors = start_writers(repo, ["first"])
    assert spy.first_in.wait(30)
    main = threading.get_ident()

    def interrupt() -> None:
        wait_for(lambda: in_sync(repo.directory) == 2)
        signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        repo.put("mine", 1)  # renamed, then interrupted while waiting for the next fsync
    interrupter.join()
    assert in_sync(repo.directory) == 1  # only the held flusher
    spy.release.set()
    for t in first:
        t.join()
    assert errors == []
    repo.put("after", 2)
    assert in_sync(repo.directory) == 0
    assert repo.get("mine") == 1 and repo.get("after") == 2


def test_modify_many_syncs_the_directory_once(repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i}" for i in range(10)]
    spy = DirectoryFsyncs(monkeypatch)
    repo.modify_many(keys, lambda current: {k: 1 for k in current})
    assert spy.calls == 1  # one for ten renames, not ten
    assert repo.get_many(keys) == dict.fromkeys(keys, 1)


def test_a_store_save_of_many_records_syncs_the_directory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = lockkit.PersistentStore(tmp_path / "s.json", save="background")
    spy = DirectoryFsyncs(monkeypatch)
    for i in range(100):
        store[f"k{i}"] = i
    store.flush()
    store.close()
    assert 1 <= spy.calls <= 100  # background saves batch what changed meanwhile
    calls = spy.calls
    store = lockkit.PersistentStore(tmp_path / "s.json", save="debounced", debounce=3600)
    for i in range(100):
        store[f"m{i}"] = i
    store.flush()
    assert spy.calls == calls + 1  # one save of 100 records: one directory fsync
    store.close()


def test_reads_take_no_lock_by_default(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r", timeout=0)
    repo.put("k", {"n": 1})
    holder, release = hold_in_thread(repo.document("k").lock)
    try:
        assert repo.get("k") == {"n": 1}  # a writer holds the record: the read does not wait
        assert repo.get_versioned("k") == ({"n": 1}, 1)
        assert dict(repo.items()) == {"k": {"n": 1}}
        with pytest.raises(lockkit.LockTimeoutError):
            repo.get("k", consistent=True)  # the shared lock waits for the writer
        with pytest.raises(lockkit.LockTimeoutError):
            repo.get_many(["k"], consistent=True)
    finally:
        release.set()
        holder.join()
    assert repo.statistics().reads == 3 and repo.statistics().timeouts == 2


def test_a_plain_read_inside_modify_sees_the_stored_value(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "d.json")
    doc.write(1)
    seen: list[Any] = []

    def change(value: Any) -> Any:
        seen.append(doc.read())
        with pytest.raises(lockkit.DeadlockError):
            doc.read(consistent=True)
        return value + 1

    assert doc.modify(change) == 2
    assert seen == [1] and doc.read() == 2


def test_lock_free_reads_never_see_a_torn_record(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r", fsync=False)
    repo.put("big", [0] * 20000)
    done = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        while not done.is_set():
            value = repo.get("big")
            if len(value) != 20000 or len(set(value)) != 1:
                bad.append("torn")
            reads[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for _ in range(150):
            repo.modify("big", lambda v: [v[0] + 1] * 20000)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert bad == []
    assert repo.get("big") == [150] * 20000


def test_consistent_get_many_never_splits_a_modify_many(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r", fsync=False)
    repo.put("a", 100)
    repo.put("b", 0)
    done = threading.Event()
    sums: set[int] = set()

    def move() -> None:
        try:
            for _ in range(200):
                repo.modify_many(["a", "b"], lambda v: {"a": v["a"] - 1, "b": v["b"] + 1})
                repo.modify_many(["b", "a"], lambda v: {"a": v["a"] + 1, "b": v["b"] - 1})
        finally:
            done.set()

    mover = threading.Thread(target=move)
    mover.start()
    while not done.is_set():
        got = repo.get_many(["a", "b"], consistent=True)
        sums.add(got["a"] + got["b"])
    mover.join()
    assert sums <= {100}
    assert repo.get_many(["a", "b", "c"], default=-1) == {"a": 100, "b": 0, "c": -1}


def test_fsync_time_is_counted(tmp_path: Path) -> None:
    durable = lockkit.JsonRepository(tmp_path / "d")
    fast = lockkit.JsonRepository(tmp_path / "f", fsync=False)
    for repo in (durable, fast):
        repo.modify("k", lambda v: (v or 0) + 1)
    assert durable.statistics().fsync_total > 0
    assert fast.statistics().fsync_total == 0


def test_a_forked_child_syncs_on_its_own(repo: lockkit.JsonRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import run_in_forked_child

    spy = DirectoryFsyncs(monkeypatch, hold_first=True)
    first, errors = start_writers(repo, ["first"])
    assert spy.first_in.wait(30)  # the parent's flusher is held: its state is "flushing"

    def child() -> bool:
        spy.release.set()  # the child's own spy must not wait on the parent's event
        repo.put("child", 1)
        return in_sync(repo.directory) == 0

    assert run_in_forked_child(child) == 0
    spy.release.set()
    for t in first:
        t.join()
    assert errors == [] and repo.get("child") == 1


def test_read_with_lock_still_waits_for_a_writer(tmp_path: Path) -> None:
    from lockkit.storage import BaseFileRepository

    repo = BaseFileRepository(tmp_path, timeout=0)
    repo.write_with_lock("s.json", {"n": 1})
    holder, release = hold_in_thread(repo._document("s.json").lock)
    try:
        with pytest.raises(lockkit.LockTimeoutError):
            repo.read_with_lock("s.json")  # plain files other programs may rewrite in place
    finally:
        release.set()
        holder.join()
    assert repo.read_with_lock("s.json") == {"n": 1}


def test_relative_paths_share_the_group_of_their_absolute_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spy = DirectoryFsyncs(monkeypatch)
    with lockkit.atomic_write("rel.json") as f:  # directory "" is the cwd, synced by its absolute name
        f.write("{}")
    assert spy.calls == 1 and in_sync(str(tmp_path)) == 0 and in_sync("") == 0
    assert (tmp_path / "rel.json").read_text() == "{}"


def test_idle_directories_leave_no_group_state_behind(tmp_path: Path) -> None:
    """One group per directory only while writers are in it: many directories cost no memory."""
    sync = atomic_mod.DirectorySync()
    for i in range(200):
        d = tmp_path / f"tenant-{i}"
        d.mkdir()
        sync.sync(str(d))
    assert sync._groups == {}
    for i in range(50):
        with lockkit.atomic_write(tmp_path / f"tenant-{i}" / "data.json") as f:
            f.write("{}")
    assert not [d for d in atomic_mod.directory_sync._groups if d.startswith(str(tmp_path))]
