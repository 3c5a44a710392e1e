"""The administration console: its home and navigation, the site's gateway credentials (the
secret shown once), and the alliance's deadline policy (its administrator only, audited)."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client

from alliance import console
from alliance.models import AlliancePolicy, ReaderPool
from tenants.audit import AuditCode
from tenants.models import AuditEvent, GatewayCredential, Role, User

from .conftest import _person
from .factories import UserFactory

pytestmark = pytest.mark.django_db


def web(user: User) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _nav(client: Client) -> str:
    page = client.get("/").content.decode()
    return page.split('<nav class="mainnav"', 1)[1].split("</nav>", 1)[0]


# --- Home and navigation -----------------------------------------------------------------


def test_administrators_find_the_console_in_the_navigation_and_only_superusers_django_admin(
    world,
):
    assert 'href="/console/"' in _nav(web(world.adam))
    assert 'href="/console/"' not in _nav(web(world.alice))
    staff = UserFactory(username="staffer", is_staff=True)
    _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)
    User.objects.filter(username="ada").update(is_staff=True)
    for user in (staff, User.objects.get(username="ada"), world.adam):
        assert "/admin/" not in _nav(web(user))
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert 'href="/admin/"' in _nav(web(root))
    assert "Django admin" in _nav(web(root))


def test_the_console_home_lists_what_each_administrator_may_use(world):
    adams = web(world.adam).get("/console/")
    assert adams.status_code == 200
    page = adams.content.decode()
    assert "Beishan Township Health Centre" in page
    for url in ("/console/staff/", "/console/gateways/", "/audit/"):
        assert f'href="{url}"' in page
    assert "/console/policy/" not in page

    ada = _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)
    page = web(ada).get("/console/").content.decode()
    assert 'href="/console/policy/"' in page
    assert 'href="/console/staff/"' in page
    assert "/console/gateways/" not in page  # a hospital administrator's
    assert world.north.display_name in page

    for user in (world.alice, world.rita, world.carl):
        assert web(user).get("/console/").status_code == 403


def test_a_section_whose_page_is_not_built_is_left_out(world, monkeypatch):
    from tenants.access import scope_for_user

    sections = [
        *console.SECTIONS,
        console.ConsoleSection("Later", "not yet", "console-no-such-page", frozenset(Role.values)),
    ]
    monkeypatch.setattr(console, "SECTIONS", sections)
    links = console.console_sections(scope_for_user(world.adam))
    assert "Later" not in [link.label for link in links]
    assert "/console/staff/" in [link.url for link in links]


# --- Gateway credentials -----------------------------------------------------------------


def test_a_credential_is_created_with_its_ae_titles_and_its_secret_shown_once(world):
    client = web(world.adam)
    created = client.post(
        "/console/gateways/",
        {"label": "CT room PC", "calling_ae_titles": "CT_ROOM1\n\n  DR-2  \nCT_ROOM1\n"},
    )
    assert created.status_code == 200
    credential = GatewayCredential.objects.get(institution=world.clinic)
    assert credential.calling_ae_titles == ["CT_ROOM1", "DR-2"]
    secret = created.context["secret"]
    assert secret in created.content.decode()
    assert hashlib.sha256(secret.encode()).hexdigest() == credential.secret_hash
    # Never again: the list shows the key id, not the secret.
    listed = client.get("/console/gateways/").content.decode()
    assert credential.key_id in listed
    assert secret not in listed
    event = AuditEvent.objects.get(event=AuditCode.CREDENTIAL_CHANGE)
    assert (event.action, event.object_id) == (AuditEvent.Action.CREATE, credential.key_id)

    client.post(f"/console/gateways/{credential.pk}/revoke/")
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert AuditEvent.objects.filter(
        event=AuditCode.CREDENTIAL_CHANGE, action=AuditEvent.Action.DELETE
    ).exists()


@pytest.mark.parametrize(
    "title",
    ["SEVENTEEN_CHARS_X", "CT\\ROOM", "CT\tROOM", "\u5f71\u50cf"],
    ids=["too-long", "backslash", "control", "not-ascii"],
)
def test_an_ae_title_that_dicom_refuses_is_refused(world, title):
    response = web(world.adam).post(
        "/console/gateways/", {"label": "x", "calling_ae_titles": f"GOOD\n{title}"}
    )
    assert response.status_code == 200
    assert b"is not an AE title" in response.content
    assert not GatewayCredential.objects.exists()


def test_gateway_credentials_are_a_hospital_administrators(world):
    ada = _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)
    for user in (world.alice, ada):
        assert web(user).get("/console/gateways/").status_code == 403
        assert web(user).post("/console/gateways/", {"label": "x"}).status_code == 403
    assert not GatewayCredential.objects.exists()


# --- Deadline policy ---------------------------------------------------------------------

POLICY = {
    "stat_minutes": 20,
    "urgent_minutes": 90,
    "routine_minutes": 1440,
    "warn_fraction": 0.5,
    "breach_action": "return_to_pool",
    "claim_open_minutes": 10,
    "critical_ack_minutes": 30,
    "critical_lead_minutes": 15,
    "grant_days_after_report": 30,
    "fallback_pool": "",
    "duty_officer": "",
}


def test_the_alliance_administrator_saves_the_deadline_policy_audited(world):
    ada = _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)
    pool = ReaderPool.objects.create(alliance=world.north, institution=world.reader, name="总")
    client = web(ada)
    assert client.get("/console/policy/").status_code == 200
    saved = client.post(
        "/console/policy/", POLICY | {"fallback_pool": pool.pk, "duty_officer": world.rita.pk}
    )
    assert saved.status_code == 302
    policy = AlliancePolicy.objects.get(alliance=world.north)
    assert (policy.stat_minutes, policy.urgent_minutes, policy.warn_fraction) == (20, 90, 0.5)
    assert (policy.fallback_pool, policy.duty_officer) == (pool, world.rita)
    event = AuditEvent.objects.get(event=AuditCode.CONFIGURATION_CHANGE)
    assert event.username == "ada"
    assert event.detail["alliance"] == "north"
    assert event.detail["changes"]["stat_minutes"] == [30, 20]
    assert event.detail["changes"]["fallback_pool"] == [None, pool.pk]
    # Saving the same values again changes nothing and records nothing.
    client.post(
        "/console/policy/", POLICY | {"fallback_pool": pool.pk, "duty_officer": world.rita.pk}
    )
    assert AuditEvent.objects.filter(event=AuditCode.CONFIGURATION_CHANGE).count() == 1


def test_the_policy_refuses_deadlines_out_of_order_and_another_alliances_choices(world):
    ada = _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)
    south_pool = ReaderPool.objects.create(
        alliance=world.south, institution=world.south.lead_hospital, name="南"
    )
    client = web(ada)
    backwards = client.post("/console/policy/", POLICY | {"stat_minutes": 200})
    assert backwards.status_code == 200
    assert b"STAT must be due no later than urgent" in backwards.content
    theirs = client.post("/console/policy/", POLICY | {"fallback_pool": south_pool.pk})
    assert theirs.status_code == 200
    theirs_officer = client.post("/console/policy/", POLICY | {"duty_officer": world.otto.pk})
    assert theirs_officer.status_code == 200
    zero = client.post("/console/policy/", POLICY | {"stat_minutes": 0})
    assert b"At least one minute." in zero.content
    assert not AlliancePolicy.objects.filter(alliance=world.north).exists()
    assert not AuditEvent.objects.filter(event=AuditCode.CONFIGURATION_CHANGE).exists()


def test_only_an_alliance_administrator_edits_the_policy(world):
    for user in (world.adam, world.alice, world.carl, world.otto):
        assert web(user).get("/console/policy/").status_code == 403
        assert web(user).post("/console/policy/", POLICY).status_code == 403
    assert not AlliancePolicy.objects.exists()
