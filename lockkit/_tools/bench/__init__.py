"""Benchmarks: lockkit beside its peers, measured in one run and printed as ratios.

Run with ``lockkit bench [--quick]`` or ``tox -e bench`` (the same code). Peers that
are not installed are listed as such. Timings on shared machines are noisy: each
figure is the median of several rounds, and only ratios measured in one run are
compared against the bars.
"""

from __future__ import annotations

import math
import statistics as _st
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One implementation's figures in a table."""

    name: str
    values: dict[str, float | str]


@dataclass
class Table:
    """A benchmark table: rows, the columns to show and the bars checked."""

    title: str
    columns: list[tuple[str, str]]  # (key, header with unit)
    rows: list[Row] = field(default_factory=list)
    bars: list[tuple[str, bool | None, str]] = field(default_factory=list)  # (text, met?, measured)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, **values: float | str) -> None:
        self.rows.append(Row(name, dict(values)))

    def value(self, name: str, key: str) -> float:
        for row in self.rows:
            if row.name == name:
                v = row.values.get(key)
                if isinstance(v, (int, float)):
                    return float(v)
        return float("nan")

    def bar(self, text: str, ratio: float, limit: float, *, at_most: bool, unit: str = "x") -> None:
        if math.isnan(ratio):  # NaN: a peer is missing
            self.bars.append((text, None, "n/a (peer not installed)"))
            return
        met = ratio <= limit if at_most else ratio >= limit
        self.bars.append((text, met, f"{ratio:.2f}{unit}"))

    def render(self) -> str:
        headers = ["implementation", *[h for _, h in self.columns]]
        body = [[r.name, *[_fmt(r.values.get(k, "")) for k, _ in self.columns]] for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(headers, *body, strict=False)]
        out = [f"== {self.title}", "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in body]
        for text, met, measured in self.bars:
            verdict = "n/a " if met is None else ("PASS" if met else "MISS")
            out.append(f"  [{verdict}] {text}: {measured}")
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


def _fmt(v: float | str) -> str:
    if isinstance(v, str):
        return v
    if math.isnan(v):
        return "-"
    if float(v).is_integer():
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def median_ns_per_op(fn: Callable[[int], None], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the time per operation of ``fn(n)`` (n operations)."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - t0) / n * 1e9)
    return _st.median(samples)


def churn(make: Callable[[], Any], n: int, start: Any) -> None:
    """In a benchmark process: make a lock, wait at ``start``, then acquire and release it ``n`` times."""
    lock = make()
    start.wait()
    for _ in range(n):
        lock.acquire()
        lock.release()


def race_processes(target: Callable[..., None], args: tuple[object, ...], procs: int) -> float:
    """Run ``target(*args, start)`` in ``procs`` forked processes released together; the seconds taken.

    ``start`` is a barrier each child waits on before its timed work, so the clock starts
    when every child is at the line.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(procs + 1)
    ps = [ctx.Process(target=target, args=(*args, start)) for _ in range(procs)]
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    return time.perf_counter() - t0


#: Every benchmark group, in the order ``lockkit bench`` runs them.
GROUPS = ("threads", "files", "storage", "versus", "store", "retry", "redis", "postgres", "startup")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every benchmark group and print the tables."""
    import argparse
    import importlib

    from lockkit._tools.cli import plain_text

    parser = argparse.ArgumentParser(prog="lockkit bench", description=plain_text(__doc__))
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds per group)")
    parser.add_argument("--only", action="append", default=[], choices=sorted(GROUPS), help="run only these groups")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any bar is missed")
    args = parser.parse_args(argv)
    missed = 0
    for name in GROUPS:
        if args.only and name not in args.only:
            continue
        try:
            run: Callable[[bool], list[Table]] = importlib.import_module(f"lockkit._tools.bench.{name}").run
            tables = run(args.quick)
        except ImportError as exc:  # a peer this group needs is missing
            hint = "pip install '.[bench]' in a lockkit checkout"
            print(f"== {name}: skipped ({exc.name} is not installed; {hint})\n", flush=True)
            continue
        for table in tables:
            print(table.render(), flush=True)
            print(flush=True)
            missed += sum(1 for _text, met, _measured in table.bars if met is False)
    if args.strict and missed:
        print(f"{missed} bar(s) missed", flush=True)
        return 1
    return 0
