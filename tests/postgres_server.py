"""A private PostgreSQL cluster for the tests: initdb + pg_ctl on a free loopback port, removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    exe = shutil.which("initdb")
    return os.path.dirname(exe) if exe else None


class PostgresServer:
    """One cluster, trust authentication on 127.0.0.1, owned by ``postgres`` when run as root."""

    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None
        self.bindir = bindir
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="lockkit-pg-")
        self.data = os.path.join(self.dir, "data")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
            os.chmod(self.dir, 0o700)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.user:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    @property
    def conninfo(self) -> str:
        """A libpq connection string for the ``postgres`` database."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=10"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-w", "-t", "60", "-l", os.path.join(self.dir, "log"), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def require_postgres() -> None:
    """Skip loudly without PostgreSQL; fail instead when LOCKKIT_REQUIRE_POSTGRES is set (CI)."""
    if _bindir() is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not installed"
        if os.environ.get("LOCKKIT_REQUIRE_POSTGRES"):
            pytest.fail(message + " and LOCKKIT_REQUIRE_POSTGRES is set")
        pytest.skip(message)
    pytest.importorskip("psycopg")
