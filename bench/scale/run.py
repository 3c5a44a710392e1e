"""What the referral benchmarks share: the scale world made if missing, its open cases'
clocks brought to now, and readers with API tokens."""

from __future__ import annotations

import datetime as dt
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.db import connection
from knox.models import AuthToken

from alliance.models import Alliance
from tenants.models import User

from .seed import seed_scale, seeded_studies
from .world import PREFIX, world_exists


def add_world_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--studies",
        type=int,
        default=1_000_000,
        help="studies to seed when the database holds no scale world yet "
        "(default 1,000,000; see manage.py seed_scale)",
    )
    parser.add_argument("--sites", type=int, default=200)


def world_ensure(options: dict[str, Any], say: Callable[[str], None]) -> int:
    """The scale world's study count, seeding it first on an empty database."""
    if not world_exists():
        say(
            f"no scale world in this database: seeding {options['studies']} studies over "
            f"{options['sites']} sites (manage.py seed_scale does the same) ..."
        )
        summary = seed_scale(studies=options["studies"], sites=options["sites"], say=say)
        say(f"seeded in {summary.seconds:.1f} s")
    studies = seeded_studies()
    moved = open_cases_redate()
    if moved:
        say(
            f"open cases' clocks moved forward by {moved} (seeded earlier): the sweep finds "
            "the world as the seed left it, not a day of missed deadlines"
        )
    return studies


def scale_alliance_ids() -> list[int]:
    return list(Alliance.objects.filter(code__startswith=PREFIX).values_list("pk", flat=True))


def open_cases_redate() -> dt.timedelta | None:
    """Shift the open cases' times so the newest was requested now.

    The seed times open cases from the moment it ran; a benchmark an hour (or a week) later
    would otherwise start with every deadline past and the beat sweep busy escalating them.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT now() - max(requested_at) FROM referrals_referral
            WHERE alliance_id = ANY(%s) AND status IN ('routed', 'claimed', 'reporting')
            """,
            [scale_alliance_ids()],
        )
        row = cursor.fetchone()
        shift = row[0] if row else None
        if shift is None or shift < dt.timedelta(minutes=1):
            return None
        cursor.execute(
            """
            UPDATE referrals_referral SET requested_at = requested_at + %(s)s,
                deadline_at = deadline_at + %(s)s, warn_at = warn_at + %(s)s,
                warned_at = warned_at + %(s)s, breached_at = breached_at + %(s)s,
                routed_at = routed_at + %(s)s, claimed_at = claimed_at + %(s)s,
                opened_at = opened_at + %(s)s
            WHERE alliance_id = ANY(%(a)s) AND status IN ('routed', 'claimed', 'reporting')
            """,
            {"s": shift, "a": scale_alliance_ids()},
        )
    return shift


def token_for(user: User) -> str:
    _instance, token = AuthToken.objects.create(user=user)
    return token
