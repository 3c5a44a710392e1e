"""What every `manage.py bench_*` command shares: its database, migrations, and output."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import tempfile
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import dj_database_url
import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from psycopg import sql

from . import processes
from .processes import BenchError
from .sites import BenchSite, bench_site, site_purge
from .timing import FigurePrinter, load_now, machine_line


def database_create_if_missing(url: str) -> None:
    """CREATE DATABASE for a benchmark database that does not exist yet (PostgreSQL only)."""
    parsed = dj_database_url.parse(url)
    if "postgresql" not in parsed["ENGINE"]:
        raise CommandError("--database-url must point at PostgreSQL")
    params: dict[str, Any] = {
        "host": parsed.get("HOST") or "127.0.0.1",
        "port": parsed.get("PORT") or 5432,
        "user": parsed.get("USER") or None,
        "password": parsed.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    conninfo = psycopg.conninfo.make_conninfo(
        **{k: str(v) for k, v in params.items() if v is not None}
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        name = str(parsed["NAME"])
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class BenchCommand(BaseCommand):
    """Base of the benchmark commands: `--database-url` re-runs the command on that database
    (settings are read once, at start), pending migrations are applied, and every figure is
    printed as one `FIGURE name = value unit` line."""

    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database-url",
            default="",
            help="PostgreSQL database to run on (made and migrated if missing); "
            "default: DATABASE_URL",
        )
        parser.add_argument(
            "--log-dir",
            default="",
            help="where the started services write their logs "
            "(default: a folder under /tmp, printed)",
        )
        parser.add_argument(
            "--keep-data",
            action="store_true",
            help="keep the instances stored by this run (default: delete its "
            "site's objects and rows at the end)",
        )
        parser.add_argument(
            "--server-env",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="an extra environment variable for the hub processes started "
            "(repeatable), e.g. to measure a settings change",
        )
        self.add_bench_arguments(parser)

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        """Each command's own options."""

    def handle(self, *args: Any, **options: Any) -> None:
        wanted = options["database_url"]
        if wanted and wanted != settings.DATABASE_URL:
            self._rerun_on(wanted)
        if wanted:
            database_create_if_missing(wanted)
        if connection.vendor != "postgresql":
            raise CommandError(
                "the benchmarks run on PostgreSQL: set DATABASE_URL or pass --database-url"
            )
        # A SIGTERM (timeout, Ctrl-C from a supervisor) unwinds like Ctrl-C, so the services
        # this command started are stopped by its `finally` blocks, not left running.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self._run_measured(options)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run_measured(self, options: dict[str, Any]) -> None:
        self.out = FigurePrinter(self.stdout)
        for item in options["server_env"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--server-env takes NAME=VALUE, not {item!r}")
            processes.SERVER_ENV[name] = value
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            self.out.line("applying migrations ...")
            call_command("migrate", interactive=False, verbosity=0)
        self.log_dir = Path(options["log_dir"] or tempfile.mkdtemp(prefix="hub-bench-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        self.out.line(
            f"bench: {self.bench_name} at {now:%Y-%m-%d %H:%M} UTC"
            f" on database {connection.settings_dict['NAME']}; logs in {self.log_dir}"
        )
        self.out.line(machine_line())
        if processes.SERVER_ENV:
            self.out.line(f"hub processes run with extra environment: {processes.SERVER_ENV}")
        self.sites: list[BenchSite] = []
        try:
            self.run(**options)
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if not options["keep_data"]:
                for site in self.sites:
                    site_purge(site.institution)
        self.out.line(f"load at the end: {load_now()}")

    def new_site(self, prefix: str) -> BenchSite:
        """A fresh site for this run; what is stored there is deleted at the end of the run
        unless --keep-data."""
        site = bench_site(prefix=prefix)
        self.sites.append(site)
        return site

    @property
    def bench_name(self) -> str:
        # Each command is written in a module named after it (bench/<area>/bench_<what>.py)
        # that bench/management/commands/ re-exports under the same name.
        return self.__class__.__module__.rsplit(".", 1)[-1]

    def run(self, **options: Any) -> None:
        raise NotImplementedError

    def say(self, text: str) -> None:
        self.out.line(text)

    def _rerun_on(self, url: str) -> None:
        """Settings are read at start: run the command again with DATABASE_URL=url."""
        if len(sys.argv) < 2 or sys.argv[1] != self.bench_name:
            raise CommandError(
                "--database-url works from the command line only; set DATABASE_URL instead"
            )
        database_create_if_missing(url)
        argv, skip = [], False
        for arg in sys.argv:
            if skip:
                skip = False
                continue
            if arg == "--database-url":
                skip = True
                continue
            if arg.startswith("--database-url="):
                continue
            argv.append(arg)
        self.stdout.flush()
        os.execve(  # noqa: S606
            sys.executable,
            [sys.executable, *argv],
            {**os.environ, "DATABASE_URL": url},
        )
