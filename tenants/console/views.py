"""Administration console pages of an institution: its staff and roles, its gateway
credentials. Thin: each action calls one service; roles change only through
tenants.services (membership_grant / membership_revoke)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import access, roles, services
from ..access import Scope, scope_for_request
from ..models import GatewayCredential, Membership, Role, User
from . import selectors
from . import services as console_services
from .forms import AddExistingForm, GatewayCredentialForm, GrantForm, InviteForm


def _scope_with(request: HttpRequest, allowed: frozenset[str]) -> Scope:
    scope = scope_for_request(request)
    if scope.institution is None or not scope.has_any_role(*allowed):
        raise PermissionDenied
    return scope


def _refusal(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or _("You may not do this.")


def _form_refusal(form: Any, exc: ValidationError) -> None:
    """A service's refusal shown on the form, next to the field it names."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _to_person(user: User) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("console-staff-detail", args=[user.pk]))


def person_status(user: User, held: list[Membership]) -> tuple[str, str]:
    """(code, words) of the person's state, for the list and their page."""
    if not user.is_active:
        return "off", _("Switched off")
    if not user.has_usable_password() and user.last_login is None:
        return "invited", _("Invited")
    if not held:
        return "none", _("No role here")
    return "active", _("Active")


# --- Staff and roles ----------------------------------------------------------------------


@login_required
def staff_list(request: HttpRequest) -> HttpResponse:
    scope = _scope_with(request, roles.CONSOLE_ROLES)
    query = request.GET.get("q", "")[:100]
    page = Paginator(selectors.staff_list(scope=scope, query=query), 50).get_page(
        request.GET.get("page")
    )
    people = list(page)
    held = selectors.roles_by_user(scope=scope, users=people)
    rows = [
        {
            "user": person,
            "roles": held.get(person.pk, []),
            "status": person_status(person, held.get(person.pk, [])),
        }
        for person in people
    ]
    grantable = selectors.grantable_roles_here(scope=scope)
    return render(
        request,
        "tenants/console/staff_list.html",
        {
            "page": page,
            "rows": rows,
            "query": query,
            "add_form": AddExistingForm(grantable=grantable, auto_id="add_%s"),
        },
    )


@login_required
def staff_invite(request: HttpRequest) -> HttpResponse:
    scope = _scope_with(request, roles.CONSOLE_ROLES)
    grantable = selectors.grantable_roles_here(scope=scope)
    form = InviteForm(request.POST or None, grantable=grantable)
    if request.method == "POST" and form.is_valid():
        try:
            user = console_services.staff_invite(scope=scope, request=request, **form.cleaned_data)
        except ValidationError as exc:
            _form_refusal(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, _refusal(exc))
        else:
            messages.success(
                request,
                _(
                    "%(name)s is invited: an e-mail with a link to choose a password is on "
                    "its way to %(email)s."
                )
                % {"name": user.display_name, "email": user.email},
            )
            return _to_person(user)
    return render(request, "tenants/console/staff_invite.html", {"form": form})


@login_required
@require_POST
def staff_add(request: HttpRequest) -> HttpResponse:
    """Give a role here to someone who already has an account in the alliance."""
    scope = _scope_with(request, roles.CONSOLE_ROLES)
    form = AddExistingForm(request.POST, grantable=selectors.grantable_roles_here(scope=scope))
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return HttpResponseRedirect(reverse("console-staff"))
    user = User.objects.filter(username=form.cleaned_data["username"], is_active=True).first()
    try:
        if user is None:
            raise ValidationError({"username": [services.no_such_user_message()]})
        services.membership_grant(
            scope=scope, user=user, role=form.cleaned_data["role"], request=request
        )
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
        return HttpResponseRedirect(reverse("console-staff"))
    assert user is not None
    messages.success(request, _("%(name)s now holds the role.") % {"name": user.display_name})
    return _to_person(user)


@login_required
def staff_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope_with(request, roles.CONSOLE_ROLES)
    person = selectors.staff_member_for_user(scope, pk)
    held = selectors.roles_here(scope=scope, user=person)
    grantable = selectors.grantable_roles_here(scope=scope)
    revocable = roles.grantable_roles(scope.roles)
    held_roles = {m.role for m in held}
    return render(
        request,
        "tenants/console/staff_detail.html",
        {
            "person": person,
            "memberships": [(m, m.role in revocable) for m in held],
            "status": person_status(person, held),
            "grant_form": GrantForm(
                grantable=[r for r in grantable if r not in held_roles], auto_id="grant_%s"
            ),
            "authority": selectors.account_authority(scope=scope, user=person),
            "may_remove": bool(held) and all(m.role in revocable for m in held),
            "is_self": person.pk == getattr(scope.user, "pk", None),
        },
    )


def _person_action(request: HttpRequest, pk: int) -> tuple[Scope, User]:
    scope = _scope_with(request, roles.CONSOLE_ROLES)
    return scope, selectors.staff_member_for_user(scope, pk)


def _person_outcome(
    request: HttpRequest, person: User, act: Callable[[], object], done: str
) -> HttpResponseRedirect:
    """Run one service on the person: its refusal, or the sentence `done`, as a message; then
    back to their page."""
    try:
        act()
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, done)
    return _to_person(person)


@login_required
@require_POST
def staff_grant(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    form = GrantForm(request.POST, grantable=selectors.grantable_roles_here(scope=scope))
    if not form.is_valid():
        messages.error(request, _("Choose a role you may grant."))
        return _to_person(person)
    try:
        membership = services.membership_grant(
            scope=scope, user=person, role=form.cleaned_data["role"], request=request
        )
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(
            request,
            _("%(name)s is now %(role)s.")
            % {"name": person.display_name, "role": Role(membership.role).label},
        )
    return _to_person(person)


@login_required
@require_POST
def staff_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    membership = access.get_visible_or_404(
        scope,
        Membership.objects.filter(user=person, revoked_at__isnull=True),
        pk=request.POST.get("membership"),
    )
    return _person_outcome(
        request,
        person,
        lambda: services.membership_revoke(scope=scope, membership=membership, request=request),
        _("%(name)s no longer holds the role %(role)s here.")
        % {"name": person.display_name, "role": Role(membership.role).label},
    )


@login_required
@require_POST
def staff_password_mail(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    return _person_outcome(
        request,
        person,
        lambda: console_services.staff_password_mail_send(
            scope=scope, user=person, request=request
        ),
        _("A link to choose a password is on its way to %(email)s.") % {"email": person.email},
    )


@login_required
@require_POST
def staff_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    return _person_outcome(
        request,
        person,
        lambda: console_services.staff_deactivate(scope=scope, user=person, request=request),
        _("%(name)s's account is switched off: they can no longer sign in.")
        % {"name": person.display_name},
    )


@login_required
@require_POST
def staff_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    return _person_outcome(
        request,
        person,
        lambda: console_services.staff_reactivate(scope=scope, user=person, request=request),
        _("%(name)s's account is switched on again.") % {"name": person.display_name},
    )


@login_required
@require_POST
def staff_remove(request: HttpRequest, pk: int) -> HttpResponse:
    scope, person = _person_action(request, pk)
    return _person_outcome(
        request,
        person,
        lambda: console_services.staff_remove(scope=scope, user=person, request=request),
        _("%(name)s holds no role here any more.") % {"name": person.display_name},
    )


# --- Gateway credentials -------------------------------------------------------------------


@login_required
def gateway_list(request: HttpRequest) -> HttpResponse:
    """The site's gateway credentials; a new one's secret is shown in this answer only."""
    scope = _scope_with(request, roles.INSTITUTION_ADMIN_ROLES)
    form = GatewayCredentialForm(request.POST or None)
    created: tuple[GatewayCredential, str] | None = None
    if request.method == "POST" and form.is_valid():
        try:
            created = services.gateway_credential_create(
                scope=scope,
                label=form.cleaned_data["label"],
                calling_ae_titles=form.cleaned_data["calling_ae_titles"],
                request=request,
            )
        except ValidationError as exc:
            _form_refusal(form, exc)
        else:
            form = GatewayCredentialForm()
    credentials = access.visible(scope, GatewayCredential).select_related("created_by")
    return render(
        request,
        "tenants/console/gateways.html",
        {
            "form": form,
            "created": created[0] if created else None,
            "secret": created[1] if created else "",
            "credentials": credentials.order_by("revoked_at", "-created_at"),
        },
    )


@login_required
@require_POST
def gateway_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope_with(request, roles.INSTITUTION_ADMIN_ROLES)
    credential = access.gateway_credential_for_user(scope, pk)
    services.gateway_credential_revoke(scope=scope, credential=credential, request=request)
    messages.success(
        request,
        _("The credential %(key)s is revoked: its gateway can no longer send.")
        % {"key": credential.key_id},
    )
    return HttpResponseRedirect(reverse("console-gateways"))
