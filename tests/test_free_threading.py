"""Schedules the GIL usually hides: the lock contract and the race tests with a 1 microsecond switch interval.

A free-threaded interpreter cannot be installed on the CI machines, so this shakes out
schedules on GIL builds instead: with ``sys.setswitchinterval(1e-6)`` a thread can lose
the interpreter between almost any two bytecodes, which is where pure-Python code that
relies on the GIL for atomicity breaks. See docs/free-threading.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

TESTS = Path(__file__).parent
#: The lock contract, the race and lost-update tests, and the group commit of directory
#: fsyncs (threads coordinating through one condition per directory).
SHAKEN = ("test_contract.py", "test_races.py", "test_lost_updates.py", "test_group_commit.py")


def test_contract_and_races_hold_when_threads_switch_after_almost_every_bytecode() -> None:
    env = {**os.environ, "LOCKKIT_SWITCH_INTERVAL": "1e-6"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
    r = subprocess.run(
        [*cmd, *(str(TESTS / name) for name in SHAKEN)],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


def test_the_switch_interval_is_really_applied(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile("import sys\ndef test_it():\n    assert sys.getswitchinterval() < 1e-5\n")
    monkeypatch.setenv("LOCKKIT_SWITCH_INTERVAL", "1e-6")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
