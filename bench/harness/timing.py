"""Percentiles, the machine's description and the figure lines every benchmark prints."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by the nearest-rank method (what load-test tools report)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def machine_line() -> str:
    """nproc, memory and load now: the context every figure needs on a shared machine."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    ram = psutil.virtual_memory()
    return (
        f"machine: nproc={os.cpu_count()} ram={ram.total / 2**30:.1f} GiB "
        f"(available {ram.available / 2**30:.1f}) load={load} "
        f"python={platform.python_version()} {platform.platform(terse=True)}"
    )


def load_now() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


@dataclass
class Timings:
    """Durations (seconds) of repeated requests of one shape."""

    name: str
    seconds: list[float] = field(default_factory=list)
    failures: int = 0

    def measure(self, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = call()
        self.seconds.append(time.perf_counter() - start)
        return result

    def p(self, q: float) -> float:
        return percentile(self.seconds, q) * 1000

    def summary(self) -> str:
        return (
            f"n={len(self.seconds)} p50={self.p(50):.1f} ms p95={self.p(95):.1f} ms "
            f"max={max(self.seconds, default=math.nan) * 1000:.1f} ms"
            + (f" failures={self.failures}" if self.failures else "")
        )


class Output(Protocol):
    def write(self, text: str) -> Any: ...

    def flush(self) -> Any: ...


class FigurePrinter:
    """Prints `FIGURE <name> = <value> <unit>` lines: one grep finds every figure of a run."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.figures: dict[str, float] = {}

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def figure(self, name: str, value: float, unit: str, note: str = "") -> None:
        self.figures[name] = value
        self.line(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({note})" if note else ""))

    def goal(self, name: str, met: bool, detail: str) -> None:
        self.line(f"GOAL {name}: {'met' if met else 'MISSED'} ({detail})")
