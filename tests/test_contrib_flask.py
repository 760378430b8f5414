"""The Flask extension, with the real Flask: error answers and a /metrics page."""

from __future__ import annotations

import logging
from pathlib import Path

import flask
import prometheus_client
import pytest
from conftest import hold_in_thread
from proc_helpers import storage_writes
from prometheus_client.parser import text_string_to_metric_families

import lockkit
from lockkit.contrib.flask import Lockkit
from lockkit.contrib.prometheus import LockkitMetrics

pytestmark = pytest.mark.timeout(60)


def make_app(tmp_path: Path) -> tuple[flask.Flask, lockkit.JsonRepository]:
    app = flask.Flask(__name__)
    accounts = lockkit.JsonRepository(tmp_path / "accounts", timeout=0)
    ext = Lockkit(app, metrics_path="/metrics", metrics=LockkitMetrics(prometheus_client.CollectorRegistry()))
    ext.track("accounts", accounts)

    @app.post("/deposit/<key>")
    def deposit(key: str) -> dict[str, int]:
        return accounts.modify(key, lambda a: {"balance": (a or {"balance": 0})["balance"] + 1})

    @app.put("/set/<key>/<int:version>")
    def put(key: str, version: int) -> dict[str, int]:
        return {"version": accounts.put(key, {"balance": 0}, expected_version=version)}

    return app, accounts


def test_lockkit_errors_become_http_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app, accounts = make_app(tmp_path)
    client = app.test_client()
    assert client.post("/deposit/alice").get_json() == {"balance": 1}

    held, release = hold_in_thread(accounts.document("alice").lock)
    try:
        busy = client.post("/deposit/alice")
    finally:
        release.set()
        held.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert busy.get_json()["error"] == "busy" and "alice" not in busy.get_data(as_text=True)

    bad = client.post("/deposit/.hidden")
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_key"
    assert ".hidden" not in bad.get_data(as_text=True)

    assert client.put("/set/alice/7").status_code == 409

    (tmp_path / "accounts" / "carol.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="lockkit"):
        corrupt = client.post("/deposit/carol")
    assert corrupt.status_code == 500 and "carol" not in corrupt.get_data(as_text=True)
    assert any(
        "lockkit.request_failed" in r.getMessage() and "CorruptDataError" in r.getMessage() for r in caplog.records
    )
    assert (tmp_path / "accounts" / "carol.json").read_text() == "{not json"  # nothing lost


def test_metrics_page_parses_and_counts_by_name_not_key(tmp_path: Path) -> None:
    app, _accounts = make_app(tmp_path)
    client = app.test_client()
    for key in ("a", "b", "c"):
        client.post(f"/deposit/{key}")
    page = client.get("/metrics")
    assert page.status_code == 200 and page.mimetype == "text/plain"
    text = page.get_data(as_text=True)
    assert storage_writes(text) == [3.0]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert not labels & {"a", "b", "c"}  # bounded: never a label per record
    assert "lockkit_lock_acquisitions" in families  # the process's file locks, together


def test_two_apps_on_one_registry_share_the_metrics(tmp_path: Path) -> None:
    # An app factory called twice (tests, several apps in one process) must not fail
    # with "Duplicated timeseries": both extensions add to the same series.
    registry = prometheus_client.CollectorRegistry()
    repos = [lockkit.JsonRepository(tmp_path / name) for name in ("one", "two")]
    for repo in repos:
        app = flask.Flask(__name__)
        Lockkit(app, metrics_path="/metrics", metrics=LockkitMetrics(registry)).track("accounts", repo)
        repo.put("k", 1)
        page = app.test_client().get("/metrics").get_data(as_text=True)
    assert storage_writes(page) == [2.0]
