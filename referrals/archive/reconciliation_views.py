"""The reconciliation queue page: held instances side by side with their study, and the
three decisions (accept into the study, file as a new study, reject)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from referrals.archive import reconciliation as service
from referrals.archive.patient_match import (
    BIRTH_DATE,
    DIFFERENCE_LABELS,
    ISSUER,
    NAME,
    PATIENT_ID,
    SEX,
)
from tenants.access import Scope
from tenants.roles import ARCHIVE_MANAGE_ROLES

_FIELDS = (
    (PATIENT_ID, "patient_id"),
    (ISSUER, "issuer"),
    (NAME, "name"),
    (BIRTH_DATE, "birth_date"),
    (SEX, "sex"),
)


def _scope(request: HttpRequest) -> Scope:
    scope: Scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*ARCHIVE_MANAGE_ROLES):
        raise PermissionDenied
    return scope


def _rows(group: service.HeldGroup) -> list[dict[str, Any]]:
    """Each patient attribute: as sent, as the study holds it, and whether they differ."""
    sent, held = group.sent_patient, group.study_patient
    return [
        {
            "label": DIFFERENCE_LABELS[code],
            "sent": getattr(sent, attr),
            "held": getattr(held, attr) if held else "",
            "differs": code in group.first.differences,
            "is_patient_id": code == PATIENT_ID,  # shown through masked_id, as everywhere
        }
        for code, attr in _FIELDS
    ]


@login_required
def held_list(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    groups = service.held_groups_for_user(scope=scope)
    return render(
        request,
        "referrals/held_list.html",
        {
            "entries": [
                {
                    "group": group,
                    "held": group.first,
                    "rows": _rows(group),
                    "differences": [
                        DIFFERENCE_LABELS.get(code, code) for code in group.first.differences
                    ],
                }
                for group in groups
            ],
            "conflicts": service.held_conflicts_for_user(scope=scope),
            "resolved": list(
                service.held_instances_for_user(scope=scope)
                .filter(resolved_at__isnull=False)
                .exclude(kind="conflict")
                .order_by("-resolved_at")[:20]
            ),
        },
    )


def _decide(
    request: HttpRequest, pk: int, action: Callable[..., service.Resolution], done: str
) -> HttpResponse:
    scope = _scope(request)
    held = service.held_instance_for_user(scope=scope, pk=pk)
    try:
        resolution = action(scope=scope, held=held, request=request)
    except service.ReconciliationError as error:
        messages.error(request, str(error))
        return redirect("held-list")
    messages.success(request, done % {"count": resolution.resolved, "study": resolution.study_uid})
    return redirect("held-list")


@login_required
@require_POST
def held_accept(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(
        request,
        pk,
        service.held_instance_accept,
        _("%(count)s instance(s) filed into study %(study)s."),
    )


@login_required
@require_POST
def held_new_study(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(
        request,
        pk,
        service.held_instance_file_as_new_study,
        _("%(count)s instance(s) filed as the new study %(study)s."),
    )


@login_required
@require_POST
def held_new_patient(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(
        request,
        pk,
        service.held_instance_file_as_new_patient,
        _("%(count)s instance(s) filed under a new patient record (study %(study)s)."),
    )


@login_required
@require_POST
def held_reject(request: HttpRequest, pk: int) -> HttpResponse:
    if request.POST.get("confirm") != "yes":
        service.held_instance_for_user(scope=_scope(request), pk=pk)  # 404 if not theirs
        messages.error(request, _("Confirm the rejection: tick the box."))
        return redirect("held-list")
    return _decide(
        request,
        pk,
        service.held_instance_reject,
        _("%(count)s instance(s) rejected and deleted."),
    )
