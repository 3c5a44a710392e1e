"""Web pages of exam registration: register an exam, a day's list with status, cancel."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from referrals.models import RegistrationStatus
from referrals.registration import selectors, services
from tenants import access, roles
from tenants.audit import AuditCode, AuditObject, audit_read
from tenants.errors import ApplicationError

MODALITIES = [
    ("CT", "CT"),
    ("DX", gettext_lazy("DX (digital radiography)")),
    ("CR", "CR"),
    ("MR", "MR"),
    ("US", gettext_lazy("US (ultrasound)")),
    ("MG", gettext_lazy("MG (mammography)")),
    ("XA", "XA"),
    ("RF", "RF"),
    ("NM", "NM"),
    ("PT", "PT"),
    ("ES", gettext_lazy("ES (endoscopy)")),
    ("ECG", "ECG"),
    ("OT", gettext_lazy("OT (other)")),
]
SEXES = [
    ("", "—"),
    ("M", gettext_lazy("Male")),
    ("F", gettext_lazy("Female")),
    ("O", gettext_lazy("Other")),
]


class RegistrationForm(forms.Form):
    patient_id = forms.CharField(label=gettext_lazy("Patient ID"), max_length=64)
    issuer = forms.CharField(
        label=gettext_lazy("Issuer of patient ID"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("Who gave the ID, e.g. the clinic's code; leave empty if unsure."),
    )
    family_name = forms.CharField(label=gettext_lazy("Family name"), max_length=64)
    given_name = forms.CharField(label=gettext_lazy("Given name"), max_length=64, required=False)
    family_name_alphabetic = forms.CharField(
        label=gettext_lazy("Family name in pinyin"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("Left empty, it is spelled from the characters."),
    )
    given_name_alphabetic = forms.CharField(
        label=gettext_lazy("Given name in pinyin"), max_length=64, required=False
    )
    birth_date = forms.DateField(
        label=gettext_lazy("Birth date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    sex = forms.ChoiceField(label=gettext_lazy("Sex"), choices=SEXES, required=False)
    modality = forms.ChoiceField(label=gettext_lazy("Modality"), choices=MODALITIES)
    body_part = forms.CharField(label=gettext_lazy("Body part"), max_length=64, required=False)
    procedure_description = forms.CharField(
        label=gettext_lazy("Requested procedure"),
        max_length=64,
        help_text=gettext_lazy("What to do, e.g. chest CT without contrast."),
    )
    requesting_physician = forms.CharField(
        label=gettext_lazy("Requesting doctor"), max_length=64, required=False
    )
    clinical_question = forms.CharField(
        label=gettext_lazy("Clinical question"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    scheduled_at = forms.DateTimeField(
        label=gettext_lazy("Scheduled for"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    station_ae_title = forms.CharField(
        label=gettext_lazy("Scanner AE title"),
        max_length=16,
        required=False,
        help_text=gettext_lazy("Only that scanner is offered the exam; empty: every scanner."),
    )


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def _forbidden(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "referrals/registration_forbidden.html",
        {"error": _("Only a clinic's technicians and doctors register exams.")},
        status=403,
    )


def _day(request: HttpRequest) -> dt.date:
    return selectors.day_parse(request.GET.get("day", "")) or timezone.localdate()


@login_required
def registration_list(request: HttpRequest) -> HttpResponse:
    """One day's registered exams of the site (today by default), with their status."""
    scope = _scope(request)
    if not scope.has_any_role(*roles.REGISTRATION_ROLES):
        return _forbidden(request)
    day = _day(request)
    rows = list(selectors.registrations_of_day(scope=scope, day=day))
    # The page lists patients by name and ID: one QUERY row per view, like the study list.
    audit_read(
        event=AuditCode.QUERY,
        scope=scope,
        request=request,
        object_type=AuditObject.EXAM_REGISTRATION,
        detail={"day": day.isoformat(), "shown": len(rows)},
    )
    context: dict[str, Any] = {
        "day": day,
        "previous_day": day - dt.timedelta(days=1),
        "next_day": day + dt.timedelta(days=1),
        "is_today": day == timezone.localdate(),
        "rows": rows,
        "open_statuses": {RegistrationStatus.SCHEDULED, RegistrationStatus.IN_PROGRESS},
        "mismatches": sum(r.patient_id_mismatch for r in rows),
    }
    return render(request, "referrals/registration_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def registration_new(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    if not scope.has_any_role(*roles.REGISTRATION_ROLES):
        return _forbidden(request)
    initial = {
        "scheduled_at": timezone.localtime().replace(second=0, microsecond=0),
        "modality": "DX",
    }
    form = RegistrationForm(request.POST if request.method == "POST" else None, initial=initial)
    error, status = "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                registration = services.registration_create(
                    scope=scope, request=request, **form.cleaned_data
                )
            except ApplicationError as exc:
                error, status = str(exc), exc.status_code
            else:
                messages.success(
                    request,
                    _("Registered: accession number %(accession)s.")
                    % {"accession": registration.accession_number},
                )
                day = timezone.localtime(registration.scheduled_at).date().isoformat()
                return HttpResponseRedirect(f"{reverse('registration-list')}?day={day}")
        else:
            status = 400
    return render(
        request,
        "referrals/registration_form.html",
        {"form": form, "error": error},
        status=status,
    )


@login_required
@require_POST
def registration_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    registration = selectors.registration_for_user(scope, pk)
    day = timezone.localtime(registration.scheduled_at).date().isoformat()
    try:
        services.registration_cancel(scope=scope, registration=registration, request=request)
    except ApplicationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Cancelled: the scanners no longer see this exam."))
    return HttpResponseRedirect(f"{reverse('registration-list')}?day={day}")
