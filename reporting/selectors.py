"""Reads of the reporting side, always through tenants.access."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import TruncMonth
from django.utils import timezone

from referrals.models import Referral, ReferralStatus
from tenants.access import Scope, visible
from tenants.models import Institution, User
from tenants.roles import FINAL_SIGN_ROLES, READER_ROLES

from .models import (
    CriticalFinding,
    Report,
    ReportStatus,
    ReportTemplate,
    SecondRead,
    SecondReadOutcome,
)


def templates_for(scope: Scope, referral: Referral) -> QuerySet[ReportTemplate]:
    """Active templates of the caller's alliances, those fitting the study's modality first."""
    modalities = [m for m in referral.study.modalities.split("\\") if m] or [""]
    body = referral.study.body_parts.upper()
    return (
        visible(scope, ReportTemplate)
        .filter(active=True)
        .annotate(
            fit=Case(
                When(modality__in=modalities, body_part=body, then=Value(0)),
                When(modality__in=modalities, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("fit", "modality", "body_part", "code")
    )


def prior_reports(scope: Scope, report_or_referral: Referral) -> QuerySet[Report]:
    """The patient's signed reports (any alliance site) the caller may see, newest first."""
    key = report_or_referral.study.patient_key
    if not key:
        return visible(scope, Report).none()
    return (
        visible(scope, Report)
        .filter(study__patient_key=key, status=ReportStatus.FINAL)
        .exclude(referral=report_or_referral)
        .select_related("study", "signed_by", "template")
        .order_by("-signed_at")[:20]
    )


# --- What waits for a reader ------------------------------------------------


def second_read_queue(scope: Scope) -> QuerySet[Report]:
    """Juniors' preliminary reports waiting for a senior of the caller's institution, oldest
    first (a senior never second-reads their own report)."""
    if scope.institution is None or scope.user is None or not scope.has_any_role(*FINAL_SIGN_ROLES):
        return visible(scope, Report).none()
    return (
        visible(scope, Report)
        .filter(
            institution=scope.institution,
            status=ReportStatus.PRELIMINARY,
            second_read_required=True,
        )
        .exclude(author=scope.user)
        .select_related("referral__source", "study", "author", "template")
        .order_by("preliminary_at", "pk")
    )


def cases_held(scope: Scope) -> QuerySet[Referral]:
    """Cases the reader holds at the active institution and has not signed yet (a draft
    sent back from its second read among them), most urgent first."""
    if scope.institution is None or scope.user is None or not scope.has_any_role(*READER_ROLES):
        return visible(scope, Referral).none()
    signed = (
        visible(scope, Report).filter(referral=OuterRef("pk")).exclude(status=ReportStatus.DRAFT)
    )
    return (
        visible(scope, Referral)
        .filter(
            claimed_by=scope.user,
            target=scope.institution,
            status__in=[ReferralStatus.CLAIMED, ReferralStatus.REPORTING],
        )
        .exclude(Exists(signed))
        .order_by("priority_rank", "deadline_at", "pk")
    )


# --- Quality: second-read outcomes ------------------------------------------

QUALITY_GROUPS = ("reader", "institution", "month")


@dataclass(frozen=True)
class QualityRow:
    """Second reads of one group: how many, each outcome, and the discrepancy rates."""

    key: Any  # the reader's or institution's id, or the month (a date, its first day)
    label: str
    second_reads: int
    agree: int
    minor: int
    major: int

    @property
    def discrepancy_rate(self) -> float:
        """Minor or major discrepancies over all second reads (0.0 when there are none)."""
        return (self.minor + self.major) / self.second_reads if self.second_reads else 0.0

    @property
    def major_rate(self) -> float:
        return self.major / self.second_reads if self.second_reads else 0.0

    @property
    def discrepancy_percent(self) -> float:
        return 100 * self.discrepancy_rate

    @property
    def major_percent(self) -> float:
        return 100 * self.major_rate


def second_read_quality(
    scope: Scope, *, group: str = "reader", start: dt.date | None = None, end: dt.date | None = None
) -> list[QualityRow]:
    """Second-read outcomes per reader (the report's author), reading institution or month.

    Counts SecondRead rows (a report sent back with a major discrepancy and read again
    counts twice: both reads happened). `start`/`end` are local dates, both included, on
    the time of the second read. Visibility is tenants.access's: a reading institution sees
    its own second reads only. Rows are ordered by group (readers and institutions by name).
    """
    if group not in QUALITY_GROUPS:
        raise ValueError(f"group is one of {QUALITY_GROUPS}")
    reads = visible(scope, SecondRead)
    zone = timezone.get_current_timezone()
    if start is not None:
        reads = reads.filter(at__gte=dt.datetime.combine(start, dt.time.min, tzinfo=zone))
    if end is not None:
        reads = reads.filter(
            at__lt=dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        )
    key = {"reader": "report__author", "institution": "report__institution", "month": "month"}[
        group
    ]
    if group == "month":
        reads = reads.annotate(month=TruncMonth("at", tzinfo=zone))
    counted = (
        reads.values(key)
        .order_by(key)
        .annotate(
            total=Count("pk"),
            agree=Count("pk", filter=Q(outcome=SecondReadOutcome.AGREE)),
            minor=Count("pk", filter=Q(outcome=SecondReadOutcome.MINOR)),
            major=Count("pk", filter=Q(outcome=SecondReadOutcome.MAJOR)),
        )
    )
    labels = _quality_labels(group, [row[key] for row in counted])
    rows = [
        QualityRow(
            key=_month_key(row[key]) if group == "month" else row[key],
            label=labels[row[key]],
            second_reads=row["total"],
            agree=row["agree"],
            minor=row["minor"],
            major=row["major"],
        )
        for row in counted
    ]
    if group != "month":
        rows.sort(key=lambda r: (r.label, r.key))
    return rows


def quality_total(rows: list[QualityRow]) -> QualityRow:
    """All rows added up (the table's last line)."""
    return QualityRow(
        key=None,
        label="",
        second_reads=sum(r.second_reads for r in rows),
        agree=sum(r.agree for r in rows),
        minor=sum(r.minor for r in rows),
        major=sum(r.major for r in rows),
    )


def _month_key(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _quality_labels(group: str, keys: list[Any]) -> dict[Any, str]:
    if group == "reader":
        return {u.pk: u.display_name for u in User.objects.filter(pk__in=keys)}
    if group == "institution":
        return {i.pk: str(i) for i in Institution.objects.filter(pk__in=keys)}
    return {k: _month_key(k).strftime("%Y-%m") for k in keys}


@dataclass(frozen=True)
class OpenCriticals:
    findings: list[CriticalFinding]
    count: int
    now: dt.datetime


def clinic_open_criticals(
    *, scope: Scope, limit: int = 10, now: dt.datetime | None = None
) -> OpenCriticals:
    """Critical findings on this institution's requests not yet acknowledged, the soonest due
    first (then the newest), at most `limit`, with how many there are. Two queries."""
    institution_id = getattr(scope.institution, "pk", None)
    open_ = visible(scope, CriticalFinding).filter(
        referral__source_id=institution_id, acknowledged_at__isnull=True
    )
    findings = list(
        open_.select_related("referral__study", "referral__target").order_by(
            F("due_at").asc(nulls_last=True), "-flagged_at", "-pk"
        )[:limit]
    )
    return OpenCriticals(findings=findings, count=open_.count(), now=now or timezone.now())
