"""manage.py gateway_status: spool depth, oldest file, rejections, last error and success."""

from __future__ import annotations

import datetime as dt
import json
import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from referrals.gateway.spool import spool_status


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(dt.timedelta(seconds=round(seconds)))


class Command(BaseCommand):
    help = "Show a gateway spool's depth, oldest file, rejected files and the last error."
    requires_system_checks: list[str] = []  # a gateway has no database to check
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--spool", default=os.environ.get("GATEWAY_SPOOL_DIR"),
                            help="the gateway's spool directory [GATEWAY_SPOOL_DIR]")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["spool"]:
            raise CommandError("--spool (or GATEWAY_SPOOL_DIR) is required")
        try:
            status = spool_status(Path(options["spool"]))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(status, ensure_ascii=False))
            return
        error = status["last_error"] or {}
        titles = status["accepted_calling_ae_titles"]
        lines = [
            f"spool:            {status['spool']}",
            f"waiting:          {status['files']} file(s), {_size(status['bytes'])}",
            f"oldest waiting:   {_age(status['oldest_age_seconds'])}"
            + (f" (received {status['oldest_received_at']})"
               if status["oldest_received_at"] else ""),
            f"rejected:         {status['rejected']} file(s) in rejected/",
            f"last success:     {status['last_success_at'] or '-'}",
            f"last error:       {error.get('at', '-')}"
            + (f" {error.get('message')}" if error else ""),
            f"forwarded:        {status['forwarded_total']} instance(s) in total",
            f"hub in use:       {status['current_hub'] or '-'}",
            "accepted callers: " + (", ".join(titles) if titles else
                                    "none (every association is refused)"
                                    if titles is not None else "unknown"),
        ]
        self.stdout.write("\n".join(lines))
