"""manage.py seed_scale: the referral benchmarks' world (200 sites, 1,000,000 studies, their
referral history) written into PostgreSQL in minutes; refuses on a database that has it."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench.scale.seed import SeedRefusedError, default_open, seed_scale, seeded_studies


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Seed alliances of 200 sites in tiers, reader pools, rules and readers, 1,000,000 "
        "studies and a referral history (most delivered, a few thousand open), then "
        "ANALYZE. Refuses if the database already holds them."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--studies", type=int, default=1_000_000)
        parser.add_argument("--sites", type=int, default=200)
        parser.add_argument(
            "--open",
            type=int,
            default=None,
            help="open referrals (default: studies/300, at most 3000)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("seed_scale writes with PostgreSQL's own SQL: set DATABASE_URL")
        if options["studies"] < 1 or options["sites"] < 3:
            raise CommandError("--studies must be at least 1 and --sites at least 3")
        if seeded_studies():
            self.stdout.write(
                f"already seeded: {seeded_studies()} studies; nothing to do "
                "(drop and re-create the database to seed again)"
            )
            return
        open_cases = (
            options["open"] if options["open"] is not None else default_open(options["studies"])
        )
        self.stdout.write(
            f"seeding {options['studies']} studies over {options['sites']} "
            f"sites, {open_cases} open referrals, on database "
            f"{connection.settings_dict['NAME']} ..."
        )
        try:
            summary = seed_scale(
                studies=options["studies"],
                sites=options["sites"],
                open_cases=open_cases,
                say=self.stdout.write,
            )
        except SeedRefusedError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"seeded {summary.studies} studies, {summary.referrals} referrals "
            f"({summary.open_referrals} open), {summary.events} events, {summary.grants} "
            f"grants in {summary.seconds:.1f} s"
        )
