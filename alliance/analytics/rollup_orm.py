"""The rollup refresh through the ORM, for the embedded SQLite default.

PostgreSQL (the production shape) computes the rollups with the set-based statements of
rollup_sql.py. The embedded hub (`make run`, SQLite) computes the same day rows here, in
Python over the operational rows, with the same definitions (docs/analytics.md), then sums
the months; `tests/test_analytics_portable.py` checks that both give identical rows. It
reads every referral and study of the days it recomputes, so it is meant for the embedded
hub's volumes (a demo, a small clinic), not for a region.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q

from referrals.models import Referral, ReferralKind, ReferralStatus, ReferralStudy, Study
from reporting.models import CriticalFinding, SecondRead, SecondReadOutcome

from . import facts
from .buckets import BUCKET_FIELDS, bucket_of
from .models import Grain, ReadingRollup, StudyRollup
from .rollup_sql import READING_DIMS, READING_MEASURES, STUDY_DIMS, STUDY_MEASURES

_M = {name: i for i, name in enumerate(READING_MEASURES)}
_FIRST_BUCKET = _M[BUCKET_FIELDS[0]]
_WS = " \t\r\n\f\v"  # what the SQL trims (ASCII whitespace)


def primary_body_part(body_parts: str) -> str:
    return (body_parts or "").split("\\")[0].strip(_WS).upper()


def instant_q(field: str, days: Iterable[dt.date]) -> Q:
    """`field` (a timestamp) falls on one of `days` (local calendar days)."""
    q = Q(pk__in=[])
    for first, last in facts.day_ranges(days):
        q |= Q(
            **{
                f"{field}__gte": facts.day_start(first),
                f"{field}__lt": facts.day_start(last + dt.timedelta(days=1)),
            }
        )
    return q


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


def referral_facts(days: Sequence[dt.date] | None) -> Iterator[ReferralFact]:
    """One fact per referral requested on `days` (None: every referral)."""
    where = Q() if days is None else instant_q("requested_at", days)
    related = Q() if days is None else instant_q("referral__requested_at", days)
    reads: dict[int, list[str]] = defaultdict(list)
    for referral_id, outcome in SecondRead.objects.filter(
        Q() if days is None else instant_q("report__referral__requested_at", days)
    ).values_list("report__referral_id", "outcome"):
        reads[referral_id].append(outcome)
    findings: dict[int, list[tuple[dt.datetime, dt.datetime | None, int, int]]] = defaultdict(list)
    for referral_id, flagged, acked, minutes, level in CriticalFinding.objects.filter(
        related
    ).values_list("referral_id", "flagged_at", "acknowledged_at", "ack_minutes", "level"):
        findings[referral_id].append((flagged, acked, minutes, level))
    shared = set(
        ReferralStudy.objects.filter(related, is_prior=True)
        .exclude(study__institution_id=F("referral__source_id"))
        .values_list("referral_id", flat=True)
        .distinct()
    )
    rows = Referral.objects.filter(where, alliance_id__isnull=False).values_list(
        "pk",
        "alliance_id",
        "source_id",
        "target_id",
        "kind",
        "priority",
        "status",
        "requested_at",
        "reported_at",
        "breached_at",
        "escalation_level",
        "return_reason",
        "study__modalities",
    )
    for (
        pk,
        alliance_id,
        source_id,
        target_id,
        kind,
        priority,
        status,
        requested_at,
        reported_at,
        breached_at,
        escalation_level,
        return_reason,
        modalities,
    ) in rows.iterator(chunk_size=5000):
        tat = None
        if reported_at is not None:
            tat = max(0, round((reported_at - requested_at).total_seconds()))
        yield ReferralFact(
            day=facts.local_day(requested_at),
            alliance_id=alliance_id,
            site_id=source_id,
            reader_id=target_id,
            modality=facts.primary_modality(modalities),
            priority=priority,
            kind=kind,
            status=status,
            return_reason=return_reason or "",
            tat_seconds=tat,
            breached=breached_at is not None,
            escalations=escalation_level,
            second_reads=reads.get(pk, []),
            critical=findings.get(pk, []),
            priors_shared=pk in shared,
        )


def reading_rows(days: Sequence[dt.date] | None, places: facts.Places) -> list[ReadingRollup]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for f in referral_facts(days):
        key = (
            f.day,
            f.alliance_id,
            f.site_id,
            places.tier(f.alliance_id, f.site_id),
            places.regions.get(f.site_id) or "",
            f.modality,
            f.priority,
            f.kind,
            f.reader_id,
            places.tier(f.alliance_id, f.reader_id),
            f.return_reason,
        )
        m = sums.get(key)
        if m is None:
            m = sums[key] = [0] * len(READING_MEASURES)
        m[_M["referrals"]] += 1
        if f.tat_seconds is not None:
            m[_M["reported"]] += 1
            m[_M["tat_seconds"]] += f.tat_seconds
            m[_FIRST_BUCKET + bucket_of(f.tat_seconds)] += 1
        m[_M["breached"]] += f.breached
        m[_M["escalations"]] += f.escalations
        m[_M["returned"]] += f.status == ReferralStatus.RETURNED
        m[_M["cancelled"]] += f.status == ReferralStatus.CANCELLED
        for outcome in f.second_reads:
            m[_M["second_reads"]] += 1
            m[_M["second_read_minor"]] += outcome == SecondReadOutcome.MINOR
            m[_M["second_read_major"]] += outcome == SecondReadOutcome.MAJOR
        for flagged, acked, minutes, level in f.critical:
            m[_M["critical"]] += 1
            m[_M["critical_escalated"]] += level > 0
            if acked is not None:
                seconds = max(0, round((acked - flagged).total_seconds()))
                m[_M["critical_acked"]] += 1
                m[_M["critical_ack_seconds"]] += seconds
                m[_M["critical_in_time"]] += seconds <= minutes * 60
        m[_M["priors_shared"]] += f.priors_shared
    return [
        ReadingRollup(
            grain=Grain.DAY,
            period=key[0],
            **dict(zip(READING_DIMS, key[1:], strict=True)),
            **dict(zip(READING_MEASURES, m, strict=True)),
        )
        for key, m in sums.items()
    ]


# --- Studies ---------------------------------------------------------------------------------


@dataclass
class StudyFact:
    day: dt.date
    site_id: int
    modality: str
    remote_read: bool
    repeat: bool
    repeat_cross_site: bool


def study_facts(days: Sequence[dt.date] | None) -> Iterator[StudyFact]:
    """One fact per study made on `days` (None: every study), with its repeat status.

    A repeat is a study of a body part that the same patient (by patient key) had examined
    in the 30 days before (ordered by the study's day, then arrival, then id), at any site;
    "cross-site" when one of those was at another site.
    """
    day_set = None if days is None else set(days)
    if day_set is None:
        window, remote = Q(), Q()
    else:
        lookback = {d - dt.timedelta(days=n) for d in day_set for n in range(facts.REPEAT_DAYS + 1)}
        window = facts.study_day_q(lookback)
        remote = facts.study_day_q(day_set, prefix="study__")
    read_remotely = set(
        Referral.objects.filter(remote, kind=ReferralKind.REMOTE_READ)
        .exclude(status=ReferralStatus.CANCELLED)
        .values_list("study_id", flat=True)
        .distinct()
    )
    studies = (
        Study.objects.filter(window)
        .values_list(
            "pk",
            "institution_id",
            "study_date",
            "received_at",
            "modalities",
            "body_parts",
            "patient_key",
        )
        .iterator(chunk_size=5000)
    )
    rows = sorted(
        (
            (
                key or "",
                facts.study_day(study_date, received_at),
                received_at,
                pk,
                site,
                modalities,
                primary_body_part(body_parts),
            )
            for pk, site, study_date, received_at, modalities, body_parts, key in studies
        ),
        key=lambda row: row[:4],
    )
    # The current patient's earlier studies per body part: (day, site), oldest first.
    history: dict[str, list[tuple[dt.date, int]]] = {}
    current_key: str | None = None
    for key, day, _received_at, pk, site, modalities, part in rows:
        if key != current_key:
            history, current_key = {}, key
        earlier: list[tuple[dt.date, int]] = []
        if key and part:
            earlier = [h for h in history.get(part, []) if (day - h[0]).days <= facts.REPEAT_DAYS]
            history.setdefault(part, []).append((day, site))
        if day_set is not None and day not in day_set:
            continue
        yield StudyFact(
            day=day,
            site_id=site,
            modality=facts.primary_modality(modalities),
            remote_read=pk in read_remotely,
            repeat=bool(earlier),
            repeat_cross_site=any(h[1] != site for h in earlier),
        )


def study_rows(days: Sequence[dt.date] | None, places: facts.Places) -> list[StudyRollup]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for f in study_facts(days):
        for alliance_id in places.alliances_of.get(f.site_id, []):
            key = (
                f.day,
                alliance_id,
                f.site_id,
                places.tier(alliance_id, f.site_id),
                places.regions.get(f.site_id) or "",
                f.modality,
            )
            m = sums.get(key)
            if m is None:
                m = sums[key] = [0, 0, 0, 0]
            m[0] += 1
            m[1] += f.remote_read
            m[2] += f.repeat
            m[3] += f.repeat_cross_site
    return [
        StudyRollup(
            grain=Grain.DAY,
            period=key[0],
            **dict(zip(STUDY_DIMS, key[1:], strict=True)),
            **dict(zip(STUDY_MEASURES, m, strict=True)),
        )
        for key, m in sums.items()
    ]


# --- Writing ---------------------------------------------------------------------------------


def _months_resum(
    model: type[ReadingRollup] | type[StudyRollup],
    months: set[dt.date] | None,
    dims: Sequence[str],
    measures: Sequence[str],
) -> None:
    """The month rows of `months` (None: every month) again, summed from the day rows."""
    old = model.objects.filter(grain=Grain.MONTH)
    if months is not None:
        old = old.filter(period__in=months)
    old.delete()
    sums: dict[tuple[Any, ...], list[int]] = {}
    days = model.objects.filter(grain=Grain.DAY)
    if months is not None:
        days = days.filter(period__gte=min(months), period__lt=max(months) + dt.timedelta(days=31))
    for row in days.values("period", *dims, *measures).iterator(chunk_size=5000):
        month = row["period"].replace(day=1)
        if months is not None and month not in months:
            continue
        key = (month, *(row[d] for d in dims))
        m = sums.setdefault(key, [0] * len(measures))
        for i, name in enumerate(measures):
            m[i] += row[name]
    manager: Any = model.objects  # either rollup: the rows are of `model`
    manager.bulk_create(
        [
            model(
                grain=Grain.MONTH,
                period=key[0],
                **dict(zip(dims, key[1:], strict=True)),
                **dict(zip(measures, m, strict=True)),
            )
            for key, m in sums.items()
        ],
        batch_size=500,
    )


def _days_rewrite(
    model: type[ReadingRollup] | type[StudyRollup],
    days: Sequence[dt.date] | None,
    rows: list[Any],
    dims: Sequence[str],
    measures: Sequence[str],
) -> None:
    """Replace the day rows of `days` (None: all) with `rows`, then re-sum their months."""
    manager: Any = model.objects  # either rollup: the rows are of `model`
    old = manager.filter(grain=Grain.DAY)
    if days is not None:
        old = old.filter(period__in=days)
    old.delete()
    manager.bulk_create(rows, batch_size=200)
    _months_resum(model, None if days is None else {d.replace(day=1) for d in days}, dims, measures)


def refresh_days(
    referral_days: Sequence[dt.date] | None, study_days: Sequence[dt.date] | None
) -> None:
    """Recompute the rollups of these days (None: every day, from scratch) and their months,
    as rollup_sql does on PostgreSQL. The caller holds the transaction."""
    places = facts.Places.load()
    if referral_days is None or referral_days:
        _days_rewrite(
            ReadingRollup,
            referral_days,
            reading_rows(referral_days, places),
            READING_DIMS,
            READING_MEASURES,
        )
    if study_days is None or study_days:
        _days_rewrite(
            StudyRollup, study_days, study_rows(study_days, places), STUDY_DIMS, STUDY_MEASURES
        )
