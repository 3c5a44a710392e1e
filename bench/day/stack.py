"""The stack a day runs against: `make run`'s own script in a data folder of its own, or one
already running. Its processes are noted at the start and must all still run at the end.

`make run` is deploy/local/run-embedded.sh: the embedded PostgreSQL and Valkey (pids in their
pid files under the data folder, alliance/embedded.py) and honcho's web, worker and beat.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .client import http

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "deploy" / "local" / "run-embedded.sh"
PYTHON = ROOT / ".venv" / "bin" / "python"
# (name, words its command line holds) of honcho's programs (deploy/local/Procfile).
PROGRAMS = [
    ("web", ("uvicorn", "alliance.asgi:application")),
    ("worker", ("celery", "worker")),
    ("beat", ("celery", "beat")),
]
TRACEBACK = "Traceback (most recent call last)"
# uvicorn's access log: `127.0.0.1:1234 - "GET /x HTTP/1.1" 500 Internal Server Error`.
ACCESS_5XX = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" 5\d\d\b')


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    base: str
    data_dir: Path | None
    logs: list[Path] = field(default_factory=list)
    script: subprocess.Popen[bytes] | None = None
    processes: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> pid, start
    env: dict[str, str] = field(default_factory=dict)

    # --- Processes ---------------------------------------------------------------------------

    def note_processes(self) -> None:
        """PostgreSQL and Valkey from their pid files; web, worker and beat by command line
        among the processes whose HUB_DATA_DIR is this stack's (or below the script)."""
        found: dict[str, psutil.Process] = {}
        if self.data_dir is not None:
            for name, pid_file in (
                ("postgres", self.data_dir / "postgres" / "data" / "postmaster.pid"),
                ("valkey", self.data_dir / "valkey" / "valkey.pid"),
            ):
                with contextlib.suppress(OSError, ValueError, psutil.NoSuchProcess):
                    found[name] = psutil.Process(int(pid_file.read_text().split()[0]))
        for proc in self._candidates():
            with contextlib.suppress(psutil.Error):
                line = " ".join(proc.cmdline())
                for name, words in PROGRAMS:
                    if name not in found and all(w in line for w in words):
                        found[name] = proc
        for name, proc in found.items():
            with contextlib.suppress(psutil.Error):
                self.processes[name] = (proc.pid, proc.create_time())

    def _candidates(self) -> list[psutil.Process]:
        if self.script is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                return psutil.Process(self.script.pid).children(recursive=True)
        if self.data_dir is None:
            return []
        mine = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("HUB_DATA_DIR") == str(self.data_dir):
                    mine.append(proc)
        return mine

    def missing_programs(self) -> list[str]:
        wanted = [name for name, _ in PROGRAMS]
        if self.data_dir is not None:
            wanted += ["postgres", "valkey"]
        return [name for name in wanted if name not in self.processes]

    def dead(self) -> list[str]:
        """The noted processes that no longer run (same pid *and* start time, not a zombie)."""
        gone = []
        for name, (pid, created) in self.processes.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() != created or proc.status() == psutil.STATUS_ZOMBIE:
                    gone.append(name)
            except psutil.NoSuchProcess:
                gone.append(name)
        return gone

    # --- Logs --------------------------------------------------------------------------------

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_problems(self) -> dict[str, int]:
        text = self.log_text()
        return {
            "tracebacks": text.count(TRACEBACK),
            "5xx in the access log": len(ACCESS_5XX.findall(text)),
        }

    def traceback_excerpt(self, lines: int = 30) -> str:
        text = self.log_text()
        at = text.find(TRACEBACK)
        return "\n".join(text[at:].splitlines()[:lines]) if at >= 0 else ""

    def health(self) -> dict:
        return http().get(f"{self.base}/healthz", timeout=10).json()

    # --- Stopping ----------------------------------------------------------------------------

    def stop(self) -> int | None:
        """As Ctrl-C does: SIGINT to the script's group; its trap stops the servers."""
        if self.script is None:
            return None
        code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.script.pid, signal.SIGINT)
        try:
            code = self.script.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.script.pid, signal.SIGKILL)
            self.script.wait(timeout=10)
        # A script killed before its trap ran leaves its servers (own sessions) running.
        subprocess.run(  # noqa: S603 - our own module
            [str(PYTHON), "-m", "alliance.embedded", "stop"],
            env=self.env,
            cwd=ROOT,
            timeout=120,
            check=False,
            capture_output=True,
        )
        return code


def stack_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """`make run`'s environment: nothing that names a server, so it starts its own."""
    skip = {
        "DATABASE_URL",
        "REDIS_URL",
        "HUB_ENV",
        "DJANGO_SETTINGS_MODULE",
        "HUB_OWNER_DATABASE_URL",
    }
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(
        HUB_DATA_DIR=str(data_dir),
        HUB_PORT=str(free_port()),
        HUB_PG_PORT=str(free_port()),
        HUB_REDIS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def stack_start(data_dir: Path, *, timeout: float = 300, **extra_env: str) -> Stack:
    """deploy/local/run-embedded.sh (what `make run` runs) in `data_dir`, on free ports; returns
    once /healthz answers and the worker's first heartbeat is in."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(data_dir, **extra_env)
    log = data_dir / "run-embedded.log"
    with open(log, "ab") as out:
        script = subprocess.Popen(  # noqa: S603 - the repository's own script
            [str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack = Stack(
        base=f"http://127.0.0.1:{env['HUB_PORT']}",
        data_dir=data_dir,
        logs=[log],
        script=script,
        env=env,
    )
    try:
        stack_wait(stack, timeout=timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


def stack_attach(base: str, data_dir: Path | None, logs: list[Path]) -> Stack:
    """A stack someone else started (`make run` in another terminal)."""
    stack = Stack(base=base.rstrip("/"), data_dir=data_dir, logs=logs)
    stack_wait(stack, timeout=60)
    return stack


def stack_wait(stack: Stack, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if stack.script is not None and stack.script.poll() is not None:
            raise StackError(f"the stack exited ({stack.script.returncode}):\n{_tail(stack)}")
        try:
            health = stack.health()
            last = health
            if health["status"] == "ok" and health["checks"]["worker_heartbeat_age_s"] is not None:
                break
        except Exception as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    else:
        raise StackError(
            f"the hub did not become healthy in {timeout:.0f} s ({last!r})\n{_tail(stack)}"
        )
    stack.note_processes()


def _tail(stack: Stack, lines: int = 40) -> str:
    return "\n".join(stack.log_text().splitlines()[-lines:])
