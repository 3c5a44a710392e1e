"""One scripted day: the journeys, the soak, then the stack's processes and logs checked."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from bench.harness.timing import load_now, machine_line

from .figures import Figures, summary_lines
from .journeys import STEPS, run_day
from .soak import Soak
from .stack import Stack


@dataclass
class DayResult:
    figures: Figures
    checks: dict[str, int] = field(default_factory=dict)  # name -> count; PASS when all are 0
    soak_counts: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(self.checks.values())


def day_run(
    stack: Stack,
    *,
    soak_seconds: float,
    journeys: bool = True,
    uploaders: int = 1,
    out: Any = print,
) -> DayResult:
    figures = Figures()
    began = time.monotonic()
    out(f"day: {stack.base} at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    out(machine_line())
    if journeys:
        out(f"journeys: {len(STEPS)} steps in Chromium ...")
        run_day(stack.base, figures)
        out(f"journeys done in {time.monotonic() - began:.0f} s; load {load_now()}")
    soak_counts: dict[str, Any] = {}
    if soak_seconds > 0:
        out(f"soak: {soak_seconds / 60:.1f} min ...")
        soak = Soak(stack.base, soak_seconds, figures, uploaders=uploaders)
        soak_counts = soak.run()
        out(f"soak done; load {load_now()}")
    problems = stack.log_problems()
    dead = stack.dead()
    missing = stack.missing_programs()
    checks = {
        "crashed processes": len(dead),
        "stack processes not found at the start": len(missing),
        "lost live events": len(figures.live_lost),
        "server errors (5xx seen by clients)": len(figures.server_errors),
        "server errors (5xx in the access log)": problems["5xx in the access log"],
        "tracebacks in the logs": problems["tracebacks"],
        "other failures (refused requests, journey steps)": len(figures.failures),
    }
    if soak_seconds > 0:
        checks["soak delivered no report"] = int(not soak_counts.get("reports delivered"))
    result = DayResult(figures=figures, checks=checks, soak_counts=soak_counts)
    lines = summary_lines(
        figures,
        {
            "stack processes": ", ".join(
                f"{name} {pid}" for name, (pid, _) in sorted(stack.processes.items())
            ),
            "soak": ", ".join(f"{k} {v}" for k, v in soak_counts.items()) or "(none)",
            "load at the end": load_now(),
            "wall time": f"{time.monotonic() - began:.0f} s",
        },
    )
    if dead:
        lines.append(f"crashed: {', '.join(dead)}")
    if missing:
        lines.append(f"not found at the start: {', '.join(missing)}")
    if problems["tracebacks"]:
        lines.append("first traceback:\n" + stack.traceback_excerpt())
    lines += [f"CHECK {name}: {count}" for name, count in checks.items()]
    lines.append("PASS" if result.passed else "FAIL")
    result.lines = lines
    for line in lines:
        out(line)
    return result
