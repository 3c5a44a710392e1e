"""Web pages of the reading side: the live worklist ("mine", "my pool") and one case.

Thin: reads come from referrals/worklists/selectors.py, steps from referrals/workflow/services.py.
A refusal (already claimed, not yours to release) comes back as a message on the page.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django.views.decorators.http import require_GET, require_POST

from referrals.archive.person_names import dicom_person_name
from referrals.models import Priority, ReferralStatus, ReturnReason
from referrals.workflow import services
from referrals.worklists import selectors as worklist_selectors
from referrals.worklists.selectors import (
    POOL_STATUSES,
    SIGNED_STATUSES,
    WorklistFilterError,
    WorklistFilters,
)
from tenants import access, roles
from tenants.audit import AuditCode, audit_read

PAGE_ROLES = roles.READER_ROLES


def _reader_scope(request: HttpRequest) -> access.Scope:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*PAGE_ROLES):
        raise PermissionDenied
    return scope


def time_left_text(seconds: int) -> str:
    """ "1 h 05 min left", "12 min left", "overdue by 3 min": what a row says of its deadline."""
    minutes = abs(seconds) // 60
    hours, rest = divmod(minutes, 60)
    span = (
        _("%(h)d h %(m)02d min") % {"h": hours, "m": rest}
        if hours
        else _("%(m)d min") % {"m": rest}
    )
    if seconds < 0:
        return _("overdue by %(span)s") % {"span": span}
    return _("%(span)s left") % {"span": span}


def age_text(age: tuple[int, str] | None) -> str:
    """ "47 y", "8 mo", "12 d": a patient's age on the study day, as a row shows it."""
    if age is None:
        return ""
    number, unit = age
    if unit == "years":
        return _("%(n)d y") % {"n": number}
    if unit == "months":
        return _("%(n)d mo") % {"n": number}
    return _("%(n)d d") % {"n": number}


def sex_text(sex: str) -> str:
    """The DICOM patient sex (M, F, O) in words; anything else as recorded."""
    words = {"M": _("Male"), "F": _("Female"), "O": pgettext("patient sex", "Other")}
    return words.get(sex.strip().upper(), sex) if sex else ""


# The table's columns: (sort key or "" when the column does not sort, header).
COLUMNS = (
    ("received", gettext_lazy("Received")),
    ("patient", gettext_lazy("Patient")),
    ("age", gettext_lazy("Age/sex")),
    ("", gettext_lazy("Prior studies")),
    ("modality", gettext_lazy("Modality")),
    ("body_part", gettext_lazy("Body part")),
    ("description", gettext_lazy("Description")),
    ("source", gettext_lazy("Site")),
    ("priority", gettext_lazy("Priority")),
    ("deadline", gettext_lazy("Time left")),
    ("status", gettext_lazy("Status")),
    ("claimed_by", gettext_lazy("Reader")),
)


def _link(filters: WorklistFilters, **changes: str) -> str:
    """The worklist's URL with the filters in force and `changes` (the page's own links)."""
    params = [(k, v) for k, v in filters.params if k not in changes and k != "view"]
    params += [(k, v) for k, v in changes.items() if v]
    url = reverse("worklist")
    return f"{url}?{urlencode(params)}" if params else url


def _columns(filters: WorklistFilters) -> list[dict[str, Any]]:
    """Each header: its label, whether the list is sorted by it (aria-sort), and the link
    that sorts by it (ascending first, then the other way round)."""
    out = []
    for key, label in COLUMNS:
        current = bool(key) and filters.sort_key == key
        ascending = current and not filters.descending
        out.append(
            {
                "key": key or "priors",
                "label": label,
                "aria_sort": ("ascending" if ascending else "descending") if current else "",
                "url": _link(filters, sort=f"-{key}" if ascending else key) if key else "",
            }
        )
    return out


def _sort_choices() -> list[tuple[str, str]]:
    """The same sorts as the headers, for the form (phones show cards, not headers)."""
    choices = []
    for key, label in COLUMNS:
        if key:
            choices += [(key, f"{label} ↑"), (f"-{key}", f"{label} ↓")]
    return choices


def _filters(request: HttpRequest) -> tuple[WorklistFilters, str]:
    try:
        return WorklistFilters.parse(request.GET), ""
    except WorklistFilterError as exc:
        return WorklistFilters(), str(exc)


def _rows(scope: access.Scope, filters: WorklistFilters, view: str) -> list[dict[str, Any]]:
    now = worklist_selectors.now()
    cases = worklist_selectors.worklist(scope=scope, filters=replace(filters, view=view))
    user_id = scope.user.pk if scope.user else None
    return [
        {
            "referral": r,
            "age": age_text(
                worklist_selectors.patient_age(r.study.patient.birth_date, r.study.study_date)
            ),
            "sex": sex_text(r.study.patient.sex),
            "band": worklist_selectors.time_band(r, now),
            "left": time_left_text(worklist_selectors.time_left_seconds(r, now)),
            "mine": r.claimed_by_id == user_id,
            "proposed": r.assigned_to_id == user_id and r.status == ReferralStatus.ROUTED,
            "claimable": r.status == ReferralStatus.ROUTED,
        }
        for r in cases
    ]


def _sections(scope: access.Scope, filters: WorklistFilters) -> dict[str, Any]:
    """The page's tables: "mine" and "my pool"; only the cases held with "claimed by me";
    only the signed ones with "signed by me". Prior counts: one query for every row."""
    if filters.signed_by_me:
        sections = [
            (
                "signed",
                _("Signed by me"),
                _rows(scope, filters, "mine"),
                _("You have not signed a case here yet."),
            ),
        ]
    elif filters.claimed_by_me:
        sections = [
            ("mine", _("Claimed by me"), _rows(scope, filters, "mine"), _("You hold no case."))
        ]
    else:
        sections = [
            ("mine", _("Mine"), _rows(scope, filters, "mine"), _("Nothing is waiting for you.")),
            (
                "pool",
                _("My pool"),
                _rows(scope, filters, "pool"),
                _("No case is waiting in your pools."),
            ),
        ]
    priors = worklist_selectors.worklist_prior_counts(
        scope=scope,
        cases=[row["referral"] for _id, _title, rows, _empty in sections for row in rows],
    )
    for _id, _title, rows, _empty in sections:
        for row in rows:
            row["priors"] = priors.get(row["referral"].pk, 0)
    return {
        "sections": [
            {"id": sid, "title": title, "rows": rows, "empty": empty}
            for sid, title, rows, empty in sections
        ],
        "filters": filters,
        "columns": _columns(filters),
        "clear_url": reverse("worklist"),
    }


def _more_than_patient(filters: WorklistFilters) -> bool:
    return replace(filters, patient="").narrowed


@login_required
@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    scope = _reader_scope(request)
    filters, error = _filters(request)
    statuses = SIGNED_STATUSES if filters.signed_by_me else POOL_STATUSES
    context = {
        "filter_error": error,
        "query": request.GET.urlencode(),
        "sites": worklist_selectors.worklist_sites(scope=scope),
        "priorities": Priority.choices,
        "statuses": [(s, ReferralStatus(s).label) for s in statuses],
        "sorts": _sort_choices(),
        # On a phone the filters beyond the patient search stay unfolded while one is in force.
        "more_open": _more_than_patient(filters),
        **_sections(scope, filters),
    }
    return render(request, "referrals/worklist.html", context)


@login_required
@require_GET
def worklist_rows(request: HttpRequest) -> HttpResponse:
    """The tables as an HTML fragment: what the live page swaps in after an event, sorted
    and filtered as the page's own address says."""
    scope = _reader_scope(request)
    filters, _error = _filters(request)
    return render(
        request,
        "referrals/worklist_rows.html",
        {"query": request.GET.urlencode(), **_sections(scope, filters)},
    )


def _back(request: HttpRequest) -> HttpResponseRedirect:
    query = request.POST.get("query", "")
    url = reverse("worklist")
    return HttpResponseRedirect(f"{url}?{query}" if query and "\n" not in query else url)


def _refused(request: HttpRequest, exc: services.ReferralError) -> None:
    if exc.code == "not_found":
        raise Http404
    messages.error(request, str(exc))


@login_required
@require_POST
def worklist_claim(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _reader_scope(request)
    try:
        referral = services.referral_claim(scope=scope, referral_id=pk)
    except services.ReferralError as exc:
        _refused(request, exc)
        return _back(request)
    messages.success(request, _("Case #%(id)s is yours.") % {"id": referral.pk})
    return _back(request)


@login_required
@require_POST
def worklist_next(request: HttpRequest) -> HttpResponse:
    scope = _reader_scope(request)
    try:
        referral = services.referral_claim_next(scope=scope)
    except services.ReferralError as exc:
        _refused(request, exc)
        return _back(request)
    if referral is None:
        messages.info(request, _("No case is waiting in your pools."))
        return _back(request)
    return HttpResponseRedirect(reverse("worklist-case", args=[referral.pk]))


@login_required
@require_POST
def worklist_open(request: HttpRequest, pk: int) -> HttpResponse:
    """The claimer's first look at the case (the case page posts it when it has loaded):
    the claim is then kept. A GET of the page changes nothing."""
    scope = _reader_scope(request)
    try:
        services.referral_open(scope=scope, referral_id=pk)
    except services.ReferralError as exc:
        if request.headers.get("Accept", "").startswith("application/json"):
            return JsonResponse({"detail": str(exc)}, status=409)
        _refused(request, exc)
        return _case_url(pk)
    if request.headers.get("Accept", "").startswith("application/json"):
        return HttpResponse(status=204)
    return _case_url(pk)


@login_required
@require_GET
def worklist_case(request: HttpRequest, pk: int) -> HttpResponse:
    """One case. Reading it changes nothing; the page then posts that the claimer opened
    it (worklist_open)."""
    scope = _reader_scope(request)
    referral = worklist_selectors.case_for_reader(scope=scope, pk=pk)
    referred, priors = worklist_selectors.case_studies(scope=scope, referral=referral)
    audit_read(
        event=AuditCode.STUDY_VIEWED,
        scope=scope,
        request=request,
        study=referral.study,
        object_type="referral",
        object_id=referral.pk,
        detail={"priors": len(priors)},
    )
    now = worklist_selectors.now()
    mine = scope.user is not None and referral.claimed_by_id == scope.user.pk
    return render(
        request,
        "referrals/worklist_case.html",
        {
            "referral": referral,
            "patient": dicom_person_name(referral.study.patient_name),
            "band": worklist_selectors.time_band(referral, now),
            "left": time_left_text(worklist_selectors.time_left_seconds(referral, now)),
            "referred": [(s, dicom_person_name(s.patient_name)) for s in referred],
            "priors": [(s, dicom_person_name(s.patient_name)) for s in priors],
            "mine": mine,
            "to_open": mine
            and referral.status == ReferralStatus.CLAIMED
            and referral.opened_at is None,
            "can_claim": referral.status == ReferralStatus.ROUTED,
            "can_release": mine and referral.status == ReferralStatus.CLAIMED,
            "can_report": mine
            and referral.status in (ReferralStatus.CLAIMED, ReferralStatus.REPORTING),
            "can_return": (
                referral.target_id == getattr(scope.institution, "pk", None)
                and referral.status
                in (ReferralStatus.ROUTED, ReferralStatus.CLAIMED, ReferralStatus.REPORTING)
                and referral.claimed_by_id in (None, getattr(scope.user, "pk", None))
            ),
            "return_reasons": ReturnReason.choices,
        },
    )


def _case_url(referral_id: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("worklist-case", args=[referral_id]))


@login_required
@require_POST
def worklist_release(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _reader_scope(request)
    try:
        services.referral_release(
            scope=scope, referral_id=pk, reason=request.POST.get("reason", "")[:500]
        )
    except services.ReferralError as exc:
        _refused(request, exc)
        return _case_url(pk)
    messages.success(request, _("The case is back in its pool."))
    return HttpResponseRedirect(reverse("worklist"))


@login_required
@require_POST
def worklist_return(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _reader_scope(request)
    try:
        services.referral_return(
            scope=scope,
            referral_id=pk,
            reason=request.POST.get("reason", ""),
            comment=request.POST.get("comment", "")[:2000],
        )
    except services.ReferralError as exc:
        _refused(request, exc)
        return _case_url(pk)
    messages.success(request, _("The study was returned to its site."))
    return HttpResponseRedirect(reverse("worklist"))
