"""manage.py analytics_refresh [--full]: bring the analytics rollups up to date now."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from alliance.analytics.refresh import analytics_refresh


class Command(BaseCommand):
    help = (
        "Recompute the analytics rollups for the days touched since the last refresh "
        "(--full: every day from scratch) and print how long it took."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--full", action="store_true", help="recompute every day, not only those touched"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = analytics_refresh(full=options["full"])
        kind = "full" if result.full else "incremental"
        self.stdout.write(
            f"analytics refresh ({kind}): {result.reading_days} referral days, "
            f"{result.study_days} study days in {result.seconds:.2f} s; "
            f"figures as of {result.refreshed_at:%Y-%m-%d %H:%M:%S %Z}"
        )
