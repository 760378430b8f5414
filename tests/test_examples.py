"""The docs/examples repositories lose no update under 4 processes x 8 threads."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))

from queue_repository import QueueRepository
from token_manager import TokenManager

pytestmark = pytest.mark.timeout(180)
ctx = multiprocessing.get_context("fork")
PROCS, THREADS, EACH = 4, 8, 24


def _threads(fn: Any) -> None:
    pool = [threading.Thread(target=fn, args=(i,)) for i in range(THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def queue_worker(path: str, proc: int) -> None:
    q = QueueRepository(path, fsync=False)

    def work(i: int) -> None:
        for n in range(EACH):
            item_id = q.add({"proc": proc, "thread": i, "n": n, "done": False})
            assert q.update(item_id, done=True)
            if n % 4 == 0:
                assert q.remove(item_id)

    _threads(work)


def token_worker(path: str, proc: int, out: Any) -> None:
    tm = TokenManager(path, fsync=False)
    made: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for n in range(EACH):
            tid, secret = tm.create(f"p{proc}-t{i}-{n}")
            with lock:
                made.append((tid, secret))
            if n % 3 == 0:
                assert tm.revoke(tid)

    _threads(work)
    out.put(made)


def run(target: Any, *args: Any) -> None:
    procs = [ctx.Process(target=target, args=(*args, p)) for p in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
        assert p.exitcode == 0


def test_queue_repository_loses_no_command(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.json")
    run(queue_worker, path)
    items = QueueRepository(path).items()
    total = PROCS * THREADS * EACH
    removed = PROCS * THREADS * len(range(0, EACH, 4))
    assert len(items) == total - removed
    assert all(it["done"] for it in items)
    assert len({it["id"] for it in items}) == len(items)
    q = QueueRepository(path)
    ids = [it["id"] for it in items]
    q.reorder(list(reversed(ids)))
    assert [it["id"] for it in q.items()] == list(reversed(ids))
    with pytest.raises(ValueError, match="exactly"):
        q.reorder(ids[:-1])


def test_token_manager_loses_no_token(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.json")
    out = ctx.Queue()
    procs = [ctx.Process(target=token_worker, args=(path, p, out)) for p in range(PROCS)]
    for p in procs:
        p.start()
    made = [pair for _ in procs for pair in out.get(timeout=150)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    tm = TokenManager(path)
    listed = tm.list()
    assert len(listed) == len(made) == PROCS * THREADS * EACH
    revoked = {t["id"] for t in listed if t["revoked"]}
    assert len(revoked) == PROCS * THREADS * len(range(0, EACH, 3))
    for tid, secret in made[:50]:
        assert tm.verify(secret) is (tid not in revoked)
    stored = Path(path).read_text()
    assert not any(secret in stored for _, secret in made)  # only digests are stored
    assert os.path.exists(path + ".lock")


def test_readme_flask_example_runs_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import prometheus_client

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (code,) = re.findall(r"## A handler made safe\n\n```python\n(.*?)```", readme, re.S)
    assert len(code.strip().splitlines()) < 20
    (tmp_path / "readme_app.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(prometheus_client, "REGISTRY", prometheus_client.CollectorRegistry())
    import importlib

    client = importlib.import_module("readme_app").app.test_client()
    assert client.post("/accounts/alice/deposit", data={"amount": "5"}).get_json() == {"balance": 5}
    assert client.post("/accounts/alice/deposit", data={"amount": "2"}).get_json() == {"balance": 7}
    assert client.post("/accounts/.hidden/deposit", data={"amount": "1"}).status_code == 400
    assert "lockkit_storage_operations_total" in client.get("/metrics").get_data(as_text=True)
