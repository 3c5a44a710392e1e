"""manage.py gateway_status: the gateway package's `hub-gateway status`, for the hub's scripts."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from hub_gateway.cli import STATUS_HELP, GatewayCommandError, add_status_arguments, status_report


class Command(BaseCommand):
    help = STATUS_HELP
    requires_system_checks: list[str] = []  # a gateway has no database to check
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_status_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.stdout.write(status_report(options["spool"], as_json=options["json"]))
        except GatewayCommandError as exc:
            raise CommandError(str(exc)) from None
