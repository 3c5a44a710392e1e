"""Where institutions sit, local days, modalities, and the exact turnarounds for small
selections. The rollups themselves are computed in SQL (rollup_sql.py), with the same
definitions (primary modality, local day, study day). Nothing here returns a patient
identifier.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from alliance.models import TIER_RANK, Alliance, AllianceMember, Tier
from referrals.models import Referral
from tenants.models import Institution

# Objects that travel with a study but are not an acquisition.
NON_IMAGING = {"SR", "KO", "PR", "DOC", "REG", "SEG"}
REPEAT_DAYS = 30


def local_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_day(at: dt.datetime) -> dt.date:
    return at.astimezone(local_zone()).date()


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=local_zone())


def primary_modality(modalities: str) -> str:
    """ "CT\\SR" → "CT": the first acquisition modality of a study ("OT" when none)."""
    codes = [c.strip().upper() for c in (modalities or "").split("\\") if c.strip()]
    for code in codes:
        if code not in NON_IMAGING:
            return code[:16]
    return "OT"


def day_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as inclusive runs of consecutive days."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + dt.timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def study_day_q(days: Iterable[dt.date], prefix: str = "") -> Q:
    """A study's day is its study date, or the day it arrived when it has none."""
    q = Q(pk__in=[])
    for first, last in day_ranges(days):
        q |= Q(**{f"{prefix}study_date__gte": first, f"{prefix}study_date__lte": last})
        q |= Q(**{f"{prefix}study_date__isnull": True}) & Q(
            **{
                f"{prefix}received_at__gte": day_start(first),
                f"{prefix}received_at__lt": day_start(last + dt.timedelta(days=1)),
            }
        )
    return q


def study_day(study_date: dt.date | None, received_at: dt.datetime) -> dt.date:
    return study_date if study_date is not None else local_day(received_at)


@dataclass(frozen=True)
class Places:
    """Where each institution sits: its tier in each alliance and its region."""

    tiers: dict[tuple[int, int], str]  # (alliance, institution) → tier
    alliances_of: dict[int, list[int]]  # institution → alliances it is a site of
    regions: dict[int, str]

    @classmethod
    def load(cls) -> Places:
        tiers: dict[tuple[int, int], str] = {}
        alliances_of: dict[int, list[int]] = defaultdict(list)
        for alliance_id, inst, tier in AllianceMember.objects.values_list(
            "alliance_id", "institution_id", "tier"
        ):
            tiers[(alliance_id, inst)] = tier
            alliances_of[inst].append(alliance_id)
        # A lead hospital reads for its alliance even when it was never added as a member.
        for alliance_id, lead in Alliance.objects.values_list("pk", "lead_hospital_id"):
            if (alliance_id, lead) not in tiers:
                tiers[(alliance_id, lead)] = Tier.CENTRAL
                alliances_of[lead].append(alliance_id)
        regions = dict(Institution.objects.values_list("pk", "region_code"))
        return cls(tiers=tiers, alliances_of=dict(alliances_of), regions=regions)

    def tier(self, alliance_id: int, institution_id: int | None) -> str:
        if institution_id is None:
            return ""
        return self.tiers.get((alliance_id, institution_id), "")


def direction(source_tier: str, target_tier: str) -> str:
    """ "up" towards the central hospital, "down" towards the grassroots, or "same"."""
    low, high = TIER_RANK.get(source_tier, 0), TIER_RANK.get(target_tier, 0)  # type: ignore[call-overload]
    if not low or not high:
        return "unknown"
    return "up" if high > low else "down" if high < low else "same"


# --- Referrals -------------------------------------------------------------------------------


def reported_turnarounds(
    *,
    alliance_ids: list[int],
    first: dt.date,
    last: dt.date,
    site_ids: list[int] | None,
    institution: int | None,
    modality: str | None,
    priority: str | None,
) -> list[tuple[str, int | None, int]]:
    """(priority, reader, seconds) of every referral requested in [first, last] and signed:
    the exact turnarounds for the API's exact percentiles on a small selection."""
    rows = Referral.objects.filter(
        requested_at__gte=day_start(first),
        requested_at__lt=day_start(last + dt.timedelta(days=1)),
        alliance_id__in=alliance_ids,
        reported_at__isnull=False,
    )
    if site_ids is not None:
        rows = rows.filter(source_id__in=site_ids)
    if institution is not None:  # as the requesting site or as the reader
        rows = rows.filter(Q(source_id=institution) | Q(target_id=institution))
    if priority:
        rows = rows.filter(priority=priority)
    if modality:
        rows = rows.filter(study__modalities__icontains=modality)
    out: list[tuple[str, int | None, int]] = []
    for prio, target, requested_at, reported_at, modalities in rows.values_list(
        "priority", "target_id", "requested_at", "reported_at", "study__modalities"
    ):
        if modality and primary_modality(modalities) != modality:
            continue
        assert reported_at is not None
        out.append((prio, target, max(0, round((reported_at - requested_at).total_seconds()))))
    return out
