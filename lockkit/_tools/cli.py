"""The ``lockkit`` command: run, status, break, sweep, bench, demo.

Exit codes: 0 success; for ``run`` the command's own status; the ``-E`` code (default 1)
when ``run`` cannot get the lock; 1 when ``status`` finds no such lock file; 2 usage
error; 66 a directory to sweep does not exist; 69 (EX_UNAVAILABLE) a lock file or a
needed tool cannot be used; 75 (EX_TEMPFAIL) ``break`` refused because the holder may be
alive; 126 the command to run cannot be executed; 127 it was not found.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lockkit.exceptions import LockFileError
from lockkit.files._filelock import FileLock
from lockkit.files._holder import dead_reason
from lockkit.files._kernel import PathState, kernel_mode, looks_like_lock_file, read_holder

if TYPE_CHECKING:
    from lockkit.files._info import LockInfo

EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75


def plain_text(doc: str | None) -> str:
    """A docstring as help text: reST literals and roles become plain text."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc or "")
    return text.replace("``", "")


def _seconds(text: str) -> float:
    """``-w``: a finite number of seconds, at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, not {text!r}")
    return value


def _exit_code(text: str) -> int:
    """``-E``: an exit status, 0 to 255."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an exit code: {text!r}") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"exit codes are 0 to 255, not {value}")
    return value


def _path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the lock file path must not be empty")
    return text


def _parser() -> argparse.ArgumentParser:
    from lockkit._version import __version__

    parser = argparse.ArgumentParser(
        prog="lockkit", description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"lockkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="hold a file lock while a command runs (like flock(1))")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("-s", "--shared", action="store_true", help="take a shared lock")
    mode.add_argument("-x", "--exclusive", action="store_true", help="take an exclusive lock (the default)")
    run.add_argument("-n", "--nonblock", action="store_true", help="fail at once if the lock is held")
    run.add_argument("-w", "--wait", type=_seconds, metavar="SECONDS", help="wait at most SECONDS for the lock")
    run.add_argument(
        "-E",
        "--conflict-exit-code",
        type=_exit_code,
        default=1,
        metavar="CODE",
        help="exit code when the lock cannot be had (default 1)",
    )
    run.add_argument(
        "--strategy", choices=["kernel", "marker"], default="kernel", help="lock strategy (default kernel)"
    )
    run.add_argument(
        "-o",
        "--close",
        action="store_true",
        help="do not let the command inherit the locked descriptor (the lock then ends with lockkit)",
    )
    run.add_argument(
        "-F",
        "--no-fork",
        action="store_true",
        help="run the command in lockkit's own process (exec), so it holds the lock itself (kernel strategy)",
    )
    run.add_argument("-u", "--unlock", action="store_true", help="with a descriptor FD: release its lock")
    run.add_argument("--verbose", action="store_true", help="say why when the lock cannot be had")
    run.add_argument("-c", "--command", dest="shell_command", metavar="COMMAND", help="run COMMAND with sh -c")
    run.add_argument("lockfile", type=_path, help="the lock file, or FD: a descriptor open in the calling shell")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the command to run")

    status = sub.add_parser("status", help="show who holds lock files")
    status.add_argument("paths", nargs="+", metavar="PATH", help="lock files (lock names with --postgres)")
    status.add_argument("--postgres", metavar="CONNINFO", help="the PATHs are PgLock names on this PostgreSQL database")
    status.add_argument("--namespace", default="lockkit", help="the PgLock namespace (with --postgres)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--stale-after", type=float, default=300.0, help="marker staleness threshold in seconds (default 300)"
    )

    brk = sub.add_parser("break", help="break a marker lock whose holder is provably dead")
    brk.add_argument("path", help="the marker lock file")
    brk.add_argument("--if-dead", action="store_true", required=True, help="required: break only on proof of death")

    sweep = sub.add_parser("sweep", help="remove leftover temp files of crashed writers")
    sweep.add_argument("directory", help="the directory to sweep")
    sweep.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS", help="minimum age (default 3600)")
    sweep.add_argument(
        "--locks", action="store_true", help="also remove lock files nobody holds (only while holding them)"
    )
    sweep.add_argument("-r", "--recursive", action="store_true", help="sweep subdirectories too")
    sweep.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")

    bench = sub.add_parser("bench", help="benchmark tables: lockkit beside its peers", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)

    demo = sub.add_parser("demo", help="a threaded WSGI app under gunicorn, with locks off and on")
    demo.add_argument("--requests", type=int, default=2000, help="transfers per run (default 2000)")
    demo.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    demo.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    demo.add_argument("--connections", type=int, default=32, help="concurrent client connections (default 32)")
    demo.add_argument("--keep", action="store_true", help="keep the data directories")
    demo.add_argument("--serve", action="store_true", help="then keep serving the locked app until Ctrl-C")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lockkit`` console script and ``python -m lockkit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:  # the benchmark runner parses its own options
        from lockkit._tools.bench import main as bench_main

        return bench_main(args[1:])
    ns = _parser().parse_args(args)
    handler = {"run": _run, "status": _status, "break": _break, "sweep": _sweep, "demo": _demo}[ns.command]
    return handler(ns)


def _err(message: str) -> None:
    print(f"lockkit: {message}", file=sys.stderr)


def _run(ns: argparse.Namespace) -> int:
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    if ns.cmd[:1] in (["-c"], ["--command"]):  # flock(1)'s order: lockkit run LOCKFILE -c COMMAND
        if len(cmd) != 2:
            _err("-c takes exactly one argument: the command for sh -c")
            return 2
        ns.shell_command, cmd = cmd[1], []
    if ns.shell_command is not None:
        if cmd:
            _err("-c takes the whole command: give no other command")
            return 2
        cmd = ["/bin/sh", "-c", ns.shell_command]
    if ns.nonblock and ns.wait is not None:
        _err("-n and -w cannot be combined")
        return 2
    timeout = 0.0 if ns.nonblock else ns.wait
    if not cmd and ns.lockfile.isdigit():
        return _lock_descriptor(ns, timeout)
    if ns.unlock:
        _err("-u releases a descriptor's lock: lockkit run -u FD (a command's lock ends when it exits)")
        return 2
    if not cmd:
        _err("run needs a command after the lock file (lockkit run LOCKFILE -- COMMAND... or -c COMMAND)")
        return 2
    if ns.no_fork and ns.strategy != "kernel":
        _err("-F needs the kernel strategy: a marker lock needs lockkit alive beside the command")
        return 2
    try:
        lock = FileLock(ns.lockfile, shared=ns.shared, strategy=ns.strategy)
        if not lock.acquire(timeout=timeout):
            if ns.verbose or not ns.nonblock:  # -n is quiet, as flock(1): no mail per skipped cron run
                holder = lock._timeout_error(timeout).holder
                _err(f"{ns.lockfile} is locked" + (f" (held by {holder})" if holder else ""))
            return int(ns.conflict_exit_code)
    except (LockFileError, ValueError) as exc:
        _err(str(exc))
        return EX_UNAVAILABLE
    if ns.no_fork:
        return _exec(cmd, lock)
    pending: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: Any) -> None:
        if child is None:
            pending.append(signum)  # arrived before the command started: delivered right after
        else:
            child.send_signal(signum)

    # Handlers first, then the command: no window in which a signal kills lockkit and orphans it.
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    hold = lock._holds[threading.get_ident()]
    inherited: tuple[int, ...] = ()
    if lock.strategy == "kernel" and not ns.close:
        # The command inherits the locked descriptor, as with flock(1): the lock lasts as
        # long as the command (and what it starts with the descriptor) runs, even if
        # lockkit itself is killed.
        assert isinstance(hold.ticket, PathState)
        inherited = (hold.ticket.fd,)
    try:
        try:
            child = _start(cmd, inherited)
        except FileNotFoundError:
            _err(f"command not found: {cmd[0]}")
            return 127
        except OSError as exc:
            _err(f"command not executable: {cmd[0]} ({exc.strerror})")
            return 126
        if lock.strategy == "marker":
            # The marker names the command: staleness is judged on the process that works
            # under the lock, so a killed lockkit does not free it while the command runs.
            from lockkit.files._marker import MarkerStrategy

            MarkerStrategy.hand_over(hold.ticket, child.pid, "lockkit run")
        for signum in pending:
            child.send_signal(signum)
        code = child.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        lock.release()
    return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N


def _start(cmd: list[str], inherited: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start ``cmd``; a file without ``#!`` runs through ``/bin/sh``, as execvp(3) does."""
    try:
        return subprocess.Popen(cmd, close_fds=True, pass_fds=inherited)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        return subprocess.Popen(["/bin/sh", *cmd], close_fds=True, pass_fds=inherited)


def _exec(cmd: list[str], lock: FileLock) -> int:
    """``-F``: replace lockkit with the command, which keeps the locked descriptor (and the lock)."""
    ticket = lock._holds[threading.get_ident()].ticket
    assert isinstance(ticket, PathState)
    os.set_inheritable(ticket.fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            os.execv("/bin/sh", ["/bin/sh", *cmd])
    except FileNotFoundError:
        _err(f"command not found: {cmd[0]}")
        code = 127
    except OSError as exc:
        _err(f"command not executable: {cmd[0]} ({exc.strerror})")
        code = 126
    lock.release()
    return code


def _lock_descriptor(ns: argparse.Namespace, timeout: float | None) -> int:
    """``lockkit run [-s|-x|-u] [-n|-w S] FD``: flock a descriptor of the calling shell, as flock(1).

    The lock belongs to the open file the shell holds as ``FD``; it outlives this process
    and ends when the shell closes the descriptor or runs ``lockkit run -u FD``.
    """
    import fcntl

    from lockkit._internal.deadline import Deadline
    from lockkit.files._kernel import flock_until
    from lockkit.resilience._backoff import Backoff

    fd = int(ns.lockfile)
    if ns.strategy != "kernel" or ns.no_fork or ns.close or ns.shell_command is not None:
        _err("a descriptor FD takes only -s, -x, -u, -n, -w, -E and --verbose (a kernel lock, no command)")
        return 2
    try:
        os.fstat(fd)
    except OSError:
        _err(f"{fd} is not an open file descriptor (open it in the shell first: exec {fd}>FILE)")
        return 2
    if ns.unlock:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return 0
    op = fcntl.LOCK_SH if ns.shared else fcntl.LOCK_EX
    try:
        if flock_until(fd, op, Deadline(timeout), lambda: Backoff(0.0002, 0.01)):
            return 0
    except OSError as exc:
        _err(f"cannot lock descriptor {fd}: {exc.strerror}")
        return EX_UNAVAILABLE
    if ns.verbose or not ns.nonblock:
        _err(f"descriptor {fd} is locked")
    return int(ns.conflict_exit_code)


def _describe(path: str, stale_after: float) -> dict[str, Any]:
    from lockkit.files._marker import looks_like_marker, read_marker, stale_reason

    out: dict[str, Any] = {"path": path}
    try:
        mode_bits = os.lstat(path).st_mode
    except FileNotFoundError:
        return {**out, "state": "missing", "exists": False}
    except OSError as exc:
        return {**out, "state": "unknown", "error": exc.strerror}
    if stat.S_ISLNK(mode_bits):
        return {**out, "state": "unknown", "error": "it is a symbolic link (lock files must not be links)"}
    is_marker = stat.S_ISDIR(mode_bits)
    info: LockInfo | None
    if is_marker:
        try:
            foreign = not looks_like_marker(path)
        except OSError as exc:
            return {**out, "state": "unknown", "error": exc.strerror}
        if foreign:  # a marker holds only its owner file: this is an ordinary directory
            return {**out, "state": "not-a-lock-file"}
        out["strategy"] = "marker"
        info = FileLock(path, strategy="marker").holder()
        seen = read_marker(path)
        if info is None or seen is None:
            return {**out, "state": "free"}
        reason = stale_reason(seen, stale_after)
        out.update(state="held", mode="exclusive", stale=reason is not None, stale_reason=reason)
    else:
        out["strategy"] = "kernel"
        mode = kernel_mode(path)
        if mode is None and not (stat.S_ISREG(mode_bits) and looks_like_lock_file(path)):
            # A data file (or a device, a socket) given by mistake is not a free lock.
            return {**out, "state": "not-a-lock-file"}
        token, _record = read_holder(path)
        out["fencing_token"] = token
        if mode is None:
            return {**out, "state": "free"}
        out.update(state="held", mode=mode)
        # The kernel's holder; the record is shown only when it names that same process.
        info = None if mode == "shared" else FileLock(path).holder()
    if info is not None:
        out.update(
            pid=info.pid,
            host=info.hostname,
            thread=info.thread,
            held_for=None if info.held_for is None else round(info.held_for, 3),
            fencing_token=info.fencing_token or out.get("fencing_token", 0),
            recorded=info.recorded,
        )
    return out


def _describe_pg(conninfo: str, name: str, namespace: str) -> dict[str, Any]:
    from lockkit.postgres import PgLock

    out: dict[str, Any] = {"path": name, "strategy": "postgres"}
    lock = PgLock(conninfo, name, namespace=namespace, fence_sequence=None)
    try:
        info = lock.holder()
    except Exception as exc:  # the database cannot be reached: reported, not a traceback
        return {**out, "state": "unknown", "error": f"{type(exc).__name__}: {exc}".strip()}
    finally:
        lock.close()
    if info is None:
        return {**out, "state": "free"}
    out.update(state="held", mode="shared" if info.shared else "exclusive", pid=info.pid, host=info.hostname)
    out.update(thread=info.thread, held_for=info.held_for, recorded=info.recorded)
    return out


def _status(ns: argparse.Namespace) -> int:
    if ns.postgres is not None:
        rows = [_describe_pg(ns.postgres, name, ns.namespace) for name in ns.paths]
    else:
        rows = [_describe(os.path.abspath(p), ns.stale_after) for p in ns.paths]
    code = 0
    for r in rows:
        if r["state"] == "unknown":
            _err(f"cannot read {r['path']}: {r['error']}")
            code = EX_UNAVAILABLE
        elif r["state"] in ("missing", "not-a-lock-file") and code == 0:
            code = 1
    if ns.json:
        print(json.dumps(rows, indent=2))
        return code
    for r in rows:
        if r["state"] == "missing":
            print(f"{r['path']}: no such lock file")
            continue
        if r["state"] == "not-a-lock-file":
            hint = f"; its lock file is {r['path']}.lock" if os.path.exists(r["path"] + ".lock") else ""
            print(f"{r['path']}: not a lock file (its content is not a lock record: a data file?{hint})")
            continue
        if r["state"] == "unknown":
            continue
        if r["state"] != "held":
            extra = f" (last fencing token {r['fencing_token']})" if r.get("fencing_token") else ""
            print(f"{r['path']}: {r['state']}{extra}")
            continue
        who = ""
        if r.get("pid") and r.get("recorded") is False:
            who = f" by pid {r['pid']} on {r['host']} (not a lockkit holder: another program)"
        elif r.get("pid"):
            who = f" by pid {r['pid']} on {r['host']} (thread {r['thread']!r})"
        held = f" for {r['held_for']:.1f} s" if r.get("held_for") is not None else ""
        token = f", fencing token {r['fencing_token']}" if r.get("fencing_token") else ""
        stale = ""
        if r.get("strategy") == "marker":
            stale = f"; STALE: {r['stale_reason']}" if r["stale"] else "; not stale"
        print(f"{r['path']}: held {r['mode']}{who}{held}{token} [{r['strategy']}]{stale}")
    return code


def _break(ns: argparse.Namespace) -> int:
    from lockkit.files._marker import break_marker, read_marker

    path = os.path.abspath(ns.path)
    try:
        seen = read_marker(path)
    except LockFileError as exc:
        if exc.errno == errno.ENOTDIR:
            _err(f"{path} is not a marker (a kernel lock file: the kernel releases it when its holder dies)")
            return EX_TEMPFAIL
        _err(str(exc))
        return EX_UNAVAILABLE
    if seen is None:
        print(f"{path}: no marker, nothing to break")
        return 0
    info = seen.info
    reason = None if info is None else dead_reason(info)
    if reason is None:
        why = (
            "its record is unreadable"
            if info is None
            else (f"pid {info.pid} on {info.hostname} may be alive" if info.hostname else "its holder is unknown")
        )
        _err(f"refusing to break {path}: {why} (only a holder proven dead on this host is broken)")
        return EX_TEMPFAIL
    if break_marker(path, seen, float("inf"), reason) or read_marker(path) is None:
        print(f"{path}: broken ({reason})")
        return 0
    _err(f"{path} changed while breaking it; run the command again")
    return EX_TEMPFAIL


def _sweep(ns: argparse.Namespace) -> int:
    from lockkit.files._sweep import sweep_lock_files
    from lockkit.storage._atomic import sweep_temp_files

    if not os.path.isdir(ns.directory):
        _err(f"{ns.directory} is not a directory")
        return EX_NOINPUT
    verb = "would remove" if ns.dry_run else "removed"
    directories = [ns.directory]
    if ns.recursive:
        directories = [root for root, _dirs, _files in os.walk(ns.directory, followlinks=False)]
    for directory in sorted(directories):
        for path in sweep_temp_files(directory, older_than=ns.older_than, dry_run=ns.dry_run):
            print(f"{verb} {path}")
    if ns.locks:
        for path in sweep_lock_files(
            ns.directory, older_than=ns.older_than, recursive=ns.recursive, dry_run=ns.dry_run
        ):
            print(f"{verb} {path}")
    return 0


def _demo(ns: argparse.Namespace) -> int:
    from lockkit._tools.demo.run import main as demo_main

    for name in ("requests", "workers", "threads", "connections"):
        if getattr(ns, name) < 1:
            _err(f"--{name} must be at least 1")
            return 2
    return demo_main(ns.requests, ns.workers, ns.threads, ns.connections, ns.keep, ns.serve)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
