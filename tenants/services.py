"""Writes about institutions, memberships, credentials and notifications.

Each service checks what the caller may do, changes rows in one transaction, records the
audit event, and queues follow-up work on commit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from knox.models import AuthToken

from . import access, roles
from .access import SESSION_KEY, Scope, scope_for_user
from .audit import AuditCode, audit_record
from .auth import gateway_credential_new_secret
from .live import publish, user_group
from .messages import message_text
from .models import (
    AuditEvent,
    GatewayCredential,
    Institution,
    Membership,
    Notification,
    Role,
    User,
    ae_title_validator,
)


def _require_admin(scope: Scope) -> Institution:
    if scope.institution is None or not scope.has_any_role(*roles.INSTITUTION_ADMIN_ROLES):
        raise PermissionDenied(_("Only a hospital administrator may do this."))
    return scope.institution


def api_token_issue(*, user: User, request: Any = None) -> tuple[AuthToken, str]:
    """A new API token for a user who has just proved who they are (shown once)."""
    instance, token = AuthToken.objects.create(user=user)
    audit_record(
        event=AuditCode.LOGIN,
        user=user,
        request=request,
        detail={"via": "api_token", "token_key": instance.token_key},
    )
    return instance, token


def active_institution_set(
    *, session: Any, user: User, institution_id: int | str, request: Any = None
) -> Scope:
    """Switch the institution a browser session acts for; refuse one the user is not in."""
    scope = scope_for_user(user, institution_id=institution_id)
    if scope.institution is None:
        raise PermissionDenied(_("You are not a member of that institution."))
    session[SESSION_KEY] = scope.institution.pk
    audit_record(
        event=AuditCode.INSTITUTION_SWITCH,
        scope=scope,
        request=request,
        object_type="institution",
        object_id=scope.institution.pk,
    )
    return scope


def no_such_user_message() -> str:
    """Said alike for an unknown user name and for another alliance's user."""
    return _("No such user in your alliance.")


def _refuse_grant(
    *,
    scope: Scope,
    user: User,
    role: str,
    reason: str,
    refusal: Exception,
    request: Any,
    alert: bool = False,
) -> None:
    """Audit a refused grant (a security alert for self-escalation) and raise `refusal`."""
    audit_record(
        event=AuditCode.SECURITY_ALERT if alert else AuditCode.PERMISSION_CHANGE,
        action=AuditEvent.Action.CREATE,
        outcome=AuditEvent.Outcome.SERIOUS_FAILURE,
        scope=scope,
        request=request,
        object_type="membership",
        object_id="",
        detail={"user": user.get_username(), "role": role, "change": "refused", "reason": reason},
    )
    raise refusal


def membership_grant(*, scope: Scope, user: User, role: str, request: Any = None) -> Membership:
    """Give `user` a role at the caller's institution, within the caller's authority
    (tenants/roles.py: which roles the caller may grant, where a role may be held, whom)."""
    if scope.institution is None or not scope.has_any_role(*roles.GRANTER_ROLES):
        raise PermissionDenied(_("Only an administrator may grant roles."))
    institution = scope.institution
    if role not in Role.values:
        raise ValidationError({"role": _("Unknown role.")})
    if user.pk == getattr(scope.user, "pk", None):
        # Refused whatever the role, and written down as an attack: nobody raises their own
        # privileges, not even to a role they could grant to others.
        _refuse_grant(
            scope=scope,
            user=user,
            role=role,
            reason="self_grant",
            request=request,
            alert=True,
            refusal=PermissionDenied(
                _("You cannot grant a role to yourself; ask another administrator.")
            ),
        )
    if role not in roles.grantable_roles(scope.roles):
        _refuse_grant(
            scope=scope,
            user=user,
            role=role,
            reason="beyond_authority",
            request=request,
            refusal=PermissionDenied(
                _("Your role does not allow you to grant the role “%(role)s”.")
                % {"role": Role(role).label}
            ),
        )
    if not roles.may_be_held_at(role, institution.kind):
        raise ValidationError(
            {
                "role": _("The role “%(role)s” cannot be held at %(place)s.")
                % {"role": Role(role).label, "place": institution.display_name}
            }
        )
    ours = access.visible(scope, Institution).values("pk")
    if Membership.objects.active().filter(user=user).exclude(institution__in=ours).exists():
        # Answered like an unknown user name: the alliance's administrators learn nothing
        # about another alliance's staff.
        _refuse_grant(
            scope=scope,
            user=user,
            role=role,
            reason="outside_alliance",
            request=request,
            refusal=ValidationError({"username": [no_such_user_message()]}),
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                user=user, institution=institution, role=role, granted_by=scope.user
            )
    except IntegrityError as exc:
        raise ValidationError({"role": _("This user already holds this role here.")}) from exc
    audit_record(
        event=AuditCode.PERMISSION_CHANGE,
        action=AuditEvent.Action.CREATE,
        scope=scope,
        request=request,
        object_type="membership",
        object_id=membership.pk,
        detail={"user": user.get_username(), "role": role, "change": "granted"},
    )
    from .tasks import membership_notice_send

    transaction.on_commit(lambda: membership_notice_send.delay(membership.pk))
    return membership


def membership_revoke(*, scope: Scope, membership: Membership, request: Any = None) -> Membership:
    """Take a role back, at the caller's institution, within the caller's authority."""
    if scope.institution is None or not scope.has_any_role(*roles.GRANTER_ROLES):
        raise PermissionDenied(_("Only an administrator may revoke roles."))
    institution = scope.institution
    if membership.institution_id != institution.pk:
        raise PermissionDenied(_("That membership belongs to another institution."))
    if membership.role not in roles.grantable_roles(scope.roles):
        raise PermissionDenied(
            _("Your role does not allow you to revoke the role “%(role)s”.")
            % {"role": Role(membership.role).label}
        )
    own = membership.user_id == getattr(scope.user, "pk", None)
    if own and membership.role == Role.HOSPITAL_ADMIN:
        raise ValidationError({"role": _("You cannot remove your own administrator role.")})
    updated = Membership.objects.filter(pk=membership.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    membership.refresh_from_db()
    if updated:
        audit_record(
            event=AuditCode.PERMISSION_CHANGE,
            action=AuditEvent.Action.DELETE,
            scope=scope,
            request=request,
            object_type="membership",
            object_id=membership.pk,
            detail={
                "user": membership.user.get_username(),
                "role": membership.role,
                "change": "revoked",
            },
        )
    return membership


def gateway_credential_create(
    *, scope: Scope, label: str, calling_ae_titles: list[str], request: Any = None
) -> tuple[GatewayCredential, str]:
    """A new credential for the caller's site. The secret is returned once, never stored."""
    institution = _require_admin(scope)
    for title in calling_ae_titles:
        ae_title_validator(title)
    key_id, secret, digest = gateway_credential_new_secret()
    credential = GatewayCredential.objects.create(
        institution=institution,
        label=label,
        key_id=key_id,
        secret_hash=digest,
        calling_ae_titles=[t.strip() for t in calling_ae_titles],
        created_by=scope.user,
    )
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.CREATE,
        scope=scope,
        request=request,
        object_type="gateway_credential",
        object_id=credential.key_id,
    )
    return credential, secret


def gateway_credential_revoke(
    *, scope: Scope, credential: GatewayCredential, request: Any = None
) -> GatewayCredential:
    institution = _require_admin(scope)
    if credential.institution_id != institution.pk:
        raise PermissionDenied(_("That credential belongs to another institution."))
    if GatewayCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    ):
        audit_record(
            event=AuditCode.CREDENTIAL_CHANGE,
            action=AuditEvent.Action.DELETE,
            scope=scope,
            request=request,
            object_type="gateway_credential",
            object_id=credential.key_id,
        )
    credential.refresh_from_db()
    return credential


def notification_send(
    *,
    user: User,
    kind: str,
    code: str = "",
    params: dict[str, Any] | None = None,
    title: Any = "",
    body: Any = "",
    link: str = "",
    institution: Institution | None = None,
    dedup_key: str = "",
) -> Notification:
    """Store a notification and push it to the user's open pages after commit.

    Say it with a message `code` and its `params` (tenants/messages.py): each reader sees it
    in their own language, whenever they read it. `title`/`body` alone (text, or lazy text
    put into the recipient's language here) still work for callers without a code.
    With a `dedup_key`, sending again (a retried task) returns the first one and pushes
    nothing more.
    """
    if dedup_key:
        existing = Notification.objects.filter(user=user, dedup_key=dedup_key).first()
        if existing is not None:
            return existing
    params = params or {}
    with translation.override(user.language or settings.LANGUAGE_CODE):
        # The words in the recipient's language: the fallback if the code is ever unknown.
        title_text = message_text(code, params, fallback=str(title))
        body_text = message_text(code, params, part="body", fallback=str(body))
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                user=user,
                institution=institution,
                kind=kind,
                code=code,
                params=params,
                title=title_text[:200],
                body=body_text,
                link=link,
                dedup_key=dedup_key,
            )
    except IntegrityError:
        return Notification.objects.get(user=user, dedup_key=dedup_key)
    publish(user_group(user.pk), "notification", notification_payload(notification, user=user))
    return notification


def notification_payload(notification: Notification, *, user: User) -> dict[str, Any]:
    """What open pages receive: the words in the recipient's language, and the code and
    parameters, so that a socket serving a page in another language can say it in that one
    (tenants/consumers.py)."""
    with translation.override(user.language or settings.LANGUAGE_CODE):
        title, body = notification.display_title, notification.display_body
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "code": notification.code,
        "params": notification.params,
        "title": title,
        "body": body,
        "link": notification.link,
        "created_at": notification.created_at.isoformat(),
    }


def notification_payload_in(payload: dict[str, Any], language: str) -> dict[str, Any]:
    """A live notification's payload with its words in `language` (no database access)."""
    code = payload.get("code") or ""
    if not code:
        return payload
    params = payload.get("params") or {}
    return {
        **payload,
        "title": message_text(code, params, fallback=payload.get("title", ""), language=language),
        "body": message_text(
            code, params, part="body", fallback=payload.get("body", ""), language=language
        ),
    }


def notification_mark_read(*, user: User, notification: Notification) -> Notification:
    if notification.user_id != user.pk:
        raise PermissionDenied
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
        read_at=timezone.now()
    )
    notification.refresh_from_db()
    return notification
