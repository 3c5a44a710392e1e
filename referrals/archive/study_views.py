"""Web pages of the referrals app: the institution's studies, and one study with its viewer."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from referrals.archive import selectors
from referrals.archive.correction.services import may_correct
from referrals.archive.person_names import dicom_person_name
from referrals.archive.viewer import study_viewer_data, viewer_strings
from referrals.models import Study
from referrals.workflow.views import study_referral_context
from tenants import access
from tenants.audit import AuditCode, audit_read, audit_record
from tenants.models import AuditEvent
from tenants.roles import IMAGE_READ_ROLES

STUDIES_PER_PAGE = 25
MAX_QUERY = 64


def _require_image_role(request: HttpRequest) -> access.Scope:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*IMAGE_READ_ROLES):
        raise PermissionDenied
    return scope


@dataclass(frozen=True)
class StudyRow:
    study: Study
    patient: str

    @property
    def modalities(self) -> list[str]:
        return [m for m in self.study.modalities.split("\\") if m]


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    scope = _require_image_role(request)
    query = request.GET.get("q", "").strip()[:MAX_QUERY]
    page = Paginator(selectors.study_search(scope=scope, query=query), STUDIES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = [StudyRow(study, dicom_person_name(study.patient_name)) for study in page]
    if query:  # a search for a patient by name, ID or accession: who looked for whom
        audit_read(
            event=AuditCode.QUERY,
            scope=scope,
            request=request,
            object_type="study",
            detail={"query": query, "shown": len(rows)},
        )
    return render(
        request, "referrals/study_list.html", {"page": page, "rows": rows, "query": query}
    )


@login_required
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _require_image_role(request)
    study = access.get_visible_or_404(scope, Study.objects.select_related("patient"), pk=pk)
    series_list, viewer = study_viewer_data(scope, study)
    audit_record(
        event=AuditCode.STUDY_VIEWED,
        action=AuditEvent.Action.READ,
        scope=scope,
        request=request,
        patient_id=study.pid,
        study_uid=study.study_uid,
        object_type="study",
        object_id=study.study_uid,
    )
    return render(
        request,
        "referrals/study_detail.html",
        {
            "study": study,
            "patient_display": dicom_person_name(study.patient.name or study.patient_name),
            "referring_display": dicom_person_name(study.referring_physician_name),
            "series_list": series_list,
            "viewable": {s["uid"] for s in viewer["series"]},
            "viewer": viewer,
            "viewer_strings": viewer_strings(),
            "modalities": [m for m in study.modalities.split("\\") if m],
            "may_correct": may_correct(scope) and study.institution == scope.institution,
            **study_referral_context(scope, study),
        },
    )
