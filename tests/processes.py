"""Real processes for the integration tests: start, wait for, stop, and prove nothing is left.

Every process starts in a session of its own, so a signal to its process group reaches the
program and its children (a Celery pool, a shell) and never pytest itself. Waits are
bounded polls that fail with the tail of the process's log, never bare sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import requests
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http() -> requests.Session:
    """A requests session that talks to the loopback directly, whatever proxy is set."""
    session = requests.Session()
    session.trust_env = False
    return session


def open_socket(url: str, headers: Mapping[str, str]) -> ClientConnection:
    """A websocket client; use it as a context manager so it is always closed."""
    return connect(url, additional_headers=dict(headers), proxy=None, open_timeout=10)


def base_env(**overrides: str) -> dict[str, str]:
    """The test's environment without the variables that pick the backing services."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "HUB_ENV", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(PYTHONUNBUFFERED="1", **overrides)
    return env


@dataclass
class Proc:
    """One started program: its Popen, the file its output goes to, what we saw of it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create_time

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def note_descendants(self) -> list[psutil.Process]:
        """Remember every process below this one (they move to init if it dies first)."""
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen[child.pid] = child.create_time()
        return found

    def survivors(self) -> list[int]:
        """Pids seen below this process that still run (same pid *and* start time)."""
        left = []
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                continue
        return left

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Ask the process group to stop; after `timeout` s, SIGKILL it and all we saw."""
        if self.alive():
            self.note_descendants()
            self.signal_group(sig)
        code = self.wait(timeout)
        self.kill()
        return code

    def kill(self) -> None:
        """Leave nothing behind, whatever state the test ended in."""
        self.note_descendants()
        self.signal_group(signal.SIGKILL)
        for pid in self.survivors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.wait(10)


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path = ROOT,
) -> Proc:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log_path=log_path)


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    watch: Sequence[Proc] = (),
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds.

    A watched process that exits meanwhile fails the wait at once, with its log.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing polled for may not answer yet
            last_error = exc
        for proc in watch:
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited ({proc.popen.returncode}) while waiting for {what}:\n"
                    f"{proc.tail()}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in watch)
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})"
                f"\n{logs}"
            )
        time.sleep(interval)


def wait_for_http(url: str, *, timeout: float, watch: Sequence[Proc] = ()) -> requests.Response:
    """Wait until `url` answers 200 and return that response."""

    session = http()

    def answered() -> requests.Response | None:
        response = session.get(url, timeout=2)
        return response if response.status_code == 200 else None

    return wait_until(answered, timeout=timeout, what=f"200 from {url}", interval=0.2, watch=watch)


def processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Every running process whose environment has `name=value` (a per-test marker)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.pid != os.getpid()
                and proc.status() != psutil.STATUS_ZOMBIE
                and proc.environ().get(name) == value
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
