"""Shared helpers for benchmarks: lab guests, timing statistics, result files."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def lab_guest(name: str, agent: str = "7.2", plain: bool = False) -> Any:
    """Boot (or reuse) one lab guest for a benchmark."""
    from virt_qga.lab import Lab

    lab = Lab()
    return lab.up(count=1, agent=agent, plain=plain, name=name)[0]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Wall time of ``n`` calls, seconds each."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def summary(samples: list[float], unit: float = 1e3) -> str:
    """'median X ms, p95 Y ms' (unit 1e3 = milliseconds)."""
    return f"median {statistics.median(samples) * unit:8.3f} ms  p95 {pct(samples, 95) * unit:8.3f} ms"


class Report:
    """Collects lines, prints them as they come, saves them to bench/results/NAME.txt."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = [f"# bench.{name}  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.txt"
        path.write_text("\n".join(self.lines) + "\n")
        return path
