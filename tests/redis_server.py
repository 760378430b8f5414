"""A private redis-server for the tests: free port, temp directory, started and stopped here."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1 (no persistence), restartable on its port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="lockkit-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def require_redis_server() -> None:
    """Skip loudly without redis-server; fail instead when LOCKKIT_REQUIRE_REDIS is set (CI)."""
    if shutil.which("redis-server") is None:
        reason = "redis-server not found: install the Debian package redis-server to run the Redis backend tests"
        if os.environ.get("LOCKKIT_REQUIRE_REDIS"):
            pytest.fail(reason + " (LOCKKIT_REQUIRE_REDIS is set: CI must not skip them)")
        pytest.skip(reason)


class ReplyDroppingProxy:
    """A TCP proxy in front of a real server that can lose a reply.

    ``drop_next_reply(b"evalsha")`` arms it: the next such request is forwarded to the server (which
    executes it), the server's reply is read and thrown away, and the client's
    connection is closed. The client sees a connection error without knowing whether
    the command ran, as after a network fault.
    """

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._drop = threading.Event()
        self._matching = b""
        self.dropped = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply(self, matching: bytes = b"") -> None:
        """Lose the reply to the next request that contains ``matching``."""
        self._matching = matching.lower()
        self.dropped.clear()
        self._drop.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: Any, upstream: Any) -> None:
        try:
            while True:
                request = client.recv(65536)
                if not request:
                    return
                upstream.sendall(request)
                reply = upstream.recv(65536)
                if self._drop.is_set() and self._matching in request.lower():
                    self._drop.clear()
                    self.dropped.set()
                    return  # the command ran; its reply is lost with the connection
                client.sendall(reply)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        """Stop listening: connections to :attr:`port` are refused from now on."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
