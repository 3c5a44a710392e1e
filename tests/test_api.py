"""The API: tokens, the active institution, memberships, gateway credentials, notifications."""

from __future__ import annotations

import base64

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from tenants.models import AuditEvent, GatewayCredential, Membership, Notification, Role
from tenants.services import notification_send

from .conftest import api_client_for
from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def test_a_token_is_issued_for_the_right_password_only(world):
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    bad = client.post("/api/v1/auth/login/", {"username": "alice", "password": "nope"})
    assert bad.status_code == 400
    good = client.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD})
    assert good.status_code == 201
    client.credentials(HTTP_AUTHORIZATION=f"Token {good.json()['token']}")
    assert client.get("/api/v1/me/").json()["username"] == "alice"
    assert AuditEvent.objects.filter(event="login", username="alice").exists()


def test_anonymous_callers_get_401(world):
    assert APIClient().get("/api/v1/me/").status_code == 401
    assert APIClient().get("/api/v1/institutions/").status_code == 401


def test_a_revoked_token_stops_working_at_once(world):
    client = api_client_for(world.alice)
    key = AuthToken.objects.get(user=world.alice).token_key
    assert client.delete(f"/api/v1/auth/tokens/{key}/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401


def test_tokens_list_only_the_callers_own(world):
    api_client_for(world.rita)
    keys = [
        t["token_key"]
        for t in api_client_for(world.alice).get("/api/v1/auth/tokens/").json()["results"]
    ]
    assert keys == list(
        AuthToken.objects.filter(user=world.alice).values_list("token_key", flat=True)
    )


def test_the_institution_header_selects_whom_the_caller_acts_for(world):
    MembershipFactory(user=world.alice, institution=world.reader, role=Role.RADIOLOGIST)
    me = api_client_for(world.alice, world.reader).get("/api/v1/me/").json()
    assert me["active_institution"]["code"] == "north-central"
    assert me["roles"] == ["radiologist"]
    assert len(me["memberships"]) == 2


def test_acting_for_an_institution_you_are_not_in_is_refused(world):
    response = api_client_for(world.alice, world.outsider).get("/api/v1/institutions/")
    assert response.status_code == 403
    assert "no institution" in response.json()["detail"]


def test_an_admin_grants_and_revokes_a_role(world, django_capture_on_commit_callbacks):
    newcomer = UserFactory(username="nina")
    admin = api_client_for(world.adam)
    with django_capture_on_commit_callbacks(execute=True):
        created = admin.post(
            "/api/v1/memberships/", {"username": "nina", "role": "referring_physician"}
        )
    assert created.status_code == 201, created.json()
    membership = Membership.objects.get(pk=created.json()["id"])
    assert (membership.user, membership.institution) == (newcomer, world.clinic)
    # The Celery task ran inline on commit here; tests/test_worker_integration.py runs it
    # on a real worker.
    assert Notification.objects.filter(user=newcomer, kind="membership_granted").count() == 1
    assert admin.delete(f"/api/v1/memberships/{membership.pk}/").status_code == 204
    membership.refresh_from_db()
    assert membership.revoked_at is not None
    changes = AuditEvent.objects.filter(event="permission_change").values_list(
        "detail__change", flat=True
    )
    assert list(changes) == ["granted", "revoked"]


def test_granting_needs_an_admin_and_sane_input(world):
    UserFactory(username="nina")
    assert (
        api_client_for(world.alice)
        .post("/api/v1/memberships/", {"username": "nina", "role": "radiologist"})
        .status_code
        == 403
    )
    admin = api_client_for(world.adam)
    assert (
        admin.post("/api/v1/memberships/", {"username": "ghost", "role": "radiologist"}).status_code
        == 400
    )
    assert (
        admin.post("/api/v1/memberships/", {"username": "nina", "role": "pope"}).status_code == 400
    )
    assert (
        admin.post(
            "/api/v1/memberships/", {"username": "alice", "role": "clinic_technician"}
        ).status_code
        == 400
    )


def test_an_admin_cannot_remove_their_own_admin_role(world):
    own = Membership.objects.get(user=world.adam)
    response = api_client_for(world.adam).delete(f"/api/v1/memberships/{own.pk}/")
    assert response.status_code == 400
    own.refresh_from_db()
    assert own.revoked_at is None


def test_gateway_credential_life(world):
    admin = api_client_for(world.adam)
    created = admin.post(
        "/api/v1/gateway-credentials/",
        {"label": "CT room", "calling_ae_titles": ["CT_ROOM1"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    key_id, secret = created.json()["key_id"], created.json()["secret"]
    stored = GatewayCredential.objects.get(key_id=key_id)
    assert secret not in stored.secret_hash  # only a digest is kept
    assert "secret" not in admin.get(f"/api/v1/gateway-credentials/{stored.pk}/").json()

    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=basic(key_id, secret))
    whoami = gateway.get("/api/v1/gateway/whoami/")
    assert whoami.status_code == 200
    assert whoami.json()["institution"]["code"] == "north-clinic"
    assert whoami.json()["calling_ae_titles"] == ["CT_ROOM1"]

    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION=basic(key_id, secret + "x"))
    assert wrong.get("/api/v1/gateway/whoami/").status_code == 401

    assert admin.delete(f"/api/v1/gateway-credentials/{stored.pk}/").status_code == 204
    assert gateway.get("/api/v1/gateway/whoami/").status_code == 401


def test_a_gateway_credential_is_not_a_person(world):
    admin = api_client_for(world.adam)
    body = admin.post("/api/v1/gateway-credentials/", {"label": "x"}, format="json").json()
    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=basic(body["key_id"], body["secret"]))
    assert gateway.get("/api/v1/institutions/").status_code in (401, 403)
    assert gateway.get("/api/v1/me/").status_code in (401, 403)


def test_bad_ae_titles_are_refused_with_a_reason(world):
    response = api_client_for(world.adam).post(
        "/api/v1/gateway-credentials/",
        {"label": "x", "calling_ae_titles": ["WAY_TOO_LONG_AE_TITLE"]},
        format="json",
    )
    assert response.status_code == 400
    assert "AE title" in str(response.json())


def test_only_admins_see_credentials_and_audit(world):
    alice = api_client_for(world.alice)
    assert alice.get("/api/v1/gateway-credentials/").status_code == 403
    assert alice.get("/api/v1/audit-events/").status_code == 403
    assert api_client_for(world.adam).get("/api/v1/audit-events/").status_code == 200


def test_notifications_are_listed_and_marked_read(world):
    mine = notification_send(user=world.alice, kind="test", title="Hello")
    notification_send(user=world.adam, kind="test", title="Not for Alice")
    alice = api_client_for(world.alice)
    listed = alice.get("/api/v1/notifications/").json()["results"]
    assert [n["title"] for n in listed] == ["Hello"]
    read = alice.post(f"/api/v1/notifications/{mine.pk}/read/")
    assert read.status_code == 200
    assert read.json()["read_at"] is not None


def test_a_dedup_key_sends_a_notification_once(world):
    first = notification_send(user=world.alice, kind="k", title="t", dedup_key="x:1")
    again = notification_send(user=world.alice, kind="k", title="t", dedup_key="x:1")
    assert first.pk == again.pk
    assert Notification.objects.filter(user=world.alice).count() == 1


def test_the_alliance_lists_its_tiers(world):
    alliances = api_client_for(world.alice).get("/api/v1/alliances/").json()["results"]
    assert [a["code"] for a in alliances] == ["north"]
    tiers = {m["institution"]["code"]: m["tier"] for m in alliances[0]["members"]}
    assert tiers == {"north-central": "central", "north-clinic": "grassroots"}
