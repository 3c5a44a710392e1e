"""Identity pages: the issuers of patient IDs (hospital administrator), and the master
patient index's review queue, search, patient page, link and unlink (alliance administrator).

Patient IDs that are resident identity numbers are shown masked; the number itself is not
kept by the index.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from referrals.models import LinkStatus, Patient
from tenants import access, roles
from tenants.errors import ApplicationError

from . import selectors, services
from .issuers import patient_id_issuer_set


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"), max_length=300, required=False, strip=True
    )


class IssuerForm(forms.Form):
    issuer = forms.CharField(
        label=gettext_lazy("Issuer of patient IDs"),
        max_length=64,
        required=False,
        help_text=gettext_lazy(
            "Given to images that arrive without an issuer. Empty: none is configured."
        ),
    )
    gateway = forms.IntegerField(required=False, widget=forms.HiddenInput)


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "referrals/identity/forbidden.html", {"error": message}, status=403)


def _reviewer(request: HttpRequest) -> access.Scope | None:
    scope = _scope(request)
    return scope if scope.has_any_role(*roles.PATIENT_IDENTITY_ROLES) else None


def _not_reviewer(request: HttpRequest) -> HttpResponse:
    return _forbidden(request, _("Only the alliance administrator links patient records."))


# --- Issuers of patient IDs ------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def issuer_settings(request: HttpRequest) -> HttpResponse:
    """The institution's issuer of patient IDs, and each of its gateways' own."""
    scope = _scope(request)
    if not scope.has_any_role(*roles.PATIENT_ID_ISSUER_ROLES):
        return _forbidden(request, _("Only the hospital administrator sets the issuer."))
    status = 200
    if request.method == "POST":
        form = IssuerForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("The issuer could not be read."))
            status = 400
        else:
            gateway_pk = form.cleaned_data["gateway"]
            gateway = (
                selectors.gateway_for_issuer(scope, gateway_pk) if gateway_pk is not None else None
            )
            try:
                patient_id_issuer_set(
                    scope=scope,
                    issuer=form.cleaned_data["issuer"],
                    gateway=gateway,
                    request=request,
                )
            except ApplicationError as exc:
                messages.error(request, str(exc))
                status = exc.status_code
            else:
                messages.success(request, _("Saved: images received from now on use it."))
                return HttpResponseRedirect(reverse("identity-issuers"))
    rows = selectors.issuer_settings(scope)
    return render(
        request, "referrals/identity/issuers.html", {"rows": rows, "scope": scope}, status=status
    )


# --- The review queue, search and one patient's page ---------------------------------------


@login_required
def identity_review(request: HttpRequest) -> HttpResponse:
    """Pairs of records the linker was not sure of, side by side."""
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    links = list(selectors.links_proposed(scope)[:100])
    return render(request, "referrals/identity/review.html", {"links": links})


@login_required
def identity_search(request: HttpRequest) -> HttpResponse:
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    query = request.GET.get("q", "")[:100]
    link_to = request.GET.get("link_to", "")
    anchor: Patient | None = None
    if link_to:
        anchor = selectors.patient_for_identity(scope, link_to)
    results = selectors.patients_search(scope, query)
    return render(
        request,
        "referrals/identity/search.html",
        {"query": query, "results": results, "anchor": anchor, "form": ReasonForm()},
    )


@login_required
def identity_patient(request: HttpRequest, pk: int) -> HttpResponse:
    """One record: the records linked with it as one person, and its links with history."""
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    patient = selectors.patient_for_identity(scope, pk)
    context: dict[str, Any] = {
        "patient": patient,
        "records": list(selectors.records_of_person(scope, patient)),
        "links": list(selectors.links_of_patient(scope, patient)),
        "linked": LinkStatus.LINKED,
        "proposed": LinkStatus.PROPOSED,
        "form": ReasonForm(),
    }
    return render(request, "referrals/identity/patient.html", context)


# --- Decisions -----------------------------------------------------------------------------------


def _reason(request: HttpRequest) -> str:
    form = ReasonForm(request.POST)
    return form.cleaned_data["reason"] if form.is_valid() else ""


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    # Only our own pages: a path, never another host.
    if not target.startswith("/") or target.startswith("//"):
        target = default
    return HttpResponseRedirect(target)


@login_required
@require_POST
def identity_link_decide(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    link = selectors.link_for_user(scope, pk)
    decision = request.POST.get("decision", "")
    if decision not in ("same", "different"):
        messages.error(request, _("Say whether the two records are the same person."))
        return _back(request, reverse("identity-review"))
    services.patient_link_decide(
        scope=scope,
        link=link,
        same_person=decision == "same",
        reason=_reason(request),
        request=request,
    )
    if decision == "same":
        messages.success(request, _("Linked: the two records are one person."))
    else:
        messages.success(request, _("Recorded: not the same person."))
    return _back(request, reverse("identity-review"))


@login_required
@require_POST
def identity_link_undo(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    link = selectors.link_for_user(scope, pk)
    try:
        services.patient_unlink(scope=scope, link=link, reason=_reason(request), request=request)
    except ApplicationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Unlinked: each record is its own person again."))
    return _back(request, reverse("identity-patient", args=[link.patient_a_id]))


@login_required
@require_POST
def identity_patient_link(request: HttpRequest, pk: int) -> HttpResponse:
    """Link this record with another one found by the search."""
    scope = _reviewer(request)
    if scope is None:
        return _not_reviewer(request)
    patient = selectors.patient_for_identity(scope, pk)
    other = selectors.patient_for_identity(scope, request.POST.get("other", ""))
    alliance_id = selectors.alliance_of_pair(scope, patient, other)
    page = reverse("identity-patient", args=[patient.pk])
    if alliance_id is None:
        messages.error(request, _("The two records' sites share none of your alliances."))
        return HttpResponseRedirect(page)
    try:
        services.patient_link_manual(
            scope=scope,
            alliance_id=alliance_id,
            patient=patient,
            other=other,
            reason=_reason(request),
            request=request,
        )
    except ApplicationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Linked: the two records are one person."))
    return HttpResponseRedirect(page)
