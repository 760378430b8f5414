"""atomic_write, AtomicWriter and sweep_temp_files on a real file system."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

import lockkit
import lockkit.storage
from lockkit.storage._atomic import TEMP_PATTERN

pytestmark = pytest.mark.timeout(60)


def temps(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if TEMP_PATTERN.search(n)]


def test_writes_text_and_bytes(tmp_path: Path) -> None:
    with lockkit.atomic_write(tmp_path / "a.txt") as f:
        f.write("héllo")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    with lockkit.atomic_write(tmp_path / "b.bin", "wb") as fb:
        fb.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert temps(tmp_path) == []


def test_new_file_is_private_unless_asked(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with lockkit.atomic_write(tmp_path / "new.txt") as f:
            f.write("x")
        with lockkit.atomic_write(tmp_path / "public.txt", file_mode=0o644) as f:
            f.write("x")
        with pytest.raises(ValueError, match="owner read and write"):
            lockkit.atomic_write(tmp_path / "x.txt", file_mode=0o400)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "public.txt").st_mode) == 0o644


def test_existing_mode_is_preserved(tmp_path: Path) -> None:
    target = tmp_path / "m.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    with lockkit.atomic_write(target) as f:
        f.write("new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert target.read_text() == "new"


def test_symlink_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    os.symlink(real, link)
    with lockkit.atomic_write(link) as f:
        f.write("new")
    assert os.path.islink(link) and real.read_text() == "new"


def test_exception_in_block_leaves_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), lockkit.atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and temps(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_injection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")

    def fail(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, fail)  # a disk error we cannot cause for real
    with pytest.raises(lockkit.StorageError, match="input/output error"), lockkit.atomic_write(target) as f:
        f.write("new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert temps(tmp_path) == []


def test_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with (
        pytest.raises(lockkit.StorageError, match="directory does not exist") as info,
        lockkit.atomic_write(tmp_path / "no" / "x.txt") as f,
    ):
        f.write("x")  # pragma: no cover
    assert info.value.path == str(tmp_path / "no" / "x.txt")


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        lockkit.atomic_write("/tmp/x", "a")  # type: ignore[call-overload]


def test_atomic_writer_api(tmp_path: Path) -> None:
    w = lockkit.storage.AtomicWriter(fsync=False)
    w.write(tmp_path / "a", "text")
    w.write(tmp_path / "b", b"bytes")
    w.write_json(tmp_path / "c.json", {"k": [1, 2]})
    assert (tmp_path / "a").read_text() == "text" and (tmp_path / "b").read_bytes() == b"bytes"
    assert '"k"' in (tmp_path / "c.json").read_text()
    with pytest.raises(TypeError):
        w.write_json(tmp_path / "d.json", {"x": object()})
    assert not (tmp_path / "d.json").exists()


def test_sweep_removes_old_closed_leftovers_only(tmp_path: Path) -> None:
    old = tmp_path / "data.json.tmp.0123456789ab"
    old.write_text("x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    young = tmp_path / "data.json.tmp.ba9876543210"
    young.write_text("x")
    held = tmp_path / "other.json.tmp.aaaaaaaaaaaa"
    held.write_text("x")
    os.utime(held, (past, past))
    keep = tmp_path / "data.json"
    keep.write_text("{}")
    os.utime(keep, (past, past))
    with open(held) as busy:
        removed = lockkit.storage.sweep_temp_files(tmp_path, older_than=3600)
        assert busy.readable()
    assert removed == [str(old)]
    assert young.exists() and held.exists() and keep.exists()


def test_sweep_removes_an_unpublished_marker_directory(tmp_path: Path) -> None:
    past = time.time() - 7200
    leftover = tmp_path / "data.json.lock.0123456789abcdef.tmp"
    leftover.mkdir()
    (leftover / "owner.0123456789abcdef").write_text("{}\n")
    os.utime(leftover, (past, past))
    published = tmp_path / "data.json.lock"  # a marker in use is never a leftover
    published.mkdir()
    (published / "owner.fedcba9876543210").write_text("{}\n")
    os.utime(published, (past, past))
    assert lockkit.storage.sweep_temp_files(tmp_path, older_than=3600) == [str(leftover)]
    assert not leftover.exists() and (published / "owner.fedcba9876543210").exists()


def test_read_with_stat_reads_past_a_size_that_was_wrong() -> None:
    from lockkit.storage._atomic import read_with_stat

    found = read_with_stat("/proc/self/status")  # reports size 0, like a file growing under the reader
    assert found is not None and found[1].st_size == 0 and b"Pid:" in found[0]
    assert read_with_stat("/nonexistent/file") is None
