"""The longest delay any task message can carry, read from the code (no process started).

A Celery message waiting for its countdown or ETA sits in the Redis transport's "unacked"
set like one a worker is running: once older than the visibility timeout it is delivered a
second time. So every countdown/ETA a call site passes, and every delay Celery computes
for a task's own retries (`default_retry_delay`, `retry_backoff`, `retry_kwargs`), must be
below CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]. tests/test_faults.py asserts
it; `manage.py bench_faults` prints the figure.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
TIMING_KEYWORDS = frozenset({"countdown", "eta"})
# Not shipped, or not Python of the hub: the benchmarks, the tests, the gateway (no Celery).
SKIPPED_DIRS = frozenset({".venv", "tests", "bench", "node_modules", "gateway", "var", "docs"})


@dataclass(frozen=True)
class Delay:
    where: str  # "path:line" of a call site, or "task <name>"
    what: str  # countdown, eta, default_retry_delay, retry_backoff_max, ...
    seconds: float  # math.inf when it is not a plain number (it cannot be proved bounded)


def call_site_delays(source: str, filename: str) -> list[Delay]:
    """Every `countdown=` / `eta=` keyword of a call in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg in TIMING_KEYWORDS:
                value = keyword.value
                seconds = math.inf
                if (
                    isinstance(value, ast.Constant)
                    and isinstance(value.value, int | float)
                    and not isinstance(value.value, bool)
                ):
                    seconds = float(value.value)
                found.append(Delay(f"{filename}:{node.lineno}", keyword.arg, seconds))
    return found


def project_sources(root: Path = ROOT) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.py")
        if not (set(path.relative_to(root).parts[:-1]) & SKIPPED_DIRS)
        and "migrations" not in path.parts
    )


def all_call_site_delays(root: Path = ROOT) -> list[Delay]:
    delays: list[Delay] = []
    for path in project_sources(root):
        try:
            source = path.read_text()
        except FileNotFoundError:  # an editor's temporary file, gone since the listing
            continue
        delays += call_site_delays(source, str(path.relative_to(root)))
    return delays


def task_retry_delays(task: Any) -> list[Delay]:
    """The delays Celery can give this task's own retries (autoretry or self.retry())."""
    where = f"task {task.name}"
    delays = [Delay(where, "default_retry_delay", float(task.default_retry_delay or 0))]
    retry_kwargs = getattr(task, "retry_kwargs", None) or {}
    if "countdown" in retry_kwargs:
        delays.append(Delay(where, "retry_kwargs countdown", float(retry_kwargs["countdown"])))
    if "eta" in retry_kwargs:
        delays.append(Delay(where, "retry_kwargs eta", math.inf))
    backoff = getattr(task, "retry_backoff", False)
    if backoff:
        factor = 1.0 if backoff is True else float(backoff)
        ceiling = float(getattr(task, "retry_backoff_max", 600))
        retries = task.max_retries
        # Celery (celery/app/autoretry.py): min(retry_backoff_max, factor * 2 ** retries),
        # retries counting up to max_retries (that last one is refused, but computed).
        longest = ceiling if retries is None else min(ceiling, max(1.0, factor) * 2**retries)
        delays.append(Delay(where, "retry_backoff", longest))
    return delays


def registered_tasks() -> dict[str, Any]:
    """Every task of the hub, as a worker registers it (Celery's own and the test suite's
    are left out)."""
    from alliance.celery import app

    app.loader.import_default_modules()
    return {
        name: task for name, task in app.tasks.items() if not name.startswith(("celery.", "tests."))
    }


def beat_delays() -> list[Delay]:
    delays = []
    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    for name, entry in schedule.items():
        options: dict[str, Any] = entry.get("options", {})
        if "eta" in options:
            delays.append(Delay(f"beat {name}", "eta", math.inf))
        if "countdown" in options:
            delays.append(Delay(f"beat {name}", "countdown", float(options["countdown"])))
    return delays


def every_delay() -> list[Delay]:
    delays = all_call_site_delays() + beat_delays()
    for task in registered_tasks().values():
        delays += task_retry_delays(task)
    return delays


def visibility_timeout() -> float:
    options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    return float(options["visibility_timeout"])
