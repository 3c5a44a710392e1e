"""What a day records: action timings, live-update delays, server errors, lost live events."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.harness.timing import percentile

T = TypeVar("T")


@dataclass
class Figures:
    """Thread-safe: the soak's clients record from many threads and one asyncio loop."""

    actions: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    live: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    live_expected: int = 0
    live_lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resent: int = 0  # requests sent again after a kept-alive connection was closed under them
    lock: threading.Lock = field(default_factory=threading.Lock)

    def action(self, name: str, seconds: float) -> None:
        with self.lock:
            self.actions[name].append(seconds)

    def timed(self, name: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = call()
        self.action(name, time.perf_counter() - start)
        return result

    def live_delay(self, name: str, seconds: float) -> None:
        with self.lock:
            self.live[name].append(seconds)

    def server_error(self, what: str) -> None:
        with self.lock:
            self.server_errors.append(what)

    def failure(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def retried(self) -> None:
        with self.lock:
            self.resent += 1

    def live_result(self, expected: int, lost: list[str]) -> None:
        with self.lock:
            self.live_expected += expected
            self.live_lost.extend(lost)


def _row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"  {name:<44} n={len(ms):<5} p50={percentile(ms, 50):8.1f} ms "
        f"p95={percentile(ms, 95):8.1f} ms max={max(ms, default=math.nan):8.1f} ms"
    )


def table(title: str, rows: dict[str, list[float]]) -> list[str]:
    lines = [title]
    lines += [_row(name, values) for name, values in rows.items()] or ["  (none)"]
    return lines


def p95_of(values: list[float]) -> float:
    return percentile(values, 95)


def summary_lines(figures: Figures, extra: dict[str, Any] | None = None) -> list[str]:
    lines = table("Page and API actions (start -> answer shown):", figures.actions)
    lines += table("Live updates (commit -> the other user's page or socket):", figures.live)
    lines.append(
        f"live events: {figures.live_expected} expected, {len(figures.live_lost)} lost"
        + (f" ({', '.join(figures.live_lost[:10])})" if figures.live_lost else "")
    )
    lines.append(f"server errors (5xx): {len(figures.server_errors)}")
    lines.append(f"requests sent again after a closed keep-alive connection: {figures.resent}")
    lines += [f"  {e}" for e in figures.server_errors[:20]]
    if figures.failures:
        lines.append(f"other failures: {len(figures.failures)}")
        lines += [f"  {f}" for f in figures.failures[:20]]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    lines += figures.notes
    return lines
