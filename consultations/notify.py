"""Telling an invitee about an MDT session: in the hub and by e-mail with a calendar file.

`invitee_tell` is the ONE place consultations sends a notification: a message code with its
parameters (consultations/messages.py), read in each reader's language; the e-mail and its
calendar file are written in the recipient's. Everything runs after the surrounding
transaction commits (notification_send publishes on commit; the e-mail is queued with
on_commit), so a rolled-back step tells no one.
"""

from __future__ import annotations

import logging
from email.mime.text import MIMEText
from enum import StrEnum

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from tenants.messages import message_text
from tenants.services import notification_send

from . import ics
from .messages import invitation_params
from .models import Invitation, MdtSession

logger = logging.getLogger(__name__)


class Change(StrEnum):
    """What happened to the invitee's session."""

    INVITED = "invited"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"


# Notification kinds (tenants.Notification.kind), which are also the message codes.
KINDS = {
    Change.INVITED: "mdt.invited",
    Change.RESCHEDULED: "mdt.rescheduled",
    Change.CANCELLED: "mdt.cancelled",
    Change.WITHDRAWN: "mdt.withdrawn",
}


def session_link(session: MdtSession) -> str:
    return reverse("mdt-session", args=[session.pk])


def _mail(
    invitation: Invitation, subject: str, text: str, calendar: bytes, method: str
) -> EmailMessage:
    message = EmailMessage(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[invitation.user.email],
    )
    # text/calendar with its iTIP method, as calendar programs expect an invitation.
    part = MIMEText(calendar.decode("utf-8"), "calendar", "utf-8")
    part.set_param("method", method)
    part.add_header("Content-Disposition", "attachment", filename="mdt-session.ics")
    message.attach(part)
    return message


def invitee_tell(*, invitation: Invitation, change: Change) -> None:
    """Tell the invitee, in their language: a notification in the hub and, when they have an
    address, an e-mail carrying the calendar file (CANCEL when the event is gone for them)."""
    session = invitation.session
    user = invitation.user
    link = session_link(session)
    gone = change in (Change.CANCELLED, Change.WITHDRAWN)
    method = ics.CANCEL if gone else ics.REQUEST
    code = KINDS[change]
    params = invitation_params(session=session, invitation=invitation)
    notification_send(
        user=user,
        kind=code,
        code=code,
        params=params,
        link=link,
        institution=invitation.institution,
    )
    if not user.email:
        return
    # The e-mail is read once, by its recipient: it is written in their language.
    language = user.language or settings.LANGUAGE_CODE
    subject = message_text(code, params, language=language, fallback=session.title)
    body = message_text(code, params, part="body", language=language)
    with translation.override(language):
        mail_text = "\n".join(
            [
                body,
                "",
                f"{gettext('Room')}: {ics.room_url(session)}",
                f"{gettext('Session')}: {settings.HUB_PUBLIC_URL}{link}",
            ]
        )
    message = _mail(
        invitation,
        subject,
        mail_text,
        ics.session_ics(session=session, invitation=invitation, method=method),
        method,
    )

    def send() -> None:
        try:
            message.send()
        except Exception:  # the e-mail is a courtesy copy; the notification is stored
            logger.exception("MDT e-mail to user %s failed", user.pk)

    transaction.on_commit(send)
