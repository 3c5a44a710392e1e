"""Helpers of the referral workflow, routing, concurrency and escalation tests.

`referral_row` makes a referral in any status straight in the database (no services, no
tasks), so a test can start from the exact state it is about.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone, translation

from alliance.models import PoolMember, ReaderPool
from referrals.models import PRIORITY_RANK, Priority, Referral, ReferralStudy, Study
from tenants import access
from tenants.models import Institution, Role, User

from .conftest import World, _person
from .referral_support import study_at


@pytest.fixture(autouse=True)
def _records_in_english(settings):
    """English as the hub's language (what the services write records in) and this
    thread's, for the tests whose expected texts are English: import it into the module."""
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def scope(user: User, institution: Institution) -> access.Scope:
    return access.scope_for_user(user, institution_id=institution.pk)


def referral_row(
    world: World,
    *,
    study: Study | None = None,
    status: str = "requested",
    priority: str = Priority.ROUTINE,
    kind: str = "remote_read",
    now: dt.datetime | None = None,
    minutes: int = 120,
    warn_minutes: int = 60,
    **fields: Any,
) -> Referral:
    now = now or timezone.now()
    study = study or study_at(world.clinic)
    referral = Referral.objects.create(
        alliance=world.north,
        kind=kind,
        study=study,
        source=world.clinic,
        priority=priority,
        priority_rank=PRIORITY_RANK[Priority(priority)],
        status=status,
        requested_by=world.alice,
        requested_at=now,
        deadline_at=now + dt.timedelta(minutes=minutes),
        warn_at=now + dt.timedelta(minutes=warn_minutes),
        **fields,
    )
    ReferralStudy.objects.create(referral=referral, study=study)
    return referral


def readers(
    world: World, pool: ReaderPool, n: int, *, capacity: int = 10, prefix: str = "reader"
) -> list[User]:
    """`n` radiologists of the reading hospital, each a member of `pool`."""
    made = []
    for i in range(n):
        user = _person(
            f"{prefix}{i}", f"读片{i}", f"{prefix.title()} {i}", world.reader, Role.RADIOLOGIST
        )
        PoolMember.objects.create(pool=pool, user=user, capacity=capacity)
        made.append(user)
    return made
