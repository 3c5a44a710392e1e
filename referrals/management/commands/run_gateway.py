"""manage.py run_gateway: the gateway package's `hub-gateway run`, for the hub's own scripts.

The gateway lives in its own installable (gateway/, `hub_gateway`); this wrapper only hands
Django's parsed options to it, so both commands take the same options (docs/gateway.md).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from hub_gateway.cli import RUN_HELP, GatewayCommandError, add_run_arguments, run_gateway


class Command(BaseCommand):
    help = RUN_HELP
    # No system checks and no ORM: a gateway at a clinic has no database to check.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_run_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run_gateway(options, verbosity=int(options.get("verbosity", 1)))
        except GatewayCommandError as exc:
            raise CommandError(str(exc)) from None
