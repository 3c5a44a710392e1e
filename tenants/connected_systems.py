"""Connected systems: the hospital's own PACS or viewer reading its institution's images over
DICOMweb with a long-lived, revocable credential (create, revoke, authenticate).

The credential is a key id (`cs_...`) and a secret shown once; the hub keeps the secret's
SHA-256 only. A system presents it as HTTP Basic (user name = key id, password = secret:
what Orthanc's DICOMweb "Servers" entry and OHIF's data source send) or as
`Authorization: Bearer <key id>.<secret>`. It acts through `access.scope_for_connected_system`:
the institution's images as a member who may only look at them, nothing else of the hub.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.utils import formats, timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .access import Scope, visible
from .audit import AuditCode, AuditObject, audit_record
from .models import AuditEvent, ConnectedSystem, ConnectedSystemKind, Institution
from .roles import CONNECTED_SYSTEM_ADMIN_ROLES

KEY_PREFIX = "cs_"
BEARER_SEPARATOR = "."  # not in a key id nor in a URL-safe secret: `cs_<hex>.<secret>`
# last_used_at is for the administrator's list ("is it still in use?"): one UPDATE a minute
# per system at most, not one per request of a PACS pulling a study frame by frame.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def secret_digest(secret: str) -> str:
    # 256 random bits: a plain SHA-256 is enough, and cheap on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_token(system: ConnectedSystem, secret: str) -> str:
    return f"{system.key_id}{BEARER_SEPARATOR}{secret}"


def _institution_for_admin(scope: Scope) -> Institution:
    if scope.institution is None or not scope.has_any_role(*CONNECTED_SYSTEM_ADMIN_ROLES):
        raise PermissionDenied(
            _("Only a hospital administrator may manage the institution's connected systems.")
        )
    return scope.institution


def connected_system_create(
    *,
    scope: Scope,
    name: str,
    kind: str = ConnectedSystemKind.PACS,
    may_store: bool = False,
    expires_at: dt.datetime | None = None,
    request: Any = None,
) -> tuple[ConnectedSystem, str]:
    """A new credential for a system of the caller's institution; the secret is returned
    here once and never stored."""
    institution = _institution_for_admin(scope)
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Name the system, e.g. “Radiology PACS”.")})
    if kind not in ConnectedSystemKind.values:
        raise ValidationError({"kind": _("Choose PACS, viewer or other system.")})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": _("The expiry date must be in the future.")})
    secret = secrets.token_urlsafe(32)
    system = ConnectedSystem.objects.create(
        institution=institution,
        name=name,
        kind=kind,
        key_id=KEY_PREFIX + secrets.token_hex(8),
        secret_hash=secret_digest(secret),
        may_store=may_store,
        expires_at=expires_at,
        created_by=scope.user,
    )
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.CREATE,
        scope=scope,
        request=request,
        object_type=AuditObject.CONNECTED_SYSTEM,
        object_id=system.key_id,
        detail={"name": system.name, "kind": system.kind, "may_store": system.may_store},
    )
    return system, secret


def connected_system_revoke(
    *, scope: Scope, system: ConnectedSystem, request: Any = None
) -> ConnectedSystem:
    """Revoked at once: the next request with the credential is answered 401."""
    institution = _institution_for_admin(scope)
    if system.institution_id != institution.pk:
        raise PermissionDenied(_("That system belongs to another institution."))
    revoked = ConnectedSystem.objects.filter(pk=system.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=scope.user
    )
    if revoked:
        audit_record(
            event=AuditCode.CREDENTIAL_CHANGE,
            action=AuditEvent.Action.DELETE,
            scope=scope,
            request=request,
            object_type=AuditObject.CONNECTED_SYSTEM,
            object_id=system.key_id,
        )
    system.refresh_from_db()
    return system


def connected_system_list(*, scope: Scope) -> QuerySet[ConnectedSystem]:
    """The institution's systems for its administrator, in use first."""
    return (
        visible(scope, ConnectedSystem)
        .select_related("created_by", "revoked_by")
        .order_by("revoked_at", "-created_at")
    )


# --- Authentication -----------------------------------------------------------------------


class ConnectedSystemPrincipal(AnonymousUser):
    """The `request.user` of a connected system's call: a system, not a person."""

    def __init__(self, system: ConnectedSystem) -> None:
        super().__init__()
        self.system = system

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"connected system {self.system.key_id}"


def _presented(request: Request) -> tuple[str, str] | None:
    """(key id, secret) from a Basic or Bearer header that names a connected system."""
    header = get_authorization_header(request).split()
    if len(header) != 2:
        return None
    kind, value = header[0].lower(), header[1]
    try:
        if kind == b"basic":
            key_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        elif kind == b"bearer":
            key_id, _, secret = value.decode("ascii").partition(BEARER_SEPARATOR)
        else:
            return None
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not key_id.startswith(KEY_PREFIX):
        return None  # another credential (a gateway's, a person's): not ours to judge
    return key_id, secret


class ConnectedSystemAuthentication(BaseAuthentication):
    """HTTP Basic or Bearer with a connected system's key id (cs_...) and secret."""

    www_authenticate_realm = "hub-dicomweb"

    def authenticate(
        self, request: Request
    ) -> tuple[ConnectedSystemPrincipal, ConnectedSystem] | None:
        presented = _presented(request)
        if presented is None:
            return None
        key_id, secret = presented
        system = (
            ConnectedSystem.objects.select_related("institution")
            .filter(key_id=key_id, revoked_at__isnull=True, institution__is_active=True)
            .first()
        )
        if system is None or not hmac.compare_digest(system.secret_hash, secret_digest(secret)):
            raise exceptions.AuthenticationFailed(
                gettext("Unknown or revoked connected-system credential.")
            )
        now = timezone.now()
        if system.expires_at is not None and system.expires_at <= now:
            raise exceptions.AuthenticationFailed(
                gettext("This connected system's credential expired on %(date)s.")
                % {"date": formats.date_format(timezone.localtime(system.expires_at))}
            )
        if system.last_used_at is None or now - system.last_used_at >= LAST_USED_RESOLUTION:
            ConnectedSystem.objects.filter(pk=system.pk).update(last_used_at=now)
            system.last_used_at = now
        return ConnectedSystemPrincipal(system), system

    def authenticate_header(self, request: Request) -> str:
        return f'Basic realm="{self.www_authenticate_realm}"'
