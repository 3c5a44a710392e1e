"""The MDT message codes: what an invitee is told about a session (invited, moved, cancelled,
invitation taken back), put into words when read, in the reader's language
(tenants/messages.py). The parameters are values: the session's title as typed, the
organiser as a person, the role and kind as codes, the start and end as moments."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from tenants.messages import (
    MessageTemplate,
    choice,
    moment,
    person,
    register_choices,
    register_messages,
)

from .models import Invitation, MdtSession, SessionKind, SessionRole

MESSAGES = {
    "mdt.invited": MessageTemplate(
        _("Invitation to the MDT session “%(title)s”"),
        _(
            "%(kind)s, %(start)s – %(end)s (%(zone)s): %(organiser)s invites you as %(role)s. "  # noqa: RUF001
            "Accept or decline under My MDT sessions."
        ),
    ),
    "mdt.rescheduled": MessageTemplate(
        _("MDT session “%(title)s” moved"),
        _("New time: %(start)s – %(end)s (%(zone)s). Please answer again under My MDT sessions."),  # noqa: RUF001
    ),
    "mdt.cancelled": MessageTemplate(
        _("MDT session “%(title)s” cancelled"),
        _("%(organiser)s cancelled the session of %(start)s – %(end)s (%(zone)s)."),  # noqa: RUF001
    ),
    "mdt.withdrawn": MessageTemplate(
        _("You are no longer invited to “%(title)s”"),
        _(
            "%(organiser)s took back your invitation to the session of "
            "%(start)s – %(end)s (%(zone)s)."  # noqa: RUF001
        ),
    ),
}


def invitation_params(*, session: MdtSession, invitation: Invitation) -> dict[str, Any]:
    """The parameters of every MDT code: values, never words in someone's language."""
    return {
        "title": session.title,
        "kind": choice("mdt_session_kind", session.kind),
        "organiser": person(session.chair),
        "role": choice("mdt_role", invitation.role),
        "start": moment(session.starts_at),
        "end": moment(session.ends_at),
        "zone": settings.TIME_ZONE,
    }


def register() -> None:
    register_choices({"mdt_role": SessionRole, "mdt_session_kind": SessionKind})
    register_messages(MESSAGES)
