"""The calendar file of an MDT invitation (iCalendar, RFC 5545, with iTIP methods, RFC 5546).

One event per session: its UID never changes, so a reschedule (a REQUEST with a higher
SEQUENCE) moves the event the invitee's calendar already holds, and the cancel (METHOD:CANCEL)
removes it. Times are written in UTC, which every calendar reads without a time-zone block.
"""

from __future__ import annotations

from datetime import UTC
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext
from icalendar import Calendar, Event, vCalAddress, vText

from tenants.models import User

from .models import Invitation, InvitationAnswer, MdtSession, SessionRole, SessionStatus

REQUEST = "REQUEST"
CANCEL = "CANCEL"
PRODID = "-//Alliance imaging hub//MDT sessions//EN"

# RFC 5545 ROLE of each session role (the chair is the one who must be there).
ICAL_ROLES: dict[str, str] = {
    SessionRole.CHAIR: "CHAIR",
    SessionRole.PRESENTER: "REQ-PARTICIPANT",
    SessionRole.PARTICIPANT: "REQ-PARTICIPANT",
    SessionRole.OBSERVER: "OPT-PARTICIPANT",
}
PARTSTAT: dict[str, str] = {
    InvitationAnswer.PENDING: "NEEDS-ACTION",
    InvitationAnswer.ACCEPTED: "ACCEPTED",
    InvitationAnswer.DECLINED: "DECLINED",
}


def session_uid(session: MdtSession) -> str:
    """The event's UID: the same for the life of the session, unique to this hub."""
    host = urlsplit(settings.HUB_PUBLIC_URL).hostname or "hub"
    return f"mdt-session-{session.pk}@{host}"


def room_url(session: MdtSession) -> str:
    return f"{settings.HUB_PUBLIC_URL}{reverse('mdt-room', args=[session.pk])}"


def _address(user: User | None) -> vCalAddress:
    email = (user.email if user is not None else "") or settings.DEFAULT_FROM_EMAIL
    address = vCalAddress(f"mailto:{email}")
    if user is not None:
        address.params["CN"] = vText(user.display_name)
    return address


def session_ics(*, session: MdtSession, invitation: Invitation, method: str) -> bytes:
    """The calendar file telling `invitation`'s user about `session` (REQUEST or CANCEL),
    its words (description, names) in that user's language."""
    if method not in (REQUEST, CANCEL):
        raise ValueError(f"unknown iTIP method {method!r}")
    with translation.override(invitation.user.language or settings.LANGUAGE_CODE):
        return _calendar(session=session, invitation=invitation, method=method)


def _description(session: MdtSession, invitation: Invitation) -> str:
    """What the calendar shows under the event, in the active language."""
    return "\n".join(
        [
            str(session.get_kind_display()),
            f"{gettext('Organiser')}: {session.chair.display_name}",
            f"{gettext('Your role')}: {invitation.get_role_display()}",
            f"{gettext('Room')}: {room_url(session)}",
        ]
    )


def _calendar(*, session: MdtSession, invitation: Invitation, method: str) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", session_uid(session))
    event.add("sequence", session.calendar_sequence)
    event.add("dtstamp", timezone.now().astimezone(UTC))
    event.add("dtstart", session.starts_at.astimezone(UTC))
    event.add("dtend", session.ends_at.astimezone(UTC))
    event.add("summary", session.title)
    event.add("location", room_url(session))
    event.add("url", room_url(session))
    event.add("description", _description(session, invitation))
    cancelled = method == CANCEL or session.status == SessionStatus.CANCELLED
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("organizer", _address(session.chair))
    attendee = _address(invitation.user)
    attendee.params["ROLE"] = vText(ICAL_ROLES.get(invitation.role, "REQ-PARTICIPANT"))
    attendee.params["PARTSTAT"] = vText(PARTSTAT.get(invitation.answer, "NEEDS-ACTION"))
    # Answers are given in the hub (My MDT sessions), not by mail to the chair's mailbox.
    attendee.params["RSVP"] = vText("FALSE")
    event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    return calendar.to_ical()
