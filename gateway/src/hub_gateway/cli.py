"""The `hub-gateway` command: `run` the gateway, or print a spool's `status`.

The hub's `manage.py run_gateway` and `manage.py gateway_status` are thin wrappers over
`add_run_arguments` / `run_gateway` and `add_status_arguments` / `status_report`, so both
ways of starting it take the same options and behave the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from .config import SETTINGS, GatewayConfigError, load_config
from .service import Gateway, GatewayStartError
from .spool import SpoolBusyError, spool_status

PACKAGE_LOGGER = "hub_gateway"
DISTRIBUTION = "alliance-hub-gateway"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

RUN_HELP = (
    "Run the clinic's edge gateway: receive DICOM (C-ECHO, C-STORE) from this site's "
    "modalities, spool each instance to disk, forward the spool to the hub's STOW-RS. "
    "Every option can also be set by its GATEWAY_* environment variable; the secret "
    "only by GATEWAY_SECRET or --secret-file."
)
STATUS_HELP = "Show a gateway spool's depth, oldest file, rejected files and the last error."


class GatewayCommandError(Exception):
    """The command cannot do what was asked; the message is meant for the operator."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting; None means "not given", so the env var or default applies."""
    # No abbreviations: `--secret ...` must fail, not be read as `--secret-file`.
    parser.allow_abbrev = False
    for setting in SETTINGS:
        if setting.flag:
            parser.add_argument(
                setting.option,
                dest=setting.name,
                action="store_true",
                default=None,
                help=f"{setting.help} [{setting.env}]",
            )
        else:
            default = f"; default {setting.default}" if setting.default else ""
            parser.add_argument(
                setting.option,
                dest=setting.name,
                default=None,
                help=f"{setting.help} [{setting.env}{default}]",
            )


def run_gateway(options: Mapping[str, Any], *, verbosity: int = 1) -> None:
    """Run until SIGTERM or SIGINT. Raises GatewayCommandError if it cannot start."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    logging.getLogger("pynetdicom").setLevel(logging.INFO if verbosity >= 3 else logging.WARNING)
    try:
        config = load_config(options)
    except GatewayConfigError as exc:
        raise GatewayCommandError(str(exc)) from None

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        Gateway(config).run(stop)
    except (GatewayStartError, SpoolBusyError) as exc:
        raise GatewayCommandError(str(exc)) from None


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool", default=None, help="the gateway's spool directory [GATEWAY_SPOOL_DIR]"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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


def status_report(
    spool: str | None, *, as_json: bool = False, environ: Mapping[str, str] | None = None
) -> str:
    """The spool's state as text for a person, or as one JSON object for monitoring."""
    environ = os.environ if environ is None else environ
    spool = spool or environ.get("GATEWAY_SPOOL_DIR")
    if not spool:
        raise GatewayCommandError("--spool (or GATEWAY_SPOOL_DIR) is required")
    try:
        status = spool_status(Path(spool))
    except FileNotFoundError as exc:
        raise GatewayCommandError(str(exc)) from None
    if as_json:
        return json.dumps(status, ensure_ascii=False)
    error = status["last_error"] or {}
    titles = status["accepted_calling_ae_titles"]
    lines = [
        f"spool:            {status['spool']}",
        f"waiting:          {status['files']} file(s), {_size(status['bytes'])}",
        f"oldest waiting:   {_age(status['oldest_age_seconds'])}"
        + (f" (received {status['oldest_received_at']})" if status["oldest_received_at"] else ""),
        f"rejected:         {status['rejected']} file(s) in rejected/",
        f"last success:     {status['last_success_at'] or '-'}",
        f"last error:       {error.get('at', '-')}" + (f" {error.get('message')}" if error else ""),
        f"forwarded:        {status['forwarded_total']} instance(s) in total",
        f"hub in use:       {status['current_hub'] or '-'}",
        "accepted callers: "
        + (
            ", ".join(titles)
            if titles
            else "none (every association is refused)"
            if titles is not None
            else "unknown"
        ),
    ]
    return "\n".join(lines)


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub-gateway",
        allow_abbrev=False,
        description="The alliance imaging hub's clinic edge gateway: DICOM in, STOW-RS out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,status}")
    run = commands.add_parser(
        "run",
        help="receive DICOM and forward it to the hub",
        description=RUN_HELP,
        allow_abbrev=False,
    )
    add_run_arguments(run)
    run.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=(0, 1, 2, 3),
        default=1,
        help="0 warnings only, 1 the default, 2 every instance, 3 adds pynetdicom's own log",
    )
    status = commands.add_parser(
        "status", help="show the spool's depth and last error", description=STATUS_HELP
    )
    add_status_arguments(status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            # Standalone there is no host program to configure logging: stderr, which
            # systemd's journal (or a container runtime) collects.
            logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
            run_gateway(vars(args), verbosity=args.verbosity)
        else:
            print(status_report(args.spool, as_json=args.json))
    except GatewayCommandError as exc:
        print(f"hub-gateway {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
