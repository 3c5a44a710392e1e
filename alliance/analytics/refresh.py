"""Keeping the rollups current: recompute the days touched since the last run (a watermark).

`analytics_refresh()` finds the local calendar days whose figures may have changed since
the watermark (referrals changed, second reads given, critical findings flagged or
acknowledged, studies received), deletes those days' rows and writes them again from the
operational tables, then re-sums the months they fall in. A day is always recomputed
whole, so running it twice, or over an overlap, changes nothing: it is idempotent.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Q, Sum
from django.utils import timezone

from referrals.models import Referral, Study
from reporting.models import CriticalFinding, SecondRead

from . import facts
from .buckets import BUCKET_FIELDS, bucket_of
from .models import Grain, ReadingRollup, RefreshState, StudyRollup

STATE = "rollups"
READING_DIMS = ("alliance_id", "site_id", "site_tier", "site_region", "modality", "priority",
                "kind", "reader_id", "reader_tier", "return_reason")
READING_MEASURES = ("referrals", "reported", "tat_seconds", "breached", "escalations",
                    "returned", "cancelled", "second_reads", "second_read_minor",
                    "second_read_major", "critical", "critical_acked", "critical_ack_seconds",
                    "critical_in_time", "critical_escalated", "priors_shared",
                    *BUCKET_FIELDS)
STUDY_DIMS = ("alliance_id", "site_id", "site_tier", "site_region", "modality")
STUDY_MEASURES = ("studies", "remote_read", "repeats", "repeats_cross_site")
_M = {name: i for i, name in enumerate(READING_MEASURES)}
_FIRST_BUCKET = _M[BUCKET_FIELDS[0]]


@dataclass
class RefreshResult:
    full: bool
    reading_days: int
    study_days: int
    seconds: float
    refreshed_at: dt.datetime | None
    skipped: bool = False


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _by_month(days: Iterable[dt.date]) -> dict[dt.date, list[dt.date]]:
    months: dict[dt.date, list[dt.date]] = defaultdict(list)
    for day in sorted(set(days)):
        months[month_of(day)].append(day)
    return months


# --- Which days changed ----------------------------------------------------------------------


def touched_days(since: dt.datetime) -> tuple[set[dt.date], set[dt.date]]:
    """(referral days, study days) whose figures may differ from the rollups."""
    referral_days: set[dt.date] = set()
    study_days: set[dt.date] = set()
    changed = Referral.objects.filter(updated_at__gte=since).values_list(
        "requested_at", "study__study_date", "study__received_at")
    for requested_at, study_date, received_at in changed.iterator(chunk_size=5000):
        referral_days.add(facts.local_day(requested_at))
        study_days.add(facts.study_day(study_date, received_at))  # its remote-read flag
    for requested_at in SecondRead.objects.filter(at__gte=since).values_list(
            "report__referral__requested_at", flat=True):
        referral_days.add(facts.local_day(requested_at))
    for requested_at in CriticalFinding.objects.filter(
            Q(flagged_at__gte=since) | Q(acknowledged_at__gte=since)).values_list(
            "referral__requested_at", flat=True):
        referral_days.add(facts.local_day(requested_at))
    arrived = list(Study.objects.filter(last_received_at__gte=since).values_list(
        "study_date", "received_at", "patient_key"))
    for study_date, received_at, _key in arrived:
        study_days.add(facts.study_day(study_date, received_at))
    # A study dated in the past can make the same patient's later studies repeats.
    keys = {key for _d, _r, key in arrived if key}
    if keys:
        first = min(facts.study_day(d, r) for d, r, _k in arrived)
        later = facts.study_day_q([first + dt.timedelta(days=n)
                                   for n in range(1, facts.REPEAT_DAYS + 1)
                                   if first + dt.timedelta(days=n) <= timezone.localdate()])
        rows = Study.objects.filter(later)
        if len(keys) <= 5000:
            rows = rows.filter(patient_key__in=keys)
        for study_date, received_at in rows.values_list("study_date", "received_at"):
            study_days.add(facts.study_day(study_date, received_at))
    return referral_days, study_days


def all_days() -> tuple[set[dt.date], set[dt.date]]:
    """Every day that holds a referral or a study."""
    def span(first: dt.date | None, last: dt.date | None) -> set[dt.date]:
        if first is None or last is None:
            return set()
        return {first + dt.timedelta(days=n) for n in range((last - first).days + 1)}

    r = Referral.objects.aggregate(first=Min("requested_at"), last=Max("requested_at"))
    referral_days = span(r["first"] and facts.local_day(r["first"]),
                         r["last"] and facts.local_day(r["last"]))
    s = Study.objects.aggregate(first=Min("study_date"), last=Max("study_date"),
                                first_in=Min("received_at"), last_in=Max("received_at"))
    firsts = [d for d in (s["first"], s["first_in"] and facts.local_day(s["first_in"])) if d]
    lasts = [d for d in (s["last"], s["last_in"] and facts.local_day(s["last_in"])) if d]
    study_days = span(min(firsts, default=None), max(lasts, default=None))
    return referral_days, study_days


# --- Recomputing days ------------------------------------------------------------------------


def _reading_rows(days: list[dt.date], places: facts.Places) -> list[ReadingRollup]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for f in facts.referral_facts(days):
        site_tier = places.tier(f.alliance_id, f.site_id)
        key = (f.day, f.alliance_id, f.site_id, site_tier, places.regions.get(f.site_id, ""),
               f.modality, f.priority, f.kind, f.reader_id,
               places.tier(f.alliance_id, f.reader_id), f.return_reason)
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
        m[_M["returned"]] += f.status == "returned"
        m[_M["cancelled"]] += f.status == "cancelled"
        for outcome in f.second_reads:
            minor, major = facts.is_discrepancy(outcome)
            m[_M["second_reads"]] += 1
            m[_M["second_read_minor"]] += minor
            m[_M["second_read_major"]] += major
        for flagged, acked, minutes, level in f.critical:
            m[_M["critical"]] += 1
            m[_M["critical_escalated"]] += level > 0
            if acked is not None:
                seconds = max(0, round((acked - flagged).total_seconds()))
                m[_M["critical_acked"]] += 1
                m[_M["critical_ack_seconds"]] += seconds
                m[_M["critical_in_time"]] += seconds <= minutes * 60
        m[_M["priors_shared"]] += f.priors_shared
    return [ReadingRollup(grain=Grain.DAY, period=key[0],
                          **dict(zip(READING_DIMS, key[1:], strict=True)),
                          **dict(zip(READING_MEASURES, m, strict=True)))
            for key, m in sums.items()]


def _study_rows(days: list[dt.date], places: facts.Places) -> list[StudyRollup]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for f in facts.study_facts(days):
        for alliance_id in places.alliances_of.get(f.site_id, []):
            key = (f.day, alliance_id, f.site_id, places.tier(alliance_id, f.site_id),
                   places.regions.get(f.site_id, ""), f.modality)
            m = sums.get(key)
            if m is None:
                m = sums[key] = [0, 0, 0, 0]
            m[0] += 1
            m[1] += f.remote_read
            m[2] += f.repeat
            m[3] += f.repeat_cross_site
    return [StudyRollup(grain=Grain.DAY, period=key[0],
                        **dict(zip(STUDY_DIMS, key[1:], strict=True)),
                        **dict(zip(STUDY_MEASURES, m, strict=True)))
            for key, m in sums.items()]


def _month_resum(model: Any, month: dt.date,
                 dims: tuple[str, ...], measures: tuple[str, ...]) -> None:
    """The month's rows again, summed from its day rows."""
    model.objects.filter(grain=Grain.MONTH, period=month).delete()
    nxt = (month + dt.timedelta(days=32)).replace(day=1)
    summed = (model.objects.filter(grain=Grain.DAY, period__gte=month, period__lt=nxt)
              .values(*dims).annotate(**{f"s_{m}": Sum(m) for m in measures}).order_by())
    model.objects.bulk_create(
        [model(grain=Grain.MONTH, period=month, **{d: row[d] for d in dims},
               **{m: row[f"s_{m}"] or 0 for m in measures}) for row in summed],
        batch_size=2000)


def refresh_days(referral_days: Iterable[dt.date], study_days: Iterable[dt.date]) -> None:
    """Recompute the rollups of these days (and the months they fall in)."""
    places = facts.Places.load()
    for month, days in _by_month(referral_days).items():
        ReadingRollup.objects.filter(grain=Grain.DAY, period__in=days).delete()
        ReadingRollup.objects.bulk_create(_reading_rows(days, places), batch_size=2000)
        _month_resum(ReadingRollup, month, READING_DIMS, READING_MEASURES)
    for month, days in _by_month(study_days).items():
        StudyRollup.objects.filter(grain=Grain.DAY, period__in=days).delete()
        StudyRollup.objects.bulk_create(_study_rows(days, places), batch_size=2000)
        _month_resum(StudyRollup, month, STUDY_DIMS, STUDY_MEASURES)


def analytics_refresh(*, full: bool = False, now: dt.datetime | None = None,
                      wait: bool = True) -> RefreshResult:
    """Bring the rollups up to date; `full` recomputes every day from scratch.

    One transaction: readers see the old figures until the new ones are complete. A second
    refresh started meanwhile waits (or, with wait=False, as beat's task does, skips).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    overlap = dt.timedelta(seconds=settings.HUB_ANALYTICS_OVERLAP_SECONDS)
    RefreshState.objects.get_or_create(name=STATE)
    with transaction.atomic():
        locked = RefreshState.objects.select_for_update(skip_locked=not wait).filter(
            name=STATE).first()
        if locked is None:
            return RefreshResult(full=full, reading_days=0, study_days=0, seconds=0.0,
                                 refreshed_at=None, skipped=True)
        state = locked
        if full or state.watermark is None:
            full = True
            ReadingRollup.objects.all().delete()
            StudyRollup.objects.all().delete()
            referral_days, study_days = all_days()
        else:
            referral_days, study_days = touched_days(state.watermark - overlap)
        refresh_days(referral_days, study_days)
        state.watermark = now
        state.refreshed_at = now
        if full:
            state.full_at = now
        state.seconds = time.perf_counter() - started
        state.days = len(referral_days | study_days)
        state.save()
    return RefreshResult(full=full, reading_days=len(referral_days),
                         study_days=len(study_days), seconds=state.seconds,
                         refreshed_at=now)


def last_refresh() -> RefreshState | None:
    return RefreshState.objects.filter(name=STATE).first()
