"""Reading the operational tables for the rollups: one row of facts per referral or study.

The only place analytics reads referrals, reports, second reads, critical findings and
studies. What leaves it is dimensions (institutions, tiers, modality, priority, day) and
counts: the patient key is used inside `study_facts` to find repeat examinations and is
never returned.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Q

from alliance.models import TIER_RANK, Alliance, AllianceMember, Tier
from referrals.models import Referral, ReferralKind, ReferralStatus, ReferralStudy, Study
from reporting.models import CriticalFinding, SecondRead, SecondReadOutcome
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
    """"CT\\SR" → "CT": the first acquisition modality of a study ("OT" when none)."""
    codes = [c.strip().upper() for c in (modalities or "").split("\\") if c.strip()]
    for code in codes:
        if code not in NON_IMAGING:
            return code[:16]
    return "OT"


def primary_body_part(body_parts: str) -> str:
    return (body_parts or "").split("\\")[0].strip().upper()


def day_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as inclusive runs of consecutive days."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + dt.timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def instant_q(field: str, days: Iterable[dt.date]) -> Q:
    """`field` (a timestamp) falls on one of `days` (local calendar days)."""
    q = Q(pk__in=[])
    for first, last in day_ranges(days):
        q |= Q(**{f"{field}__gte": day_start(first),
                  f"{field}__lt": day_start(last + dt.timedelta(days=1))})
    return q


def study_day_q(days: Iterable[dt.date], prefix: str = "") -> Q:
    """A study's day is its study date, or the day it arrived when it has none."""
    q = Q(pk__in=[])
    for first, last in day_ranges(days):
        q |= Q(**{f"{prefix}study_date__gte": first, f"{prefix}study_date__lte": last})
        q |= Q(**{f"{prefix}study_date__isnull": True}) & Q(**{
            f"{prefix}received_at__gte": day_start(first),
            f"{prefix}received_at__lt": day_start(last + dt.timedelta(days=1))})
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
                "alliance_id", "institution_id", "tier"):
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
    """"up" towards the central hospital, "down" towards the grassroots, or "same"."""
    low, high = TIER_RANK.get(source_tier, 0), TIER_RANK.get(target_tier, 0)  # type: ignore[call-overload]
    if not low or not high:
        return "unknown"
    return "up" if high > low else "down" if high < low else "same"


# --- Referrals -------------------------------------------------------------------------------


@dataclass
class ReferralFact:
    day: dt.date
    alliance_id: int
    site_id: int
    reader_id: int | None
    modality: str
    priority: str
    kind: str
    status: str
    return_reason: str
    tat_seconds: int | None
    breached: bool
    escalations: int
    second_reads: list[str]
    critical: list[tuple[dt.datetime, dt.datetime | None, int, int]]
    priors_shared: bool


def referral_facts(days: Iterable[dt.date] | None) -> Iterator[ReferralFact]:
    """One fact per referral requested on `days` (None: every referral)."""
    day_list = None if days is None else sorted(set(days))
    where = Q() if day_list is None else instant_q("requested_at", day_list)
    related = Q() if day_list is None else instant_q("referral__requested_at", day_list)
    reads: dict[int, list[str]] = defaultdict(list)
    for referral_id, outcome in SecondRead.objects.filter(
            instant_q("report__referral__requested_at", day_list) if day_list is not None
            else Q()).values_list("report__referral_id", "outcome"):
        reads[referral_id].append(outcome)
    findings: dict[int, list[tuple[dt.datetime, dt.datetime | None, int, int]]] = \
        defaultdict(list)
    for referral_id, flagged, acked, minutes, level in CriticalFinding.objects.filter(
            related).values_list("referral_id", "flagged_at", "acknowledged_at",
                                 "ack_minutes", "level"):
        findings[referral_id].append((flagged, acked, minutes, level))
    shared = set(ReferralStudy.objects.filter(related, is_prior=True)
                 .exclude(study__institution_id=F("referral__source_id"))
                 .values_list("referral_id", flat=True).distinct())
    rows = Referral.objects.filter(where).values_list(
        "pk", "alliance_id", "source_id", "target_id", "kind", "priority", "status",
        "requested_at", "reported_at", "breached_at", "escalation_level", "return_reason",
        "study__modalities")
    for (pk, alliance_id, source_id, target_id, kind, priority, status, requested_at,
         reported_at, breached_at, escalation_level, return_reason, modalities) \
            in rows.iterator(chunk_size=5000):
        tat = None
        if reported_at is not None:
            tat = max(0, round((reported_at - requested_at).total_seconds()))
        yield ReferralFact(
            day=local_day(requested_at), alliance_id=alliance_id, site_id=source_id,
            reader_id=target_id, modality=primary_modality(modalities), priority=priority,
            kind=kind, status=status, return_reason=return_reason or "", tat_seconds=tat,
            breached=breached_at is not None, escalations=escalation_level,
            second_reads=reads.get(pk, []), critical=findings.get(pk, []),
            priors_shared=pk in shared)


def is_discrepancy(outcome: str) -> tuple[int, int]:
    return (int(outcome == SecondReadOutcome.MINOR), int(outcome == SecondReadOutcome.MAJOR))


def reported_turnarounds(*, alliance_ids: list[int], first: dt.date, last: dt.date,
                         site_ids: list[int] | None, institution: int | None,
                         modality: str | None, priority: str | None
                         ) -> list[tuple[str, int | None, int]]:
    """(priority, reader, seconds) of every referral requested in [first, last] and signed:
    the exact turnarounds for the API's exact percentiles on a small selection."""
    rows = Referral.objects.filter(
        requested_at__gte=day_start(first),
        requested_at__lt=day_start(last + dt.timedelta(days=1)),
        alliance_id__in=alliance_ids, reported_at__isnull=False)
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
            "priority", "target_id", "requested_at", "reported_at", "study__modalities"):
        if modality and primary_modality(modalities) != modality:
            continue
        assert reported_at is not None
        out.append((prio, target, max(0, round((reported_at - requested_at).total_seconds()))))
    return out


# --- Studies ---------------------------------------------------------------------------------


@dataclass
class StudyFact:
    day: dt.date
    site_id: int
    modality: str
    remote_read: bool
    repeat: bool
    repeat_cross_site: bool


def study_facts(days: Iterable[dt.date] | None) -> Iterator[StudyFact]:
    """One fact per study made on `days` (None: every study), with its repeat status.

    A repeat is a study of a body part that the same patient (by patient key) had examined
    in the 30 days before, at any site; "cross-site" when one of those was at another site.
    """
    day_set = None if days is None else set(days)
    if day_set is None:
        window = Q()
        remote = Q()
    else:
        lookback = {d - dt.timedelta(days=n) for d in day_set for n in range(REPEAT_DAYS + 1)}
        window = study_day_q(lookback)
        remote = study_day_q(day_set, prefix="study__")
    read_remotely = set(Referral.objects.filter(remote, kind=ReferralKind.REMOTE_READ)
                        .exclude(status=ReferralStatus.CANCELLED)
                        .values_list("study_id", flat=True).distinct())
    rows = (Study.objects.filter(window)
            .values_list("pk", "institution_id", "study_date", "received_at", "modalities",
                         "body_parts", "patient_key")
            .order_by("patient_key", "study_date", "received_at", "pk"))
    # Earlier studies of the current patient: (day, site, body part), newest last.
    history: list[tuple[dt.date, int, str]] = []
    current_key: str | None = None
    for pk, site, study_date, received_at, modalities, body_parts, key \
            in rows.iterator(chunk_size=5000):
        day = study_day(study_date, received_at)
        part = primary_body_part(body_parts)
        if key != current_key:
            history, current_key = [], key
        earlier = [h for h in history if part and key and h[2] == part
                   and (day - h[0]).days <= REPEAT_DAYS]
        history.append((day, site, part))
        if day_set is not None and day not in day_set:
            continue
        yield StudyFact(day=day, site_id=site, modality=primary_modality(modalities),
                        remote_read=pk in read_remotely, repeat=bool(earlier),
                        repeat_cross_site=any(h[1] != site for h in earlier))
