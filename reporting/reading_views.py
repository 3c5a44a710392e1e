"""From one report to the next: the seniors' second-read queue, and "sign and next"."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from referrals.archive.person_names import dicom_person_name
from tenants import access, roles
from tenants.errors import ApplicationError

from . import selectors, services


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


@login_required
@require_GET
def second_read_queue(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    if scope.institution is None or not scope.has_any_role(*roles.FINAL_SIGN_ROLES):
        raise PermissionDenied
    reports = selectors.second_read_queue(scope)
    return render(
        request,
        "reporting/second_reads.html",
        {"rows": [(r, dicom_person_name(r.study.patient_name)) for r in reports]},
    )


@login_required
@require_POST
def reading_next(request: HttpRequest) -> HttpResponse:
    """After a signature: the next report to write, or the next second read for a senior."""
    scope = _scope(request)
    if not scope.has_any_role(*roles.READER_ROLES):
        raise PermissionDenied
    if request.POST.get("queue") == "second_read":
        waiting = selectors.second_read_queue(scope).first()
        if waiting is None:
            messages.info(request, _("No other report waits for a second read."))
            return HttpResponseRedirect(reverse("second-read-queue"))
        return HttpResponseRedirect(reverse("report-edit", args=[waiting.referral_id]))
    try:
        referral = services.reading_next_case(scope=scope)
    except ApplicationError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("worklist"))
    if referral is None:
        messages.info(request, _("No case is waiting in your pools."))
        return HttpResponseRedirect(reverse("worklist"))
    return HttpResponseRedirect(reverse("report-edit", args=[referral.pk]))
