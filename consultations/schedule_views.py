"""Scheduling MDT sessions in the browser: the new session, its page, its agenda, the people
directory, answers, reschedule and cancel. Thin: each view reads through selectors and the
access layer and changes things through one service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from referrals.models import Study
from tenants import access
from tenants.roles import MDT_ORGANISER_ROLES

from . import selectors, services
from .forms import (
    AnswerForm,
    CaseAddForm,
    CaseEditForm,
    CaseSearchForm,
    DirectoryForm,
    InviteForm,
    ScheduleForm,
    WindowForm,
)
from .models import Invitation, MdtSession, SessionCase

# Where a service's refusal of a field shows on the page's form.
FORM_FIELDS = {"starts_at": "start", "ends_at": "end", "alliance": "alliance", "title": "title"}


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def _refusal_to_form(form: Any, exc: ValidationError) -> None:
    """A service's ValidationError on the form: on its field when the form has it."""
    if hasattr(exc, "error_dict"):
        for key, errors in exc.message_dict.items():
            field = FORM_FIELDS.get(key)
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


def _refusal_message(request: HttpRequest, exc: ValidationError) -> None:
    for message in exc.messages:
        messages.error(request, message)


def _session(request: HttpRequest, pk: int) -> MdtSession:
    return access.get_visible_or_404(
        _scope(request), MdtSession.objects.select_related("chair", "alliance"), pk=pk
    )


def _chaired_session(request: HttpRequest, pk: int) -> MdtSession:
    """A session the caller sees (404 otherwise) and chairs (403 otherwise)."""
    session = _session(request, pk)
    if session.chair_id != request.user.pk:
        raise PermissionDenied(_("Only the session's chair may do this."))
    return session


def _to_session(session: MdtSession) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("mdt-session", args=[session.pk]))


@login_required
def schedule(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    if not scope.has_any_role(*MDT_ORGANISER_ROLES):
        raise PermissionDenied(_("Your role at the active institution cannot organise an MDT."))
    alliances = selectors.alliances_to_schedule_in(scope=scope)
    # A suggestion: the next full hour, for an hour.
    start = timezone.localtime().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    initial = {
        "date": start.date(),
        "start": start.time(),
        # Sessions end the day they start.
        "end": max((start + timedelta(hours=1)).time(), start.time().replace(minute=59)),
        "alliance": alliances.first(),
    }
    form = ScheduleForm(request.POST or None, alliances=alliances, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                session = services.session_schedule(
                    scope=scope,
                    title=data["title"],
                    kind=data["kind"],
                    starts_at=data["starts_at"],
                    ends_at=data["ends_at"],
                    alliance=data["alliance"],
                )
            except ValidationError as exc:
                _refusal_to_form(form, exc)
            else:
                messages.success(request, _("Session scheduled. Now put its cases on the agenda."))
                return HttpResponseRedirect(reverse("mdt-cases", args=[session.pk]))
        status = 400
    return render(
        request,
        "consultations/schedule.html",
        {"form": form, "time_zone": timezone.get_current_timezone_name()},
        status=status,
    )


@login_required
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    session = _session(request, pk)
    page = selectors.session_page(scope=scope, session=session)
    return render(request, "consultations/session_detail.html", page)


@login_required
def session_reschedule(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    session = _chaired_session(request, pk)
    start = timezone.localtime(session.starts_at)
    initial = {
        "date": start.date(),
        "start": start.time(),
        "end": timezone.localtime(session.ends_at).time(),
    }
    form = WindowForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.session_reschedule(
                    scope=scope,
                    session=session,
                    starts_at=form.cleaned_data["starts_at"],
                    ends_at=form.cleaned_data["ends_at"],
                )
            except ValidationError as exc:
                _refusal_to_form(form, exc)
            else:
                messages.success(request, _("Session moved; the invitees were told."))
                return _to_session(session)
        status = 400
    return render(
        request,
        "consultations/reschedule.html",
        {"form": form, "session": session, "time_zone": timezone.get_current_timezone_name()},
        status=status,
    )


@login_required
def session_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    session = _chaired_session(request, pk)
    if request.method == "POST":
        try:
            services.session_cancel(scope=scope, session=session)
        except ValidationError as exc:
            _refusal_message(request, exc)
        else:
            messages.success(request, _("Session cancelled; the invitees were told."))
        return _to_session(session)
    return render(request, "consultations/cancel.html", {"session": session})


@login_required
def session_cases(request: HttpRequest, pk: int) -> HttpResponse:
    """The agenda and the case picker: search, add with a clinical summary."""
    scope = _scope(request)
    session = _chaired_session(request, pk)
    status = 200
    if request.method == "POST":
        add = CaseAddForm(request.POST)
        if add.is_valid():
            study = access.get_visible_or_404(scope, Study, pk=add.cleaned_data["study"])
            try:
                services.case_add(
                    scope=scope,
                    session=session,
                    study=study,
                    clinical_summary=add.cleaned_data["clinical_summary"],
                )
            except ValidationError as exc:
                _refusal_message(request, exc)
            else:
                messages.success(request, _("Case added to the agenda."))
                return HttpResponseRedirect(reverse("mdt-cases", args=[session.pk]))
        status = 400
    search = CaseSearchForm(request.GET or None)
    query = search.cleaned_data["q"] if search.is_valid() else ""
    page = selectors.session_page(scope=scope, session=session)
    return render(
        request,
        "consultations/session_cases.html",
        {
            **page,
            "search": search,
            "query": query,
            "candidates": selectors.case_candidates(scope=scope, session=session, query=query),
        },
        status=status,
    )


@login_required
@require_POST
def case_edit(request: HttpRequest, pk: int, case_pk: int) -> HttpResponse:
    """Save a case's clinical summary, move it up or down, or take it off the agenda."""
    scope = _scope(request)
    session = _chaired_session(request, pk)
    case = access.get_visible_or_404(scope, SessionCase, pk=case_pk, session=session)
    form = CaseEditForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("That change could not be read; please try again."))
        return HttpResponseRedirect(reverse("mdt-cases", args=[session.pk]))
    action = form.cleaned_data["action"]
    try:
        if action == "save":
            services.case_summary_set(
                scope=scope, case=case, clinical_summary=form.cleaned_data["clinical_summary"]
            )
            messages.success(request, _("Clinical summary saved."))
        elif action == "remove":
            services.case_remove(scope=scope, case=case)
            messages.success(request, _("Case taken off the agenda."))
        else:
            services.case_move(scope=scope, case=case, offset=-1 if action == "up" else 1)
    except ValidationError as exc:
        _refusal_message(request, exc)
    return HttpResponseRedirect(reverse("mdt-cases", args=[session.pk]))


@login_required
def session_people(request: HttpRequest, pk: int) -> HttpResponse:
    """The people directory of the session's alliance, and the invitation from it."""
    scope = _scope(request)
    session = _chaired_session(request, pk)
    status = 200
    if request.method == "POST":
        invite = InviteForm(request.POST)
        person = None
        if invite.is_valid():
            person = selectors.directory_person(
                scope=scope,
                session=session,
                user_id=invite.cleaned_data["user"],
                institution_id=invite.cleaned_data["institution"],
            )
        if person is None:
            messages.error(request, _("Nobody of the alliance was picked."))
        else:
            user, institution = person
            try:
                services.invitation_create(
                    scope=scope,
                    session=session,
                    user=user,
                    institution=institution,
                    role=invite.cleaned_data["role"],
                )
            except ValidationError as exc:
                _refusal_message(request, exc)
            else:
                messages.success(
                    request, _("%(name)s is invited and was told.") % {"name": user.display_name}
                )
                return HttpResponseRedirect(request.get_full_path())
        status = 400
    directory = DirectoryForm(request.GET or None)
    query, role = "", ""
    if directory.is_valid():
        query, role = directory.cleaned_data["q"], directory.cleaned_data["role"]
    people = selectors.people_directory(scope=scope, session=session, query=query, role=role)
    page = selectors.session_page(scope=scope, session=session)
    return render(
        request,
        "consultations/session_people.html",
        {**page, "directory": directory, "people": people, "invite_form": InviteForm()},
        status=status,
    )


@login_required
@require_POST
def invitation_remove(request: HttpRequest, pk: int, invitation_pk: int) -> HttpResponse:
    scope = _scope(request)
    session = _chaired_session(request, pk)
    invitation = access.get_visible_or_404(
        scope, Invitation.objects.select_related("user"), pk=invitation_pk, session=session
    )
    try:
        services.invitation_revoke(scope=scope, invitation=invitation)
    except ValidationError as exc:
        _refusal_message(request, exc)
    else:
        messages.success(
            request,
            _("%(name)s is no longer invited and was told.")
            % {"name": invitation.user.display_name},
        )
    return HttpResponseRedirect(reverse("mdt-people", args=[session.pk]))


@login_required
@require_POST
def invitation_answer(request: HttpRequest, pk: int) -> HttpResponse:
    """The invitee accepts or declines, from "My MDT sessions" or the session page."""
    scope = _scope(request)
    session = _session(request, pk)
    form = AnswerForm(request.POST)
    invitation = (
        access.visible(scope, Invitation)
        .filter(session=session, user=scope.user, revoked_at__isnull=True)
        .first()
    )
    if invitation is None:
        raise PermissionDenied(_("Only the invitee may answer an invitation."))
    if not form.is_valid():
        messages.error(request, _("Accept or decline."))
    else:
        try:
            services.invitation_answer(
                scope=scope, invitation=invitation, answer=form.cleaned_data["answer"]
            )
        except ValidationError as exc:
            _refusal_message(request, exc)
        else:
            messages.success(request, _("Your answer is recorded."))
    if form.is_valid() and form.cleaned_data["next"] == "session":
        return _to_session(session)
    return HttpResponseRedirect(reverse("mdt-list"))
