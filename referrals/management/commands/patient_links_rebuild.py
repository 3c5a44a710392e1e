"""manage.py patient_links_rebuild: run the patient linker over a whole alliance.

For a new alliance, after changing thresholds, or after configuring issuers: every blocked
pair of the alliance's patient records is scored again. Decisions made by people stand.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from alliance.models import Alliance
from referrals.identity import matching
from referrals.identity.services import alliance_links_rebuild


class Command(BaseCommand):
    help = "Link the patient records of an alliance (or of every alliance) as persons."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--alliance", default="", help="the alliance's code (default: all)")
        parser.add_argument("--upper", type=float, default=matching.UPPER)
        parser.add_argument("--lower", type=float, default=matching.LOWER)

    def handle(self, *args: Any, **options: Any) -> None:
        upper, lower = options["upper"], options["lower"]
        if not 0 <= lower <= upper <= 1:
            raise CommandError("the thresholds must satisfy 0 <= lower <= upper <= 1")
        alliances = Alliance.objects.order_by("code")
        if options["alliance"]:
            alliances = alliances.filter(code=options["alliance"])
            if not alliances.exists():
                raise CommandError(f"no alliance with the code {options['alliance']!r}")
        for alliance in alliances:
            counts = alliance_links_rebuild(alliance_id=alliance.pk, upper=upper, lower=lower)
            summary = ", ".join(f"{name}={value}" for name, value in counts.items())
            self.stdout.write(f"{alliance.code}: {summary}")
