"""Logging that obeys the application: stdlib ``logging`` unless structlog is configured; rate limits."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from structlog.testing import capture_logs

from lockkit._internal import log

pytestmark = pytest.mark.timeout(120)

# A FileLock with 12 threads queued behind a holder: a deep queue, as under waitress.
CONTENTION = """
import logging, os, sys, tempfile, threading
{setup}
from lockkit import FileLock
path = os.path.join(tempfile.mkdtemp(), "hot.json.lock")
lock = FileLock(path)
lock.acquire()
def work():
    with FileLock(path):
        pass
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads:
    t.start()
while lock.queue_length() < 13:  # the holder and 12 waiters
    pass
lock.release()
for t in threads:
    t.join()
print("path=" + path, file=sys.stderr)
"""


def _run(setup: str) -> subprocess.CompletedProcess[str]:
    code = CONTENTION.format(setup=textwrap.dedent(setup))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)


def test_unconfigured_app_gets_warnings_on_stderr_through_logging_naming_the_file() -> None:
    r = _run("")
    assert r.stdout == ""  # never on stdout, whatever the app has configured
    path = r.stderr.rsplit("path=", 1)[1].strip()
    deep = [line for line in r.stderr.splitlines() if "lockkit.queue_deep" in line]
    assert len(deep) == 1, r.stderr
    assert path in deep[0]  # names the file, not just "filelock"


def test_logging_level_of_the_lockkit_logger_silences_lockkit() -> None:
    r = _run('logging.getLogger("lockkit").setLevel(logging.CRITICAL)')
    assert r.stdout == "" and "lockkit." not in r.stderr.replace("path=", "")


def test_dictconfig_routes_lockkit_events_to_the_apps_handler() -> None:
    setup = """
    import logging.config
    logging.config.dictConfig({
        "version": 1,
        "formatters": {"f": {"format": "APP %(name)s %(levelname)s %(lockkit_event)s %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "f"}},
        "loggers": {"lockkit": {"handlers": ["h"], "level": "WARNING", "propagate": False}},
    })
    """
    r = _run(setup)
    line = next(line for line in r.stderr.splitlines() if "queue_deep" in line)
    assert line.startswith("APP lockkit WARNING lockkit.queue_deep lockkit.queue_deep lock=")


def test_warnings_are_rate_limited_per_resource_with_a_suppressed_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(log, "_clock", lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="lockkit"):
        for _ in range(5):
            log.warning(log.QUEUE_DEEP, lock="/a.lock", waiting=11)
        log.warning(log.QUEUE_DEEP, lock="/b.lock", waiting=12)  # another resource: its own window
        now[0] += log.WARNING_INTERVAL - 0.5
        log.warning(log.QUEUE_DEEP, lock="/a.lock", waiting=11)  # still inside a's window
        now[0] += 1.0
        log.warning(log.QUEUE_DEEP, lock="/a.lock", waiting=13)
    messages = [r.getMessage() for r in caplog.records if r.name == "lockkit"]
    assert messages == [
        "lockkit.queue_deep lock='/a.lock' waiting=11",
        "lockkit.queue_deep lock='/b.lock' waiting=12",
        "lockkit.queue_deep lock='/a.lock' waiting=13 suppressed=5",
    ]
    record = caplog.records[-1]
    assert record.levelno == logging.WARNING
    assert record.lockkit_event == "lockkit.queue_deep"  # type: ignore[attr-defined]
    assert record.lockkit_fields["suppressed"] == 5  # type: ignore[attr-defined]


def test_debug_events_follow_the_logging_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lockkit"):
        log.debug(log.LOCK_CONTENDED, lock="m")
        log.info("lockkit.retry_scheduled", name="fetch", attempt=1)
    assert [r.getMessage() for r in caplog.records] == ["lockkit.retry_scheduled name='fetch' attempt=1"]


def test_a_configured_structlog_gets_the_events_instead() -> None:
    with capture_logs() as logs:
        log.warning(log.QUEUE_DEEP, lock="/c.lock", waiting=11)
    assert logs == [{"event": "lockkit.queue_deep", "lock": "/c.lock", "waiting": 11, "log_level": "warning"}]


def test_a_raising_handler_never_breaks_a_lock(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

        def handleError(self, record: logging.LogRecord) -> None:
            raise RuntimeError("and its error handling too")

    logger = logging.getLogger("lockkit")
    handler = Broken()
    logger.addHandler(handler)
    try:
        log.warning(log.QUEUE_DEEP, lock="/d.lock", waiting=11)  # must not raise
    finally:
        logger.removeHandler(handler)
