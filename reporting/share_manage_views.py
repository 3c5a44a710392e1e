"""The signed-in side of patient links: "Share with the patient" on the reading side's report
page and the clinic's referral page. Creates a link (its URL and QR code shown this once:
only the token's hash is kept), lists the report's links with their openings, and revokes.
The writes are reporting/sharing.py's, the same as the API's
(/api/v1/reports/{id}/share-links/).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from referrals.archive.person_names import dicom_person_name
from tenants import access, roles

from . import pdf, sharing
from .models import Report, ReportStatus
from .services import ReportError


def may_share(scope: access.Scope | None, report: Report | None) -> bool:
    """Whether the page shows the "Share with the patient" button for `report`."""
    return (
        scope is not None
        and report is not None
        and scope.institution is not None
        and report.status == ReportStatus.FINAL
        and scope.has_any_role(*roles.SHARE_ROLES)
        and scope.institution.pk in (report.institution_id, report.referral.source_id)
    )


def _report(request: HttpRequest, report_pk: int) -> tuple[access.Scope, Report]:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    report = access.get_visible_or_404(
        scope, Report.objects.select_related("referral", "study", "institution"), pk=report_pk
    )
    if not may_share(scope, report):
        raise PermissionDenied
    return scope, report


def _back(scope: access.Scope, report: Report) -> str:
    """The page the person came from: the report page (reader) or the referral (clinic)."""
    if scope.institution is not None and scope.institution.pk == report.institution_id:
        return reverse("report-edit", args=[report.referral_id])
    return reverse("referral-detail", args=[report.referral_id])


@login_required
def report_share(request: HttpRequest, report_pk: int) -> HttpResponse:
    scope, report = _report(request, report_pk)
    context: dict[str, Any] = {
        "report": report,
        "study": report.study,
        "patient_name": dicom_person_name(report.study.patient_name),
        "back": _back(scope, report),
    }
    status = 200
    if request.method == "POST":
        try:
            link, token = sharing.share_link_create(scope=scope, report_id=report.pk)
        except ReportError as exc:
            context["error"], status = str(exc), exc.status_code
        else:
            url = request.build_absolute_uri(reverse("share-page", args=[token]))
            context.update({"new_link": link, "new_url": url, "qr": pdf.qr_svg_data_uri(url)})
    context["links"] = (
        sharing.share_links_visible(scope)
        .filter(report=report)
        .select_related("created_by", "created_for")
    )
    return render(request, "reporting/report_share.html", context, status=status)


@login_required
@require_POST
def report_share_revoke(request: HttpRequest, report_pk: int, link_pk: int) -> HttpResponse:
    scope, report = _report(request, report_pk)
    if not sharing.share_links_visible(scope).filter(pk=link_pk, report=report).exists():
        raise Http404
    sharing.share_link_revoke(scope=scope, link_id=link_pk)
    messages.success(request, _("The link was withdrawn; it no longer opens."))
    return redirect(reverse("report-share", args=[report.pk]))
