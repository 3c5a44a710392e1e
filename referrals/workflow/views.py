"""Web pages of referrals: a site sends a study, lists its requests, and follows each one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from referrals.models import OPEN_STATUSES, Priority, Referral, ReferralKind, ReferralStatus, Study
from referrals.registration import selectors as registration_selectors
from referrals.workflow import services
from referrals.workflow.states import ACTION_LABELS, STEPS
from tenants import access, roles
from tenants.audit import AuditCode, audit_read
from tenants.models import Role

REFERRALS_PER_PAGE = 25
# Events the state machine does not name (recorded beside a step, not as one).
EXTRA_LABELS = {
    "unroutable": gettext_lazy("matched no routing rule"),
    "study_corrected": gettext_lazy("study corrected"),
}
CLOSED_FOR_SENDING = (ReferralStatus.CANCELLED, ReferralStatus.RETURNED)


class ReferralSendForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"), choices=ReferralKind.choices, initial=ReferralKind.REMOTE_READ
    )
    priority = forms.ChoiceField(
        label=gettext_lazy("Priority"), choices=Priority.choices, initial=Priority.ROUTINE
    )
    clinical_question = forms.CharField(
        label=gettext_lazy("Clinical question"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("What should the reader look for? Symptoms, history."),
    )


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def _referrals(scope: access.Scope) -> QuerySet[Referral]:
    return access.visible(
        scope, Referral.objects.select_related("study", "source", "target", "pool", "claimed_by")
    )


def can_send(scope: access.Scope, study: Study) -> bool:
    return scope.has_any_role(*roles.REQUEST_ROLES) and study.institution_id == getattr(
        scope.institution, "pk", None
    )


def study_referral_context(scope: access.Scope, study: Study) -> dict[str, Any]:
    """What the study page shows of referrals: the ones it has, and the send form."""
    referrals = list(_referrals(scope).filter(study=study).order_by("-requested_at", "-pk")[:10])
    live_kinds = {r.kind for r in referrals if r.status not in CLOSED_FOR_SENDING}
    return {
        "study_referrals": referrals,
        "can_send_referral": can_send(scope, study),
        "send_form": ReferralSendForm(
            initial={
                "kind": ReferralKind.REMOTE_READ
                if ReferralKind.REMOTE_READ not in live_kinds
                else ReferralKind.CONSULTATION,
                **registration_selectors.referral_defaults_for_study(scope=scope, study=study),
            }
        ),
    }


@login_required
@require_http_methods(["GET", "POST"])
def referral_send(request: HttpRequest, pk: int) -> HttpResponse:
    """Send the study for reading (or consultation, or transfer): one referral per kind."""
    scope = _scope(request)
    study = access.get_visible_or_404(scope, Study, pk=pk)
    form = ReferralSendForm(
        request.POST if request.method == "POST" else None,
        initial=registration_selectors.referral_defaults_for_study(scope=scope, study=study),
    )
    error, status = "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                referral, created = services.referral_request(
                    scope=scope,
                    study=study,
                    kind=form.cleaned_data["kind"],
                    priority=form.cleaned_data["priority"],
                    clinical_question=form.cleaned_data["clinical_question"],
                )
            except services.ReferralError as exc:
                error, status = str(exc), exc.status_code
            else:
                if created:
                    messages.success(request, _("Sent for reading."))
                else:
                    messages.info(request, _("This study was already sent; here is its referral."))
                return HttpResponseRedirect(reverse("referral-detail", args=[referral.pk]))
        else:
            status = 400
    elif not can_send(scope, study):
        error, status = _("Only the site that holds a study can refer it."), 403
    return render(
        request,
        "referrals/referral_send.html",
        {"study": study, "form": form, "error": error},
        status=status,
    )


@dataclass(frozen=True)
class ReferralRow:
    referral: Referral
    now: dt.datetime

    @property
    def is_open(self) -> bool:
        return self.referral.status in OPEN_STATUSES

    @property
    def overdue(self) -> bool:
        return self.is_open and self.referral.deadline_at <= self.now

    @property
    def breached(self) -> bool:
        return self.referral.breached_at is not None or self.overdue


STATUS_FILTERS: dict[str, tuple[str, ...] | None] = {
    "": None,
    "open": OPEN_STATUSES,
    **{s.value: (s.value,) for s in ReferralStatus},
}


@login_required
def referral_list(request: HttpRequest) -> HttpResponse:
    """The requests this institution sent: status, due time, who reads them, what came back."""
    scope = _scope(request)
    wanted = request.GET.get("status", "")
    referrals = _referrals(scope).filter(source_id=getattr(scope.institution, "pk", None))
    status = 200
    if wanted not in STATUS_FILTERS:
        messages.error(request, _("Unknown status filter."))
        referrals, status = referrals.none(), 400
    elif chosen := STATUS_FILTERS[wanted]:
        referrals = referrals.filter(status__in=list(chosen))
    page = Paginator(referrals.order_by("-requested_at", "-pk"), REFERRALS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    audit_read(
        event=AuditCode.QUERY,
        scope=scope,
        request=request,
        object_type="referral",
        detail={
            "list": "sent",
            "status": wanted,
            "page": page.number,
            "shown": len(page.object_list),
        },
    )
    now = timezone.now()
    filters = [("", _("All")), ("open", _("Open"))] + [(s.value, s.label) for s in ReferralStatus]
    return render(
        request,
        "referrals/referral_list.html",
        {
            "page": page,
            "rows": [ReferralRow(r, now) for r in page],
            "filters": filters,
            "wanted": wanted,
            "status_labels": dict(ReferralStatus.choices),
        },
        status=status,
    )


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    label: str
    actor: str
    institution: str
    reason: str


def _timeline(referral: Referral) -> list[TimelineEntry]:
    entries = []
    for event in referral.events.select_related("actor", "actor_institution"):
        label = ACTION_LABELS.get(event.action) or EXTRA_LABELS.get(event.action)
        entries.append(
            TimelineEntry(
                at=event.at,
                label=str(label or event.action),
                actor=event.actor.display_name if event.actor else _("the hub"),
                institution=(
                    event.actor_institution.display_name if event.actor_institution else ""
                ),
                reason=event.reason_text,
            )
        )
    return entries


def _detail(request: HttpRequest, pk: Any, *, error: str = "", status: int = 200) -> HttpResponse:
    scope = _scope(request)
    referral = access.get_visible_or_404(
        scope,
        Referral.objects.select_related("study", "source", "target", "pool", "claimed_by"),
        pk=pk,
    )
    here = getattr(scope.institution, "pk", None)
    is_sender = referral.source_id == here and scope.has_any_role(*roles.REQUEST_ROLES)
    study_visible = access.visible(scope, Study).filter(pk=referral.study_id).exists()
    audit_read(
        event=AuditCode.STUDY_VIEWED,
        scope=scope,
        request=request,
        study=referral.study,
        object_type="referral",
        object_id=referral.pk,
    )
    return render(
        request,
        "referrals/referral_detail.html",
        {
            "referral": referral,
            "row": ReferralRow(referral, timezone.now()),
            "events": _timeline(referral),
            "study_visible": study_visible,
            # How routing chose is for the reading side (and the alliance's administrators).
            "show_routing": referral.target_id == here or scope.has_any_role(Role.ALLIANCE_ADMIN),
            "can_cancel": is_sender and referral.status in STEPS["cancel"].sources,
            "can_acknowledge": is_sender and referral.status in STEPS["acknowledge"].sources,
            "status_labels": dict(ReferralStatus.choices),
            "error": error,
        },
        status=status,
    )


@login_required
def referral_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, pk)


def _sender_step(request: HttpRequest, pk: int, step: Any, done: str) -> HttpResponse:
    scope = _scope(request)
    access.get_visible_or_404(scope, Referral, pk=pk)  # an outsider gets the same 404
    try:
        step(request, scope, pk)
    except services.ReferralError as exc:
        return _detail(request, pk, error=str(exc), status=exc.status_code)
    messages.success(request, done)
    return HttpResponseRedirect(reverse("referral-detail", args=[pk]))


@login_required
@require_POST
def referral_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _sender_step(
        request,
        pk,
        lambda r, scope, pk: services.referral_cancel(
            scope=scope, referral_id=pk, reason=r.POST.get("reason", "")[:500]
        ),
        _("The referral was cancelled."),
    )


@login_required
@require_POST
def referral_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    return _sender_step(
        request,
        pk,
        lambda r, scope, pk: services.referral_acknowledge(scope=scope, referral_id=pk),
        _("You acknowledged the report."),
    )
