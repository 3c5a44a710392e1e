"""Reporting panels other apps' pages include: the clinic's (report + critical findings)
and the reader's (key images + critical flag) on the drafting page."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import get_language

from referrals.models import Referral
from tenants import access

from .. import critical, key_images
from ..models import Report, ReportStatus
from ..share_manage_views import may_share

register = template.Library()


def _scope(context: Any) -> access.Scope | None:
    request = context.get("request")
    return getattr(request, "hub_scope", None) if request is not None else None


def _findings(scope: access.Scope, referral: Referral) -> list[dict[str, Any]]:
    return [
        {"finding": f, "can_ack": f.is_open and critical.may_acknowledge(scope, f)}
        for f in critical.findings_for(scope, referral)
    ]


@register.inclusion_tag("reporting/critical_report_panel.html", takes_context=True)
def reporting_panel(context: Any, referral: Referral) -> dict[str, Any]:
    """The clinic's view of a referral's outcome: critical alerts first, then the report."""
    scope = _scope(context)
    if scope is None or scope.institution is None:
        return {"referral": referral, "findings": [], "report": None}
    report = (
        access.visible(scope, Report)
        .filter(referral=referral)
        .exclude(status=ReportStatus.DRAFT)
        .select_related("template", "signed_by", "author", "preliminary_by")
        .first()
    )
    english = (get_language() or "").startswith("en")

    def label(item: dict[str, Any]) -> str:
        return str((english and item.get("label_en")) or item.get("label") or "")

    fields: list[dict[str, Any]] = []
    if report is not None:
        for f in report.template.fields.get("fields", []):
            value = report.content.get(f["key"], "")
            choice = {c["value"]: c for c in f.get("choices", [])}.get(value)
            fields.append(
                {"key": f["key"], "label": label(f), "value": label(choice) if choice else value}
            )
    return {
        "referral": referral,
        "report": report,
        "fields": fields,
        "findings": _findings(scope, referral),
        "key_images": [
            (k, key_images.thumbnail_url(k)) for k in key_images.key_images_of(scope, report)
        ]
        if report
        else [],
        "addenda": report.addenda.select_related("author") if report else [],
        "csrf_token": context.get("csrf_token"),
        "can_share": may_share(scope, report),
    }


@register.inclusion_tag("reporting/critical_reader_panel.html", takes_context=True)
def reporting_reader_panel(
    context: Any, referral: Referral, report: Report, editable: bool
) -> dict[str, Any]:
    """The drafting page's key images (pick from the viewer) and critical-finding flag."""
    scope = _scope(context)
    assert scope is not None
    return {
        "referral": referral,
        "report": report,
        "editable": editable,
        "key_images": [
            (k, key_images.thumbnail_url(k)) for k in key_images.key_images_of(scope, report)
        ],
        "findings": _findings(scope, referral),
        "urls": {
            "key_images": reverse("api:report-key-images", args=[report.pk]),
            "critical": reverse("api:critical-finding-list"),
            "referral": referral.pk,
        },
    }
