"""manage.py reconcile_storage: index vs. object storage; exit 1 if any row lacks its object."""

from __future__ import annotations

import datetime as dt
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from referrals.archive.storage_reconcile import storage_reconcile


def _minutes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number of minutes") from None
    if value < 1:
        # An object is written before its row commits: a zero grace period could delete an
        # instance that is being stored right now.
        raise ArgumentTypeError("the grace period must be at least 1 minute")
    return value


class Command(BaseCommand):
    help = (
        "Compare Instance rows with the objects under instances/ in storage: report "
        "orphans (objects without rows), lost objects (rows without objects) and size "
        "or hash mismatches. Exits 1 if any row lacks its object or has a damaged one."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--verify-hash", action="store_true", help="read every object and recompute its SHA-256"
        )
        parser.add_argument(
            "--delete-orphans",
            action="store_true",
            help="delete objects without rows (needs --older-than)",
        )
        parser.add_argument(
            "--older-than",
            type=_minutes,
            metavar="MINUTES",
            help="only orphans last written this many minutes ago or more",
        )
        parser.add_argument(
            "--listdir",
            action="store_true",
            help="walk storage with listdir even where a faster listing exists",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["delete_orphans"] and options["older_than"] is None:
            raise CommandError("--delete-orphans needs --older-than MINUTES")
        grace = dt.timedelta(minutes=options["older_than"]) if options["delete_orphans"] else None
        report = storage_reconcile(
            verify_hash=options["verify_hash"],
            delete_orphans_older_than=grace,
            listdir=options["listdir"],
        )
        for obj in report.orphans:
            state = "deleted" if obj.key in report.deleted else "kept"
            self.stdout.write(f"orphan ({state}): {obj.key}")
        for key in report.unexpected:
            self.stdout.write(f"unexpected object (not made by the hub, kept): {key}")
        for item in report.lost:
            self.stderr.write(f"LOST: instance {item.instance_id} has no object {item.key}")
        for item in report.damaged:
            self.stderr.write(f"DAMAGED: instance {item.instance_id} {item.key}: {item.detail}")
        summary = (
            f"{report.rows} rows, {report.objects} objects: {len(report.lost)} lost, "
            f"{len(report.damaged)} damaged, {len(report.orphans)} orphans "
            f"({len(report.deleted)} deleted), {len(report.unexpected)} unexpected"
        )
        if not report.consistent:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
