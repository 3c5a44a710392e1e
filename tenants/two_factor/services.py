"""The second factor's checks and writes: enrol, verify, recovery codes, remove, reset.

A user's factor is one confirmed django-otp TOTP device (an authenticator app) and one static
device holding their unused recovery codes. A wrong code counts like a wrong password: it
is audited as a failed sign-in and counted by django-axes per account (tenants/lockout.py),
whose lockout raises the hub's security alert (tenants/signals.py); django-otp's own
throttle makes each device wait 1, 2, 4... seconds after each wrong code, across sessions.
"""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import django_otp
import segno
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .. import access, roles
from ..access import Scope, scope_for_user
from ..audit import AuditCode, AuditObject, audit_record
from ..models import AuditEvent, Institution, Membership, Role, User
from ..services import no_such_user_message

RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"


# --- Reads ----------------------------------------------------------------------------------


def two_factor_device(*, user: User) -> TOTPDevice | None:
    """The user's confirmed authenticator, if they enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def two_factor_enrolled(*, user: User) -> bool:
    """Has a factor to check at sign-in (an authenticator, or recovery codes left of one)."""
    return django_otp.user_has_device(user, confirmed=True)


def two_factor_required(*, user: User) -> bool:
    """Must enrol before using the hub: enforcement is on and the user holds a role of
    TWO_FACTOR_ROLES at any institution."""
    if not settings.HUB_TWO_FACTOR_REQUIRED:
        return False
    return Membership.objects.active().filter(user=user, role__in=roles.TWO_FACTOR_ROLES).exists()


def recovery_codes_left(*, user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def two_factor_secret(device: TOTPDevice) -> str:
    """The key as an authenticator app's manual entry takes it (base32, in groups of four)."""
    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def two_factor_qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URI as a QR code, an SVG data: URI (the pages allow no other source)."""
    return str(segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2))


def _normalised(code: str) -> str:
    # Apps show "123 456"; recovery codes are printed in lower case, people type them anyhow.
    return "".join(str(code).split()).replace("-", "").lower()[:32]


def _institution_of(user: User) -> Institution | None:
    return scope_for_user(user).institution


def _audit_change(
    *,
    user: User,
    request: Any,
    action: str,
    change: str,
    outcome: int = AuditEvent.Outcome.SUCCESS,
    **detail: Any,
) -> None:
    """A change to the user's own second factor, on the trail of their institution."""
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=action,
        outcome=outcome,
        user=user,
        institution=_institution_of(user),
        request=request,
        object_type=AuditObject.USER,
        object_id=user.pk,
        detail={"change": change, **detail},
    )


# --- Enrolment ------------------------------------------------------------------------------


def two_factor_enrol_start(*, user: User) -> TOTPDevice:
    """The authenticator being set up: the same key until it is confirmed, so a QR code
    scanned before a reload still works."""
    if two_factor_device(user=user) is not None:
        raise ValidationError(_("You already have a second factor."))
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def two_factor_enrol_confirm(
    *, user: User, code: str, request: Any = None
) -> tuple[TOTPDevice, list[str]]:
    """Confirm the authenticator with a code it shows, and issue the recovery codes (returned
    once: only their use is stored afterwards, as their absence)."""
    if two_factor_device(user=user) is not None:
        raise ValidationError(_("You already have a second factor."))
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        raise ValidationError(_("Start the setup again: scan the new QR code."))
    allowed, _info = device.verify_is_allowed()
    if not allowed or not device.verify_token(_normalised(code)):
        _audit_change(
            user=user,
            request=request,
            action=AuditEvent.Action.CREATE,
            change="second_factor_enrolment",
            outcome=AuditEvent.Outcome.MINOR_FAILURE,
            reason="wrong_code",
        )
        raise ValidationError(_wrong_code_message(allowed))
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_replace(user)
        _audit_change(
            user=user,
            request=request,
            action=AuditEvent.Action.CREATE,
            change="second_factor_enrolled",
            recovery_codes=len(codes),
        )
    return device, codes


def _recovery_codes_replace(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


# --- Verification ---------------------------------------------------------------------------


def _wrong_code_message(allowed: bool = True) -> str:
    if not allowed:
        return _("Too many wrong codes in a row: wait a moment, then enter the newest code.")
    return _(
        "That code is not right. Enter the 6-digit code your authenticator app shows now, "
        "or one of your recovery codes."
    )


def _device_for(user: User, token: str) -> Device | None:
    # An app's code is 6 digits; a recovery code is 8 letters and digits.
    if len(token) == 6 and token.isdigit():
        return two_factor_device(user=user)
    return StaticDevice.objects.filter(user=user, confirmed=True).first()


def two_factor_verify(*, user: User, code: str, request: Any = None, via: str = "web") -> Device:
    """The device that accepts `code` now (a recovery code is used up), or ValidationError.

    Every refusal is a failed sign-in on the audit trail and counts towards the account's
    lockout, like a wrong password."""
    token = _normalised(code)
    device = _device_for(user, token) if token else None
    allowed = True
    matched: Device | None = None
    if device is not None:
        allowed, _info = device.verify_is_allowed()
        if allowed:
            matched = django_otp.verify_token(user, device.persistent_id, token)
    if matched is None:
        _verify_failed(
            user=user,
            device=device,
            request=request,
            via=via,
            reason="missing" if not token else ("throttled" if not allowed else "wrong_code"),
        )
        raise ValidationError(_wrong_code_message(allowed))
    if isinstance(matched, StaticDevice):
        _audit_change(
            user=user,
            request=request,
            action=AuditEvent.Action.DELETE,
            change="recovery_code_used",
            via=via,
            recovery_codes_left=matched.token_set.count(),
        )
    return matched


def _verify_failed(
    *, user: User, device: Device | None, request: Any, via: str, reason: str
) -> None:
    institution = _institution_of(user)
    audit_record(
        event=AuditCode.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.MINOR_FAILURE,
        user=user,
        institution=institution,
        request=request,
        detail={"factor": "second", "via": via, "reason": reason},
    )
    if request is None:
        return
    # The account's lockout (tenants/lockout.py): past AXES_FAILURE_LIMIT the account waits,
    # and axes' lockout signal writes the security alert (tenants/signals.py).
    AxesProxyHandler.user_login_failed(
        sender=__name__, credentials={"username": user.get_username()}, request=request
    )
    if getattr(request, "axes_locked_out", False) or device is None:
        return
    # Signing in again resets axes' count; the device's own count of wrong codes does not.
    # Each further round of failures on it is an alert of its own.
    device.refresh_from_db()  # django-otp counted the failure on its own copy
    failures = getattr(device, "throttling_failure_count", 0)
    limit = max(1, int(settings.AXES_FAILURE_LIMIT))
    if reason == "wrong_code" and failures and failures % limit == 0:
        audit_record(
            event=AuditCode.SECURITY_ALERT,
            outcome=AuditEvent.Outcome.SERIOUS_FAILURE,
            user=user,
            institution=institution,
            request=request,
            detail={"alert": "second_factor_guessing", "failures": failures},
        )


def two_factor_locked(*, user: User, request: Any) -> bool:
    """The account is waiting out a lockout (wrong passwords or wrong codes)."""
    return bool(AxesProxyHandler.is_locked(request, {"username": user.get_username()}))


def two_factor_check_for_token(*, user: User, code: str, request: Any = None) -> None:
    """An API token's sign-in: the second factor too, for whoever has one; refused to a
    user who must enrol and has not (the token would skip the factor)."""
    if two_factor_enrolled(user=user):
        if not str(code or "").strip():
            _verify_failed(
                user=user, device=None, request=request, via="api_token", reason="missing"
            )
            raise ValidationError(
                {
                    "otp": _(
                        "This account signs in with a second factor: send the current code "
                        "of the authenticator app (or a recovery code) as “otp”."
                    )
                }
            )
        try:
            two_factor_verify(user=user, code=code, request=request, via="api_token")
        except ValidationError as refusal:
            raise ValidationError({"otp": refusal.messages}) from refusal
    elif two_factor_required(user=user):
        raise ValidationError(
            {
                "otp": _(
                    "Your role requires a second factor: sign in on the web page once and "
                    "set it up, then ask for a token with its code."
                )
            }
        )


# --- Changes to an enrolled factor ----------------------------------------------------------


def two_factor_recovery_codes_regenerate(
    *, user: User, code: str, request: Any = None
) -> list[str]:
    """New recovery codes for the old ones (all of them stop working), with a current code."""
    device = two_factor_device(user=user)
    if device is None:
        raise ValidationError(_("You have no second factor yet."))
    two_factor_verify(user=user, code=code, request=request)
    with transaction.atomic():
        codes = _recovery_codes_replace(user)
        _audit_change(
            user=user,
            request=request,
            action=AuditEvent.Action.UPDATE,
            change="recovery_codes_regenerated",
            recovery_codes=len(codes),
        )
    return codes


def two_factor_remove(*, user: User, code: str, request: Any = None) -> None:
    """The user removes their own factor, with a current code; not while their role
    requires one."""
    if two_factor_required(user=user):
        raise PermissionDenied(
            _(
                "Your role requires a second factor: it cannot be removed. With a new phone, "
                "ask your hospital administrator to reset it."
            )
        )
    if not two_factor_enrolled(user=user):
        raise ValidationError(_("You have no second factor yet."))
    two_factor_verify(user=user, code=code, request=request)
    with transaction.atomic():
        _devices_delete(user)
        _audit_change(
            user=user,
            request=request,
            action=AuditEvent.Action.DELETE,
            change="second_factor_removed",
        )


def _devices_delete(user: User) -> int:
    deleted = 0
    for model in (TOTPDevice, StaticDevice):
        count, _detail = model.objects.filter(user=user).delete()
        deleted += count
    return deleted


def two_factor_reset(*, scope: Scope, user: User, request: Any = None) -> None:
    """An administrator removes a member's second factor (a lost phone); the member sets up
    a new one at their next sign-in. Within the authority that grants roles
    (tenants/roles.py): a hospital administrator, for the staff of their own institution;
    an alliance administrator, for the staff of the alliance's institutions; and only for
    members whose every role the administrator could grant."""
    if scope.institution is None or not scope.has_any_role(*roles.GRANTER_ROLES):
        raise PermissionDenied(_("Only an administrator may reset a second factor."))
    if user.pk == getattr(scope.user, "pk", None):
        raise PermissionDenied(
            _("You cannot reset your own second factor; ask another administrator.")
        )
    ours = access.visible(scope, Institution).values("pk")
    held = Membership.objects.active().filter(user=user)
    if held.exclude(institution__in=ours).exists():
        # Answered like an unknown user name, as a refused role grant is.
        _refuse_reset(scope=scope, user=user, reason="outside_alliance", request=request)
        raise ValidationError({"username": [no_such_user_message()]})
    if scope.has_any_role(Role.ALLIANCE_ADMIN):
        reachable = held.filter(institution__in=ours)
    else:  # a hospital administrator: members of their own institution only
        reachable = held.filter(institution=scope.institution)
    if not reachable.exists():
        _refuse_reset(scope=scope, user=user, reason="not_a_member", request=request)
        raise ValidationError({"username": [no_such_user_message()]})
    beyond = set(held.values_list("role", flat=True)) - roles.grantable_roles(scope.roles)
    if beyond:
        _refuse_reset(scope=scope, user=user, reason="beyond_authority", request=request)
        raise PermissionDenied(
            _("Your role does not allow you to reset the second factor of this member.")
        )
    with transaction.atomic():
        deleted = _devices_delete(user)
        audit_record(
            event=AuditCode.CREDENTIAL_CHANGE,
            action=AuditEvent.Action.DELETE,
            scope=scope,
            request=request,
            object_type=AuditObject.USER,
            object_id=user.pk,
            detail={
                "user": user.get_username(),
                "change": "second_factor_reset",
                "devices": deleted,
            },
        )


def _refuse_reset(*, scope: Scope, user: User, reason: str, request: Any) -> None:
    audit_record(
        event=AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.DELETE,
        outcome=AuditEvent.Outcome.SERIOUS_FAILURE,
        scope=scope,
        request=request,
        object_type=AuditObject.USER,
        object_id=user.pk,
        detail={"user": user.get_username(), "change": "refused", "reason": reason},
    )
