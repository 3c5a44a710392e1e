"""Single sign-on's rules without a browser: who a provider's claims may sign in as, the ID
token's issuer and audience, the pages when it is off and when the provider misbehaves,
and the settings' strict parsing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import SuspiciousOperation
from django.test import Client
from django.utils import timezone

from tenants.audit import AuditCode
from tenants.models import AuditEvent, Membership, OidcIdentity, Role
from tenants.oidc import HubOidcBackend, Refusal, oidc_config, users_matching_claims

from .factories import PASSWORD, MembershipFactory
from .oidc_support import CLIENT_ID, hub_settings_for

pytestmark = pytest.mark.django_db

ISSUER = "https://id.beishan.example"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sso(world, settings):
    hub_settings_for(settings, issuer=ISSUER, institution_code=world.clinic.code)
    world.alice.email = "alice@beishan.example"
    world.alice.save()
    world.oscar.email = "oscar@nanling.example"
    world.oscar.save()
    return world


def match(world, claims):
    config = oidc_config()
    assert config is not None
    return users_matching_claims(config=config, institution=world.clinic, claims=claims)


def test_the_first_sign_in_finds_a_member_of_the_hospital_by_e_mail(sso):
    assert match(sso, {"sub": "a1", "email": "ALICE@beishan.example"}) == ([sso.alice], "")


def test_a_person_of_another_hospital_or_unknown_finds_nobody(sso):
    assert match(sso, {"sub": "o1", "email": "oscar@nanling.example"}) == ([], Refusal.NO_ACCOUNT)
    assert match(sso, {"sub": "x", "email": "nobody@beishan.example"}) == ([], "no_account")
    assert match(sso, {"sub": "x"}) == ([], Refusal.NO_ACCOUNT)


def test_a_revoked_membership_or_a_switched_off_account_is_refused(sso):
    sso.alice.is_active = False
    sso.alice.save()
    assert match(sso, {"sub": "a1", "email": "alice@beishan.example"}) == ([], Refusal.INACTIVE)
    Membership.objects.filter(user=sso.alice).update(revoked_at=timezone.now())
    assert match(sso, {"sub": "a1", "email": "alice@beishan.example"}) == ([], "no_account")


def test_an_address_the_provider_has_not_verified_finds_nobody(sso):
    claims = {"sub": "a1", "email": "alice@beishan.example", "email_verified": False}
    assert match(sso, claims) == ([], Refusal.NO_ACCOUNT)


def test_a_bound_subject_decides_and_a_bound_account_is_not_found_by_address(sso):
    OidcIdentity.objects.create(issuer=ISSUER, subject="a1", user=sso.alice)
    # Her address changed at the provider: the subject still finds her.
    assert match(sso, {"sub": "a1", "email": "a.new@beishan.example"}) == ([sso.alice], "")
    # Someone else given her old address later does not take her account over.
    assert match(sso, {"sub": "b2", "email": "alice@beishan.example"}) == ([], "no_account")
    # A subject bound at another provider counts for nothing here.
    OidcIdentity.objects.create(issuer="https://other.example", subject="a9", user=sso.adam)
    assert match(sso, {"sub": "a9"}) == ([], Refusal.NO_ACCOUNT)


def test_two_members_with_one_address_are_refused(sso):
    sso.adam.email = "alice@beishan.example"
    sso.adam.save()
    found, reason = match(sso, {"sub": "a1", "email": "alice@beishan.example"})
    assert reason == Refusal.AMBIGUOUS
    assert set(found) == {sso.alice, sso.adam}


def test_matching_by_user_name_when_told(sso, settings):
    settings.HUB_OIDC_USER_CLAIM = "preferred_username"
    settings.HUB_OIDC_USER_FIELD = "username"
    assert match(sso, {"sub": "a1", "preferred_username": "alice"}) == ([sso.alice], "")
    assert match(sso, {"sub": "a1", "email": "alice@beishan.example"}) == ([], "no_account")


def test_a_member_with_several_institutions_is_found_once(sso):
    MembershipFactory(user=sso.alice, institution=sso.clinic, role=Role.REFERRING_PHYSICIAN)
    MembershipFactory(user=sso.alice, institution=sso.reader, role=Role.RADIOLOGIST)
    assert match(sso, {"sub": "a1", "email": "alice@beishan.example"}) == ([sso.alice], "")


# --- The ID token: this issuer, for this hub ------------------------------------------


@pytest.fixture
def backend(sso):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend = HubOidcBackend()
    backend.config = oidc_config()
    backend.OIDC_RP_SIGN_ALGO = "RS256"
    backend.OIDC_RP_IDP_SIGN_KEY = key.public_key()
    backend.OIDC_OP_JWKS_ENDPOINT = None
    backend.OIDC_RP_CLIENT_SECRET = "unused"
    backend.private_key = key
    return backend


def token(backend, **claims):
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "a1", "nonce": "n", "iat": now}
    body.update(exp=now + 300, **claims)
    return jwt.encode(body, backend.private_key, algorithm="RS256")


def test_an_id_token_of_this_issuer_for_this_hub_is_taken(backend):
    assert backend.verify_token(token(backend), nonce="n")["sub"] == "a1"
    assert backend.verify_token(token(backend, aud=["x", CLIENT_ID]), nonce="n")["sub"] == "a1"


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://evil.example"}, {"aud": "another-client"}, {"aud": ["x", "y"]}],
)
def test_an_id_token_of_another_issuer_or_client_is_refused(backend, claims):
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(token(backend, **claims), nonce="n")


def test_an_id_token_with_another_nonce_is_refused(backend):
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(token(backend), nonce="replayed")


def test_the_backend_leaves_password_sign_ins_alone(sso, rf):
    request = rf.get("/accounts/login/", {"code": "c", "state": "s"})
    assert HubOidcBackend().authenticate(request, username="alice", password="x") is None


# --- The pages ----------------------------------------------------------------------------


def test_off_by_default_the_pages_are_not_there_and_no_button_shows(world):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "c", "state": "s"}).status_code == 404
    assert 'id="oidc-sign-in"' not in client.get("/accounts/login/").content.decode()


def test_on_the_sign_in_page_offers_the_provider(sso):
    page = Client(HTTP_ACCEPT_LANGUAGE="en").get("/accounts/login/?next=/audit/")
    assert (
        '<a class="button" id="oidc-sign-in" href="/oidc/authenticate/?next=/audit/">'
        "Sign in with Beishan ID</a>"
    ) in page.content.decode()


def test_a_provider_out_of_reach_is_said_on_the_sign_in_page(sso, settings):
    settings.HUB_OIDC_ISSUER = "http://127.0.0.1:9"  # the discard port: nobody answers
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = client.get("/oidc/authenticate/", follow=True)
    assert response.redirect_chain == [("/accounts/login/", 302)]
    assert "Sign-in through Beishan ID could not be completed." in response.content.decode()


def test_a_cancelled_or_replayed_answer_is_said_not_crashed(sso):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    session = client.session
    session["oidc_states"] = {"s1": {"nonce": "n", "code_verifier": "v" * 64}}
    session.save()
    cancelled = client.get(
        "/oidc/callback/", {"error": "access_denied", "state": "s1"}, follow=True
    )
    assert "Sign-in at Beishan ID was cancelled." in cancelled.content.decode()
    replayed = client.get("/oidc/callback/", {"code": "c", "state": "never-sent"}, follow=True)
    assert replayed.redirect_chain == [("/accounts/login/", 302)]
    assert "could not be completed" in replayed.content.decode()
    mixed_up = client.get("/oidc/callback/", {"code": "c", "state": "s1", "iss": "https://x"})
    assert mixed_up.status_code == 302
    assert mixed_up["Location"] == "/accounts/login/"


def test_a_refusal_is_audited_at_the_provider_hospital_once(sso, rf, monkeypatch):
    """The provider's answer is refused (here: its metadata cannot be read): one failed
    sign-in in the trail, under the hospital, with the reason."""
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    session = client.session
    session["oidc_states"] = {"s1": {"nonce": "n", "code_verifier": "v" * 64}}
    session.save()
    monkeypatch.setattr("tenants.oidc.provider_metadata", _unreachable)
    response = client.get("/oidc/callback/", {"code": "c", "state": "s1"}, follow=True)
    assert "could not be completed" in response.content.decode()
    failed = AuditEvent.objects.get(event=AuditCode.LOGIN_FAILED)
    assert failed.institution == sso.clinic
    assert failed.detail == {"via": "oidc", "reason": "provider_error"}


def _unreachable(config):
    from tenants.oidc import ProviderUnavailableError

    raise ProviderUnavailableError("down")


def test_password_sign_in_still_works_and_is_audited_as_before(sso):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    refused = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert refused.status_code == 200
    signed_in = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/"
    failed = AuditEvent.objects.get(event=AuditCode.LOGIN_FAILED)
    assert (failed.username, failed.institution) == ("alice", sso.clinic)
    login = AuditEvent.objects.get(event=AuditCode.LOGIN)
    assert (login.username, login.institution, login.detail) == (
        "alice",
        sso.clinic,
        {"via": "web"},
    )


# --- Settings: strict, and off unless named ---------------------------------------------

PROBE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps(settings.AUTHENTICATION_BACKENDS))"
)


def settings_probe(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "alliance.settings",
        "HUB_ENV": "test",
        "HUB_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://u@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_settings_turn_single_sign_on_on_only_when_complete(tmp_path):
    off = settings_probe(tmp_path)
    assert "tenants.oidc.HubOidcBackend" not in json.loads(off.stdout)
    named = {
        "HUB_OIDC_ISSUER": ISSUER,
        "HUB_OIDC_CLIENT_ID": "hub",
        "HUB_OIDC_CLIENT_SECRET": "s",
        "HUB_OIDC_INSTITUTION": "north-clinic",
    }
    on = settings_probe(tmp_path, **named)
    assert json.loads(on.stdout)[-1] == "tenants.oidc.HubOidcBackend"
    incomplete = settings_probe(tmp_path, HUB_OIDC_ISSUER=ISSUER, HUB_OIDC_CLIENT_ID="hub")
    assert "set HUB_OIDC_CLIENT_SECRET, HUB_OIDC_INSTITUTION" in incomplete.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HUB_OIDC_ISSUER", "http://id.beishan.example"),  # plain http off this machine
        ("HUB_OIDC_ISSUER", "id.beishan.example"),
        ("HUB_OIDC_SCOPES", "email profile"),  # no openid
        ("HUB_OIDC_USER_FIELD", "phone"),
        ("HUB_OIDC_SIGN_ALGO", "none"),
    ],
)
def test_settings_refuse_a_bad_value(tmp_path, name, value):
    result = settings_probe(tmp_path, **{name: value})
    assert result.returncode != 0
    assert name in result.stderr
