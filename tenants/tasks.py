"""Celery tasks of the tenants app: thin, idempotent, each calls one service."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task

from . import messages
from .models import Institution, Membership, User
from .services import notification_send

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def membership_notice_send(membership_id: int) -> None:
    """Tell a user about a role they were granted (once, however often this runs)."""
    membership = (
        Membership.objects.select_related("user", "institution")
        .filter(pk=membership_id, revoked_at__isnull=True)
        .first()
    )
    if membership is None:
        return
    notification_send(
        user=membership.user,
        institution=membership.institution,
        kind="membership_granted",
        code="membership.granted",
        params={
            "role": messages.choice("role", membership.role),
            "institution": messages.institution_name(membership.institution),
        },
        link="/",
        dedup_key=f"membership:{membership.pk}",
    )


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError, smtplib.SMTPException),
    retry_backoff=True,
    max_retries=5,
)
def account_mail_send(
    user_id: int, kind: str, institution_id: int | None = None, inviter_id: int | None = None
) -> None:
    """E-mail a person their invitation or password link (a fresh token each time: a retry
    sends a link as good as the first)."""
    from .console.services import account_mail_deliver

    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return
    account_mail_deliver(
        user=user,
        kind=kind,
        institution=(
            Institution.objects.filter(pk=institution_id).first() if institution_id else None
        ),
        inviter=User.objects.filter(pk=inviter_id).first() if inviter_id else None,
    )


@shared_task(acks_late=True, ignore_result=True)
def audit_ship_task() -> None:
    """Beat's call: ship the trail's new rows off the box. A sink that is down leaves them in
    the trail (the spool) for the next run, which replays from the cursor in order."""
    from .audit_shipping import AuditSinkError, audit_ship

    try:
        audit_ship()
    except AuditSinkError as error:
        logger.warning("%s; the rows wait in the trail for the next run", error)
