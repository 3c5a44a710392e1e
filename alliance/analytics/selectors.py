"""The figure sets: what the dashboard and the API show, read from the rollups.

Each returns a `FigureSet`: headline totals and named tables (lists of flat rows, the same
in JSON, CSV and Excel). Rows name institutions, tiers, modalities and priorities only.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from referrals.models import READER_LOAD_STATUSES, Referral
from tenants.models import Institution

from . import facts
from .buckets import BUCKET_FIELDS, RATIO, percentile_exact, percentile_from_buckets
from .cache import figures_cached
from .refresh import last_refresh
from .selection import Selection

Row = dict[str, Any]


@dataclass
class FigureSet:
    name: str
    totals: dict[str, Any]
    tables: dict[str, list[Row]]
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, selection: Selection) -> dict[str, Any]:
        state = last_refresh()
        return {
            "figure_set": self.name,
            "meta": {
                "refreshed_at": state.refreshed_at.isoformat()
                if state and state.refreshed_at
                else None,
                "full_refresh_at": state.full_at.isoformat() if state and state.full_at else None,
                "generated_at": timezone.now().isoformat(),
                "filters": selection.echo(),
                **self.notes,
            },
            "totals": self.totals,
            "tables": self.tables,
        }


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _sums(qs: QuerySet[Any], by: Iterable[str], measures: Iterable[str]) -> list[Row]:
    return list(qs.values(*by).annotate(**{m: Sum(m) for m in measures}).order_by(*by))


def _fold(rows: Iterable[Row], measures: Iterable[str]) -> Row:
    """The rows' measures summed (what an aggregate over the same rows gives, 0 for none)."""
    measures = list(measures)
    out: Row = dict.fromkeys(measures, 0)
    for row in rows:
        for m in measures:
            out[m] += row[m] or 0
    return out


def _group(rows: list[Row], *keys: str) -> list[tuple[tuple[Any, ...], list[Row]]]:
    """The rows by `keys`, ordered by them."""
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return sorted(groups.items(), key=lambda item: item[0])


def _fold_by(rows: list[Row], key: str, measures: Iterable[str]) -> list[Row]:
    """The rows' measures summed per `key`, ordered by it (as `_sums(qs, [key], …)`)."""
    measures = list(measures)
    return [{key: k, **_fold(group, measures)} for (k,), group in _group(rows, key)]


def _names(ids: Iterable[int | None]) -> dict[int, tuple[str, str]]:
    wanted = {i for i in ids if i is not None}
    return {i.pk: (i.code, i.display_name) for i in Institution.objects.filter(pk__in=wanted)}


def _site(row: Row, names: dict[int, tuple[str, str]], key: str, prefix: str) -> Row:
    code, name = names.get(row[key], ("", "")) if row[key] is not None else ("", "")
    return {f"{prefix}_id": row[key], f"{prefix}_code": code, f"{prefix}_name": name}


def _series_key(selection: Selection) -> tuple[str, dict[str, Any]]:
    if selection.granularity == "day":
        return "period", {}
    return "month", {"month": TruncMonth("period")}


def _period_rows(qs: QuerySet[Any], selection: Selection, measures: Iterable[str]) -> list[Row]:
    key, extra = _series_key(selection)
    measures = list(measures)
    rows = qs.annotate(**extra).values(key).annotate(**{m: Sum(m) for m in measures}).order_by(key)
    out = []
    for row in rows:
        period = row[key]
        if isinstance(period, dt.datetime):
            period = period.date()
        out.append({"period": period.isoformat(), **{m: row[m] or 0 for m in measures}})
    return out


# --- Volumes ----------------------------------------------------------------------------------


def volumes(selection: Selection) -> FigureSet:
    measures = ("studies", "remote_read")
    # One grouped scan of the study rollup; sites, modalities and totals are its sums.
    cells = _sums(selection.studies(), ["site_id", "site_tier", "modality"], measures)
    by_site = [
        {"site_id": site, "site_tier": tier, **_fold(group, measures)}
        for (site, tier), group in _group(cells, "site_id", "site_tier")
    ]
    names = _names(r["site_id"] for r in by_site)
    site_rows = [
        {
            **_site(r, names, "site_id", "site"),
            "tier": r["site_tier"],
            "studies": r["studies"],
            "remote_read": r["remote_read"],
            "remote_share": ratio(r["remote_read"], r["studies"]),
        }
        for r in by_site
    ]
    site_rows.sort(key=lambda r: (-r["studies"], r["site_code"]))
    modality_rows = [
        {
            "modality": r["modality"],
            "studies": r["studies"],
            "remote_read": r["remote_read"],
            "remote_share": ratio(r["remote_read"], r["studies"]),
        }
        for r in _fold_by(cells, "modality", measures)
    ]
    period_rows = [
        {**r, "remote_share": ratio(r["remote_read"], r["studies"])}
        for r in _period_rows(selection.studies(series=True), selection, measures)
    ]
    total = _fold(cells, measures)
    referrals = selection.readings().aggregate(n=Sum("referrals"))["n"] or 0
    n, remote = total["studies"] or 0, total["remote_read"] or 0
    return FigureSet(
        "volumes",
        {
            "studies": n,
            "remote_read": remote,
            "remote_share": ratio(remote, n),
            "referrals": referrals,
        },
        {"by_period": period_rows, "by_site": site_rows, "by_modality": modality_rows},
    )


# --- Turnaround, breaches, escalations ---------------------------------------------------------

TAT_MEASURES = ("referrals", "reported", "tat_seconds", "breached", "escalations", *BUCKET_FIELDS)
HISTOGRAM_PRECISION = (
    f"within one histogram bucket: buckets grow {RATIO}x from 1 minute, "
    "so a percentile is at most 30% off (linear interpolation inside the "
    "bucket; usually much closer)"
)


def _site_ids(selection: Selection) -> list[int] | None:
    """The sites the region/tier filters leave (None: no such filter)."""
    if not selection.region and not selection.tier:
        return None
    places = facts.Places.load()
    ids = {
        inst
        for (alliance, inst), tier in places.tiers.items()
        if alliance in selection.alliance_ids
        and (not selection.tier or tier == selection.tier)
        and places.regions.get(inst, "").startswith(selection.region)
    }
    return sorted(ids)


def _exact(selection: Selection) -> list[tuple[str, int | None, int]]:
    return facts.reported_turnarounds(
        alliance_ids=selection.alliance_ids,
        first=selection.first,
        last=selection.last,
        site_ids=_site_ids(selection),
        institution=selection.institution,
        modality=selection.modality or None,
        priority=selection.priority or None,
    )


def _tat_row(row: Row, exact: list[int] | None) -> Row:
    reported = row["reported"] or 0
    if exact is not None:
        p50, p90 = percentile_exact(exact, 50), percentile_exact(exact, 90)
    elif BUCKET_FIELDS[0] not in row:
        p50 = p90 = None
    else:
        counts = [row[b] or 0 for b in BUCKET_FIELDS]
        p50, p90 = percentile_from_buckets(counts, 50), percentile_from_buckets(counts, 90)
    referrals = row["referrals"] or 0
    return {
        "referrals": referrals,
        "reported": reported,
        "p50_minutes": minutes(p50),
        "p90_minutes": minutes(p90),
        "mean_minutes": minutes(row["tat_seconds"] / reported) if reported else None,
        "breached": row["breached"] or 0,
        "breach_rate": ratio(row["breached"] or 0, referrals),
        "escalations": row["escalations"] or 0,
    }


def turnaround(selection: Selection) -> FigureSet:
    # One grouped scan of the rollup rows; the totals, priorities and readers are its sums.
    cells = _sums(selection.readings(), ["priority", "reader_id"], TAT_MEASURES)
    total = _fold(cells, TAT_MEASURES)
    exact_rows = None
    if (total["reported"] or 0) <= settings.HUB_ANALYTICS_EXACT_MAX:
        exact_rows = _exact(selection)
    by_prio: dict[str, list[int]] = defaultdict(list)
    by_reader: dict[int | None, list[int]] = defaultdict(list)
    for prio, reader, seconds in exact_rows or []:
        by_prio[prio].append(seconds)
        by_reader[reader].append(seconds)
    everything = [s for _p, _r, s in exact_rows] if exact_rows is not None else None
    priority_rows = [
        {
            "priority": r["priority"],
            **_tat_row(r, by_prio.get(r["priority"], []) if exact_rows is not None else None),
        }
        for r in _fold_by(cells, "priority", TAT_MEASURES)
    ]
    reader_sums = _fold_by(
        [c for c in cells if c["reader_id"] is not None], "reader_id", TAT_MEASURES
    )
    names = _names(r["reader_id"] for r in reader_sums)
    reader_rows = [
        {
            **_site(r, names, "reader_id", "reader"),
            **_tat_row(r, by_reader.get(r["reader_id"], []) if exact_rows is not None else None),
        }
        for r in reader_sums
    ]
    period_rows = [
        {
            "period": r["period"],
            **{k: v for k, v in _tat_row(r, None).items() if not k.startswith("p")},
        }
        for r in _period_rows(
            selection.readings(series=True),
            selection,
            ("referrals", "reported", "tat_seconds", "breached", "escalations"),
        )
    ]
    method = "exact" if exact_rows is not None else "histogram"
    return FigureSet(
        "turnaround",
        _tat_row(total, everything),
        {"by_priority": priority_rows, "by_reader": reader_rows, "by_period": period_rows},
        {
            "percentile_method": method,
            "percentile_precision": "exact (nearest rank over the signed reports)"
            if method == "exact"
            else HISTOGRAM_PRECISION,
        },
    )


# --- Flows between tiers -----------------------------------------------------------------------


def flows(selection: Selection) -> FigureSet:
    rows = _sums(selection.readings(), ["site_tier", "reader_tier", "kind"], ["referrals"])
    links = []
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        way = facts.direction(r["site_tier"], r["reader_tier"]) if r["reader_tier"] else "unrouted"
        links.append(
            {
                "source_tier": r["site_tier"],
                "target_tier": r["reader_tier"],
                "kind": r["kind"],
                "direction": way,
                "referrals": r["referrals"],
            }
        )
        totals[way] += r["referrals"]
    out = {w: totals.get(w, 0) for w in ("up", "down", "same", "unrouted", "unknown")}
    out["referrals"] = sum(totals.values())
    return FigureSet("flows", out, {"links": links})


# --- Reader workload and capacity --------------------------------------------------------------


def workload(selection: Selection) -> FigureSet:
    # The rollup part is cached until the next refresh; the open cases below are live.
    sums = figures_cached(
        "workload.by_reader",
        selection,
        lambda: {
            r["reader_id"]: r
            for r in _sums(
                selection.readings().exclude(reader_id=None),
                ["reader_id"],
                ["referrals", "reported"],
            )
        },
    )
    from alliance.models import PoolMember

    open_now = Referral.objects.filter(
        alliance_id__in=selection.alliance_ids, status__in=READER_LOAD_STATUSES
    )
    members = PoolMember.objects.filter(
        pool__alliance_id__in=selection.alliance_ids, is_active=True, pool__is_active=True
    )
    if selection.institution:
        open_now = open_now.filter(target_id=selection.institution)
        members = members.filter(pool__institution_id=selection.institution)
    opened = dict(
        open_now.values("target_id").annotate(n=Count("pk")).values_list("target_id", "n")
    )
    capacity = {
        r["pool__institution_id"]: r
        for r in members.values("pool__institution_id").annotate(
            capacity=Sum("capacity"), readers=Count("user", distinct=True)
        )
    }
    ids = set(sums) | set(opened) | set(capacity)
    names = _names(ids)
    rows = []
    for reader in sorted(ids, key=lambda i: names.get(i, ("", ""))[0]):
        done: Row = sums.get(reader) or {}
        pools: Row = dict(capacity.get(reader) or {})
        reported = done.get("reported", 0) or 0
        cap = pools.get("capacity", 0) or 0
        readers = pools.get("readers", 0) or 0
        rows.append(
            {
                **_site({"r": reader}, names, "r", "reader"),
                "referrals": done.get("referrals", 0) or 0,
                "reported": reported,
                "reported_per_day": round(reported / selection.days, 2),
                "reported_per_reader_per_day": round(reported / selection.days / readers, 2)
                if readers
                else None,
                "readers": readers,
                "open_now": opened.get(reader, 0),
                "capacity": cap,
                "capacity_use": ratio(opened.get(reader, 0), cap),
            }
        )
    totals = {
        "reported": sum(r["reported"] for r in rows),
        "open_now": sum(r["open_now"] for r in rows),
        "capacity": sum(r["capacity"] for r in rows),
    }
    totals["capacity_use"] = ratio(totals["open_now"], totals["capacity"])
    return FigureSet(
        "workload",
        totals,
        {"by_reader": rows},
        {
            "capacity_note": "open cases now against the readers' open-case "
            "capacity (pool memberships); not filtered by date"
        },
    )


# --- Scanner utilisation -----------------------------------------------------------------------


def capacity_of(modality: str) -> int:
    table = settings.HUB_ANALYTICS_SCANNER_CAPACITY
    return int(table.get(modality, table.get("*", 30)))


def scanners(selection: Selection) -> FigureSet:
    rows = _sums(
        selection.studies().filter(site_tier="grassroots"), ["site_id", "modality"], ["studies"]
    )
    names = _names(r["site_id"] for r in rows)
    out = []
    for r in rows:
        per_day = r["studies"] / selection.days
        cap = capacity_of(r["modality"])
        out.append(
            {
                **_site(r, names, "site_id", "site"),
                "modality": r["modality"],
                "studies": r["studies"],
                "studies_per_day": round(per_day, 2),
                "capacity_per_day": cap,
                "utilisation": round(per_day / cap, 4),
            }
        )
    out.sort(key=lambda r: (r["site_code"], r["modality"]))
    studies = sum(r["studies"] for r in out)
    return FigureSet(
        "scanners",
        {"studies": studies, "sites": len({r["site_id"] for r in out}), "days": selection.days},
        {"by_site_modality": out},
        {"capacity_per_day": settings.HUB_ANALYTICS_SCANNER_CAPACITY},
    )


# --- Quality -----------------------------------------------------------------------------------

QUALITY = (
    "referrals",
    "returned",
    "second_reads",
    "second_read_minor",
    "second_read_major",
    "critical",
    "critical_acked",
    "critical_ack_seconds",
    "critical_in_time",
    "critical_escalated",
)


def _critical(r: Row) -> Row:
    acked = r["critical_acked"] or 0
    return {
        "critical": r["critical"] or 0,
        "critical_acknowledged": acked,
        "critical_in_time": r["critical_in_time"] or 0,
        "critical_escalated": r["critical_escalated"] or 0,
        "critical_mean_ack_minutes": minutes(r["critical_ack_seconds"] / acked) if acked else None,
    }


def _second(r: Row) -> Row:
    n = r["second_reads"] or 0
    minor, major = r["second_read_minor"] or 0, r["second_read_major"] or 0
    return {
        "second_reads": n,
        "agree": n - minor - major,
        "minor": minor,
        "major": major,
        "discrepancy_rate": ratio(minor + major, n),
    }


def quality(selection: Selection) -> FigureSet:
    # One grouped scan of the rollup rows; every table and the totals are its sums.
    cells = _sums(selection.readings(), ["site_id", "reader_id", "return_reason"], QUALITY)
    site_sums = _fold_by(cells, "site_id", QUALITY)
    reasons = [
        {"site_id": site, "return_reason": reason, **_fold(group, ["returned"])}
        for (site, reason), group in _group(
            [c for c in cells if c["return_reason"]], "site_id", "return_reason"
        )
    ]
    reader_sums = _fold_by([c for c in cells if c["reader_id"] is not None], "reader_id", QUALITY)
    names = _names([r["site_id"] for r in site_sums] + [r["reader_id"] for r in reader_sums])
    by_site = [
        {
            **_site(r, names, "site_id", "site"),
            "referrals": r["referrals"],
            "returned": r["returned"],
            "return_rate": ratio(r["returned"], r["referrals"]),
            **_critical(r),
        }
        for r in site_sums
    ]
    reason_rows = [
        {
            **_site(r, names, "site_id", "site"),
            "reason": r["return_reason"],
            "returned": r["returned"],
        }
        for r in reasons
        if r["returned"]
    ]
    by_reader = [
        {**_site(r, names, "reader_id", "reader"), **_second(r), **_critical(r)}
        for r in reader_sums
    ]
    total = _fold(cells, QUALITY)
    totals = {
        "referrals": total["referrals"] or 0,
        "returned": total["returned"] or 0,
        "return_rate": ratio(total["returned"] or 0, total["referrals"] or 0),
        **_second(total),
        **_critical(total),
    }
    return FigureSet(
        "quality",
        totals,
        {"by_site": by_site, "return_reasons": reason_rows, "by_reader": by_reader},
    )


# --- Mutual recognition ------------------------------------------------------------------------


def recognition(selection: Selection) -> FigureSet:
    study_sums = {
        r["site_id"]: r
        for r in _sums(
            selection.studies(), ["site_id"], ["studies", "repeats", "repeats_cross_site"]
        )
    }
    shared = {
        r["site_id"]: r
        for r in _sums(selection.readings(), ["site_id"], ["referrals", "priors_shared"])
    }
    ids = set(study_sums) | set(shared)
    names = _names(ids)
    rows = []
    for site in sorted(ids, key=lambda i: names.get(i, ("", ""))[0]):
        s: Row = study_sums.get(site) or {}
        r: Row = shared.get(site) or {}
        n, repeats = s.get("studies", 0) or 0, s.get("repeats", 0) or 0
        rows.append(
            {
                **_site({"s": site}, names, "s", "site"),
                "studies": n,
                "repeats_30d": repeats,
                "repeats_cross_site": s.get("repeats_cross_site", 0) or 0,
                "repeat_rate": ratio(repeats, n),
                "referrals": r.get("referrals", 0) or 0,
                "priors_shared": r.get("priors_shared", 0) or 0,
                "priors_shared_rate": ratio(
                    r.get("priors_shared", 0) or 0, r.get("referrals", 0) or 0
                ),
            }
        )
    keys = ("studies", "repeats_30d", "repeats_cross_site", "referrals", "priors_shared")
    totals: dict[str, Any] = {k: sum(r[k] for r in rows) for k in keys}
    totals["repeat_rate"] = ratio(totals["repeats_30d"], totals["studies"])
    totals["priors_shared_rate"] = ratio(totals["priors_shared"], totals["referrals"])
    return FigureSet("recognition", totals, {"by_site": rows})


FIGURE_SETS = {
    "volumes": volumes,
    "turnaround": turnaround,
    "flows": flows,
    "workload": workload,
    "scanners": scanners,
    "quality": quality,
    "recognition": recognition,
}
