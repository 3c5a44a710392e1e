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

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from referrals.models import Referral, Study
from reporting.models import CriticalFinding, SecondRead

from . import facts, rollup_orm, rollup_sql
from .models import RefreshState
from .rollup_sql import READING_DIMS, READING_MEASURES, STUDY_DIMS, STUDY_MEASURES

STATE = "rollups"
READING_TABLE = "alliance_readingrollup"
STUDY_TABLE = "alliance_studyrollup"


@dataclass
class RefreshResult:
    full: bool
    reading_days: int
    study_days: int
    seconds: float
    refreshed_at: dt.datetime | None
    skipped: bool = False
    changed: bool = False


def rollups_in_sql() -> bool:
    """PostgreSQL computes the rollups in set-based SQL (rollup_sql.py); the embedded
    SQLite default through the ORM (rollup_orm.py), with the same definitions."""
    return connection.vendor == "postgresql"


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
        "requested_at", "study__study_date", "study__received_at"
    )
    for requested_at, study_date, received_at in changed.iterator(chunk_size=5000):
        referral_days.add(facts.local_day(requested_at))
        study_days.add(facts.study_day(study_date, received_at))  # its remote-read flag
    for requested_at in SecondRead.objects.filter(at__gte=since).values_list(
        "report__referral__requested_at", flat=True
    ):
        referral_days.add(facts.local_day(requested_at))
    for requested_at in CriticalFinding.objects.filter(
        Q(flagged_at__gte=since) | Q(acknowledged_at__gte=since)
    ).values_list("referral__requested_at", flat=True):
        referral_days.add(facts.local_day(requested_at))
    arrived = list(
        Study.objects.filter(last_received_at__gte=since).values_list(
            "study_date", "received_at", "patient_key"
        )
    )
    # A link or unlink of patient records (the master patient index) rewrote `patient_key`:
    # the repeat and cross-site figures of those records' studies may differ.
    arrived += list(
        Study.objects.filter(patient__identity_changed_at__gte=since).values_list(
            "study_date", "received_at", "patient_key"
        )
    )
    for study_date, received_at, _key in arrived:
        study_days.add(facts.study_day(study_date, received_at))
    # A study dated in the past can make the same patient's later studies repeats.
    keys = {key for _d, _r, key in arrived if key}
    if keys:
        first = min(facts.study_day(d, r) for d, r, _k in arrived)
        later = facts.study_day_q(
            [
                first + dt.timedelta(days=n)
                for n in range(1, facts.REPEAT_DAYS + 1)
                if first + dt.timedelta(days=n) <= timezone.localdate()
            ]
        )
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
    referral_days = span(
        r["first"] and facts.local_day(r["first"]), r["last"] and facts.local_day(r["last"])
    )
    s = Study.objects.aggregate(
        first=Min("study_date"),
        last=Max("study_date"),
        first_in=Min("received_at"),
        last_in=Max("received_at"),
    )
    firsts = [d for d in (s["first"], s["first_in"] and facts.local_day(s["first_in"])) if d]
    lasts = [d for d in (s["last"], s["last_in"] and facts.local_day(s["last_in"])) if d]
    study_days = span(min(firsts, default=None), max(lasts, default=None))
    return referral_days, study_days


# --- Recomputing days ------------------------------------------------------------------------


def refresh_days(
    referral_days: Iterable[dt.date] | None, study_days: Iterable[dt.date] | None
) -> None:
    """Recompute the rollups of these days (None: every day, from scratch) and the months
    they fall in: per table, one set-based statement for the day rows, one for the months
    (on PostgreSQL; elsewhere through the ORM)."""
    reading = None if referral_days is None else sorted(set(referral_days))
    study = None if study_days is None else sorted(set(study_days))
    if not rollups_in_sql():
        rollup_orm.refresh_days(reading, study)
        return
    if reading is None or reading:
        rollup_sql.delete_days(READING_TABLE, reading)
        rollup_sql.insert_reading_days(reading)
        rollup_sql.resum_months(
            READING_TABLE,
            READING_DIMS,
            READING_MEASURES,
            None if reading is None else list(_by_month(reading)),
        )
    if study is None or study:
        rollup_sql.delete_days(STUDY_TABLE, study)
        rollup_sql.insert_study_days(study)
        rollup_sql.resum_months(
            STUDY_TABLE,
            STUDY_DIMS,
            STUDY_MEASURES,
            None if study is None else list(_by_month(study)),
        )


def analytics_refresh(
    *, full: bool = False, now: dt.datetime | None = None, wait: bool = True
) -> RefreshResult:
    """Bring the rollups up to date; `full` recomputes every day from scratch.

    One transaction: readers see the old figures until the new ones are complete. A second
    refresh started meanwhile waits (or, with wait=False, as beat's task does, skips).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    overlap = dt.timedelta(seconds=settings.HUB_ANALYTICS_OVERLAP_SECONDS)
    RefreshState.objects.get_or_create(name=STATE)
    with transaction.atomic():
        locked = (
            RefreshState.objects.select_for_update(skip_locked=not wait).filter(name=STATE).first()
        )
        if locked is None:
            return RefreshResult(
                full=full,
                reading_days=0,
                study_days=0,
                seconds=0.0,
                refreshed_at=None,
                skipped=True,
            )
        state = locked
        if rollups_in_sql():
            with connection.cursor() as cursor:  # room for the sorts and hashes of one pass
                cursor.execute("SET LOCAL work_mem = '128MB'")
        if full or state.watermark is None:
            full = True
            referral_days, study_days = all_days()
            refresh_days(None, None)
        else:
            referral_days, study_days = touched_days(state.watermark - overlap)
            refresh_days(referral_days, study_days)
        state.watermark = now
        state.refreshed_at = now
        if full or referral_days or study_days:
            state.changed_at = now
        if full:
            state.full_at = now
        state.seconds = time.perf_counter() - started
        state.days = len(referral_days | study_days)
        state.save()
    if full and rollups_in_sql():  # fresh planner statistics, or plans for empty tables
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {READING_TABLE}, {STUDY_TABLE}")
    # The time taken including the commit (state.seconds could only be stored before it).
    return RefreshResult(
        full=full,
        reading_days=len(referral_days),
        study_days=len(study_days),
        seconds=time.perf_counter() - started,
        refreshed_at=now,
        changed=full or bool(referral_days or study_days),
    )


def last_refresh() -> RefreshState | None:
    return RefreshState.objects.filter(name=STATE).first()
