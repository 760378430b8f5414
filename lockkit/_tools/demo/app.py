"""The demo's WSGI app: money transfers between accounts, with lockkit's locks on or off.

Configured by environment variables (set by ``lockkit demo``):
``LOCKKIT_DEMO_DIR`` (data directory) and ``LOCKKIT_DEMO_LOCKING`` (``on``/``off``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import lockkit

DATA = os.environ.get("LOCKKIT_DEMO_DIR", ".")
LOCKING = os.environ.get("LOCKKIT_DEMO_LOCKING", "on") == "on"
ACCOUNTS = os.path.join(DATA, "accounts")

_repo: lockkit.JsonRepository | None = None
_sessions: lockkit.PersistentStore | None = None
_init = threading.Lock()

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _union(disk: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    return {**disk, **mine}


def _stores() -> tuple[lockkit.JsonRepository, lockkit.PersistentStore]:
    global _repo, _sessions
    with _init:  # opened in the worker, after the fork: one writer thread per worker
        if _repo is None or _sessions is None:
            _repo = lockkit.JsonRepository(ACCOUNTS, timeout=30)
            _sessions = lockkit.PersistentStore(os.path.join(DATA, "sessions.json"), save="background", merge=_union)
        return _repo, _sessions


def _transfer_unlocked(src: str, dst: str, amount: int) -> None:
    """The bug the demo shows: read-modify-write without a lock.

    Files are still replaced atomically (so nothing is torn): what is lost here is
    exactly what the lock prevents, updates overwritten by a concurrent writer.
    """
    paths = [os.path.join(ACCOUNTS, f"{k}.json") for k in (src, dst)]
    accounts = []
    for path in paths:
        with open(path) as f:
            raw = json.load(f)
        accounts.append(raw["data"] if isinstance(raw, dict) and "lockkit" in raw else raw)
    accounts[0] = {"balance": accounts[0]["balance"] - amount, "applied": accounts[0]["applied"] + 1}
    accounts[1] = {"balance": accounts[1]["balance"] + amount, "applied": accounts[1]["applied"] + 1}
    for path, acct in zip(paths, accounts, strict=True):
        with lockkit.atomic_write(path, fsync=False) as f:
            json.dump(acct, f)


def _transfer_locked(repo: lockkit.JsonRepository, src: str, dst: str, amount: int) -> None:
    def move(cur: dict[str, Any]) -> dict[str, Any]:
        a, b = cur[src], cur[dst]
        return {
            src: {"balance": a["balance"] - amount, "applied": a["applied"] + 1},
            dst: {"balance": b["balance"] + amount, "applied": b["applied"] + 1},
        }

    repo.modify_many([src, dst], move)


def _json(start_response: StartResponse, status: str, body: Any) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point."""
    repo, sessions = _stores()
    path = environ.get("PATH_INFO", "/")
    if path == "/transfer":
        q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            src, dst, amount = q["src"], q["dst"], int(q["amount"])
            if LOCKING:
                _transfer_locked(repo, src, dst, amount)
            else:
                _transfer_unlocked(src, dst, amount)
            sessions[q.get("session", "anonymous")] = {"last_transfer": [src, dst]}
        except Exception as exc:
            return _json(start_response, "500 Internal Server Error", {"error": type(exc).__name__})
        return _json(start_response, "200 OK", {"ok": True})
    if path == "/metrics":
        s = lockkit.FileLock.process_statistics()
        return _json(
            start_response,
            "200 OK",
            {
                "pid": os.getpid(),
                "acquisitions": s.acquisitions,
                "contentions": s.contentions,
                "wait_max": s.wait_max,
                "peak_queue": s.peak_queue,
                "timeouts": s.timeouts,
                "wait_total": s.wait_total,
                "fsync_total": repo.statistics().fsync_total,
            },
        )
    if path == "/healthz":
        st = sessions.statistics()
        return _json(
            start_response,
            "200 OK",
            {
                "ok": True,
                "pid": os.getpid(),
                "locking": LOCKING,
                "sessions": {"entries": st.entries, "saves": st.saves, "failures": st.failures, "pending": st.pending},
            },
        )
    return _json(start_response, "404 Not Found", {"error": "not found"})
