"""The lockkit command against real processes, real flock(1) and a real gunicorn."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import proc_helpers
import pytest

pytestmark = pytest.mark.timeout(120)
LK = [sys.executable, "-m", "lockkit"]
ctx = multiprocessing.get_context("fork")
SLEEPER = "import time,sys; print('in', flush=True); time.sleep(60)"


def holder(lock: Path, *extra: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [*LK, "run", *extra, str(lock), "--", sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "in"  # the command runs: the lock is held
    return p


def stop(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGTERM)
    p.wait(20)


def lk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LK, *args], capture_output=True, text=True, timeout=timeout)


def test_run_passes_the_exit_status_through(tmp_path: Path) -> None:
    r = lk("run", str(tmp_path / "l"), "--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert r.returncode == 7
    assert lk("run", str(tmp_path / "l"), "--", "/definitely/not/here").returncode == 127


def test_run_excludes_and_reports_conflicts(tmp_path: Path) -> None:
    lock = tmp_path / "job.lock"
    p = holder(lock)
    try:
        r = lk("run", "-n", "--verbose", str(lock), "--", "true")
        assert r.returncode == 1 and f"held by pid {p.pid}" in r.stderr
        assert lk("run", "-n", "-E", "9", str(lock), "--", "true").returncode == 9
        t0 = time.monotonic()
        assert lk("run", "-w", "0.3", str(lock), "--", "true").returncode == 1
        assert time.monotonic() - t0 >= 0.3
    finally:
        stop(p)
    assert lk("run", "-n", str(lock), "--", "true").returncode == 0


def test_shared_holders_coexist(tmp_path: Path) -> None:
    lock = tmp_path / "s.lock"
    p = holder(lock, "-s")
    try:
        assert lk("run", "-s", "-n", str(lock), "--", "true").returncode == 0
        assert lk("run", "-x", "-n", str(lock), "--", "true").returncode == 1
    finally:
        stop(p)


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) not installed")
def test_interoperates_with_flock1(tmp_path: Path) -> None:
    lock = tmp_path / "f.lock"
    p = holder(lock)
    try:
        assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 1
    finally:
        stop(p)
    f = subprocess.Popen(["flock", str(lock), sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        assert f.stdout is not None and f.stdout.readline().strip() == "in"
        assert lk("run", "-n", str(lock), "--", "true").returncode == 1
    finally:
        f.kill()
        f.wait(10)


def test_signals_are_forwarded_to_the_command(tmp_path: Path) -> None:
    code = (
        "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(42));"
        "print('in', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen(
        [*LK, "run", str(tmp_path / "sig.lock"), "--", sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "in"
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 42


def test_the_command_inherits_the_locked_descriptor_unless_close(tmp_path: Path) -> None:
    lock = tmp_path / "inh.lock"
    code = "import os; d='/proc/self/fd/';print(sorted(os.readlink(d+f) for f in os.listdir(d) if os.path.exists(d+f)))"
    r = lk("run", str(lock), "--", sys.executable, "-c", code)
    assert r.returncode == 0 and repr(str(lock)) in r.stdout  # as with flock(1)
    r = lk("run", "-o", str(lock), "--", sys.executable, "-c", code)
    assert r.returncode == 0 and str(lock) not in r.stdout  # -o/--close: nothing inherited


def test_usage_errors() -> None:
    assert lk("run", "/tmp/x.lock").returncode == 2
    assert lk("run", "-n", "-w", "1", "/tmp/x.lock", "--", "true").returncode == 2
    assert lk("break", "/tmp/x.lock").returncode == 2  # --if-dead is required
    assert lk("frobnicate").returncode == 2
    assert lk("run", "/nonexistent-dir/x.lock", "--", "true").returncode == 69


def test_status_of_kernel_locks(tmp_path: Path) -> None:
    lock = tmp_path / "k.lock"
    assert json.loads(lk("status", "--json", str(lock)).stdout)[0]["state"] == "missing"  # no such lock file
    p = holder(lock)
    try:
        (row,) = json.loads(lk("status", "--json", str(lock)).stdout)
        assert row["state"] == "held" and row["mode"] == "exclusive" and row["pid"] == p.pid
        assert row["strategy"] == "kernel" and row["held_for"] >= 0
        text = lk("status", str(lock)).stdout
        assert f"held exclusive by pid {p.pid}" in text
    finally:
        stop(p)
    assert "free" in lk("status", str(lock)).stdout


def test_status_break_of_a_sigkilled_marker_holder(tmp_path: Path) -> None:
    lock = str(tmp_path / "m.lock")
    ready = ctx.Event()
    child = ctx.Process(target=proc_helpers.hold_forever, args=(lock, "marker", ready))
    child.start()
    assert ready.wait(20)
    (row,) = json.loads(lk("status", "--json", lock).stdout)
    assert row["strategy"] == "marker" and row["pid"] == child.pid and row["stale"] is False
    refused = lk("break", lock, "--if-dead")
    assert refused.returncode == 75 and "may be alive" in refused.stderr
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    (row,) = json.loads(lk("status", "--json", lock).stdout)
    assert row["stale"] is True and "dead" in row["stale_reason"]
    done = lk("break", lock, "--if-dead")
    assert done.returncode == 0 and "broken" in done.stdout
    (row,) = json.loads(lk("status", "--json", lock).stdout)
    assert row["state"] == "free"
    assert lk("break", lock, "--if-dead").returncode == 0  # nothing left to break


def test_sweep(tmp_path: Path) -> None:
    leftover = tmp_path / "data.json.tmp.0123456789ab"
    leftover.write_text("x")
    os.utime(leftover, (0, 0))
    r = lk("sweep", str(tmp_path))
    assert r.returncode == 0 and "removed" in r.stdout and not leftover.exists()
    assert lk("sweep", str(tmp_path / "missing")).returncode == 66


def test_bench_runs_one_quick_group() -> None:
    r = lk("bench", "--quick", "--only", "retry", timeout=120)
    assert r.returncode == 0 and "lockkit.retry" in r.stdout
    assert "[PASS]" in r.stdout or "[MISS]" in r.stdout


def test_docs_and_help_list_every_bench_group() -> None:
    from lockkit._tools.bench import GROUPS

    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    section = docs.split("## `lockkit bench", 1)[1].split("\n## ", 1)[0]
    help_text = lk("bench", "--help").stdout
    for group in GROUPS:
        assert f"`{group}`" in section, f"docs/cli.md does not list the bench group {group!r}"
        assert group in help_text


def test_demo_shows_the_unlocked_run_losing_updates() -> None:
    r = lk("demo", "--requests", "300", timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("implementation"))
    assert header.split()[1:5] == ["requests", "errors", "lost", "updates"]
    # after each row's name: requests, errors, lost updates, invariant held
    off_values = r.stdout.split("locks off (plain read-modify-write)")[1].split()
    on_values = r.stdout.split("locks on (lockkit)")[1].split()
    assert int(off_values[2].replace(",", "")) > 0 and off_values[3] == "NO"
    assert on_values[1] == "0" and on_values[2] == "0" and on_values[3] == "yes"
    assert "invariant held, no update lost" in r.stdout
    # the locked run says where its time went, and what fsync=False would trade
    breakdown = r.stdout.split("where a locked transfer's time goes")[1]
    fsync_ms = float(breakdown.split("fsync")[1].split()[0])
    wait_ms = float(breakdown.split("waiting for locks")[1].split()[0])
    assert fsync_ms > 0 and wait_ms >= 0 and "fsync=False" in breakdown


def test_sweep_locks_recursive_and_dry_run(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    lock = tmp_path / "sub" / "old.lock"
    lock.write_text("")
    os.utime(lock, (0, 0))
    dry = lk("sweep", str(tmp_path), "--locks", "-r", "--dry-run")
    assert dry.returncode == 0 and f"would remove {lock}" in dry.stdout and lock.exists()
    assert lk("sweep", str(tmp_path), "--locks").stdout == ""  # not recursive: nothing at the top
    done = lk("sweep", str(tmp_path), "--locks", "-r")
    assert done.returncode == 0 and f"removed {lock}" in done.stdout and not lock.exists()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("strategy", ["kernel", "marker"])
def test_kill_9_of_lockkit_run_keeps_the_lock_until_its_command_exits(tmp_path: Path, strategy: str) -> None:
    lock = tmp_path / "cron.lock"
    script = "import os,sys,time; print(os.getpid(), flush=True); time.sleep(60)"
    runner = subprocess.Popen(
        [*LK, "run", "--strategy", strategy, str(lock), "--", sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    command = int(runner.stdout.readline())  # the command runs under the lock
    try:
        runner.kill()  # kill -9 of lockkit itself; the command keeps running
        runner.wait(20)
        assert not proc_helpers.gone(command)
        second = lk("run", "-n", "--strategy", strategy, str(lock), "--", "true")
        assert second.returncode == 1, "a second copy started while the first command still ran"
    finally:
        os.kill(command, signal.SIGKILL)
    assert proc_helpers.wait_gone(command, 60)  # reaped by init: waits on the process itself
    assert lk("run", "-n", "--strategy", strategy, str(lock), "--", "true").returncode == 0


def test_run_refuses_bad_values_with_usage_errors(tmp_path: Path) -> None:
    lock = str(tmp_path / "u.lock")
    for args in (["-w", "-1"], ["-w", "nan"], ["-w", "inf"], ["-E", "256"], ["-E", "-1"]):
        r = lk("run", *args, lock, "--", "true")
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
    r = lk("run", "", "--", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not os.path.exists("9")


def test_run_nonblocking_is_quiet_unless_verbose(tmp_path: Path) -> None:
    lock = tmp_path / "q.lock"
    p = holder(lock)
    try:
        quiet = lk("run", "-n", str(lock), "--", "true")
        assert quiet.returncode == 1 and quiet.stderr == "" and quiet.stdout == ""  # no mail per skipped cron run
        loud = lk("run", "-n", "--verbose", str(lock), "--", "true")
        assert loud.returncode == 1 and "locked" in loud.stderr
    finally:
        stop(p)


def test_run_c_and_scripts_without_a_shebang(tmp_path: Path) -> None:
    lock = str(tmp_path / "c.lock")
    r = lk("run", lock, "-c", "echo $((40 + 2)); exit 3")
    assert r.returncode == 3 and r.stdout.strip() == "42"
    script = tmp_path / "noshebang"
    script.write_text('echo "args: $*"\n')
    script.chmod(0o755)
    r = lk("run", lock, "--", str(script), "a", "b")
    assert r.returncode == 0 and r.stdout.strip() == "args: a b" and "Traceback" not in r.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    r = lk("run", lock, "--", str(plain))
    assert r.returncode == 126 and "Traceback" not in r.stderr
    r = lk("run", lock, "--", str(tmp_path / "missing"))
    assert r.returncode == 127 and "Traceback" not in r.stderr


def test_version() -> None:
    import lockkit

    r = lk("--version")
    assert r.returncode == 0 and lockkit.__version__ in r.stdout


def test_status_tells_missing_files_symlinks_and_foreign_holders_apart(tmp_path: Path) -> None:
    missing = lk("status", str(tmp_path / "typo.lock"))
    assert missing.returncode == 1 and "no such lock file" in missing.stdout + missing.stderr
    (tmp_path / "target").write_text("")
    (tmp_path / "link.lock").symlink_to(tmp_path / "target")
    link = lk("status", str(tmp_path / "link.lock"))
    assert link.returncode == 69 and "symbolic link" in link.stderr and "Traceback" not in link.stderr


def test_status_does_not_call_a_data_file_a_free_lock(tmp_path: Path) -> None:
    data = tmp_path / "alice.json"
    data.write_text('{"balance": 7}')
    assert lk("run", str(tmp_path / "alice.json.lock"), "--", "true").returncode == 0
    r = lk("status", str(data))
    assert r.returncode == 1, r
    assert "not a lock file" in r.stdout and "alice.json.lock" in r.stdout and "free" not in r.stdout
    assert "balance" not in r.stdout + r.stderr  # never the file's content
    (row,) = json.loads(lk("status", "--json", str(data)).stdout)
    assert row["state"] == "not-a-lock-file"
    (tmp_path / "accounts").mkdir()
    (tmp_path / "accounts" / "bob.json").write_text("{}")
    assert "not a lock file" in lk("status", str(tmp_path / "accounts")).stdout
    # An empty file (as flock(1) creates) and lockkit's own lock file are lock files.
    (tmp_path / "empty.lock").write_text("")
    for path in (tmp_path / "empty.lock", tmp_path / "alice.json.lock"):
        ok = lk("status", str(path))
        assert ok.returncode == 0 and ": free" in ok.stdout, ok


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) not installed")
def test_status_names_the_kernels_holder_not_a_stale_record(tmp_path: Path) -> None:
    lock = tmp_path / "f.lock"
    assert lk("run", str(lock), "--", "true").returncode == 0  # leaves a record of a pid that has exited
    other = subprocess.Popen(["flock", str(lock), "-c", "echo in; exec sleep 60"], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "in"
        (row,) = json.loads(lk("status", "--json", str(lock)).stdout)
        assert row["state"] == "held"
        holders = {other.pid} | {
            int(p) for p in os.listdir("/proc") if p.isdigit() and proc_helpers.parent_pid(int(p)) == other.pid
        }
        assert row["pid"] in holders and row.get("recorded") is False, row
    finally:
        other.kill()
        other.wait(10)


def test_help_texts_are_plain_text() -> None:
    for args in (["--help"], ["run", "--help"], ["bench", "--help"], ["sweep", "--help"]):
        r = lk(*args)
        assert r.returncode == 0 and "``" not in r.stdout and ":class:" not in r.stdout, args


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_demo_serve_cleans_up_on_sigterm_and_sighup(sig: int) -> None:
    pytest.importorskip("gunicorn")
    demo = subprocess.Popen(
        [*LK, "demo", "--requests", "20", "--serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert demo.stdout is not None
    data = server = None
    for line in demo.stdout:
        if line.startswith("serving the locked demo"):
            data = line.split(" data in ", 1)[1].strip().rstrip(")") if " data in " in line else None
            server = int(line.rsplit("pid ", 1)[1].split(",")[0]) if "pid " in line else None
            break
    assert data and server, "the demo did not say where it serves from"
    assert os.path.isdir(data) and not proc_helpers.gone(server)
    demo.send_signal(sig)
    demo.wait(60)
    if not proc_helpers.wait_gone(server, 30):  # gunicorn's master must be stopped by the demo
        os.killpg(server, signal.SIGKILL)
        pytest.fail("the demo left its gunicorn server running")
    assert not os.path.exists(data)


def test_bench_startup_group_prints_import_and_start_up_rows() -> None:
    r = lk("bench", "--quick", "--only", "startup", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "from lockkit import FileLock" in r.stdout and "lockkit run -n LOCK -- true" in r.stdout


def test_bench_contended_rounds_are_time_boxed() -> None:
    from lockkit import Mutex
    from lockkit._tools.bench.threads import TicketLock, _hammer

    # A time box, not an operation count: the slow naive peer gets the same wall time as
    # the Mutex, and the count taken under the lock matches what the threads report.
    for lock in (Mutex(), TicketLock()):
        ops, longest = _hammer(lock, 4, 0.05)
        assert ops > 0 and longest >= 0.0


def test_bench_strict_exits_non_zero_when_a_bar_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    import lockkit._tools.bench as bench
    import lockkit._tools.bench.retry as retry_group

    def one_table(quick: bool) -> list[bench.Table]:
        t = bench.Table("a table", [("x", "x")])
        t.add("row", x=1.0)
        t.bar("a bar that misses (bar <= 1x)", 2.0, 1.0, at_most=True)  # a miss on any machine
        return [t]

    monkeypatch.setattr(retry_group, "run", one_table)
    assert bench.main(["--only", "retry"]) == 0
    assert bench.main(["--only", "retry", "--strict"]) == 1


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) not installed")
def test_descriptor_form_and_unlock_as_flock1(tmp_path: Path) -> None:
    lock = tmp_path / "fd.lock"
    lkcmd = " ".join(LK)
    script = f"""
exec 9>"$1"
{lkcmd} run -n 9 || exit 10
flock -n "$1" true && exit 11
{lkcmd} run -u 9 || exit 12
flock -n "$1" true || exit 13
{lkcmd} run -s 9 || exit 14
flock -s -n "$1" true || exit 15
flock -x -n "$1" true && exit 16
exit 0
"""
    r = subprocess.run(["/bin/sh", "-c", script, "sh", str(lock)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert not (tmp_path / "9").exists() and not os.path.exists("9")  # a descriptor, never a file named 9
    # a number that is not an open descriptor, -u without one, and a marker strategy: usage errors
    for args in (["run", "97"], ["run", "-u", str(lock), "--", "true"], ["run", "--strategy", "marker", "9"]):
        r = lk(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) not installed")
def test_descriptor_form_waits_and_times_out(tmp_path: Path) -> None:
    lock = tmp_path / "fdw.lock"
    f = subprocess.Popen(["flock", str(lock), sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        assert f.stdout is not None and f.stdout.readline().strip() == "in"
        lkcmd = " ".join(LK)
        r = subprocess.run(["/bin/sh", "-c", f'exec 9>"$1"; {lkcmd} run -w 0.2 -E 7 9', "sh", str(lock)], timeout=60)
        assert r.returncode == 7
    finally:
        f.kill()
        f.wait(10)


def test_no_fork_runs_the_command_in_lockkits_process_holding_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "nf.lock"
    code = "import os; print(os.getpid(), flush=True); import sys; sys.exit(5)"
    p = subprocess.Popen(
        [*LK, "run", "-F", str(lock), "--", sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 5 and int(out) == p.pid  # no fork: the command replaced lockkit
    check = (
        f"import fcntl,sys; f=open({str(lock)!r},'a')\n"
        "try: fcntl.flock(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept BlockingIOError: sys.exit(0)\nsys.exit(9)"
    )
    r = lk("run", "--no-fork", str(lock), "--", sys.executable, "-c", check)
    assert r.returncode == 0  # the command holds the lock (another descriptor cannot take it)
    r = lk("run", "-F", "--strategy", "marker", str(lock) + ".m", "--", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = lk("run", "-F", str(lock), "--", str(tmp_path / "missing"))
    assert r.returncode == 127 and "Traceback" not in r.stderr
