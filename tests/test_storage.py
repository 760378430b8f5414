"""JsonDocument and JsonRepository: versions, fencing, corruption, bad input, processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import hold_in_thread

import lockkit
import lockkit.exceptions
import lockkit.storage
from lockkit.storage._atomic import TEMP_PATTERN

pytestmark = pytest.mark.timeout(180)
ctx = multiprocessing.get_context("fork")


def test_read_write_modify_delete(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "d.json")
    assert doc.read() is None and doc.read("dflt") == "dflt" and doc.version() == 0
    assert doc.write({"a": 1}) == 1
    assert doc.modify(lambda v: {**v, "b": 2}) == {"a": 1, "b": 2}
    assert doc.read_versioned() == ({"a": 1, "b": 2}, 2)
    assert doc.delete() is True
    assert not os.path.exists(str(tmp_path / "d.json") + ".lock")  # removed with the record, under its lock
    assert doc.delete() is False


def test_plain_files_are_read_and_can_be_kept_plain(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"seed": true}')
    assert lockkit.JsonDocument(path).read_versioned() == ({"seed": True}, 0)
    plain = lockkit.JsonDocument(path, plain=True)
    plain.modify(lambda v: {**v, "n": 1})
    assert json.loads(path.read_text()) == {"seed": True, "n": 1}


def test_modify_that_raises_writes_nothing(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "d.json")
    doc.write([1])
    before = (tmp_path / "d.json").read_bytes()

    def boom(_: Any) -> Any:
        raise KeyError("no")

    with pytest.raises(KeyError):
        doc.modify(boom)
    assert (tmp_path / "d.json").read_bytes() == before


def test_unserialisable_value_fails_before_writing(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "d.json")
    doc.write({"ok": 1})
    before = (tmp_path / "d.json").read_bytes()
    for bad in ({"x": object()}, float("nan"), {1j: 2}):
        with pytest.raises(TypeError, match="cannot be stored as JSON"):
            doc.write(bad)
        with pytest.raises(TypeError):
            doc.modify(lambda _v, bad=bad: bad)
    assert (tmp_path / "d.json").read_bytes() == before
    assert [n for n in os.listdir(tmp_path) if TEMP_PATTERN.search(n)] == []


def test_optimistic_versions(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "v.json")
    assert doc.write("a", expected_version=0) == 1
    with pytest.raises(lockkit.exceptions.ConflictError) as info:
        doc.write("b", expected_version=0)
    assert info.value.expected == 0 and info.value.actual == 1
    assert doc.write("b", expected_version=1) == 2 and doc.read() == "b"


def test_fencing_rejects_older_writer(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r")
    repo.put("k", 1, fencing_token=5)
    repo.put("k", 2, fencing_token=5)  # equal is the same holder writing again
    with pytest.raises(lockkit.exceptions.StaleWriterError) as info:
        repo.modify("k", lambda v: v + 100, fencing_token=4)
    assert info.value.token == 4 and info.value.latest == 5
    assert repo.get("k") == 2
    repo.put("k", 3, fencing_token=9)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        repo.put("k", 0, fencing_token=5)


def test_fencing_with_filelock_tokens(tmp_path: Path) -> None:
    doc = lockkit.JsonDocument(tmp_path / "f.json")
    lock = lockkit.FileLock(tmp_path / "leader.lock")
    with lock:
        old = lock.fencing_token
    with lock:
        new = lock.fencing_token
    doc.write("from the new holder", fencing_token=new)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.write("from a paused old holder", fencing_token=old)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b'{"lockkit":1,"version":"x","data":1}', "damaged"),
        (b"[1,2", "not valid JSON"),
    ],
)
def test_corrupt_files_raise_and_are_never_overwritten(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    doc = lockkit.JsonDocument(path)
    for op in (doc.read, lambda: doc.modify(lambda v: 1), lambda: doc.write(2)):
        with pytest.raises(lockkit.CorruptDataError, match=why) as info:
            op()
        assert info.value.path == str(path)
    assert path.read_bytes() == content


def test_wrong_type_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("[1, 2]")
    with pytest.raises(lockkit.CorruptDataError, match="list, not dict"):
        lockkit.JsonDocument(path, validate=dict).read()


@pytest.mark.parametrize(
    "key", ["..", ".", "../etc/passwd", "a/b", "a\\b", "", "x\0y", ".hidden", "tab\there", "k" * 201]
)
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r")
    with pytest.raises(ValueError, match="record key"):
        repo.put(key, 1)
    assert os.listdir(tmp_path / "r") == []


def test_non_string_key(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        lockkit.JsonRepository(tmp_path / "r").get(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record keys must be str"):
        lockkit.JsonRepository(tmp_path / "r").get(["a"])  # type: ignore[arg-type]


def test_unwritable_directory_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = lockkit.JsonDocument(tmp_path / "ro.json")
    doc.write("kept")
    real_open = os.open

    def read_only(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if TEMP_PATTERN.search(str(path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", read_only)  # root ignores chmod: inject EACCES
    with pytest.raises(lockkit.StorageError, match="permission denied"):
        doc.write("lost?")
    monkeypatch.undo()
    assert doc.read() == "kept"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(lockkit.LockFileError, match="directory does not exist"):
        lockkit.JsonDocument(tmp_path / "nope" / "x.json").write(1)


def test_repository_keys_and_modify_many(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r")
    for k in ("b", "a", "c"):
        repo.put(k, {"n": 0})
    assert repo.keys() == ["a", "b", "c"] and "a" in repo and "z" not in repo
    out = repo.modify_many(["c", "a", "z"], lambda cur: {k: ({"n": 1} if v else {"n": -1}) for k, v in cur.items()})
    assert out == {"c": {"n": 1}, "a": {"n": 1}, "z": {"n": -1}}
    with pytest.raises(KeyError, match="did not lock"):
        repo.modify_many(["a"], lambda cur: {"b": 1})
    assert repo.get("b") == {"n": 0}
    assert repo.delete("a") and repo.keys() == ["b", "c", "z"]


def test_modify_many_is_deadlock_free(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path / "r", fsync=False)

    def move(keys: list[str]) -> None:
        for _ in range(40):
            repo.modify_many(keys, lambda cur: {k: (v or 0) + 1 for k, v in cur.items()})

    threads = [
        threading.Thread(target=move, args=(ks,)) for ks in (["a", "b", "c"], ["c", "b", "a"], ["b", "c"], ["c", "a"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [repo.get(k) for k in "abc"] == [120, 120, 160]


def test_base_file_repository(tmp_path: Path) -> None:
    class Settings(lockkit.storage.BaseFileRepository):
        def bump(self) -> int:
            return int(self.modify_with_lock("settings.json", lambda v: {"n": (v or {"n": 0})["n"] + 1})["n"])

    s = Settings(tmp_path)
    assert s.bump() == 1 and s.bump() == 2
    assert s.read_with_lock("settings.json") == {"n": 2}
    s.write_with_lock("sub.json", [1])
    assert s.delete_with_lock("sub.json") and not s.delete_with_lock("sub.json")
    with pytest.raises(ValueError, match="inside the base directory"):
        s.read_with_lock("../escape.json")


# -- processes -----------------------------------------------------------------------


def _doc_worker(path: str, threads: int, cycles: int) -> None:
    doc = lockkit.JsonDocument(path, fsync=False)

    def work() -> None:
        for _ in range(cycles):
            doc.modify(lambda v: {"n": (v or {"n": 0})["n"] + 1})

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _repo_worker(directory: str, threads: int, cycles: int) -> None:
    repo = lockkit.JsonRepository(directory, fsync=False)

    def work(i: int) -> None:
        for c in range(cycles):
            repo.modify(f"k{(i + c) % 10}", lambda v: (v or 0) + 1)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _run(target: Any, args: tuple[Any, ...], n: int = 4) -> None:
    procs = [ctx.Process(target=target, args=args) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
        assert p.exitcode == 0


def test_no_lost_updates_document_4x4x250(tmp_path: Path) -> None:
    path = str(tmp_path / "counter.json")
    _run(_doc_worker, (path, 4, 250))
    assert lockkit.JsonDocument(path).read() == {"n": 4000}


def test_no_lost_updates_repository_10_keys(tmp_path: Path) -> None:
    directory = str(tmp_path / "repo")
    _run(_repo_worker, (directory, 4, 250))
    repo = lockkit.JsonRepository(directory)
    keys = repo.keys()
    assert sum(repo.get(k) for k in keys) == 4000
    assert repo.keys() == [f"k{i}" for i in range(10)]


BIG = 1 << 20


def _rewriter(path: str, landed: Any) -> None:
    doc = lockkit.JsonDocument(path)  # real fsync
    i = 0
    while True:
        i += 1
        doc.write({"gen": i, "pad": str(i % 10) * BIG})
        landed.set()


def test_crash_safety_200_sigkills(tmp_path: Path) -> None:
    path = str(tmp_path / "big.json")
    lockkit.JsonDocument(path).write({"gen": 0, "pad": "0" * BIG})
    rng = random.Random(1234)
    seen = set()
    for round_ in range(200):
        landed = ctx.Event()
        child = ctx.Process(target=_rewriter, args=(path, landed))
        child.start()
        if round_ % 2:  # every other child gets one write through first, however slow the disk
            assert landed.wait(120)
        time.sleep(rng.uniform(0, 0.03))  # a random moment of a rewrite, not a synchronisation
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        value = lockkit.JsonDocument(path).read()  # always parses: old or new, never torn
        assert len(value["pad"]) == BIG and set(value["pad"]) == {str(value["gen"] % 10)}
        seen.add(value["gen"])
    assert len(seen) > 1  # writes did land (every other child waited for one)
    lockkit.storage.sweep_temp_files(tmp_path, older_than=0)
    assert [n for n in os.listdir(tmp_path) if TEMP_PATTERN.search(n)] == []


def _modify_in_another_process(path: Path, add: int) -> None:
    code = f"import lockkit; lockkit.JsonDocument({str(path)!r}).modify(lambda v: v + {add})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.timeout(90)
def test_a_lock_file_deleted_while_held_never_loses_an_update(tmp_path: Path) -> None:
    # A cleaner deletes the held lock file; another process then locks the new file at the
    # path and commits. The first holder must not commit on top of it: its lock guards
    # nothing any more.
    path = tmp_path / "d.json"
    doc = lockkit.JsonDocument(path)
    doc.write(0)

    def fn(value: int) -> int:
        os.unlink(str(path) + ".lock")
        _modify_in_another_process(path, 10)
        return value + 1

    with pytest.raises(lockkit.exceptions.LockLostError, match="deleted or replaced"):
        doc.modify(fn)
    assert doc.read() == 10  # the other process's update survived; ours was refused, not acknowledged
    assert not [p for p in os.listdir(tmp_path) if TEMP_PATTERN.search(p)]


@pytest.mark.timeout(90)
def test_a_write_the_holder_did_not_see_is_never_overwritten(tmp_path: Path) -> None:
    # Something wrote the file while we held its lock (a writer through another lock, or a
    # holder whose own lock was lost): a modify computed from what we read is refused.
    path = tmp_path / "d.json"
    doc = lockkit.JsonDocument(path)
    doc.write(0, fencing_token=5)

    def fn(value: int) -> int:
        with lockkit.storage.atomic_write(path, "w") as f:
            f.write('{"lockkit":1,"version":9,"fence":7,"data":100}\n')
        return value + 1

    with pytest.raises(lockkit.exceptions.ConflictError, match="changed"):
        doc.modify(fn, fencing_token=6)
    assert doc.read_versioned() == (100, 9)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.write(1, fencing_token=6)  # the fence never goes backwards


def test_a_fenced_read_registers_the_token_so_a_stale_holder_cannot_write_after_it(tmp_path: Path) -> None:
    # Holder 1 (token 1) reads, pauses past its lease; holder 2 (token 2) reads with its
    # token. Holder 1's write, computed from its old read, must then be refused.
    doc = lockkit.JsonDocument(tmp_path / "c.json")
    doc.write(0)
    first = doc.read(fencing_token=1)
    second = doc.read(fencing_token=2)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.write(first + 1, fencing_token=1)
    doc.write(second + 1, fencing_token=2)
    assert doc.read_versioned() == (1, 2)
    with pytest.raises(lockkit.exceptions.StaleWriterError):
        doc.read(fencing_token=1)  # a stale holder learns it on its next read too


@pytest.mark.timeout(150)
def test_a_cleaner_deleting_lock_files_during_increments_loses_no_acknowledged_update(tmp_path: Path) -> None:
    import proc_helpers

    path = tmp_path / "counter.json"
    lockkit.JsonDocument(path).write(0)
    out = ctx.Queue()
    procs = [ctx.Process(target=proc_helpers.acknowledged_increments, args=(str(path), 300, out)) for _ in range(4)]
    for p in procs:
        p.start()
    deleted = 0
    while any(p.is_alive() for p in procs):
        try:
            os.unlink(str(path) + ".lock")
            deleted += 1
        except FileNotFoundError:
            pass
        time.sleep(0.001)  # pacing only: the assertion below does not depend on it
    acknowledged = sum(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert deleted > 0
    assert lockkit.JsonDocument(path).read() == acknowledged


def test_deeply_nested_json_is_corrupt_data_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(lockkit.CorruptDataError, match="nested"):
        lockkit.JsonDocument(path).read()
    assert path.read_text().startswith("[[[")  # never overwritten


def test_writing_a_deeply_nested_value_is_a_type_error_and_writes_nothing(tmp_path: Path) -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    doc = lockkit.JsonDocument(tmp_path / "d.json")
    doc.write({"ok": 1})
    with pytest.raises(TypeError, match="nested"):
        doc.write(value)
    assert doc.read() == {"ok": 1}


@pytest.mark.parametrize("content", ['{"x": NaN}', '{"x": 1e400}', '{"x": -Infinity}'])
def test_non_finite_numbers_are_refused_when_read(tmp_path: Path, content: str) -> None:
    # A file that can be read must be writable again: reading NaN or 1e400 (which JSON
    # cannot store back) is corrupt data, named as such, and the file is left alone.
    path = tmp_path / "n.json"
    path.write_text(content)
    with pytest.raises(lockkit.CorruptDataError, match="finite"):
        lockkit.JsonDocument(path).read()
    assert path.read_text() == content


@pytest.mark.timeout(60)
def test_a_full_disk_is_a_storage_error_everywhere(tmp_path: Path) -> None:
    import proc_helpers

    result = ctx.Queue()
    child = ctx.Process(target=proc_helpers.storage_with_tiny_file_limit, args=(str(tmp_path), result))
    child.start()
    outcomes = {}
    while True:
        name, outcome = result.get(timeout=30)
        if name == "done":
            break
        outcomes[name] = outcome
    child.join(30)
    assert outcomes == dict.fromkeys(
        ["atomic_write", "JsonDocument.write", "PersistentStore.set", "PersistentStore.flush"], "StorageError"
    )
    assert not [p for p in os.listdir(tmp_path) if TEMP_PATTERN.search(p)]


@pytest.mark.parametrize(
    ("key", "rule"),
    [("\udcc3\udca9", "valid Unicode"), ("e\u0301", "NFC"), ("caf\udce9", "valid Unicode")],
)
def test_keys_that_could_alias_another_record_are_refused(tmp_path: Path, key: str, rule: str) -> None:
    repo = lockkit.JsonRepository(tmp_path)
    with pytest.raises(lockkit.exceptions.InvalidKeyError, match=rule) as info:
        repo.put(key, 1)
    assert isinstance(info.value, ValueError)
    with pytest.raises(lockkit.exceptions.InvalidKeyError):
        repo.modify_many([key, "\u00e9"], lambda values: values)  # refused, never a self-deadlock
    assert os.listdir(tmp_path) == []


def test_an_nfc_key_is_one_record(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path)
    repo.put("\u00e9", 1)
    assert repo.get("\u00e9") == 1 and list(repo.keys()) == ["\u00e9"]


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir() if p.is_file()}


def test_new_files_are_private_by_default(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lockkit.JsonDocument(tmp_path / "d.json").write({"secret": 1})
        lockkit.JsonRepository(tmp_path / "repo").put("k", 1)
        store = lockkit.PersistentStore(tmp_path / "s.json")
        store["k"] = "v"
        store.flush()
        with lockkit.atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
        with lockkit.FileLock(tmp_path / "m.lock", strategy="marker") as lock:
            assert lock.fencing_token
    finally:
        os.umask(old)
    modes = {**_modes(tmp_path), **{f"repo/{k}": v for k, v in _modes(tmp_path / "repo").items()}}
    assert modes and all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}


def test_an_explicit_file_mode_and_an_existing_mode_are_kept(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        doc = lockkit.JsonDocument(tmp_path / "shared.json", file_mode=0o640)
        doc.write(1)
        assert _modes(tmp_path) == {"shared.json": 0o640, "shared.json.lock": 0o640}
        os.chmod(tmp_path / "shared.json", 0o644)
        lockkit.JsonDocument(tmp_path / "shared.json").write(2)  # a rewrite keeps the file's mode
        assert _modes(tmp_path)["shared.json"] == 0o644
    finally:
        os.umask(old)


def test_documents_and_repositories_pass_stale_after_to_their_marker_locks(tmp_path: Path) -> None:
    import socket as _socket

    import proc_helpers

    record = {"pid": 1, "host": "some-other-host", "start": "x:1", "thread": "t", "at": time.time() - 100}
    assert _socket.gethostname() != "some-other-host"
    proc_helpers.write_marker(tmp_path / "d.json.lock", record, mtime=time.time() - 100)
    proc_helpers.write_marker(tmp_path / "k.json.lock", record, mtime=time.time() - 100)
    doc = lockkit.JsonDocument(tmp_path / "d.json", strategy="marker", stale_after=10, timeout=5)
    doc.write(1)  # the 100 s old marker of another host is stale after 10 s
    repo = lockkit.JsonRepository(tmp_path, strategy="marker", stale_after=10, timeout=5)
    repo.put("k", 1)
    assert doc.read() == 1 and repo.get("k") == 1


def test_a_symlink_and_its_target_share_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    lockkit.JsonDocument(real).write(0)
    link.symlink_to(real)
    assert lockkit.JsonDocument(link).lock.path == lockkit.JsonDocument(real).lock.path == str(real) + ".lock"

    def bump(path: Path) -> None:
        doc = lockkit.JsonDocument(path, fsync=False)
        for _ in range(200):
            doc.modify(lambda v: v + 1)

    workers = [threading.Thread(target=bump, args=(p,)) for p in (real, link, real, link)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert lockkit.JsonDocument(real).read() == 800
    assert link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's symlink needs root")
def test_a_symlink_planted_by_another_user_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text('{"precious": true}')
    planted = tmp_path / "data.json"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)  # another, unprivileged user's link
    with pytest.raises(lockkit.StorageError, match="symbolic link") as info:
        lockkit.JsonDocument(planted).write({"x": 1})
    assert isinstance(info.value, OSError)
    with pytest.raises(lockkit.StorageError, match="symbolic link"), lockkit.atomic_write(planted, "w") as f:
        f.write("x")  # pragma: no cover
    assert victim.read_text() == '{"precious": true}'
    lockkit.JsonDocument(planted, follow_symlinks=True).write({"x": 1})  # when asked, it is followed
    assert json.loads(victim.read_text())["data"] == {"x": 1}


def test_deleting_records_leaves_no_lock_files(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path, fsync=False)
    for i in range(50):
        repo.put(f"r{i}", i)
        assert repo.delete(f"r{i}")
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.timeout(120)
def test_deleting_a_record_while_others_modify_it_loses_nothing(tmp_path: Path) -> None:
    # delete() removes the lock file while holding it; modifiers waiting on the old file
    # find it unlinked when they get it and lock the new one: exclusion holds throughout.
    repo = lockkit.JsonRepository(tmp_path, fsync=False)
    mu = threading.Lock()
    inside = [0]
    seen: list[int] = []

    def bump(value: int | None) -> int:
        with mu:
            inside[0] += 1
            seen.append(inside[0])
        time.sleep(0.0005)  # widens any overlap; the assertion does not depend on it
        with mu:
            inside[0] -= 1
        return (value or 0) + 1

    def modify() -> None:
        for _ in range(150):
            repo.modify("k", bump)

    def delete() -> None:
        for _ in range(150):
            repo.delete("k")

    threads = [threading.Thread(target=modify) for _ in range(3)] + [threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 450 and max(seen) == 1  # never two holders, though the lock file kept going away


def test_plain_repository_keeps_existing_files_plain_for_other_readers(tmp_path: Path) -> None:
    (tmp_path / "alice.json").write_text('{"balance": 7}')
    repo = lockkit.JsonRepository(tmp_path, plain=True)
    repo.modify("alice", lambda v: {**v, "balance": v["balance"] + 1})
    repo.put("bob", {"balance": 1})
    assert json.loads((tmp_path / "alice.json").read_text()) == {"balance": 8}  # still what other readers expect
    assert json.loads((tmp_path / "bob.json").read_text()) == {"balance": 1}
    with pytest.raises(ValueError, match="plain"):
        repo.put("bob", {"balance": 2}, fencing_token=3)  # fencing needs the envelope
    assert repo.get("bob") == {"balance": 1}
    # Migration either way is a flag: each record converts at its next write.
    enveloped = lockkit.JsonRepository(tmp_path)
    enveloped.modify("alice", lambda v: v)
    assert json.loads((tmp_path / "alice.json").read_text())["data"] == {"balance": 8}
    repo.modify("alice", lambda v: v)
    assert json.loads((tmp_path / "alice.json").read_text()) == {"balance": 8}


def test_repository_iterates_items_and_values_and_skips_foreign_names(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path)
    for key, n in (("b", 2), ("a", 1), ("c", 3)):
        repo.put(key, n)
    (tmp_path / "not a key\x01.json").write_text("1")  # a name no key can have: not a record
    (tmp_path / "notes.txt").write_text("x")
    assert list(repo) == ["a", "b", "c"] and len(repo) == 3
    assert list(repo.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert list(repo.values()) == [1, 2, 3]


def test_invalid_keys_are_invalid_key_errors_and_value_errors(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path)
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(lockkit.exceptions.InvalidKeyError) as info:
            repo.put(bad, 1)
        assert isinstance(info.value, ValueError) and isinstance(info.value, lockkit.LockkitError)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_document_and_repository_statistics(tmp_path: Path) -> None:
    repo = lockkit.JsonRepository(tmp_path, track_hold_time=True)
    repo.put("a", 1)
    repo.modify("a", lambda v: v + 1)
    assert repo.get("a") == 2 and repo.get("missing") is None
    with pytest.raises(lockkit.exceptions.ConflictError):
        repo.put("a", 9, expected_version=1)
    with pytest.raises(ZeroDivisionError):
        repo.modify("a", lambda v: v / 0)
    assert repo.delete("a") and not repo.delete("a")
    repo.modify_many(["x", "y"], lambda cur: {"x": 1, "y": 2})
    s = repo.statistics()
    assert (s.reads, s.writes, s.deletes, s.conflicts, s.failures, s.timeouts) == (2, 4, 2, 1, 1, 0)
    assert s.hold_total > 0 and s.hold_max <= s.hold_total and s.lock_wait_max <= s.lock_wait_total

    doc = lockkit.JsonDocument(tmp_path / "d.json", timeout=0)
    doc.write({"n": 1})
    held, release = hold_in_thread(doc.lock)
    try:
        with pytest.raises(lockkit.LockTimeoutError):
            doc.write({"n": 2})
    finally:
        release.set()
        held.join()
    d = doc.statistics()
    assert (d.writes, d.timeouts, d.hold_total) == (1, 1, 0.0)  # hold times only when asked
