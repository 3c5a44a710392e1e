"""Sign-ins and sign-outs go to the audit trail."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from . import oidc
from .access import NOBODY, SESSION_KEY, Scope, scope_for_user
from .audit import AuditCode, audit_record
from .models import AuditEvent, User


def _scope_of(username: str) -> Scope | None:
    """The institution a user name belongs to, for the audit row (its admins see it)."""
    user = User.objects.filter(username=username).first()
    scope = scope_for_user(user) if user is not None else NOBODY
    return scope if scope.institution is not None else None


@receiver(user_logged_in)
def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Recorded under the institution the session starts acting for, so its admins see it
    # (a single sign-on session acts for its provider's hospital: tenants/oidc.py).
    session = getattr(request, "session", None) or {}
    scope = scope_for_user(user, institution_id=session.get(SESSION_KEY))
    audit_record(
        event=AuditCode.LOGIN,
        scope=scope if scope.institution is not None else scope_for_user(user),
        user=user,
        request=request,
        detail=getattr(user, "sign_in_detail", None) or {"via": "web"},
    )


@receiver(user_logged_out)
def _audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        scope = scope_for_user(user)
        audit_record(
            event=AuditCode.LOGOUT,
            user=user,
            request=request,
            scope=scope if scope.institution is not None else None,
        )


@receiver(user_login_failed)
def _audit_login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    refusal = getattr(request, oidc.REFUSAL_ATTR, None)
    if refusal is not None:  # a single sign-on refused: the provider's hospital sees it
        audit_record(
            event=AuditCode.LOGIN_FAILED,
            outcome=AuditEvent.Outcome.MINOR_FAILURE,
            institution=refusal.institution,
            username=refusal.username,
            request=request,
            detail={"via": "oidc", "reason": refusal.reason},
        )
        return
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        event=AuditCode.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.MINOR_FAILURE,
        scope=_scope_of(username),
        username=username,
        request=request,
    )


@receiver(user_locked_out)
def _alert_lockout(
    sender: Any, request: Any, username: str, ip_address: str | None = None, **kwargs: Any
) -> None:
    audit_record(
        event=AuditCode.SECURITY_ALERT,
        outcome=AuditEvent.Outcome.SERIOUS_FAILURE,
        scope=_scope_of(username or ""),
        username=(username or "")[:150],
        request=request,
        detail={"alert": "account_locked", "failures_limit": settings.AXES_FAILURE_LIMIT},
    )
