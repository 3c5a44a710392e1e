"""Telling an invitee about an MDT session: in the hub and by e-mail with a calendar file.

`invitee_tell` is the ONE place consultations sends a notification (the texts are to become
codes with parameters: change them here only). Everything runs after the surrounding
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
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext

from tenants.services import notification_send

from . import ics
from .models import Invitation, MdtSession

logger = logging.getLogger(__name__)


class Change(StrEnum):
    """What happened to the invitee's session."""

    INVITED = "invited"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"


# Notification kinds (tenants.Notification.kind).
KINDS = {
    Change.INVITED: "mdt.invited",
    Change.RESCHEDULED: "mdt.rescheduled",
    Change.CANCELLED: "mdt.cancelled",
    Change.WITHDRAWN: "mdt.withdrawn",
}


def session_link(session: MdtSession) -> str:
    return reverse("mdt-session", args=[session.pk])


def when(session: MdtSession) -> str:
    """The session's window in the hub's time zone, in the active language's format."""
    start = timezone.localtime(session.starts_at)
    end = timezone.localtime(session.ends_at)
    end_format = "H:i" if start.date() == end.date() else "Y-m-d H:i"
    return (
        f"{date_format(start, 'Y-m-d H:i')}\u2013{date_format(end, end_format)} "
        f"({timezone.get_current_timezone_name()})"
    )


def _texts(change: Change, session: MdtSession, invitation: Invitation) -> tuple[str, str]:
    """(title, body) in the active language."""
    organiser = session.chair.display_name
    if change == Change.INVITED:
        title = gettext("Invitation to the MDT session “%(title)s”") % {"title": session.title}
        body = gettext(
            "%(organiser)s invites you as %(role)s: %(when)s. Accept or decline under "
            "My MDT sessions."
        ) % {"organiser": organiser, "role": invitation.get_role_display(), "when": when(session)}
    elif change == Change.RESCHEDULED:
        title = gettext("MDT session “%(title)s” moved") % {"title": session.title}
        body = gettext("New time: %(when)s. Please answer again under My MDT sessions.") % {
            "when": when(session)
        }
    elif change == Change.CANCELLED:
        title = gettext("MDT session “%(title)s” cancelled") % {"title": session.title}
        body = gettext("%(organiser)s cancelled the session of %(when)s.") % {
            "organiser": organiser,
            "when": when(session),
        }
    else:
        title = gettext("You are no longer invited to “%(title)s”") % {"title": session.title}
        body = gettext("%(organiser)s took back your invitation to the session of %(when)s.") % {
            "organiser": organiser,
            "when": when(session),
        }
    return title, body


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
    with translation.override(user.language or settings.LANGUAGE_CODE):
        title, body = _texts(change, session, invitation)
        mail_text = "\n".join(
            [
                body,
                "",
                f"{gettext('Room')}: {ics.room_url(session)}",
                f"{gettext('Session')}: {settings.HUB_PUBLIC_URL}{link}",
            ]
        )
    notification_send(
        user=user,
        kind=KINDS[change],
        title=title[:200],
        body=body,
        link=link,
        institution=invitation.institution,
    )
    if not user.email:
        return
    message = _mail(
        invitation,
        title,
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
