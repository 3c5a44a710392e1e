"""The MDT invitation e-mail through a real SMTP server (aiosmtpd, on a loopback socket):
Django's SMTP backend delivers it, and the message that arrived carries a calendar file a
calendar program reads as an invitation (METHOD:REQUEST) to the session's room."""

from __future__ import annotations

import email
import email.header
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from typing import Any

import icalendar
import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from consultations import services

from .mdt_support import chair_scope, mdt_setup
from .processes import free_port

pytestmark = pytest.mark.django_db


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_the_invitation_mail_reaches_an_smtp_server_with_its_calendar_file(
    world, smtp, settings, django_capture_on_commit_callbacks
):
    inbox, port = smtp
    settings.HUB_PUBLIC_URL = "https://hub.example.org"
    world.rita.email = "rita@example.org"
    world.rita.save()
    world.adam.email = "adam@example.org"
    world.adam.language = "en"
    world.adam.save()
    mdt = mdt_setup(world, opens_in=timedelta(days=1))
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            EMAIL_USE_TLS=False,
            EMAIL_USE_SSL=False,
            DEFAULT_FROM_EMAIL="hub@example.org",
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.invitation_create(
            scope=chair_scope(world),
            session=mdt.session,
            user=world.adam,
            institution=world.clinic,
            role="presenter",
        )
    assert len(inbox.received) == 1
    sender, recipients, message = inbox.received[0]
    assert (sender, recipients) == ("hub@example.org", ["adam@example.org"])
    # adam reads English: the subject, the text and the calendar's words are his.
    assert str(email.header.make_header(email.header.decode_header(message["Subject"]))) == (
        "Invitation to the MDT session “胸部肿瘤 MDT”"
    )
    parts = {p.get_content_type(): p for p in message.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/calendar"}
    text = parts["text/plain"].get_payload(decode=True).decode()
    assert f"https://hub.example.org/mdt/{mdt.session.pk}/" in text
    assert "Accept or decline under My MDT sessions" in text
    assert "Rita invites you as Presenter" in text
    assert "丽塔" not in text
    calendar_part = parts["text/calendar"]
    assert calendar_part.get_param("method") == "REQUEST"
    assert calendar_part.get_filename() == "mdt-session.ics"
    calendar = icalendar.Calendar.from_ical(calendar_part.get_payload(decode=True))
    assert str(calendar["METHOD"]) == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]) == f"mdt-session-{mdt.session.pk}@hub.example.org"
    assert str(event["LOCATION"]) == f"https://hub.example.org/mdt/{mdt.session.pk}/"
    assert str(event["ORGANIZER"]) == "mailto:rita@example.org"
    assert str(event["ATTENDEE"]) == "mailto:adam@example.org"
    assert str(event["SUMMARY"]) == "胸部肿瘤 MDT"
    assert str(event["DESCRIPTION"]).splitlines() == [
        "Multidisciplinary consultation",
        "Organiser: Rita",
        "Your role: Presenter",
        f"Room: https://hub.example.org/mdt/{mdt.session.pk}/",
    ]
    assert event["ORGANIZER"].params["CN"] == "Rita"
    assert event.decoded("DTSTART") == mdt.session.starts_at.replace(microsecond=0)
    assert event.decoded("DTEND") == mdt.session.ends_at.replace(microsecond=0)
