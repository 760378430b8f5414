"""A real deployment: a Flask app with the lockkit extension on gunicorn gthread and on waitress.

Bounded load over loopback; no lost update, only the expected status codes, and a
``/metrics`` page that parses as Prometheus text format (summed over gunicorn's
workers through prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from proc_helpers import storage_writes

from lockkit import JsonRepository, RetryPolicy
from lockkit._tools.demo.run import free_port, stop_server
from lockkit.resilience import fetch_with_retry

pytestmark = pytest.mark.timeout(300)

APP = """
import os
from flask import Flask
from lockkit import JsonRepository
from lockkit.contrib.flask import Lockkit

app = Flask(__name__)
accounts = JsonRepository(os.environ["LOCKKIT_TEST_DATA"], timeout=20)
Lockkit(app, metrics_path="/metrics").track("accounts", accounts)


@app.post("/deposit/<key>")
def deposit(key):
    return accounts.modify(key, lambda a: {"balance": (a or {"balance": 0})["balance"] + 1})


@app.get("/healthz")
def healthz():
    return "ok"
"""

KEYS = ["alice", "bob", "carol", "dave"]
CLIENTS, PER_CLIENT = 16, 25


def serve(tmp_path: Path, server: str) -> tuple[subprocess.Popen[bytes], int]:
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "LOCKKIT_TEST_DATA": str(tmp_path / "accounts")}
    if server == "gunicorn":
        prom = tmp_path / "prom"
        prom.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        cmd = [
            sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "2", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "app:app",
        ]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "waitress", "--threads=8", f"--listen=127.0.0.1:{port}", "app:app"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True)
    ready = RetryPolicy(attempts=200, timeout=60, wait_initial=0.05, wait_max=0.3, on_retry=None)
    try:
        with fetch_with_retry(f"http://127.0.0.1:{port}/healthz", policy=ready, timeout=5):
            pass
    except BaseException:
        stop_server(proc)
        raise
    return proc, port


def drive(port: int) -> tuple[Counter[str], Counter[int]]:
    """CLIENTS keep-alive connections, PER_CLIENT deposits each; the 200s per key and every status."""
    ok: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    mu = threading.Lock()

    def client(cid: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for i in range(PER_CLIENT):
                key = KEYS[(cid + i) % len(KEYS)]
                conn.request("POST", f"/deposit/{key}")
                response = conn.getresponse()
                response.read()
                with mu:
                    statuses[response.status] += 1
                    if response.status == 200:
                        ok[key] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, statuses


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_flask_app_with_the_extension_loses_no_update(tmp_path: Path, server: str) -> None:
    proc, port = serve(tmp_path, server)
    try:
        ok, statuses = drive(port)
        while True:  # every worker copies its counters once a second: poll until they add up
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/metrics")
            page = conn.getresponse()
            text = page.read().decode()
            conn.close()
            if page.status != 200 or storage_writes(text) == [float(sum(ok.values()))]:
                break
            threading.Event().wait(0.2)
    finally:
        stop_server(proc)
    assert sum(statuses.values()) == CLIENTS * PER_CLIENT
    assert set(statuses) <= {200, 503}, statuses  # 503 only for a lock busy past its timeout
    accounts = JsonRepository(tmp_path / "accounts")
    balances = {key: accounts.get(key, {"balance": 0})["balance"] for key in KEYS}
    assert balances == {key: ok[key] for key in KEYS}  # every acknowledged deposit is there, nothing more
    assert page.status == 200
    assert storage_writes(text) == [float(sum(ok.values()))]  # summed over the workers, parsed as Prometheus text
