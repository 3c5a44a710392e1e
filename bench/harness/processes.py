"""The real services a benchmark runs against: uvicorn, Orthanc, the gateway, dcmtk.

Every process is started in a session of its own, so stopping it signals its own process
group (uvicorn's supervisor and workers) by the id we started, never a name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)
MANAGE = ROOT / "manage.py"


class BenchError(RuntimeError):
    """A benchmark cannot run (a service did not start, a tool is missing)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http() -> requests.Session:
    """A session that talks to the loopback directly, whatever proxy the machine sets."""
    session = requests.Session()
    session.trust_env = False
    return session


def database_url() -> str:
    """The URL of the database this process uses now (a test database under pytest too)."""
    s = connection.settings_dict
    if connection.vendor != "postgresql":
        raise BenchError("the benchmarks run on PostgreSQL: set DATABASE_URL")
    user = quote(str(s.get("USER") or ""), safe="")
    password = quote(str(s.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{s['NAME']}"


# Extra variables for every hub process a benchmark starts (`--server-env`): to measure a
# settings change before making it.
SERVER_ENV: dict[str, str] = {}


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a hub process started by a benchmark: same database, Redis and data
    folder as this process; DEBUG off (its query log would grow and slow every request); the
    per-user throttle raised, since one benchmark user sends thousands of requests."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DATABASE_URL=database_url(),
        HUB_DATA_DIR=str(settings.DATA_DIR),
        DEBUG="0",
        HUB_ENV=settings.HUB_ENV,
        THROTTLE_USER="10000000/min",
        PYTHONUNBUFFERED="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    env.update(SERVER_ENV)
    env.update(overrides)
    return env


@dataclass
class Service:
    """One started program and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        """This process and its descendants (uvicorn's workers)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by this process and its live descendants."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path = ROOT,
) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(  # noqa: S603 - our own programs, arguments we built
            [str(a) for a in argv],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name=name, popen=popen, log_path=log_path)


def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    watch: Sequence[Service] = (),
    interval: float = 0.1,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing polled for may not answer yet
            last = exc
        for service in watch:
            if not service.alive():
                raise BenchError(
                    f"{service.name} exited while waiting for {what}:\n{service.tail()}"
                )
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout:.0f} s waiting for {what} "
                f"(last error: {last!r})\n" + "\n".join(f"--- {s.name}\n{s.tail()}" for s in watch)
            )
        time.sleep(interval)


def start_uvicorn(
    *, workers: int, log_dir: Path, env: Mapping[str, str] | None = None, name: str = "uvicorn"
) -> Service:
    """The hub as production runs it (deploy/Dockerfile): uvicorn, `workers` processes."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "alliance.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    service = start(name, argv, env=env or child_env(), log_dir=log_dir)
    service.base_url = f"http://127.0.0.1:{port}"
    session = http()

    def ready() -> bool:
        # With several workers, each must have imported the hub: ask until all answered.
        if workers > 1 and len(service.processes()) < workers + 1:
            return False
        return session.get(f"{service.base_url}/healthz", timeout=5).status_code == 200

    wait_until(ready, timeout=120, what="uvicorn to answer /healthz", watch=[service])
    for _ in range(4 * workers):  # every worker warm (imports, first connection)
        session.get(f"{service.base_url}/healthz", timeout=10)
    return service


# --- Orthanc ---------------------------------------------------------------------------------

ORTHANC_BINARY = "/usr/sbin/Orthanc"


def orthanc_ensure_installed(say: Callable[[str], None]) -> str:
    """Orthanc and its DICOMweb plugin from Debian; returns the plugin's .so path."""

    def plugin() -> str | None:
        try:
            listing = subprocess.run(
                ["dpkg", "-L", "orthanc-dicomweb"],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        except FileNotFoundError:
            return None
        found = [
            line for line in listing.splitlines() if line.endswith(".so") and "plugins" in line
        ]
        found = found or [line for line in listing.splitlines() if ".so" in line]
        return found[0] if found and Path(found[0]).exists() else None

    so = plugin()
    if so and Path(ORTHANC_BINARY).exists():
        return so
    if os.geteuid() != 0:
        raise BenchError(
            "Orthanc is not installed and this command is not running as root, so it cannot "
            "install it. Run `sudo apt-get install orthanc orthanc-dicomweb` (Debian), or "
            "pass --no-orthanc to skip the comparison."
        )
    say("installing Debian's orthanc and orthanc-dicomweb with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "orthanc", "orthanc-dicomweb"],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise BenchError(
                f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    so = plugin()
    if not so or not Path(ORTHANC_BINARY).exists():
        raise BenchError("orthanc-dicomweb is installed but its plugin was not found")
    return so


def start_orthanc(*, workdir: Path, plugin: str, log_dir: Path) -> Service:
    """Orthanc with a generated config: loopback only (RemoteAccessAllowed false: Orthanc
    1.10 has no HTTP bind address), no authentication, storage in `workdir`, DICOMweb on."""
    http_port, dicom_port = free_port(), free_port()
    (workdir / "storage").mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "hub-bench-orthanc",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "SaveJobs": False,
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    service = start(
        "orthanc",
        [ORTHANC_BINARY, "--logdir=" + str(log_dir), str(path)],
        env=dict(os.environ),
        log_dir=log_dir,
    )
    service.base_url = f"http://127.0.0.1:{http_port}"
    service.extra.update(dicom_port=dicom_port, aet="ORTHANC")
    session = http()
    wait_until(
        lambda: session.get(f"{service.base_url}/system", timeout=5).ok,
        timeout=60,
        what="Orthanc to answer /system",
        watch=[service],
    )
    plugins = session.get(f"{service.base_url}/plugins", timeout=5).json()
    if "dicom-web" not in plugins:
        raise BenchError(f"Orthanc started without its DICOMweb plugin (plugins: {plugins})")
    return service


# --- dcmtk ---------------------------------------------------------------------------------


def storescu_parallel(
    files: Sequence[Path],
    *,
    port: int,
    called: str,
    calling: str,
    associations: int,
    log_dir: Path,
    timeout: float = 1800,
) -> tuple[float, list[int]]:
    """Send `files` over `associations` parallel storescu runs (one association each);
    returns (seconds from the first start to the last exit, exit codes)."""
    if shutil.which("storescu") is None:
        raise BenchError("dcmtk's storescu is missing: apt-get install dcmtk")
    groups = [list(files[i::associations]) for i in range(associations)]
    procs = []
    log_dir.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    for index, group in enumerate(groups):
        if not group:
            continue
        # One association per process; -nh: a refused file does not stop the others.
        argv = [
            "storescu",
            "-nh",
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, group),
        ]
        log = open(log_dir / f"storescu-{called}-{index}.log", "wb")  # noqa: SIM115
        procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log))  # noqa: S603
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        finally:
            log.close()
    return time.perf_counter() - start_time, codes


# --- Memory --------------------------------------------------------------------------------


class RssSampler:
    """Samples the resident set size of a process tree every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_now(self) -> int:
        try:
            root = psutil.Process(self.pid)
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += child.memory_info().rss
            return int(total)
        except psutil.NoSuchProcess:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.rss_now())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


def orthanc_cstore(
    files: Sequence[Path], *, plugin: str, associations: int, log_dir: Path
) -> tuple[int, float]:
    """C-STORE `files` into a fresh Orthanc over parallel storescu associations;
    returns (instances Orthanc holds afterwards, seconds from first start to last exit)."""
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-orthanc-"))
    orthanc = start_orthanc(workdir=workdir, plugin=plugin, log_dir=log_dir)
    try:
        seconds, _codes = storescu_parallel(
            files,
            port=orthanc.extra["dicom_port"],
            called=orthanc.extra["aet"],
            calling="BENCH_CT",
            associations=associations,
            log_dir=log_dir,
        )
        held = orthanc_count(orthanc)
    finally:
        orthanc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return held, seconds


def orthanc_count(orthanc: Service) -> int:
    stats = http().get(f"{orthanc.base_url}/statistics", timeout=30).json()
    return int(stats.get("CountInstances", 0))
