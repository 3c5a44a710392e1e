"""The drafting page: the study's viewer on one side, the structured report on the other."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from referrals.archive.viewer import study_viewer_data, viewer_strings
from referrals.models import Referral
from tenants import access, roles
from tenants.audit import AuditCode, audit_read

from . import selectors, services
from .models import CriticalFinding, Report, ReportStatus, SecondReadOutcome
from .share_manage_views import may_share
from .workflow import ReportState, state_of


def _page_strings() -> dict[str, str]:
    return {
        "saved": _("Saved"),
        "saving": _("Saving…"),
        "offline": _(
            "Not saved yet: the network is down. Your text is kept in this browser "
            "and will be sent when the connection is back."
        ),
        "conflict": _(
            "This report was changed elsewhere. Your text is kept in this browser; "
            "reload to see the other version."
        ),
        "restored": _("Unsaved text from your last session was restored."),
        "stale_local": _("This browser holds unsaved text from an older version of this report."),
        "restore": _("Restore it"),
        "failed": _("Not saved: %(reason)s"),
        "not_accepted": _(
            "The hub did not accept this (error %(status)s). Reload the page and try again."
        ),
        "confirm_final": _("Sign this report as final? A final report cannot be changed."),
        "confirm_second_read": _(
            "Record this second read? Agreeing or a minor discrepancy signs the report final "
            "with your name beside the author's."
        ),
    }


@login_required
def report_edit(request: HttpRequest, referral_pk: int) -> HttpResponse:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    referral = access.get_visible_or_404(
        scope, Referral.objects.select_related("study__patient", "source", "target"), pk=referral_pk
    )
    if not scope.has_any_role(*roles.READER_ROLES):
        raise PermissionDenied
    if request.method == "GET":
        audit_read(
            event=AuditCode.STUDY_VIEWED,
            scope=scope,
            request=request,
            study=referral.study,
            object_type="report_editor",
            object_id=referral.pk,
        )
    error = ""
    status_code = 200
    if request.method == "POST":
        try:
            services.report_create(
                scope=scope, referral_id=referral.pk, template_id=request.POST.get("template")
            )
            return redirect(reverse("report-edit", args=[referral.pk]))
        except services.ReportError as exc:
            error, status_code = str(exc), exc.status_code
    report = (
        access.visible(scope, Report)
        .filter(referral=referral)
        .select_related("template", "author", "signed_by", "preliminary_by")
        .first()
    )
    series_list, viewer = study_viewer_data(scope, referral.study)
    context: dict[str, Any] = {
        "referral": referral,
        "study": referral.study,
        "report": report,
        "error": error,
        "series_list": series_list,
        "viewer": viewer,
        "viewable": {s["uid"] for s in viewer["series"]},
        "priors": selectors.prior_reports(scope, referral),
        "is_senior": scope.has_any_role(*roles.FINAL_SIGN_ROLES),
        "outcomes": SecondReadOutcome.choices,
        "viewer_strings": viewer_strings(),
    }
    if report is None:
        context["templates"] = selectors.templates_for(scope, referral)
    else:
        user = scope.user
        is_author = user is not None and report.author_id == user.pk
        can_second_read = (
            context["is_senior"]
            and not is_author
            and report.institution_id == getattr(scope.institution, "pk", None)
            and state_of(report) == ReportState.SECOND_READ
        )
        # The senior corrects the junior's text in place before co-signing it.
        editable = (is_author and report.status == ReportStatus.DRAFT) or can_second_read
        context.update(
            {
                "fields": [
                    {**f, "value": report.content.get(f["key"], "")}
                    for f in report.template.fields.get("fields", [])
                ],
                "editable": editable,
                "can_second_read": can_second_read,
                "addenda": report.addenda.select_related("author"),
                "can_share": may_share(scope, report),
                "config": {
                    "report": report.pk,
                    "version": report.version,
                    "status": report.status,
                    "api": reverse("api:report-detail", args=[report.pk]),
                    "sign": reverse("api:report-sign", args=[report.pk]),
                    "next": reverse("reading-next"),
                    "editable": editable,
                    "user": user.pk if user else None,
                },
                "strings": _page_strings(),
            }
        )
    return render(request, "reporting/report_edit.html", context, status=status_code)


@login_required
@require_POST
def critical_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """The clinic's button on its referral page (critical_panel.html)."""
    from django.contrib import messages

    from .critical import critical_acknowledge as acknowledge

    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    try:
        finding = acknowledge(scope=scope, finding_id=pk, note=request.POST.get("note", "")[:500])
    except services.ReportError as exc:
        if exc.status_code == 404:
            raise Http404 from None
        messages.error(request, str(exc))
        referral_id = (
            access.visible(scope, CriticalFinding)
            .filter(pk=pk)
            .values_list("referral_id", flat=True)
            .first()
        )
        return redirect(reverse("referral-detail", args=[referral_id]))
    messages.success(request, _("You acknowledged the critical finding."))
    return redirect(reverse("referral-detail", args=[finding.referral_id]))
