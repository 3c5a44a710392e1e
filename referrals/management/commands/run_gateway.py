"""manage.py run_gateway: the clinic's edge gateway (DICOM SCP + spool + STOW-RS forwarder).

It needs no database: it talks to the hub over HTTP only (docs/gateway.md).
"""

from __future__ import annotations

import logging
import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from referrals.gateway.config import SETTINGS, GatewayConfigError, load_config
from referrals.gateway.service import Gateway, GatewayStartError
from referrals.gateway.spool import SpoolBusyError


class Command(BaseCommand):
    help = ("Run the clinic's edge gateway: receive DICOM (C-ECHO, C-STORE) from this site's "
            "modalities, spool each instance to disk, forward the spool to the hub's STOW-RS. "
            "Every option can also be set by its GATEWAY_* environment variable; the secret "
            "only by GATEWAY_SECRET or --secret-file.")
    # No system checks and no ORM: a gateway at a clinic has no database to check.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        # No abbreviations: `--secret ...` must fail, not be read as `--secret-file`.
        parser.allow_abbrev = False
        for setting in SETTINGS:
            if setting.flag:
                parser.add_argument(setting.option, dest=setting.name, action="store_true",
                                    default=None, help=f"{setting.help} [{setting.env}]")
            else:
                default = f"; default {setting.default}" if setting.default else ""
                parser.add_argument(setting.option, dest=setting.name, default=None,
                                    help=f"{setting.help} [{setting.env}{default}]")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        logging.getLogger("referrals.gateway").setLevel(
            {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
        logging.getLogger("pynetdicom").setLevel(
            logging.INFO if verbosity >= 3 else logging.WARNING)
        try:
            config = load_config(options)
        except GatewayConfigError as exc:
            raise CommandError(str(exc)) from None

        stop = threading.Event()

        def request_stop(signum: int, _frame: Any) -> None:
            logging.getLogger("referrals.gateway").info(
                "%s received", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            Gateway(config).run(stop)
        except (GatewayStartError, SpoolBusyError) as exc:
            raise CommandError(str(exc)) from None
