"""``lockkit demo``: the same burst of transfers with lockkit's locks off, then on."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import statistics as _st
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lockkit import JsonRepository, RetryPolicy
from lockkit._tools.bench import Table
from lockkit.resilience import fetch_with_retry

ACCOUNTS = [f"a{i}" for i in range(10)]
START_BALANCE = 1000


@dataclass
class RunResult:
    """What one burst did and what the data looked like afterwards."""

    locking: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lost: int | str = 0
    invariant: bool = False
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)
    elapsed: float = 0.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: str, locking: str, workers: int, threads: int, port: int) -> subprocess.Popen[bytes]:
    """Start gunicorn (gthread worker) serving the demo app."""
    env = {**os.environ, "LOCKKIT_DEMO_DIR": data, "LOCKKIT_DEMO_LOCKING": locking}
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "10",
        "lockkit._tools.demo.app:app",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    ready = RetryPolicy(attempts=100, timeout=30, wait_initial=0.05, wait_max=0.3, on_retry=None)
    try:
        with fetch_with_retry(f"http://127.0.0.1:{port}/healthz", policy=ready, timeout=2):
            pass
    except BaseException:  # not ready, or interrupted (a signal): never leave it running
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn gracefully (SIGTERM: workers finish requests and flush their stores)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def load(port: int, requests: int, connections: int, result: RunResult, seed: int = 7) -> None:
    """Send ``requests`` transfers over ``connections`` keep-alive connections."""
    counter = iter(range(requests))
    mu = threading.Lock()

    def client(cid: int) -> None:
        rng = random.Random(seed * 1000 + cid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with mu:
                if next(counter, None) is None:
                    break
            src, dst = rng.sample(ACCOUNTS, 2)
            amount = rng.randint(1, 5)
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/transfer?src={src}&dst={dst}&amount={amount}&session=c{cid}")
                response = conn.getresponse()
                response.read()
                good = response.status == 200
            except (OSError, http.client.HTTPException):
                good = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latency = time.perf_counter() - t0
            with mu:
                result.requests += 1
                result.ok += good
                result.errors += not good
                result.latencies.append(latency)
        conn.close()

    pool = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    result.elapsed = time.perf_counter() - started


def collect_metrics(port: int, result: RunResult, tries: int = 30) -> None:
    """Ask /metrics on fresh connections until every worker has answered (or tries run out)."""
    for _ in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            body = json.loads(conn.getresponse().read())
            result.metrics[body["pid"]] = body
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            conn.close()


def check(data: str, result: RunResult) -> None:
    """Total balance unchanged and every successful transfer applied to both accounts."""
    repo = JsonRepository(os.path.join(data, "accounts"))
    try:
        accounts = [repo.get(a) for a in ACCOUNTS]
    except Exception as exc:
        result.lost, result.invariant = f"file torn ({type(exc).__name__})", False
        return
    total = sum(a["balance"] for a in accounts)
    applied = sum(a["applied"] for a in accounts)
    result.lost = max(0, (2 * result.ok - applied) // 2)
    result.invariant = total == START_BALANCE * len(ACCOUNTS) and applied == 2 * result.ok


def one_run(
    locking: str, requests: int, workers: int, threads: int, connections: int, keep: bool
) -> tuple[RunResult, str]:
    """Seed the accounts, serve, send the burst, stop, check."""
    data = tempfile.mkdtemp(prefix=f"lockkit-demo-{locking}-")
    done = False
    try:
        repo = JsonRepository(os.path.join(data, "accounts"))
        for a in ACCOUNTS:
            repo.put(a, {"balance": START_BALANCE, "applied": 0})
        port = free_port()
        result = RunResult(locking)
        proc = start_server(data, locking, workers, threads, port)
        try:
            load(port, requests, connections, result)
            collect_metrics(port, result)
        finally:
            stop_server(proc)
        check(data, result)
        done = True
    finally:
        if not (keep and done):  # kept only when asked, and only a finished run's data
            shutil.rmtree(data, ignore_errors=True)
    return result, data


def render(results: list[RunResult], workers: int, threads: int, connections: int) -> str:
    """The results table."""
    t = Table(
        f"lockkit demo: gunicorn gthread, {workers} workers x {threads} threads, {connections} connections",
        [
            ("requests", "requests"), ("errors", "errors"), ("lost", "lost updates"), ("inv", "invariant held"),
            ("p50", "p50 ms"), ("p99", "p99 ms"), ("cont", "contentions"),
            ("wait", "longest wait ms"), ("peak", "peak queue"),
        ],
    )  # fmt: skip
    for r in results:
        lat = sorted(r.latencies) or [0.0]
        m = list(r.metrics.values())
        t.add(
            f"locks {r.locking}" + (" (plain read-modify-write)" if r.locking == "off" else " (lockkit)"),
            requests=float(r.requests),
            errors=float(r.errors),
            lost=r.lost if isinstance(r.lost, str) else float(r.lost),
            inv="yes" if r.invariant else "NO",
            p50=_st.median(lat) * 1000,
            p99=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            cont=float(sum(x["contentions"] for x in m)) if r.locking == "on" else "-",
            wait=max((x["wait_max"] for x in m), default=0.0) * 1000 if r.locking == "on" else "-",
            peak=float(max((x["peak_queue"] for x in m), default=0)) if r.locking == "on" else "-",
        )
    t.notes.append("invariant: the total balance is unchanged and every successful transfer changed both accounts")
    t.notes.append(f"lock statistics from /metrics of {max(len(r.metrics) for r in results)} worker(s)")
    return t.render() + time_breakdown(results)


def time_breakdown(results: list[RunResult]) -> str:
    """Where a locked transfer's time goes: waiting for locks, fsync, the rest; and what fsync=False trades."""
    locked = [r for r in results if r.locking == "on" and r.ok and r.metrics]
    if not locked:
        return ""
    r = locked[-1]
    m = list(r.metrics.values())
    per = 1000 / r.ok  # seconds summed over the workers -> ms per transfer
    wait = sum(x.get("wait_total", 0.0) for x in m) * per
    fsync = sum(x.get("fsync_total", 0.0) for x in m) * per
    total = _st.fmean(r.latencies) * 1000 if r.latencies else 0.0
    rest = max(0.0, total - wait - fsync)
    lines = [
        "",
        f"where a locked transfer's time goes ({r.ok} transfers, {total:.1f} ms per request as the client saw it):",
        f"  waiting for locks         {wait:7.1f} ms  (other requests moving the same accounts)",
        f"  fsync                     {fsync:7.1f} ms  (new files, then their directory, shared between writers)",
        f"  the rest                  {rest:7.1f} ms  (queueing for a server thread, HTTP, Python, file I/O)",
        "the unlocked run skips both: no lock to wait for and no fsync (and it loses updates).",
        "JsonRepository(fsync=False) would save the fsync share but a power loss (not a crash)",
        "could then undo transfers that were already acknowledged.",
    ]
    return "\n".join(lines)


def main(requests: int, workers: int, threads: int, connections: int, keep: bool, serve: bool) -> int:
    """Run the demo; exit status 0 only if the locked run held the invariant.

    SIGTERM and SIGHUP end it like Ctrl-C does: the servers it started are stopped and
    its temporary directories removed before it exits (with status 128 + the signal).
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    if importlib.util.find_spec("gunicorn") is None:
        print("lockkit demo needs gunicorn: pip install '.[demo]' in a lockkit checkout", file=sys.stderr)
        return 69
    results = []
    for locking in ("off", "on"):
        print(f"running {requests} transfers with locks {locking} ...", flush=True)
        result, data = one_run(locking, requests, workers, threads, connections, keep)
        results.append(result)
        if keep:
            print(f"  data kept in {data}")
    print()
    print(render(results, workers, threads, connections))
    locked = results[-1]
    ok = locked.invariant and locked.errors == 0 and locked.lost == 0
    print()
    print("locked run: invariant held, no update lost" if ok else "locked run: INVARIANT BROKEN")
    if serve:
        _serve(workers, threads)
    return 0 if ok else 1


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers stopped, directories removed


def _serve(workers: int, threads: int) -> None:
    data = tempfile.mkdtemp(prefix="lockkit-demo-serve-")
    proc: subprocess.Popen[bytes] | None = None
    try:  # from the first moment: a signal at any point stops the server and removes the data
        repo = JsonRepository(os.path.join(data, "accounts"))
        for a in ACCOUNTS:
            repo.put(a, {"balance": START_BALANCE, "applied": 0})
        port = free_port()
        proc = start_server(data, "on", workers, threads, port)
        url = f"http://127.0.0.1:{port}"
        print(
            f"\nserving the locked demo at {url} (gunicorn pid {proc.pid}, data in {data})\n"
            f"  try: curl -X POST '{url}/transfer?src=a1&dst=a2&amount=3'; curl {url}/metrics; curl {url}/healthz"
        )
        print("press Ctrl-C to stop", flush=True)
        while proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(data, ignore_errors=True)
