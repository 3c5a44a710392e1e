"""Telling people about a referral: in-app notification (live), e-mail, and page events.

Everything here runs after the surrounding transaction commits (notification_send and
`publish` already do; e-mail is queued with on_commit), so a rolled-back step tells no one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from referrals.models import Referral
from tenants.live import institution_group, pool_group, publish, user_group
from tenants.models import Membership, Role, User
from tenants.roles import CLINIC_ROLES
from tenants.services import notification_send

logger = logging.getLogger(__name__)


def referral_link(referral: Referral) -> str:
    return reverse("referral-detail", args=[referral.pk])


def clinic_recipients(referral: Referral) -> list[User]:
    """Who at the sending site hears about a referral: its requester, else the clinic staff."""
    requester = referral.requested_by
    if requester is not None and requester.is_active:
        return [requester]
    ids = (
        Membership.objects.active()
        .filter(institution_id=referral.source_id, role__in=CLINIC_ROLES)
        .values("user_id")
    )
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def hospital_leads(referral: Referral) -> list[User]:
    """The reading side's lead: the pool's lead, else the reading hospital's administrators."""
    lead = referral.pool.lead if referral.pool is not None else None
    if lead is not None:
        return [lead]
    if referral.target_id is None:
        return []
    ids = (
        Membership.objects.active()
        .filter(institution_id=referral.target_id, role=Role.HOSPITAL_ADMIN)
        .values("user_id")
    )
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def _mail(user: User, subject: str, body: str) -> None:
    if not user.email:
        return

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        except Exception:  # e-mail is a courtesy copy; the in-app notification is stored
            logger.exception("e-mail to user %s failed", user.pk)

    transaction.on_commit(send)


def _mail_body(referral: Referral, body: str, link: str) -> str:
    """The e-mail text, in the active language (the recipient's; see `notify`)."""
    lines = [body] if body else []
    lines.append(f"{gettext('Requesting site')}: {referral.source.display_name}")
    if referral.target is not None:
        lines.append(f"{gettext('Reading institution')}: {referral.target.display_name}")
    lines += ["", f"{settings.HUB_PUBLIC_URL}{link}"]
    return "\n".join(lines)


def notify(
    users: Iterable[User],
    referral: Referral,
    *,
    kind: str,
    code: str = "",
    params: dict[str, Any] | None = None,
    title: Any = "",
    body: Any = "",
    dedup: str = "",
    email: bool = False,
) -> None:
    """A notification (and optionally an e-mail) to each user about `referral`.

    Said with a message `code` and its `params` (referrals/messages.py): the notification is
    put into words whenever it is read, in the reader's language; the e-mail, sent once, in
    the recipient's. `title`/`body` (lazy text) remain for callers without a code.
    """
    link = referral_link(referral)
    for user in {u.pk: u for u in users}.values():
        notification = notification_send(
            user=user,
            kind=kind,
            code=code,
            params=params,
            title=title,
            body=body,
            link=link,
            dedup_key=f"{dedup}:{referral.pk}" if dedup else "",
        )
        if email:
            with translation.override(user.language or settings.LANGUAGE_CODE):
                subject = notification.display_title
                mail_text = _mail_body(referral, notification.display_body, link)
            _mail(user, subject, mail_text)


def referral_payload(referral: Referral) -> dict[str, Any]:
    """What live pages receive: enough to redraw a row; no patient identity."""
    return {
        "id": referral.pk,
        "status": referral.status,
        "priority": referral.priority,
        "deadline_at": referral.deadline_at.isoformat(),
        "pool": referral.pool_id,
        "claimed_by": referral.claimed_by_id,
        "assigned_to": referral.assigned_to_id,
        "breached": referral.breached_at is not None,
    }


def broadcast(referral: Referral, event: str = "referral") -> None:
    """Tell every open page that shows this referral: the clinic's, the pool's, the reader's."""
    payload = referral_payload(referral)
    publish(institution_group(referral.source_id), event, payload)
    if referral.pool_id:
        publish(pool_group(referral.pool_id), event, payload)
    for user_id in {referral.assigned_to_id, referral.claimed_by_id} - {None}:
        assert user_id is not None
        publish(user_group(user_id), event, payload)
