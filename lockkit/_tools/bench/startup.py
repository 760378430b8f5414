"""Start-up benchmarks: what ``import lockkit`` and ``lockkit run`` cost a fresh process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics as _st
import subprocess
import sys
import tempfile
import time

from lockkit._tools.bench import Table


def _ms(cmd: list[str], rounds: int) -> float:
    """Median wall time of running ``cmd`` to completion, in milliseconds."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append((time.perf_counter() - t0) * 1000)
    return _st.median(samples)


def imports(quick: bool) -> Table:
    """``import X`` in a fresh interpreter, beside filelock; the bare interpreter is the floor."""
    rounds = 7 if quick else 21
    t = Table("import time in a fresh interpreter", [("ms", "ms"), ("over", "ms over python -c pass")])
    floor = _ms([sys.executable, "-c", "pass"], rounds)
    t.add("python -c pass (floor)", ms=floor, over=0.0)
    rows = [("import lockkit", "import lockkit"), ("import lockkit.files (FileLock)", "import lockkit.files")]
    if importlib.util.find_spec("filelock") is not None:
        rows.append(("import filelock", "import filelock"))
    else:
        t.notes.append("filelock is not installed: pip install 'lockkit[bench]'")
    for name, code in rows:
        ms = _ms([sys.executable, "-c", code], rounds)
        t.add(name, ms=ms, over=max(0.0, ms - floor))
    if len(rows) == 3:
        t.bar(
            "import lockkit.files vs import filelock, over the floor (bar <= 1x)",
            t.value("import lockkit.files (FileLock)", "over") / max(t.value("import filelock", "over"), 0.001),
            1.0,
            at_most=True,
        )
    return t


def locked_command(quick: bool) -> Table:
    """``lockkit run -n LOCK -- true`` beside ``flock -n LOCK true``."""
    rounds = 7 if quick else 21
    t = Table("start-up of a command under a lock (a cron job)", [("ms", "ms")])
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    try:
        lock = os.path.join(tmp, "cron.lock")
        t.add("python -c pass (floor)", ms=_ms([sys.executable, "-c", "pass"], rounds))
        flock = shutil.which("flock")
        if flock:
            t.add("flock(1) -n LOCK true", ms=_ms([flock, "-n", lock, "true"], rounds))
        ours = _ms([sys.executable, "-m", "lockkit", "run", "-n", lock, "--", "true"], rounds)
        t.add("lockkit run -n LOCK -- true", ms=ours)
        t.bar("lockkit run start-up (bar <= 100 ms)", ours, 100.0, at_most=True, unit=" ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t


def run(quick: bool) -> list[Table]:
    """Every start-up table."""
    return [imports(quick), locked_command(quick)]
