"""lockkit's helper threads leave the application's signals to its main thread."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in a fresh interpreter: it installs signal handlers and starts every helper thread
# that needs no server, then prints each lockkit thread's blocked-signal mask.
_PROBE = r"""
import json, os, sys, threading
import lockkit, lockkit.storage

d = sys.argv[1]
with lockkit.FileLock(os.path.join(d, "k.lock")):            # lockkit-reaper
    pass
marker = lockkit.FileLock(os.path.join(d, "m.lock"), strategy="marker")
marker.acquire()                                              # lockkit-heartbeat
store = lockkit.PersistentStore(os.path.join(d, "s.json"), save="background", fsync=False)
store["k"] = 1                                                # lockkit-store:s.json
lockkit.storage.flush_stores_on_signal()                      # lockkit-signal-flush
store.flush()
masks = {}
for t in threading.enumerate():
    if t.name.startswith("lockkit-"):
        with open(f"/proc/self/task/{t.native_id}/status") as f:
            line = next(l for l in f if l.startswith("SigBlk:"))
        masks[t.name.split(":")[0]] = int(line.split()[1], 16)
marker.release()
store.close()
print(json.dumps(masks))
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc (Linux)")
@pytest.mark.timeout(60)
def test_helper_threads_block_the_asynchronous_signals(tmp_path: Path) -> None:
    # A helper thread that took SIGTERM would leave the main thread asleep in waitpid()
    # or accept(), its Python handler not run until that call returned on its own.
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    masks = json.loads(out.stdout)
    assert set(masks) == {"lockkit-reaper", "lockkit-heartbeat", "lockkit-store", "lockkit-signal-flush"}
    for name, mask in masks.items():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1):
            assert mask & (1 << (sig - 1)), f"{name} does not block {sig.name}"
        for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE):
            assert not mask & (1 << (sig - 1)), f"{name} blocks the synchronous {sig.name}"


def test_start_daemon_restores_the_callers_mask() -> None:
    from lockkit._internal.threads import start_daemon

    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    done: list[bool] = []
    start_daemon(done.append, "lockkit-test", True).join(10)
    assert done == [True]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
