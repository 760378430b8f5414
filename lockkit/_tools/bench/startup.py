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


def _env(cache: str) -> dict[str, str]:
    """The environment of every measured process: byte-compiled modules, as an install has.

    ``pip install`` compiles every module; an editable install or
    ``PYTHONDONTWRITEBYTECODE`` would make each start compile lockkit from source while
    peers in site-packages load their compiled files. All measured processes therefore
    keep their compiled modules in one private cache directory (warmed up first).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _ms(cmd: list[str], rounds: int, env: dict[str, str]) -> float:
    """Median wall time of running ``cmd`` to completion, in milliseconds (after one warm-up run)."""
    samples = []
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
        if i:
            samples.append((time.perf_counter() - t0) * 1000)
    return _st.median(samples)


def imports(quick: bool, env: dict[str, str]) -> Table:
    """``import X`` in a fresh interpreter, beside filelock; the bare interpreter is the floor."""
    rounds = 7 if quick else 21
    t = Table("import time in a fresh interpreter", [("ms", "ms"), ("over", "ms over python -c pass")])
    floor = _ms([sys.executable, "-c", "pass"], rounds, env)
    t.add("python -c pass (floor)", ms=floor, over=0.0)
    # FileLock itself, not just the package: lockkit.files loads its names on first use.
    rows = [("import lockkit", "import lockkit"), ("from lockkit import FileLock", "from lockkit import FileLock")]
    if importlib.util.find_spec("filelock") is not None:
        rows.append(("from filelock import FileLock", "from filelock import FileLock"))
    else:
        t.notes.append("filelock is not installed: pip install '.[bench]' in a lockkit checkout")
    for name, code in rows:
        ms = _ms([sys.executable, "-c", code], rounds, env)
        t.add(name, ms=ms, over=max(0.0, ms - floor))
    if len(rows) == 3:
        t.bar(
            "from lockkit import FileLock vs filelock's, over the floor (bar <= 1x)",
            t.value("from lockkit import FileLock", "over")
            / max(t.value("from filelock import FileLock", "over"), 0.001),
            1.0,
            at_most=True,
        )
    return t


def locked_command(quick: bool, env: dict[str, str]) -> Table:
    """``lockkit run -n LOCK -- true`` beside ``flock -n LOCK true``."""
    rounds = 7 if quick else 21
    t = Table("start-up of a command under a lock (a cron job)", [("ms", "ms")])
    tmp = tempfile.mkdtemp(prefix="lockkit-bench-")
    try:
        lock = os.path.join(tmp, "cron.lock")
        t.add("python -c pass (floor)", ms=_ms([sys.executable, "-c", "pass"], rounds, env))
        flock = shutil.which("flock")
        if flock:
            t.add("flock(1) -n LOCK true", ms=_ms([flock, "-n", lock, "true"], rounds, env))
        ours = _ms([sys.executable, "-m", "lockkit", "run", "-n", lock, "--", "true"], rounds, env)
        t.add("lockkit run -n LOCK -- true", ms=ours)
        t.bar("lockkit run start-up (bar <= 100 ms)", ours, 100.0, at_most=True, unit=" ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t


def run(quick: bool) -> list[Table]:
    """Every start-up table."""
    with tempfile.TemporaryDirectory(prefix="lockkit-bench-pycache-") as cache:
        env = _env(cache)
        return [imports(quick, env), locked_command(quick, env)]
