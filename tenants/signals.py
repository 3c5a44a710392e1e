"""Sign-ins and sign-outs go to the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .access import scope_for_user
from .audit import AuditCode, audit_record
from .models import AuditEvent


@receiver(user_logged_in)
def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Recorded under the institution the session starts acting for, so its admins see it.
    audit_record(
        event=AuditCode.LOGIN,
        scope=scope_for_user(user),
        user=user,
        request=request,
        detail={"via": "web"},
    )


@receiver(user_logged_out)
def _audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(event=AuditCode.LOGOUT, user=user, request=request)


@receiver(user_login_failed)
def _audit_login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    audit_record(
        event=AuditCode.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.MINOR_FAILURE,
        username=str(credentials.get("username", ""))[:150],
        request=request,
    )
