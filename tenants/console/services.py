"""Writes of the staff console: invitations, password e-mails, accounts switched off and on,
people removed from an institution. Roles change only through tenants.services
(`membership_grant`, `membership_revoke`), which hold the authority rules; every change here
is audited."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from .. import roles
from ..access import Scope, scope_for_user
from ..audit import AuditCode, audit_record
from ..models import AuditEvent, Institution, Membership, User
from ..services import membership_grant, membership_revoke
from .selectors import account_authority, roles_here


class StaffMail:
    """The kinds of account e-mail the hub sends."""

    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a kind of e-mail, not a password)


def _require_console(scope: Scope) -> Institution:
    if scope.institution is None or not scope.has_any_role(*roles.CONSOLE_ROLES):
        raise PermissionDenied(_("Only an administrator may manage staff."))
    return scope.institution


def _audit_account(
    *, scope: Scope, user: User, change: str, request: Any, action: str, **detail: Any
) -> None:
    audit_record(
        event=AuditCode.ACCOUNT_CHANGE,
        action=action,
        scope=scope,
        request=request,
        object_type="user",
        object_id=user.pk,
        detail={"user": user.get_username(), "change": change, **detail},
    )


def staff_invite(
    *,
    scope: Scope,
    username: str,
    email: str,
    name: str = "",
    name_en: str = "",
    language: str = "zh-hans",
    role: str,
    request: Any = None,
) -> User:
    """A new account with no password yet, a first role at the caller's institution, and an
    e-mail with a one-time link to choose a password (sent after commit)."""
    institution = _require_console(scope)
    username = username.strip()
    email = User.objects.normalize_email(email.strip())
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("This user name is taken; choose another.")})
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError(
            {
                "email": _(
                    "An account with this e-mail address exists already: ask the person "
                    "for their user name and add them with it."
                )
            }
        )
    with transaction.atomic():
        user = User(username=username, email=email, name=name, name_en=name_en, language=language)
        user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
        _audit_account(
            scope=scope,
            user=user,
            change="invited",
            request=request,
            action=AuditEvent.Action.CREATE,
            email=email,
        )
        membership_grant(scope=scope, user=user, role=role, request=request)
        _queue_mail(user=user, kind=StaffMail.INVITATION, institution=institution, inviter=scope)
    return user


def staff_password_mail_send(*, scope: Scope, user: User, request: Any = None) -> str:
    """E-mail the person a link to choose a new password (an invitation again if they never
    chose one). Nothing changes until they use it; the password stays theirs alone."""
    institution = _require_console(scope)
    if not roles_here(scope=scope, user=user):
        raise PermissionDenied(_("This person holds no role at your institution."))
    if not user.is_active:
        raise ValidationError(_("This account is switched off; switch it on first."))
    if not user.email:
        raise ValidationError(_("This person has no e-mail address."))
    kind = _mail_kind(user)
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.EXECUTE,
        scope=scope,
        request=request,
        object_type="user",
        object_id=user.pk,
        detail={"user": user.get_username(), "change": f"{kind}_mail_sent"},
    )
    _queue_mail(user=user, kind=kind, institution=institution, inviter=scope)
    return kind


def _mail_kind(user: User) -> str:
    never_signed_in = not user.has_usable_password() and user.last_login is None
    return StaffMail.INVITATION if never_signed_in else StaffMail.PASSWORD_RESET


def password_reset_request(*, users: list[User]) -> None:
    """Forgot your password? A link to each active account with the address given. The
    page answers alike whether there was one; the mail leaves from the worker."""
    for user in users:
        if user.is_active and user.email:
            _queue_mail(user=user, kind=_mail_kind(user), institution=None, inviter=None)


def _queue_mail(*, user: User, kind: str, institution: Institution | None, inviter: Any) -> None:
    from ..tasks import account_mail_send

    inviter_id = getattr(getattr(inviter, "user", None), "pk", None)
    institution_id = institution.pk if institution else None
    transaction.on_commit(
        lambda: account_mail_send.delay(user.pk, kind, institution_id, inviter_id)
    )


def account_link(*, user: User, kind: str) -> str:
    """The one-time link (Django's token: it stops working once the password changes or the
    person signs in, and after PASSWORD_RESET_TIMEOUT)."""
    name = "invite-accept" if kind == StaffMail.INVITATION else "password-reset-confirm"
    path = reverse(
        name,
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return f"{settings.HUB_PUBLIC_URL}{path}"


def account_mail_deliver(
    *,
    user: User,
    kind: str,
    institution: Institution | None = None,
    inviter: User | None = None,
) -> None:
    """Write and send one account e-mail, in the person's own language."""
    if not user.email or not user.is_active:
        return
    template = "invitation" if kind == StaffMail.INVITATION else "password_reset"
    institution = institution or scope_for_user(user).institution
    with translation.override(user.language or settings.LANGUAGE_CODE):
        context = {
            "user": user,
            "link": account_link(user=user, kind=kind),
            "institution": institution.display_name if institution else "",
            "inviter": inviter.display_name if inviter else "",
            "days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
            "hub_url": settings.HUB_PUBLIC_URL,
        }
        subject = render_to_string(f"tenants/mail/{template}_subject.txt", context)
        body = render_to_string(f"tenants/mail/{template}_body.txt", context)
    EmailMessage(
        subject=" ".join(subject.split()),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    ).send()


def password_set_by_link_record(*, user: User, kind: str, request: Any = None) -> None:
    """Audit a password chosen from an e-mailed link, under the person's institution."""
    scope = scope_for_user(user)
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.UPDATE,
        scope=scope if scope.institution is not None else None,
        user=user,
        request=request,
        object_type="password",
        object_id=user.pk,
        detail={"change": "password", "via": kind},
    )


def _account_switch(*, scope: Scope, user: User, request: Any, active: bool, change: str) -> User:
    """Switch the account on or off, if the caller's authority reaches it; audited only when
    it actually changed."""
    _require_console(scope)
    authority = account_authority(scope=scope, user=user)
    if not authority.allowed:
        raise PermissionDenied(authority.reasons[0])
    if User.objects.filter(pk=user.pk, is_active=not active).update(is_active=active):
        _audit_account(
            scope=scope,
            user=user,
            change=change,
            request=request,
            action=AuditEvent.Action.UPDATE,
        )
    user.refresh_from_db()
    return user


def staff_deactivate(*, scope: Scope, user: User, request: Any = None) -> User:
    """Switch the person's account off for the whole hub: they can no longer sign in, their
    sessions, tokens and sockets end. Their roles stay, for a switch back on."""
    return _account_switch(
        scope=scope, user=user, request=request, active=False, change="deactivated"
    )


def staff_reactivate(*, scope: Scope, user: User, request: Any = None) -> User:
    return _account_switch(
        scope=scope, user=user, request=request, active=True, change="reactivated"
    )


def staff_remove(*, scope: Scope, user: User, request: Any = None) -> list[Membership]:
    """Take back every role the person holds at the caller's institution (each through
    `membership_revoke`, which checks and audits it); their account elsewhere is untouched."""
    _require_console(scope)
    granted = roles.grantable_roles(scope.roles)
    held = roles_here(scope=scope, user=user)
    beyond = [m for m in held if m.role not in granted]
    if beyond:
        raise PermissionDenied(_("This person holds a role here that your role does not manage."))
    with transaction.atomic():
        return [membership_revoke(scope=scope, membership=m, request=request) for m in held]
