"""Web pages of MDT consultations: the list of my sessions, the live room and its minutes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from referrals.archive.person_names import dicom_person_name
from referrals.archive.viewer import preset_list, study_viewer_data, viewer_strings
from tenants import access
from tenants.audit import AuditCode, audit_record
from tenants.models import AuditEvent
from tenants.roles import MDT_ORGANISER_ROLES

from . import selectors
from .minutes_pdf import minutes_pdf_bytes
from .models import MdtSession


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    """My MDT sessions: the upcoming ones (answer, join when open), then the past ones."""
    scope = _scope(request)
    upcoming, past = selectors.my_sessions(scope=scope)
    return render(
        request,
        "consultations/session_list.html",
        {
            "upcoming": upcoming,
            "past": past,
            "may_schedule": scope.has_any_role(*MDT_ORGANISER_ROLES),
            "now": timezone.now(),
        },
    )


def _viewer_strings() -> dict[str, str]:
    return {
        **viewer_strings(),
        "online": _("online"),
        "dropped": _("dropped"),
        "left": _("left"),
        "absent": _("not joined"),
        "presenter": _("presenter"),
        "hand": _("hand raised"),
        "muted": _("muted"),
        "following": _("Following the presenter"),
        "browsing": _("Browsing freely"),
        "closed": _("The session is closed."),
        "revoked": _("You were removed from the room."),
        "reconnecting": _("Connection lost; reconnecting…"),
        "connected": _("Connected"),
        "no_images": _("This study holds no images to show."),
        "confirm_close": _(
            "Close the session for everyone? Nobody can chat, vote or record a conclusion "
            "afterwards, and it cannot be opened again."
        ),
    }


@login_required
def room(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    session = access.get_visible_or_404(scope, MdtSession, pk=pk)
    if selectors.room_admission(session_id=session.pk, user=request.user) is None:  # type: ignore[arg-type]
        # Seen (an administrator, or before/after the window) but not enterable now.
        return render(request, "consultations/room_closed.html", {"session": session}, status=403)
    cases: list[dict[str, Any]] = []
    for case in session.cases.select_related("study", "study__patient"):
        _series, viewer = study_viewer_data(scope, case.study)
        cases.append(
            {
                "id": case.pk,
                "position": case.position,
                "patient": dicom_person_name(case.study.patient_name),
                "description": case.study.description,
                "modalities": case.study.modalities,
                "summary": case.clinical_summary,
                "viewer": viewer,
            }
        )
        audit_record(
            event=AuditCode.STUDY_VIEWED,
            action=AuditEvent.Action.READ,
            scope=scope,
            request=request,
            patient_id=case.study.pid,
            study_uid=case.study.study_uid,
            object_type="study",
            object_id=case.study.study_uid,
        )
    return render(
        request,
        "consultations/room.html",
        {
            "session": session,
            "room": {
                "session": session.pk,
                "socket": f"/ws/mdt/{session.pk}/",
                "cases": cases,
                "presets": preset_list(),
            },
            "strings": _viewer_strings(),
        },
    )


def _minutes_record(request: HttpRequest, pk: int) -> dict[str, Any]:
    session = access.get_visible_or_404(_scope(request), MdtSession, pk=pk)
    return selectors.minutes(session=session)


@login_required
def minutes(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "consultations/minutes.html", {"record": _minutes_record(request, pk)})


@login_required
def minutes_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    record = _minutes_record(request, pk)
    response = HttpResponse(
        minutes_pdf_bytes(record, request=request), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'inline; filename="mdt-{pk}-minutes.pdf"'
    return response
