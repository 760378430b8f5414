"""Retry benchmarks: lockkit.retry beside tenacity and stamina."""

from __future__ import annotations

import statistics as _st
import time
from collections.abc import Callable
from typing import Any

import tenacity

from lockkit import RetryPolicy, retry
from lockkit._tools.bench import Table
from lockkit._tools.bench.peers import optional


def _per_call_ns(fn: Callable[[], Any], n: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e9)
    return _st.median(samples)


def _plain() -> int:
    return 1


def success_overhead(quick: bool) -> Table:
    """A decorated call that succeeds at once, minus a plain call."""
    n, rounds = (20_000, 5) if quick else (100_000, 9)
    t = Table(
        "retry: decorated call that succeeds at once",
        [("ns", "ns/call"), ("over", "overhead ns"), ("x", "x lockkit overhead")],
    )
    peers: list[tuple[str, Callable[[], Any]]] = [("plain call", _plain)]
    peers.append(("lockkit.retry", retry(on=ConnectionError)(_plain)))
    peers.append(
        (
            "tenacity.retry",
            tenacity.retry(
                stop=tenacity.stop_after_attempt(3), retry=tenacity.retry_if_exception_type(ConnectionError)
            )(_plain),
        )
    )
    stamina = optional("stamina")
    if stamina is not None:
        peers.append(("stamina.retry", stamina.retry(on=ConnectionError, attempts=3)(_plain)))
    res: dict[str, list[float]] = {name: [] for name, _ in peers}
    for _ in range(rounds):
        for name, fn in peers:
            res[name].append(_per_call_ns(fn, n, 1))
    base = _st.median(res["plain call"])
    ours = _st.median(res["lockkit.retry"]) - base
    for name, _ in peers:
        ns = _st.median(res[name])
        t.add(name, ns=ns, over=ns - base, x=(ns - base) / ours if ours > 0 else float("nan"))
    t.bar("lockkit overhead over a plain call (bar <= 1.0 us)", ours / 1000, 1.0, at_most=True, unit=" us")
    if stamina is None:
        t.notes.append("stamina not installed")
    return t


def _fails_twice(make: Callable[[Callable[[], int]], Callable[[], int]]) -> Callable[[], int]:
    state = [0]

    def fn() -> int:
        state[0] += 1
        if state[0] % 3:
            raise ConnectionError("down")
        return 1

    return make(fn)


def fail_twice(quick: bool) -> Table:
    """A call that fails twice, then succeeds, with zero waits."""
    n, rounds = (2_000, 5) if quick else (10_000, 9)
    t = Table("retry: call failing twice then succeeding (zero waits)", [("us", "us/call"), ("x_ten", "x tenacity")])
    policy = RetryPolicy(attempts=3, wait_initial=0, wait_max=0, on_retry=None, retry_on=ConnectionError)
    peers: list[tuple[str, Callable[[], int]]] = [
        ("lockkit.retry", _fails_twice(retry(policy))),
        (
            "tenacity.retry",
            _fails_twice(
                tenacity.retry(
                    stop=tenacity.stop_after_attempt(3),
                    wait=tenacity.wait_none(),
                    retry=tenacity.retry_if_exception_type(ConnectionError),
                    reraise=True,
                )
            ),
        ),
    ]
    stamina = optional("stamina")
    if stamina is not None:
        stamina.set_testing(True, attempts=3)  # stamina's own switch that removes waits
        stamina.instrumentation.set_on_retry_hooks([])  # no log line per retry (lockkit logs none here either)

        peers.append(("stamina.retry (testing mode)", _fails_twice(stamina.retry(on=ConnectionError, attempts=3))))
    res: dict[str, list[float]] = {name: [] for name, _ in peers}
    try:
        for _ in range(rounds):
            for name, fn in peers:
                res[name].append(_per_call_ns(fn, n, 1) / 1000)
    finally:
        if stamina is not None:
            stamina.set_testing(False)
    ten = _st.median(res["tenacity.retry"])
    for name, _ in peers:
        us = _st.median(res[name])
        t.add(name, us=us, x_ten=us / ten)
    t.bar("lockkit vs tenacity (bar <= 1.0x)", _st.median(res["lockkit.retry"]) / ten, 1.0, at_most=True)
    return t


def run(quick: bool) -> list[Table]:
    """Every retry table."""
    return [success_overhead(quick), fail_twice(quick)]
