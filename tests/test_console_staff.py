"""The console's staff pages: a hospital administrator invites people, grants and takes back
roles (only through the membership services), e-mails password links, switches accounts off
only when they are theirs alone; "Forgot your password?" answers alike for any address."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import translation
from django.utils.translation import gettext

from tenants.audit import AuditCode
from tenants.models import AuditEvent, Membership, Role, User

from .conftest import _person
from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    cache.clear()  # the reset form's rate-limit counters of earlier tests (this suite's Redis db)


NEW_PASSWORD = "quiet-river-lantern-42"
LINK = re.compile(r"https?://[^/\s]+(/accounts/(?:welcome|password/reset)/[^\s]+/)")


def web(user: User) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _link_in(message: mail.EmailMessage) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


def _signs_in(username: str, password: str) -> bool:
    """A sign-in on the page, as a person does it (django-axes wants the request)."""
    response = Client().post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302


def _changes_by(username: str):
    return (
        AuditEvent.objects.filter(username=username).exclude(event=AuditCode.LOGIN).order_by("id")
    )


def _invite(client: Client, capture, **fields: str):
    data = {
        "email": "nina@example.org",
        "username": "nina",
        "name": "尼娜",
        "name_en": "Nina",
        "language": "en",
        "role": Role.REFERRING_PHYSICIAN,
    } | fields
    with capture(execute=True):
        return client.post("/console/staff/invite/", data)


def test_an_invitation_makes_an_account_a_role_and_a_one_time_link(
    world, django_capture_on_commit_callbacks
):
    response = _invite(web(world.adam), django_capture_on_commit_callbacks)
    nina = User.objects.get(username="nina")
    assert response.status_code == 302
    assert response["Location"] == f"/console/staff/{nina.pk}/"
    assert not nina.has_usable_password()
    held = Membership.objects.get(user=nina)
    assert (held.institution, held.role, held.granted_by) == (
        world.clinic,
        Role.REFERRING_PHYSICIAN,
        world.adam,
    )
    changes = _changes_by("adam")
    assert [(e.event, e.detail.get("change")) for e in changes] == [
        (AuditCode.ACCOUNT_CHANGE, "invited"),
        (AuditCode.PERMISSION_CHANGE, "granted"),
    ]
    assert changes[0].institution == world.clinic

    [invitation] = mail.outbox
    assert invitation.to == ["nina@example.org"]
    assert invitation.subject == "Your account at the Alliance imaging hub"
    assert "Your user name: nina" in invitation.body
    assert "Adam" in invitation.body
    assert "Beishan Township Health Centre" in invitation.body
    link = _link_in(invitation)
    assert link.startswith("/accounts/welcome/")

    visitor = Client(HTTP_ACCEPT_LANGUAGE="en")
    form = visitor.get(link, follow=True)
    assert b"Welcome: choose your password" in form.content
    form_url = form.redirect_chain[-1][0]
    weak = visitor.post(form_url, {"new_password1": "nina", "new_password2": "nina"})
    assert weak.status_code == 200
    assert b"too short" in weak.content
    done = visitor.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == "/"
    assert visitor.session[SESSION_KEY] == str(nina.pk)  # signed in by setting the password
    nina.refresh_from_db()
    assert nina.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(
        event=AuditCode.CREDENTIAL_CHANGE, username="nina", detail__via="invitation"
    ).exists()
    # The link worked once.
    again = Client(HTTP_ACCEPT_LANGUAGE="en").get(link, follow=True)
    assert b"This link does not work" in again.content
    assert _signs_in("nina", NEW_PASSWORD)


def test_an_invitation_refuses_a_taken_name_or_address_and_roles_beyond_authority(
    world, django_capture_on_commit_callbacks
):
    client = web(world.adam)
    world.alice.email = "alice@example.org"
    world.alice.save()
    taken = _invite(client, django_capture_on_commit_callbacks, username="ALICE")
    assert b"This user name is taken" in taken.content
    address = _invite(client, django_capture_on_commit_callbacks, email="Alice@example.org")
    assert b"An account with this e-mail address exists already" in address.content
    beyond = _invite(client, django_capture_on_commit_callbacks, role=Role.ALLIANCE_ADMIN)
    assert beyond.status_code == 200
    assert b"Select a valid choice" in beyond.content
    page = client.get("/console/staff/invite/").content.decode()
    assert 'value="referring_physician"' in page
    assert 'value="alliance_admin"' not in page
    assert 'value="commission_viewer"' not in page
    assert not User.objects.filter(username="nina").exists()
    assert mail.outbox == []


def test_the_staff_list_shows_the_institutions_people_and_finds_them(world):
    MembershipFactory(user=world.rita, institution=world.clinic, role=Role.RADIOLOGIST)
    client = web(world.adam)
    page = client.get("/console/staff/").content.decode()
    for name in ("Alice", "Adam", "Rita"):
        assert name in page
    assert "Oscar" not in page
    assert "Carl" not in page
    found = client.get("/console/staff/?q=rit").content.decode()
    assert "Rita" in found
    assert "Alice" not in found
    # Not an administrator: no console.
    assert web(world.alice).get("/console/staff/").status_code == 403
    assert web(world.rita).get(f"/console/staff/{world.alice.pk}/").status_code == 403


def test_roles_are_granted_and_taken_back_through_the_membership_services(world):
    client = web(world.adam)
    granted = client.post(
        f"/console/staff/{world.alice.pk}/grant/", {"role": Role.REFERRING_PHYSICIAN}
    )
    assert granted.status_code == 302
    new = Membership.objects.get(user=world.alice, role=Role.REFERRING_PHYSICIAN)
    assert new.institution == world.clinic
    assert new.granted_by == world.adam
    page = client.get(f"/console/staff/{world.alice.pk}/").content.decode()
    assert "Referring physician" in page

    client.post(f"/console/staff/{world.alice.pk}/revoke/", {"membership": new.pk})
    new.refresh_from_db()
    assert new.revoked_at is not None
    assert [e.detail["change"] for e in _changes_by("adam")] == [
        "granted",
        "revoked",
    ]
    # Beyond the administrator's authority: refused by the service, and audited.
    client.post(f"/console/staff/{world.alice.pk}/grant/", {"role": Role.ALLIANCE_ADMIN})
    assert not Membership.objects.filter(user=world.alice, role=Role.ALLIANCE_ADMIN).exists()
    # Nobody grants themself a role: the service refuses and raises a security alert.
    client.post(f"/console/staff/{world.adam.pk}/grant/", {"role": Role.RADIOLOGIST})
    assert not Membership.objects.filter(user=world.adam, role=Role.RADIOLOGIST).exists()
    assert AuditEvent.objects.filter(event=AuditCode.SECURITY_ALERT, username="adam").exists()


def test_someone_from_the_alliance_is_added_by_user_name_and_an_outsider_is_not(world):
    client = web(world.adam)
    client.post("/console/staff/add/", {"username": "rita", "role": Role.RADIOLOGIST})
    assert Membership.objects.filter(
        user=world.rita, institution=world.clinic, role=Role.RADIOLOGIST
    ).exists()
    outsider = client.post(
        "/console/staff/add/", {"username": "oscar", "role": Role.RADIOLOGIST}, follow=True
    )
    ghost = client.post(
        "/console/staff/add/", {"username": "ghost", "role": Role.RADIOLOGIST}, follow=True
    )
    assert b"No such user in your alliance." in outsider.content
    assert b"No such user in your alliance." in ghost.content
    assert not Membership.objects.filter(user=world.oscar, institution=world.clinic).exists()


def test_an_account_held_here_alone_is_switched_off_and_on(world):
    client = web(world.adam)
    alice = Client()
    assert (
        alice.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code
        == 302
    )
    client.post(f"/console/staff/{world.alice.pk}/deactivate/")
    world.alice.refresh_from_db()
    assert not world.alice.is_active
    assert alice.get("/").status_code == 302  # her open session ends
    assert not _signs_in("alice", PASSWORD)
    page = client.get(f"/console/staff/{world.alice.pk}/").content.decode()
    assert "Switched off" in page
    client.post(f"/console/staff/{world.alice.pk}/reactivate/")
    world.alice.refresh_from_db()
    assert world.alice.is_active
    assert [
        e.detail["change"] for e in AuditEvent.objects.filter(event=AuditCode.ACCOUNT_CHANGE)
    ] == [
        "deactivated",
        "reactivated",
    ]


def test_someone_who_also_works_elsewhere_is_removed_here_not_switched_off(world):
    here = MembershipFactory(user=world.rita, institution=world.clinic, role=Role.RADIOLOGIST)
    client = web(world.adam)
    page = client.get(f"/console/staff/{world.rita.pk}/").content.decode()
    assert "also holds roles at another institution" in page
    assert "/deactivate/" not in page
    assert "/remove/" in page
    refused = client.post(f"/console/staff/{world.rita.pk}/deactivate/", follow=True)
    assert b"also holds roles at another institution" in refused.content
    world.rita.refresh_from_db()
    assert world.rita.is_active

    client.post(f"/console/staff/{world.rita.pk}/remove/")
    here.refresh_from_db()
    assert here.revoked_at is not None
    assert Membership.objects.active().filter(user=world.rita, institution=world.reader).exists()
    assert AuditEvent.objects.filter(
        event=AuditCode.PERMISSION_CHANGE, detail__change="revoked", detail__user="rita"
    ).exists()
    # Their roles here are gone and they work elsewhere in the alliance: still listed here
    # (in the alliance), with no role.
    assert "No role here" in client.get("/console/staff/").content.decode()


def test_an_administrator_cannot_switch_off_themself_or_an_alliance_administrator(world):
    ada = _person("ada", "阿达", "Ada", world.clinic, Role.ALLIANCE_ADMIN)
    client = web(world.adam)
    client.post(f"/console/staff/{world.adam.pk}/deactivate/")
    client.post(f"/console/staff/{ada.pk}/deactivate/")
    client.post(f"/console/staff/{ada.pk}/remove/")
    world.adam.refresh_from_db()
    ada.refresh_from_db()
    assert world.adam.is_active
    assert ada.is_active
    assert Membership.objects.active().filter(user=ada).exists()
    assert not AuditEvent.objects.filter(event=AuditCode.ACCOUNT_CHANGE).exists()


def test_an_administrator_emails_a_password_link_or_the_invitation_again(
    world, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.language = "zh-hans"
    world.alice.save()
    client = web(world.adam)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/console/staff/{world.alice.pk}/password-mail/")
    [reset] = mail.outbox
    assert reset.to == ["alice@example.org"]
    with translation.override("zh-hans"):  # in Alice's own language
        assert reset.subject == gettext("Choose a new password for the Alliance imaging hub")
    assert _link_in(reset).startswith("/accounts/password/reset/")
    world.alice.refresh_from_db()
    assert world.alice.check_password(PASSWORD)  # nothing changes until she uses it
    sent = AuditEvent.objects.get(event=AuditCode.CREDENTIAL_CHANGE)
    assert sent.detail == {"user": "alice", "change": "password_reset_mail_sent"}

    _invite(client, django_capture_on_commit_callbacks)
    nina = User.objects.get(username="nina")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/console/staff/{nina.pk}/password-mail/")
    assert [m.subject for m in mail.outbox[1:]] == [
        "Your account at the Alliance imaging hub",
        "Your account at the Alliance imaging hub",
    ]


def test_forgot_password_answers_alike_and_mails_only_a_known_address(
    world, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    login = Client(HTTP_ACCEPT_LANGUAGE="en").get("/accounts/login/")
    assert b'href="/accounts/password/reset/"' in login.content
    answers = []
    for address in ("nobody@example.org", "ALICE@example.org"):
        visitor = Client(HTTP_ACCEPT_LANGUAGE="en")
        with django_capture_on_commit_callbacks(execute=True):
            sent = visitor.post("/accounts/password/reset/", {"email": address})
        answers.append((sent.status_code, sent["Location"]))
        done = visitor.get(sent["Location"])
        assert b"If an account has this address" in done.content
    assert answers[0] == answers[1] == (302, "/accounts/password/reset/sent/")
    [reset] = mail.outbox
    assert reset.to == ["alice@example.org"]

    visitor = Client(HTTP_ACCEPT_LANGUAGE="en")
    form_url = visitor.get(_link_in(reset), follow=True).redirect_chain[-1][0]
    done = visitor.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done["Location"] == "/"
    assert _signs_in("alice", NEW_PASSWORD)
    assert AuditEvent.objects.filter(
        event=AuditCode.CREDENTIAL_CHANGE, username="alice", detail__via="password_reset"
    ).exists()


def test_a_switched_off_account_gets_no_reset_link(world, django_capture_on_commit_callbacks):
    nobody = UserFactory(username="gone", email="gone@example.org", is_active=False)
    MembershipFactory(user=nobody, institution=world.clinic)
    with django_capture_on_commit_callbacks(execute=True):
        Client().post("/accounts/password/reset/", {"email": "gone@example.org"})
    assert mail.outbox == []


def test_forgot_password_mails_one_address_a_few_times_an_hour_and_answers_alike(
    world, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    answers = set()
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            sent = Client().post("/accounts/password/reset/", {"email": "alice@example.org"})
        answers.add((sent.status_code, sent["Location"]))
    assert answers == {(302, "/accounts/password/reset/sent/")}
    assert len(mail.outbox) == 3
