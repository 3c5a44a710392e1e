"""The study's "Correct" page: edit attributes, move / split / merge, reject, undo."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from referrals.archive.correction import selectors
from referrals.archive.correction.kos import REASONS, SELECTABLE_REASONS
from referrals.archive.correction.services import (
    EDITABLE,
    CorrectionError,
    correction_request,
    may_correct,
    study_attributes,
    study_for_correction,
)
from referrals.archive.person_names import dicom_person_name
from referrals.models import Correction, CorrectionKind
from tenants import access
from tenants.audit import AuditCode, AuditObject, audit_read

FINDER_PAGE = 25
MAX_QUERY = 64

REASON_LABELS = {
    "113001": gettext_lazy("Rejected for quality reasons"),
    "113037": gettext_lazy("Rejected for patient safety reasons"),
    "113038": gettext_lazy("Incorrect modality worklist entry"),
}


def _form_data(request: HttpRequest, kind: str) -> dict[str, Any]:
    post = request.POST
    data: dict[str, Any] = {"reason": post.get("reason", "")}
    if kind == CorrectionKind.EDIT:
        data["changes"] = {
            keyword: post[field] for field, keyword in EDITABLE.items() if field in post
        }
    data["series_uids"] = post.getlist("series_uids")
    for name in ("target_study_uid", "other_study_uid", "code", "rejection"):
        if name in post:
            data[name] = post[name]
    return data


@login_required
@require_http_methods(["GET", "POST"])
def study_correct(request: HttpRequest, pk: int) -> HttpResponse:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    try:
        study = study_for_correction(scope=scope, pk=pk)
    except CorrectionError as error:
        return HttpResponse(error.message, status=error.status_code, content_type="text/plain")
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        if request.POST.get("confirm") != "yes" and kind == CorrectionKind.REJECT:
            messages.error(request, _("Confirm the rejection: tick the box."))
            return redirect("study-correct", pk=study.pk)
        try:
            correction_request(
                scope=scope, study=study, kind=kind, data=_form_data(request, kind), request=request
            )
        except CorrectionError as error:
            messages.error(request, error.message)
            return redirect("study-correct", pk=study.pk)
        messages.success(request, _("The correction was recorded."))
        # Moving every series out empties the study: the task (which may run after this
        # answer) removes it, so its page would be gone; back to the finder instead.
        if not selectors.study_still_exists(study=study) or (
            kind == CorrectionKind.MOVE
            and selectors.study_emptied_by(
                study=study, series_uids=request.POST.getlist("series_uids")
            )
        ):
            return redirect("console-correct-studies")
        return redirect("study-correct", pk=study.pk)
    others = selectors.correction_partners(study=study)
    # The page shows the patient's identity: who looked is on the trail, as for the study page.
    audit_read(
        event=AuditCode.STUDY_VIEWED,
        scope=scope,
        request=request,
        study=study,
        object_type="study",
        object_id=study.study_uid,
        detail={"page": "correct"},
    )
    values = study_attributes(study)
    return render(
        request,
        "referrals/study_correct.html",
        {
            "study": study,
            "patient_display": dicom_person_name(study.patient_name),
            "fields": [(field, keyword, values[keyword]) for field, keyword in EDITABLE.items()],
            "series": selectors.correction_series(study=study),
            "others": [(o, dicom_person_name(o.patient_name)) for o in others],
            "reasons": [
                (code, REASON_LABELS.get(code, REASONS[code])) for code in SELECTABLE_REASONS
            ],
            "corrections": access.visible(scope, Correction)
            .filter(study=study)
            .order_by("-created_at")[:50],
        },
    )


def _finder_day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
def correction_finder(request: HttpRequest) -> HttpResponse:
    """The console's "Studies of this institution": an administrator (who reads no images)
    finds the study to correct by patient ID, name, accession number or date."""
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if not may_correct(scope):
        return HttpResponse(
            _("Only your institution's administrators may correct stored studies."),
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    query = request.GET.get("q", "").strip()[:MAX_QUERY]
    day_text = request.GET.get("date", "").strip()
    day = _finder_day(day_text)
    page = Paginator(
        selectors.correctable_studies(scope=scope, query=query, day=day), FINDER_PAGE
    ).get_page(request.GET.get("page"))
    rows = [(study, dicom_person_name(study["patient_name"])) for study in page]
    # The table names patients: who looked for whom is on the trail, as a query.
    audit_read(
        event=AuditCode.QUERY,
        scope=scope,
        request=request,
        object_type=AuditObject.STUDY,
        detail={
            "page": "correct-finder",
            "query": query,
            "date": day.isoformat() if day else "",
            "shown": len(rows),
        },
    )
    return render(
        request,
        "referrals/correction_finder.html",
        {
            "scope": scope,
            "page": page,
            "rows": rows,
            "query": query,
            "day": day,
            "bad_date": bool(day_text) and day is None,
        },
    )
