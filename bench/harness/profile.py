"""Sampling profiles of the hub's processes with py-spy, summarised as text for the report."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from .processes import BenchError


class PySpy:
    """`py-spy record` of a process and its children (uvicorn's workers), collapsed stacks."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        binary = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
        if not Path(binary).exists():
            raise BenchError("py-spy is missing: pip install py-spy (it is in the dev extras)")
        self.output = output
        self.argv = [
            binary,
            "record",
            "-p",
            str(pid),
            "--subprocesses",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(output),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        self.log = open(self.output.with_suffix(".log"), "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)  # noqa: S603
        time.sleep(1.0)  # py-spy attaches before the measured work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def summarise(
    collapsed: Path,
    *,
    top: int = 15,
    own_prefixes: tuple[str, ...] = ("referrals", "tenants", "alliance"),
) -> str:
    """The busiest functions of a collapsed-stack file: inclusive share of samples.

    Idle samples (a worker waiting in its event loop's select) are left out, so the shares
    are of the time the process was doing something.
    """
    if not collapsed.exists():
        return f"(no profile written: see {collapsed.with_suffix('.log')})"
    inclusive: Counter[str] = Counter()
    own_inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _sep, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames or any(
            idle in frames[-1]
            for idle in ("select (", "epoll", "_run_once", "wait (threading", "poll (")
        ):
            continue
        total += count
        names = []
        for frame in frames:
            name = frame.split(" (")[0]
            where = frame.split(" (", 1)[1].rstrip(")") if " (" in frame else ""
            names.append((name, where))
        seen: set[str] = set()
        for name, where in names:
            module = where.split(":")[0]
            key = f"{name} ({module.split('site-packages/')[-1]})"
            if key in seen:
                continue
            seen.add(key)
            inclusive[key] += count
            if any(f"/{p}/" in where or where.startswith(p) for p in own_prefixes):
                own_inclusive[key] += count
        name, where = names[-1]
        leaf[f"{name} ({where.split('site-packages/')[-1]})"] += count
    if not total:
        return "(no busy samples)"
    lines = [f"{total} busy samples"]
    lines.append("hub functions, inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in own_inclusive.most_common(top)]
    lines.append("all functions, inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)]
    lines.append("leaf functions (self time):")
    lines += [f"  {100 * n / total:5.1f}%  {k}" for k, n in leaf.most_common(top)]
    return "\n".join(lines)
