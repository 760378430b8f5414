"""fetch_with_retry against a real local http.server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import lockkit
import lockkit.resilience
from lockkit import RetryPolicy

pytestmark = pytest.mark.timeout(60)


class Script:
    """What the server answers, in order, per path; then 200."""

    def __init__(self) -> None:
        self.plan: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with script.lock:
                script.hits[self.path] = script.hits.get(self.path, 0) + 1
                queue = script.plan.get(self.path, [])
                status, headers = queue.pop(0) if queue else (200, {})
            body = b'{"ok": true}' if status == 200 else b"busy"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def fast_policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps.append, on_retry=None, jitter=0.0)


def test_503_with_retry_after_then_200(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan["/a"] = [(503, {"Retry-After": "1"})]
    sleeps: list[float] = []
    with lockkit.resilience.fetch_with_retry(url + "/a", policy=fast_policy(sleeps)) as response:
        assert response.status == 200 and response.read() == b'{"ok": true}'
    assert script.hits["/a"] == 2
    assert sleeps == [1.0]  # Retry-After was the floor of the wait


def test_client_error_is_raised_at_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan["/missing"] = [(404, {})]
    with pytest.raises(urllib.error.HTTPError) as info:
        lockkit.resilience.fetch_with_retry(url + "/missing", policy=fast_policy([]))
    assert info.value.code == 404 and script.hits["/missing"] == 1


def test_post_is_not_retried_on_5xx_unless_idempotency_key(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan["/pay"] = [(503, {})]
    with pytest.raises(urllib.error.HTTPError):
        lockkit.resilience.fetch_with_retry(url + "/pay", method="POST", data=b"x", policy=fast_policy([]))
    assert script.hits["/pay"] == 1
    script.plan["/pay2"] = [(503, {})]
    with lockkit.resilience.fetch_with_retry(
        url + "/pay2", method="POST", data=b"x", headers={"Idempotency-Key": "k1"}, policy=fast_policy([])
    ) as response:
        assert response.status == 200
    assert script.hits["/pay2"] == 2


def test_post_is_retried_on_429(server: tuple[str, Script]) -> None:
    url, script = server
    script.plan["/rl"] = [(429, {"Retry-After": "0"})]
    with lockkit.resilience.fetch_with_retry(url + "/rl", method="POST", data=b"x", policy=fast_policy([])) as response:
        assert response.status == 200
    assert script.hits["/rl"] == 2


def test_connect_errors_are_retried_for_any_method() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    attempts: list[int] = []
    p = RetryPolicy(sleep=lambda _: None, on_retry=lambda d: attempts.append(d.attempt))
    with pytest.raises(urllib.error.URLError):
        lockkit.resilience.fetch_with_retry(f"http://127.0.0.1:{port}/", method="POST", data=b"x", policy=p)
    assert attempts == [1, 2]


def test_bad_url() -> None:
    with pytest.raises(ValueError, match="http"):
        lockkit.resilience.fetch_with_retry("file:///etc/passwd")
