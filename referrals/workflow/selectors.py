"""Reads of the referral workflow for pages that are not the referral's own.

`clinic_home_referrals` is what the clinic's home page shows: what is still waiting for a
report, and what came back and is not acknowledged yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import F, QuerySet
from django.utils import timezone

from tenants import access

from ..models import OPEN_STATUSES, Referral, ReferralStatus

RESULT_STATUSES = (ReferralStatus.REPORTED, ReferralStatus.DELIVERED)
"""A report came back and the clinic has not acknowledged it yet."""


@dataclass(frozen=True)
class HomeReferral:
    referral: Referral
    now: dt.datetime

    @property
    def overdue(self) -> bool:
        return self.referral.status in OPEN_STATUSES and self.referral.deadline_at <= self.now

    @property
    def breached(self) -> bool:
        return self.referral.breached_at is not None or self.overdue


@dataclass(frozen=True)
class ClinicHome:
    waiting: list[HomeReferral]
    waiting_count: int
    results: list[HomeReferral]
    results_count: int


def _sent(scope: access.Scope) -> QuerySet[Referral]:
    institution_id = getattr(scope.institution, "pk", None)
    return (
        access.visible(scope, Referral)
        .filter(source_id=institution_id)
        .select_related("study", "target")
    )


def clinic_home_referrals(
    *, scope: access.Scope, limit: int = 10, now: dt.datetime | None = None
) -> ClinicHome:
    """The institution's open requests (newest first) and its unacknowledged results (newest
    report first), at most `limit` of each, with how many there are in all. Four queries."""
    now = now or timezone.now()
    sent = _sent(scope)
    waiting = sent.filter(status__in=list(OPEN_STATUSES))
    results = sent.filter(status__in=list(RESULT_STATUSES))
    return ClinicHome(
        waiting=[HomeReferral(r, now) for r in waiting.order_by("-requested_at", "-pk")[:limit]],
        waiting_count=waiting.count(),
        results=[
            HomeReferral(r, now)
            for r in results.order_by(F("reported_at").desc(nulls_last=True), "-pk")[:limit]
        ],
        results_count=results.count(),
    )
