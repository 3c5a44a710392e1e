"""The rollup refresh in SQL: each statement is one set-based pass over an operational table.

The day rows of both rollups are written by `INSERT … SELECT … GROUP BY day, dimensions`
over a *scope*: every row (a full refresh, one ordered scan of referrals and of studies) or
bounded ranges of days (an incremental refresh, index range scans on `requested_at` and
`study_date`, see migration alliance/0005_analytics_scans). Month rows are summed from the
day rows in one more statement. The definitions are those of docs/analytics.md; the
patient key is only used inside the study statement to find repeats, never written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection

from .buckets import BUCKET_FIELDS, EDGES
from .facts import NON_IMAGING, REPEAT_DAYS, day_ranges, day_start

READING_DIMS = (
    "alliance_id",
    "site_id",
    "site_tier",
    "site_region",
    "modality",
    "priority",
    "kind",
    "reader_id",
    "reader_tier",
    "return_reason",
)
READING_MEASURES = (
    "referrals",
    "reported",
    "tat_seconds",
    "breached",
    "escalations",
    "returned",
    "cancelled",
    "second_reads",
    "second_read_minor",
    "second_read_major",
    "critical",
    "critical_acked",
    "critical_ack_seconds",
    "critical_in_time",
    "critical_escalated",
    "priors_shared",
    *BUCKET_FIELDS,
)
STUDY_DIMS = ("alliance_id", "site_id", "site_tier", "site_region", "modality")
STUDY_MEASURES = ("studies", "remote_read", "repeats", "repeats_cross_site")

_WS = r"E' \t\r\n\f\v'"  # what Python's str.strip() removes (ASCII whitespace)
_NON_IMAGING = ", ".join(f"'{code}'" for code in sorted(NON_IMAGING))

# Which tier an institution has in an alliance: its membership, or central for a lead
# hospital that was never added as a member (as facts.Places does).
_TIERS = """
tiers AS (
    SELECT alliance_id, institution_id, tier FROM alliance_alliancemember
    UNION ALL
    SELECT a.id, a.lead_hospital_id, 'central' FROM alliance_alliance a
    WHERE a.lead_hospital_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM alliance_alliancemember m
        WHERE m.alliance_id = a.id AND m.institution_id = a.lead_hospital_id))"""


def _modality(column: str) -> str:
    """facts.primary_modality in SQL: the first acquisition code of "CT\\SR", else OT."""
    return (
        f"coalesce((SELECT left(upper(btrim(c, {_WS})), 16) "  # noqa: S608
        f"FROM unnest(string_to_array({column}, %(sep)s)) WITH ORDINALITY AS t(c, i) "
        f"WHERE btrim(c, {_WS}) <> '' AND upper(btrim(c, {_WS})) NOT IN ({_NON_IMAGING}) "
        "ORDER BY i LIMIT 1), 'OT')"
    )


def _seconds(later: str, earlier: str) -> str:
    """max(0, round(seconds)) with Python's round (half to even), as the API's exact path."""
    x = f"extract(epoch FROM {later} - {earlier})"
    return (
        f"greatest(0, CASE WHEN {x} - floor({x}) = 0.5 THEN 2 * round({x} / 2) "
        f"ELSE round({x}) END)::bigint"
    )


def _local_day(column: str) -> str:
    return f"({column} AT TIME ZONE %(tz)s)::date"


def _params(**extra: Any) -> dict[str, Any]:
    return {"tz": settings.TIME_ZONE, "sep": "\\", "edges": list(EDGES), **extra}


def _instant_ranges(column: str, days: Iterable[dt.date], params: dict[str, Any]) -> str:
    """`column` (a timestamp) on one of `days`: one range condition per run of days."""
    parts = []
    for n, (first, last) in enumerate(day_ranges(days)):
        params[f"i{n}a"], params[f"i{n}b"] = (
            day_start(first),
            day_start(last + dt.timedelta(days=1)),
        )
        parts.append(f"({column} >= %(i{n}a)s AND {column} < %(i{n}b)s)")
    return " OR ".join(parts) or "FALSE"


def _study_ranges(days: Iterable[dt.date], params: dict[str, Any]) -> str:
    """A study's day (study date, or arrival day when undated) in one of the runs of days."""
    parts = []
    for n, (first, last) in enumerate(day_ranges(days)):
        params[f"s{n}a"], params[f"s{n}b"] = first, last
        params[f"s{n}c"], params[f"s{n}d"] = (
            day_start(first),
            day_start(last + dt.timedelta(days=1)),
        )
        parts.append(f"(study_date BETWEEN %(s{n}a)s AND %(s{n}b)s)")
        parts.append(
            f"(study_date IS NULL AND received_at >= %(s{n}c)s AND received_at < %(s{n}d)s)"
        )
    return " OR ".join(parts) or "FALSE"


def insert_reading_days(days: Sequence[dt.date] | None) -> int:
    """Day rows of ReadingRollup for referrals requested on `days` (None: all of them)."""
    params = _params(minor="minor_discrepancy", major="major_discrepancy")
    where = "TRUE" if days is None else _instant_ranges("r.requested_at", days, params)
    buckets = ", ".join(
        f"count(*) FILTER (WHERE f.bucket = {k})" for k in range(len(BUCKET_FIELDS))
    )
    sql = f"""
WITH {_TIERS},
f AS MATERIALIZED (
    SELECT g.*, CASE WHEN g.tat IS NOT NULL
                     THEN width_bucket(g.tat::float8, %(edges)s::float8[]) END AS bucket
    FROM (SELECT r.id, {_local_day("r.requested_at")} AS day, r.alliance_id, r.source_id,
                 r.target_id, r.priority, r.kind, r.status,
                 coalesce(r.return_reason, '') AS return_reason,
                 CASE WHEN r.reported_at IS NOT NULL
                      THEN {_seconds("r.reported_at", "r.requested_at")} END AS tat,
                 r.breached_at IS NOT NULL AS breached, r.escalation_level,
                 {_modality("s.modalities")} AS modality
          FROM referrals_referral r JOIN referrals_study s ON s.id = r.study_id
          WHERE r.alliance_id IS NOT NULL AND ({where})) g),
reads AS (
    SELECT rep.referral_id, count(*) AS n,
           count(*) FILTER (WHERE sr.outcome = %(minor)s) AS minor,
           count(*) FILTER (WHERE sr.outcome = %(major)s) AS major
    FROM reporting_secondread sr JOIN reporting_report rep ON rep.id = sr.report_id
    WHERE rep.referral_id IN (SELECT id FROM f) GROUP BY rep.referral_id),
crit AS (
    SELECT referral_id, count(*) AS n, count(ack) AS acked, sum(ack) AS ack_seconds,
           count(*) FILTER (WHERE ack <= ack_minutes * 60) AS in_time,
           count(*) FILTER (WHERE level > 0) AS escalated
    FROM (SELECT referral_id, ack_minutes, level,
                 CASE WHEN acknowledged_at IS NOT NULL
                      THEN {_seconds("acknowledged_at", "flagged_at")} END AS ack
          FROM reporting_criticalfinding WHERE referral_id IN (SELECT id FROM f)) c
    GROUP BY referral_id),
shared AS (
    SELECT DISTINCT rs.referral_id
    FROM referrals_referralstudy rs JOIN f ON f.id = rs.referral_id
    JOIN referrals_study s ON s.id = rs.study_id
    WHERE rs.is_prior AND s.institution_id <> f.source_id)
INSERT INTO alliance_readingrollup
    (grain, period, {", ".join(READING_DIMS)}, {", ".join(READING_MEASURES)})
SELECT 'day', f.day, f.alliance_id, f.source_id, coalesce(st.tier, ''),
       coalesce(i.region_code, ''), f.modality, f.priority, f.kind, f.target_id,
       coalesce(rt.tier, ''), f.return_reason,
       count(*), count(f.tat), coalesce(sum(f.tat), 0),
       count(*) FILTER (WHERE f.breached), coalesce(sum(f.escalation_level), 0),
       count(*) FILTER (WHERE f.status = 'returned'),
       count(*) FILTER (WHERE f.status = 'cancelled'),
       coalesce(sum(rd.n), 0), coalesce(sum(rd.minor), 0), coalesce(sum(rd.major), 0),
       coalesce(sum(c.n), 0), coalesce(sum(c.acked), 0), coalesce(sum(c.ack_seconds), 0),
       coalesce(sum(c.in_time), 0), coalesce(sum(c.escalated), 0), count(sh.referral_id),
       {buckets}
FROM f
LEFT JOIN reads rd ON rd.referral_id = f.id
LEFT JOIN crit c ON c.referral_id = f.id
LEFT JOIN shared sh ON sh.referral_id = f.id
LEFT JOIN tiers st ON st.alliance_id = f.alliance_id AND st.institution_id = f.source_id
LEFT JOIN tiers rt ON rt.alliance_id = f.alliance_id AND rt.institution_id = f.target_id
LEFT JOIN tenants_institution i ON i.id = f.source_id
GROUP BY f.day, f.alliance_id, f.source_id, st.tier, i.region_code, f.modality, f.priority,
         f.kind, f.target_id, rt.tier, f.return_reason"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def insert_study_days(days: Sequence[dt.date] | None) -> int:
    """Day rows of StudyRollup for studies made on `days` (None: all of them).

    A study is a repeat when the same patient key had a study of the same body part in the
    30 days before (earlier in day, arrival, id order), at any site; cross-site when one of
    those was at another site. Window functions over (patient key, body part) find both in
    one ordered pass: the previous study gives "repeat"; the last study before the current
    run of same-site studies is the latest one at another site.
    """
    params = _params()
    if days is None:
        scan, keep = "TRUE", "TRUE"
        remote_from = (
            "LEFT JOIN (SELECT DISTINCT study_id FROM referrals_referral "
            "WHERE kind = 'remote_read' AND status <> 'cancelled') rr "
            "ON rr.study_id = x.id"
        )
        remote = "rr.study_id IS NOT NULL"
    else:
        lookback = {d - dt.timedelta(days=n) for d in days for n in range(REPEAT_DAYS + 1)}
        scan = _study_ranges(lookback, params)
        params["days"] = sorted(set(days))
        keep = "x.day = ANY(%(days)s::date[])"
        remote_from = ""
        remote = (
            "EXISTS (SELECT 1 FROM referrals_referral rr WHERE rr.study_id = x.id "
            "AND rr.kind = 'remote_read' AND rr.status <> 'cancelled')"
        )
    order = "PARTITION BY key, part ORDER BY day, received_at, id"
    sql = f"""
WITH {_TIERS},
s AS (
    SELECT id, institution_id AS site, received_at, patient_key AS key, modalities,
           coalesce(study_date, {_local_day("received_at")}) AS day,
           upper(btrim(split_part(body_parts, %(sep)s, 1), {_WS})) AS part
    FROM referrals_study WHERE {scan}),
w AS (
    SELECT s.*, lag(site) OVER o AS prev_site, lag(day) OVER o AS prev_day
    FROM s WINDOW o AS ({order})),
runs AS (
    SELECT w.*, sum((prev_site IS DISTINCT FROM site)::int) OVER o AS run,
           CASE WHEN prev_site IS DISTINCT FROM site THEN prev_day END AS boundary
    FROM w WINDOW o AS ({order})),
x AS (
    SELECT runs.*, max(boundary) OVER (PARTITION BY key, part, run) AS other_day FROM runs),
facts AS (
    SELECT x.day, x.site, {_modality("x.modalities")} AS modality, {remote} AS remote,
           (x.key <> '' AND x.part <> '' AND x.prev_day >= x.day - {REPEAT_DAYS}) AS repeat,
           (x.key <> '' AND x.part <> '' AND x.other_day >= x.day - {REPEAT_DAYS}) AS cross_site
    FROM x {remote_from} WHERE {keep})
INSERT INTO alliance_studyrollup
    (grain, period, {", ".join(STUDY_DIMS)}, {", ".join(STUDY_MEASURES)})
SELECT 'day', f.day, t.alliance_id, f.site, t.tier, coalesce(i.region_code, ''), f.modality,
       count(*), count(*) FILTER (WHERE f.remote), count(*) FILTER (WHERE f.repeat),
       count(*) FILTER (WHERE f.cross_site)
FROM facts f JOIN tiers t ON t.institution_id = f.site
LEFT JOIN tenants_institution i ON i.id = f.site
GROUP BY f.day, t.alliance_id, f.site, t.tier, i.region_code, f.modality"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def delete_days(table: str, days: Sequence[dt.date] | None) -> None:
    with connection.cursor() as cursor:
        if days is None:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (a fixed table name)
        else:
            cursor.execute(
                f"DELETE FROM {table} WHERE grain = 'day' "  # noqa: S608
                "AND period = ANY(%s::date[])",
                [sorted(set(days))],
            )


def resum_months(
    table: str, dims: Sequence[str], measures: Sequence[str], months: Sequence[dt.date] | None
) -> None:
    """The month rows of `months` (None: every month) again, summed from the day rows."""
    month = "(period - (extract(day FROM period)::int - 1))"
    params: dict[str, Any] = {}
    where = "TRUE"
    if months is not None:
        params["months"] = sorted(set(months))
        params["first"] = min(months)
        params["end"] = max(months) + dt.timedelta(days=31)
        where = f"period >= %(first)s AND period < %(end)s AND {month} = ANY(%(months)s::date[])"
    sums = ", ".join(f"sum({m})" for m in measures)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE grain = 'month' AND "  # noqa: S608
            + ("TRUE" if months is None else "period = ANY(%(months)s::date[])"),
            params,
        )
        cursor.execute(
            f"INSERT INTO {table} (grain, period, {', '.join(dims)}, {', '.join(measures)}) "  # noqa: S608
            f"SELECT 'month', {month}, {', '.join(dims)}, {sums} FROM {table} "
            f"WHERE grain = 'day' AND {where} GROUP BY {month}, {', '.join(dims)}",
            params,
        )
