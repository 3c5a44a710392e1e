"""An invitation over a real SMTP conversation: aiosmtpd listens on a loopback socket, Django's
SMTP backend talks to it, and the link in the message that arrived sets the password and
signs the person in."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import SESSION_KEY
from django.test import Client

from tenants.models import Membership, Role, User

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://[^/\s]+(/accounts/welcome/[^\s]+/)")


class Inbox:
    """aiosmtpd's handler: keeps what the server accepted, as it came over the wire."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_inbox(settings) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.DEFAULT_FROM_EMAIL = "hub@hub.example.org"
    settings.HUB_PUBLIC_URL = "https://hub.example.org"
    try:
        yield inbox
    finally:
        controller.stop()


def test_the_invitation_arrives_by_smtp_and_its_link_signs_the_person_in(
    world, smtp_inbox, django_capture_on_commit_callbacks
):
    admin = Client(HTTP_ACCEPT_LANGUAGE="en")
    admin.force_login(world.adam)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/console/staff/invite/",
            {
                "email": "wei@example.org",
                "username": "wei",
                "name": "魏",
                "name_en": "Wei",
                "language": "zh-hans",
                "role": Role.RADIOLOGIST,
            },
        )
    assert response.status_code == 302
    [(sender, recipients, raw)] = smtp_inbox.received
    assert sender == "hub@hub.example.org"
    assert recipients == ["wei@example.org"]
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "wei@example.org"
    body = message.get_content()
    assert "wei" in body
    found = LINK.search(body)
    assert found, body
    assert found.group(0).startswith("https://hub.example.org/accounts/welcome/")

    person = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    form = person.get(found.group(1), follow=True)
    assert form.status_code == 200
    form_url = form.redirect_chain[-1][0]
    password = "lantern-harbour-morning-7"
    signed_in = person.post(form_url, {"new_password1": password, "new_password2": password})
    assert signed_in.status_code == 302
    wei = User.objects.get(username="wei")
    assert person.session[SESSION_KEY] == str(wei.pk)
    home = person.get("/")
    assert home.status_code == 200
    assert Membership.objects.active().get(user=wei).institution == world.clinic
    # And the password works on the sign-in page next time.
    again = Client().post("/accounts/login/", {"username": "wei", "password": password})
    assert again.status_code == 302
    assert again["Location"] == "/"
