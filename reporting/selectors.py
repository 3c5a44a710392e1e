"""Reads of the reporting side, always through tenants.access."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from referrals.models import Referral
from tenants.access import Scope, visible

from .models import Report, ReportStatus, ReportTemplate


def templates_for(scope: Scope, referral: Referral) -> QuerySet[ReportTemplate]:
    """Active templates of the caller's alliances, those fitting the study's modality first."""
    modalities = [m for m in referral.study.modalities.split("\\") if m] or [""]
    body = referral.study.body_parts.upper()
    return (visible(scope, ReportTemplate).filter(active=True)
            .annotate(fit=Case(
                When(modality__in=modalities, body_part=body, then=Value(0)),
                When(modality__in=modalities, then=Value(1)),
                default=Value(2), output_field=IntegerField()))
            .order_by("fit", "modality", "body_part", "code"))


def prior_reports(scope: Scope, report_or_referral: Referral) -> QuerySet[Report]:
    """The patient's signed reports (any alliance site) the caller may see, newest first."""
    key = report_or_referral.study.patient_key
    if not key:
        return visible(scope, Report).none()
    return (visible(scope, Report)
            .filter(study__patient_key=key, status=ReportStatus.FINAL)
            .exclude(referral=report_or_referral)
            .select_related("study", "signed_by", "template")
            .order_by("-signed_at")[:20])
