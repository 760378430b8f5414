"""EncryptionService and PersistentStore: races, flush, crashes, corruption, secrecy."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import lockkit
import lockkit.exceptions
import lockkit.storage

pytestmark = pytest.mark.timeout(120)
ctx = multiprocessing.get_context("fork")
KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def codec(*keys: bytes) -> lockkit.storage.EncryptionService:
    return lockkit.storage.EncryptionService(list(keys) or [KEY])


# -- EncryptionService --------------------------------------------------------------------


def test_round_trip_and_rotation(tmp_path: Path) -> None:
    old = codec(KEY)
    path = tmp_path / "s.bin"
    old.encrypt_to_file(path, b"payload")
    rotated = codec(OTHER, KEY)  # new key first, old key still accepted
    assert rotated.decrypt_from_file(path) == b"payload"
    rotated.encrypt_to_file(path, b"fresh")
    with pytest.raises(lockkit.exceptions.DecryptionError):
        old.decrypt_from_file(path)  # written with the new key now
    assert rotated.decrypt(rotated.encrypt(b"x", associated_data=b"ad"), associated_data=b"ad") == b"x"


@pytest.mark.parametrize("damage", ["wrong key", "tampered", "truncated", "swapped"])
def test_decryption_failures_name_the_file_not_the_key(tmp_path: Path, damage: str) -> None:
    svc = codec()
    path, other = tmp_path / "a.bin", tmp_path / "b.bin"
    svc.encrypt_to_file(path, b"secret-record")
    svc.encrypt_to_file(other, b"other-record")
    blob = path.read_bytes()
    reader = svc
    if damage == "wrong key":
        reader = codec(OTHER)
    elif damage == "tampered":
        path.write_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    elif damage == "truncated":
        path.write_bytes(blob[:20])
    else:
        path.write_bytes(other.read_bytes())  # a file copied over another is rejected
    before = path.read_bytes()
    with pytest.raises(lockkit.exceptions.DecryptionError) as info:
        reader.decrypt_from_file(path)
    message = str(info.value)
    assert str(path) in message and info.value.path == str(path)
    for secret in (KEY, OTHER):
        assert secret.hex() not in message and base64.urlsafe_b64encode(secret).decode() not in message
    assert path.read_bytes() == before
    assert reader.health_status()["failures"] == 1 and reader.health_status()["last_error"] == "DecryptionError"


def test_keys_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = lockkit.storage.EncryptionService.generate_key()
    monkeypatch.setenv("LOCKKIT_KEY", lockkit.storage.EncryptionService.encode_key(key) + "," + KEY.hex())
    svc = lockkit.storage.EncryptionService.from_env()
    assert codec(key).decrypt(svc.encrypt(b"x")) == b"x"
    monkeypatch.delenv("LOCKKIT_KEY")
    with pytest.raises(KeyError, match="LOCKKIT_KEY"):
        lockkit.storage.EncryptionService.from_env()
    kf = tmp_path / "keys"
    kf.write_text(f"# rotation\n{lockkit.storage.EncryptionService.encode_key(key)}\n")
    assert lockkit.storage.EncryptionService.from_file(kf).decrypt(svc.encrypt(b"y")) == b"y"
    with pytest.raises(ValueError, match="32 bytes"):
        lockkit.storage.EncryptionService(b"short")
    assert "keys=1" in repr(codec()) and KEY.hex() not in repr(codec())


def test_seed_enoent_race_50_threads_x_20_saves(tmp_path: Path) -> None:
    svc = codec()
    path = tmp_path / "sessions.enc"
    errors: list[BaseException] = []
    last: dict[int, bytes] = {}
    order = threading.Lock()
    counter = [0]

    def save(i: int) -> None:
        try:
            for _ in range(20):
                with order:
                    counter[0] += 1
                    payload = b"state-%d" % counter[0]
                svc.encrypt_to_file(path, payload)
                last[i] = payload
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert svc.decrypt_from_file(path) in set(last.values())
    status = svc.health_status()
    assert status["files_written"] == 1000 and status["mutex"]["acquisitions"] >= 1000
    assert svc.wait_for_pending_writes(1)


# -- PersistentStore ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["immediate", "debounced", "background"])
def test_flush_after_10000_changes_holds_the_last_state(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.json"
    store = lockkit.PersistentStore(path, save=mode, debounce=0.2, fsync=mode != "immediate")  # type: ignore[arg-type]
    n = 10_000 if mode != "immediate" else 500
    for i in range(n):
        store[f"k{i % 100}"] = i
    assert store.flush(10)
    reopened = lockkit.PersistentStore(path)
    assert dict(reopened.items()) == {f"k{j}": n - 100 + j for j in range(100)}
    stats = store.statistics()
    assert stats.changes == n and not stats.pending
    if mode == "debounced":
        assert stats.saves <= n / 100  # coalesced: far fewer writes than changes
    store.close()
    with pytest.raises(lockkit.exceptions.StoreClosedError):
        store["late"] = 1


def test_debounced_saves_at_most_once_per_window(tmp_path: Path) -> None:
    store = lockkit.PersistentStore(tmp_path / "d.json", save="debounced", debounce=0.3, fsync=False)
    saved = threading.Event()
    store["a"] = 1
    started = time.monotonic()
    for i in range(50):
        store["a"] = i
    while store.statistics().saves == 0:  # the debounce fires by itself
        saved.wait(0.01)
    assert time.monotonic() - started >= 0.25
    assert store.statistics().saves == 1
    assert lockkit.PersistentStore(tmp_path / "d.json").get("a") == 49
    store.close()


def test_debounced_keeps_one_save_per_window_under_a_steady_stream(tmp_path: Path) -> None:
    store = lockkit.PersistentStore(tmp_path / "w.json", save="debounced", debounce=0.2, fsync=False)
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 1.0:  # changes keep arriving during every save
        store["k"] = i
        i += 1
    elapsed = time.monotonic() - started
    assert store.statistics().saves <= elapsed / 0.2 + 1  # never more than one save per window
    store.close()
    assert lockkit.PersistentStore(tmp_path / "w.json").get("k") == i - 1


def test_concurrent_create_read_delete_sessions(tmp_path: Path) -> None:
    store = lockkit.storage.SessionStore(tmp_path / "sessions.enc", codec=codec())
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            store[f"sid-{i}"] = {"user": i}
            assert store[f"sid-{i}"] == {"user": i}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.flush(10)
    assert len(lockkit.PersistentStore(tmp_path / "sessions.enc", codec=codec())) == 10

    def churn(i: int) -> None:
        for n in range(50):
            store[f"x{i}-{n}"] = n
            store.get(f"x{i}-{n - 1}")
            store.delete(f"x{i}-{n - 1}")

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    again = lockkit.PersistentStore(tmp_path / "sessions.enc", codec=codec())
    assert sorted(k for k in again if k.startswith("x")) == sorted(f"x{i}-49" for i in range(8))


def test_ttl_expiry(tmp_path: Path) -> None:
    store = lockkit.PersistentStore(tmp_path / "t.json", ttl=0.05)
    store["short"] = 1
    store.set("long", 2, ttl=60)
    threading.Event().wait(0.1)  # let the entry's time-to-live pass (wall-clock expiry, not sync)
    assert "short" not in store and store.get("long") == 2
    store.flush()
    assert lockkit.PersistentStore(tmp_path / "t.json").keys() == ["long"]


def test_bad_values_change_nothing(tmp_path: Path) -> None:
    store = lockkit.PersistentStore(tmp_path / "b.json")
    store["ok"] = 1
    with pytest.raises(TypeError):
        store["bad"] = object()
    with pytest.raises(TypeError):
        store[3] = 1  # type: ignore[index]
    assert store.keys() == ["ok"] and store.statistics().changes == 1


@pytest.mark.parametrize("garbage", ["{garbage", "[" * 100_000, '{"k": NaN}'])
def test_corrupt_file_refuses_to_start_or_is_backed_up(tmp_path: Path, garbage: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(garbage)
    with pytest.raises(lockkit.CorruptDataError):
        lockkit.PersistentStore(path)
    assert path.read_text() == garbage
    store = lockkit.PersistentStore(path, on_corrupt="backup")
    assert len(store) == 0
    backups = [n for n in os.listdir(tmp_path) if n.startswith("c.json.corrupt-")]
    assert len(backups) == 1 and (tmp_path / backups[0]).read_text() == garbage


@pytest.mark.parametrize("damage", ["wrong key", "tampered", "truncated", "swapped"])
def test_encrypted_store_damage_is_decryption_error_without_overwrite(tmp_path: Path, damage: str) -> None:
    path, other = tmp_path / "s.enc", tmp_path / "o.enc"
    for p in (path, other):
        s = lockkit.PersistentStore(p, codec=codec())
        s["k"] = p.name
        s.close()
    blob = path.read_bytes()
    reader = codec(OTHER) if damage == "wrong key" else codec()
    if damage == "tampered":
        path.write_bytes(blob[:30] + bytes([blob[30] ^ 0xFF]) + blob[31:])
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "swapped":
        path.write_bytes(other.read_bytes())
    before = path.read_bytes()
    with pytest.raises(lockkit.exceptions.DecryptionError):
        lockkit.PersistentStore(path, codec=reader)
    assert path.read_bytes() == before


def test_failed_background_save_is_logged_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = lockkit.PersistentStore(tmp_path / "r.json", save="background", fsync=False)
    from lockkit.storage import _store

    real = _store.atomic_write
    failures = [2]

    def flaky(*a: Any, **k: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(_store, "atomic_write", flaky)  # a full disk we cannot cause for real
    with capture_logs() as logs:
        store["k"] = "v"
        while store.statistics().saves == 0:
            threading.Event().wait(0.01)
    # Both failures are counted; the warning is rate-limited per store (one per window).
    assert [e["event"] for e in logs].count("lockkit.save_failed") == 1
    assert all(e["error"] == "OSError" for e in logs if e["event"] == "lockkit.save_failed")
    assert store.statistics().failures == 2
    assert lockkit.PersistentStore(tmp_path / "r.json").get("k") == "v"
    store.close()


def test_merge_and_reload_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "m.json"

    def union(disk: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
        return {**disk, **mine}

    a = lockkit.PersistentStore(path, merge=union)
    a["from-a"] = 1

    def other() -> None:
        b = lockkit.PersistentStore(path, merge=union)
        b["from-b"] = 2
        b.close()

    p = ctx.Process(target=other)
    p.start()
    p.join(30)
    assert p.exitcode == 0
    a["again-a"] = 3
    assert sorted(a.keys()) == ["again-a", "from-a", "from-b"]
    plain = lockkit.PersistentStore(path)
    plain.reload()
    assert sorted(plain.keys()) == ["again-a", "from-a", "from-b"]


def _background_saver(path: str) -> None:
    store = lockkit.PersistentStore(path, save="background", codec=codec())
    i = 0
    while True:
        i += 1
        store[f"k{i % 50}"] = "x" * 2000 + str(i)


def test_kill_9_during_background_saves_leaves_a_complete_state(tmp_path: Path) -> None:
    path = str(tmp_path / "bg.enc")
    for _ in range(20):
        child = ctx.Process(target=_background_saver, args=(path,))
        child.start()
        threading.Event().wait(0.05)  # let it run a moment, then kill it mid-save
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        if os.path.exists(path):
            store = lockkit.PersistentStore(path, codec=codec())  # decrypts: some complete state
            assert all(v.startswith("x" * 2000) for v in store.values())


def test_no_secret_in_logs_or_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_value = "refresh-tok-0a1b2c3d4e"
    secret_key = "sid-9f8e7d6c"
    texts: list[str] = []
    with capture_logs() as logs:
        store = lockkit.storage.RefreshTokenStore(tmp_path / "rt.enc", codec=codec(), debounce=0.01)
        store[secret_key] = secret_value
        for op in (lambda: store["missing-" + secret_key], lambda: store.pop("gone-" + secret_key)):
            with pytest.raises(KeyError) as info:
                op()
            texts.append(str(info.value))
        with pytest.raises(TypeError) as info2:
            store[secret_key] = {secret_value: object()}
        texts.append(str(info2.value))
        texts.append(repr(store))
        store.flush()
        (tmp_path / "rt.enc").write_bytes(b"garbage")
        with pytest.raises(lockkit.exceptions.DecryptionError) as info3:
            lockkit.PersistentStore(tmp_path / "rt.enc", codec=codec())
        texts.append(str(info3.value))
        store.close()
    texts += [repr(e) for e in logs]
    for text in texts:
        for secret in (secret_value, secret_key, KEY.hex(), base64.urlsafe_b64encode(KEY).decode()):
            assert secret not in text


def test_ready_made_stores_and_flush_all(tmp_path: Path) -> None:
    clients = lockkit.storage.ClientStore(tmp_path / "clients.json")
    clients["app"] = {"redirect": "https://example.test/cb"}
    assert lockkit.PersistentStore(tmp_path / "clients.json").get("app") is not None  # immediate
    sessions = lockkit.storage.SessionStore(tmp_path / "sessions.json")
    sessions["s"] = 1
    assert lockkit.storage.flush_all_stores(5)
    assert lockkit.PersistentStore(tmp_path / "sessions.json").get("s") == 1
    sessions.close()
    clients.close()


@pytest.mark.timeout(60)
def test_a_set_during_a_merging_save_is_kept(tmp_path: Path) -> None:
    calls: list[int] = []

    def merge(on_disk: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
        if not calls:
            store.set("late", 1)  # another request's change, made while this save runs
        calls.append(1)
        return {**on_disk, **mine}

    store = lockkit.PersistentStore(tmp_path / "m.json", save="background", merge=merge)
    store.set("early", 1)
    assert store.flush(30)
    assert store.get("late") == 1, "the change made during the save was dropped"
    assert store.flush(30)
    assert json.loads((tmp_path / "m.json").read_text())["entries"]["late"][0] == 1
    store.close()


@pytest.mark.timeout(60)
def test_a_set_during_a_reload_is_kept(tmp_path: Path) -> None:
    class Interleaving(lockkit.storage.JsonSerializer):
        armed = False

        def loads(self, data: bytes) -> Any:
            if Interleaving.armed:
                Interleaving.armed = False
                store.set("late", 2)  # a change made while reload reads the file
            return super().loads(data)

    store = lockkit.PersistentStore(tmp_path / "r.json", save="debounced", serializer=Interleaving())
    store.set("a", 1)
    assert store.flush(30)
    Interleaving.armed = True
    store.reload()
    assert store.get("late") == 2 and store.get("a") == 1
    store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("save", ["immediate", "debounced", "background"])
def test_no_acknowledged_set_is_lost_to_merging_saves_or_reloads(tmp_path: Path, save: str) -> None:
    path = tmp_path / "busy.json"
    store = lockkit.PersistentStore(
        path, save=save, debounce=0.01, merge=lambda disk, mine: {**disk, **mine}, fsync=False
    )

    def writer(t: int) -> None:
        for n in range(150):
            store.set(f"t{t}-{n}", n)
            if n % 50 == 0:
                store.reload()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.flush(60)
    expected = {f"t{t}-{n}": n for t in range(4) for n in range(150)}
    assert dict(store.items()) == expected
    on_disk = json.loads(path.read_text())["entries"]
    assert {k: v[0] for k, v in on_disk.items()} == expected
    store.close()


@pytest.mark.timeout(90)
def test_sigterm_while_a_store_lock_is_held_flushes_and_exits(tmp_path: Path) -> None:
    import proc_helpers

    path = tmp_path / "sig.json"
    ready = ctx.Event()
    child = ctx.Process(target=proc_helpers.sigterm_while_holding_a_store_lock, args=(str(path), ready))
    child.start()
    assert ready.wait(30)
    os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
    child.join(60)
    if child.exitcode is None:  # deadlocked in the handler: clean up, then fail
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        pytest.fail("the SIGTERM flush deadlocked")
    assert child.exitcode == -signal.SIGTERM  # the signal's own exit status
    assert json.loads(path.read_text())["entries"]["k"][0] == "unsaved"


@pytest.mark.parametrize("offset", [0, 3, 4, 7])  # the format tag and every key-id byte
def test_a_flipped_header_byte_is_refused(offset: int) -> None:
    service = lockkit.storage.EncryptionService([KEY, bytes(range(32))])
    blob = bytearray(service.encrypt(b"secret", associated_data=b"ctx"))
    blob[offset] ^= 0x01
    with pytest.raises(lockkit.exceptions.DecryptionError):
        service.decrypt(bytes(blob), associated_data=b"ctx")


def test_data_encrypted_in_the_first_format_still_decrypts() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from lockkit.storage import _crypto

    nonce = bytes(12)
    legacy = b"LKE1" + _crypto._key_id(KEY) + nonce + AESGCM(KEY).encrypt(nonce, b"old", b"ctx")
    assert lockkit.storage.EncryptionService([KEY]).decrypt(legacy, associated_data=b"ctx") == b"old"
