"""8 threads x 10,000 read-modify-write increments under each primitive: exact count."""

from __future__ import annotations

import sys
import threading

import pytest
from locklikes import LOCKLIKES

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("name", sorted(LOCKLIKES))
def test_no_lost_updates(name: str) -> None:
    lock = LOCKLIKES[name][0](None)
    box = {"n": 0}

    def work() -> None:
        for _ in range(10_000):
            with lock:
                value = box["n"]
                box["n"] = value + 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box["n"] == 80_000


def test_unlocked_control_can_lose_updates() -> None:
    """The same loop without a lock is not safe (shows the test above could fail)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, on every interpreter version
    box = {"n": 0}
    gate = threading.Barrier(8)

    def work() -> None:
        gate.wait()
        for _ in range(20_000):
            value = box["n"]
            for _ in range(20):
                pass
            box["n"] = value + 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.setswitchinterval(previous)
    assert box["n"] < 160_000
