"""`make soak` / `python -m bench.day`: the scripted day, then a soak, with a PASS/FAIL line.

    python -m bench.day                      # starts `make run`'s stack in a fresh data folder
    python -m bench.day --minutes 5
    python -m bench.day --url http://127.0.0.1:8000 --data-dir var --log run.log
                                             # a hub already running (`make run` elsewhere)

The environment gives the defaults `make soak` passes on: SOAK_MINUTES (60), SOAK_URL,
SOAK_DATA_DIR (the running hub's HUB_DATA_DIR: its processes are checked), SOAK_LOGS (files
to search for tracebacks and 5xx, separated by ':').
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .run import day_run
from .stack import Stack, stack_attach, stack_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.day", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 60)
    )
    parser.add_argument("--url", default=os.environ.get("SOAK_URL", ""))
    parser.add_argument("--data-dir", default=os.environ.get("SOAK_DATA_DIR", ""))
    parser.add_argument(
        "--log",
        action="append",
        default=[p for p in os.environ.get("SOAK_LOGS", "").split(":") if p],
    )
    parser.add_argument("--no-journeys", action="store_true", help="the soak only")
    parser.add_argument("--uploaders", type=int, default=1, help="clinic upload threads")
    parser.add_argument("--keep", action="store_true", help="keep the started stack's data folder")
    args = parser.parse_args(argv)

    started = not args.url
    stack: Stack
    if started:
        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="hub-soak-"))
        print(f"starting `make run`'s stack in {data_dir} ...", flush=True)
        stack = stack_start(data_dir)
    else:
        stack = stack_attach(
            args.url,
            Path(args.data_dir).resolve() if args.data_dir else None,
            [Path(p) for p in args.log],
        )
    try:
        result = day_run(
            stack,
            soak_seconds=args.minutes * 60,
            journeys=not args.no_journeys,
            uploaders=args.uploaders,
            out=lambda line: print(line, flush=True),
        )
    finally:
        if started:
            code = stack.stop()
            print(f"stack stopped (script exit {code})", flush=True)
            if not args.keep and not args.data_dir and stack.data_dir is not None:
                shutil.rmtree(stack.data_dir, ignore_errors=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
