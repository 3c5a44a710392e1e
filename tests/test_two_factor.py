"""The second factor: enrolment, codes and recovery codes, throttling and lockout, the
middleware's enforcement, the API token's sign-in, and an administrator's reset."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone, translation
from django_otp.oath import TOTP, totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from tenants.access import scope_for_user
from tenants.models import AuditEvent, Role, User
from tenants.two_factor import services

from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _services_speak_english():
    """The services' refusals are read here in English (pages choose their own language)."""
    with translation.override("en"):
        yield


def code_now(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def code_next(device: TOTPDevice) -> str:
    """The app's next code (one step on: still accepted, and not the one just used)."""
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    generator.time = time.time() + device.step
    return f"{generator.token():06d}"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def enrol(user: User) -> tuple[TOTPDevice, list[str]]:
    device = services.two_factor_enrol_start(user=user)
    return services.two_factor_enrol_confirm(user=user, code=code_now(device))


def a_request(path: str = "/accounts/two-factor/code/"):
    request = RequestFactory().post(path, HTTP_USER_AGENT="pytest")
    return request


def events(username: str, event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(username=username, event=event).order_by("id"))


def web(user: User) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


# --- Services ------------------------------------------------------------------------------


def test_enrolment_takes_the_apps_code_and_issues_ten_recovery_codes(world):
    alice = world.alice
    device = services.two_factor_enrol_start(user=alice)
    assert services.two_factor_enrol_start(user=alice).pk == device.pk  # same key on reload
    assert "otpauth://totp/Alliance%20imaging%20hub%3Aalice?" in device.config_url
    assert services.two_factor_qr_data_uri(device).startswith("data:image/svg+xml")
    assert services.two_factor_secret(device).replace(" ", "").isalnum()

    with pytest.raises(ValidationError, match="not right"):
        services.two_factor_enrol_confirm(user=alice, code=wrong(code_now(device)))
    device.refresh_from_db()
    assert not device.confirmed
    assert not services.two_factor_enrolled(user=alice)
    assert events("alice", "credential_change")[-1].detail["reason"] == "wrong_code"

    device.throttle_reset()
    confirmed, codes = services.two_factor_enrol_confirm(user=alice, code=code_now(device))
    assert confirmed.pk == device.pk
    assert confirmed.confirmed
    assert len(codes) == len(set(codes)) == 10
    assert services.recovery_codes_left(user=alice) == 10
    assert events("alice", "credential_change")[-1].detail["change"] == "second_factor_enrolled"
    with pytest.raises(ValidationError):
        services.two_factor_enrol_start(user=alice)  # one authenticator per person


def test_a_code_works_once_and_a_recovery_code_is_used_up(world):
    device, codes = enrol(world.alice)
    # The enrolment used this step's code: it does not sign in again (no replay).
    with pytest.raises(ValidationError):
        services.two_factor_verify(user=world.alice, code=code_now(device))
    device.throttle_reset()
    assert services.two_factor_verify(user=world.alice, code=code_next(device)).pk == device.pk

    typed = codes[3].upper()[:4] + " " + codes[3][4:]  # as people type them
    used = services.two_factor_verify(user=world.alice, code=typed)
    assert isinstance(used, StaticDevice)
    assert services.recovery_codes_left(user=world.alice) == 9
    assert not StaticToken.objects.filter(token=codes[3]).exists()
    record = events("alice", "credential_change")[-1]
    assert record.detail == {"change": "recovery_code_used", "via": "web", "recovery_codes_left": 9}
    used.throttle_reset()
    with pytest.raises(ValidationError):
        services.two_factor_verify(user=world.alice, code=codes[3])


def test_wrong_codes_wait_are_audited_and_lock_the_account_with_an_alert(world):
    device, _codes = enrol(world.adam)
    request = a_request()
    with pytest.raises(ValidationError, match="not right"):
        services.two_factor_verify(user=world.adam, code="000000", request=request)
    # django-otp's throttle: right after a wrong code even the right one waits.
    with pytest.raises(ValidationError, match="wait"):
        services.two_factor_verify(user=world.adam, code=code_next(device), request=a_request())
    failed = events("adam", "login_failed")
    assert [e.detail["reason"] for e in failed] == ["wrong_code", "throttled"]
    assert failed[0].institution == world.clinic  # his administrators see it
    assert not services.two_factor_locked(user=world.adam, request=a_request())

    for _ in range(settings.AXES_FAILURE_LIMIT - 2):
        request = a_request()
        with pytest.raises(ValidationError):
            services.two_factor_verify(user=world.adam, code="000000", request=request)
    assert request.axes_locked_out
    assert services.two_factor_locked(user=world.adam, request=a_request())
    alert = events("adam", "security_alert")[-1]
    assert alert.detail["alert"] == "account_locked"
    # The password alone no longer signs in either, for the lockout's wait.
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    answer = client.post("/accounts/login/", {"username": "adam", "password": PASSWORD})
    assert answer.status_code in (403, 429)


def test_wrong_codes_across_sign_ins_still_raise_an_alert(world):
    # Signing in again resets the account's count; the device's own count goes on.
    device, _codes = enrol(world.rita)
    limit = settings.AXES_FAILURE_LIMIT
    device.throttling_failure_count = limit - 1
    device.throttling_failure_timestamp = timezone.now() - timedelta(days=1)
    device.save()
    with pytest.raises(ValidationError):
        services.two_factor_verify(user=world.rita, code="000000", request=a_request())
    alert = events("rita", "security_alert")[-1]
    assert alert.detail == {"alert": "second_factor_guessing", "failures": limit}


def test_regenerating_recovery_codes_needs_a_code_and_voids_the_old_ones(world):
    device, old = enrol(world.alice)
    with pytest.raises(ValidationError):
        services.two_factor_recovery_codes_regenerate(user=world.alice, code="000000")
    assert services.recovery_codes_left(user=world.alice) == 10
    device.refresh_from_db()
    device.throttle_reset()
    new = services.two_factor_recovery_codes_regenerate(user=world.alice, code=code_next(device))
    assert len(new) == 10
    assert not set(new) & set(old)
    assert not StaticToken.objects.filter(token__in=old).exists()


def test_removal_needs_a_code_and_is_refused_while_the_role_requires_a_factor(world):
    device, _codes = enrol(world.rita)
    with override_settings(HUB_TWO_FACTOR_REQUIRED=True), pytest.raises(PermissionDenied):
        services.two_factor_remove(user=world.rita, code=code_next(device))
    assert services.two_factor_enrolled(user=world.rita)
    services.two_factor_remove(user=world.rita, code=code_next(device))
    assert not TOTPDevice.objects.filter(user=world.rita).exists()
    assert not StaticDevice.objects.filter(user=world.rita).exists()
    assert events("rita", "credential_change")[-1].detail == {"change": "second_factor_removed"}


# --- An administrator's reset --------------------------------------------------------------


def test_a_hospital_administrator_resets_a_member_of_their_institution(world):
    enrol(world.alice)
    services.two_factor_reset(scope=scope_for_user(world.adam), user=world.alice)
    assert not services.two_factor_enrolled(user=world.alice)
    record = AuditEvent.objects.filter(event="credential_change", username="adam").last()
    assert record.detail["change"] == "second_factor_reset"
    assert record.detail["user"] == "alice"
    assert record.institution == world.clinic


def test_a_reset_stays_within_the_administrators_authority(world):
    for user in (world.alice, world.rita, world.adam, world.oscar):
        enrol(user)
    adam = scope_for_user(world.adam)
    # Not an administrator; himself; another institution of the alliance; another alliance.
    with pytest.raises(PermissionDenied):
        services.two_factor_reset(scope=scope_for_user(world.alice), user=world.adam)
    with pytest.raises(PermissionDenied):
        services.two_factor_reset(scope=adam, user=world.adam)
    with pytest.raises(ValidationError):
        services.two_factor_reset(scope=adam, user=world.rita)
    with pytest.raises(ValidationError):
        services.two_factor_reset(scope=scope_for_user(world.otto), user=world.alice)
    with pytest.raises(ValidationError):
        services.two_factor_reset(scope=adam, user=world.oscar)
    # A role he could not grant (an alliance administrator at his own clinic).
    boss = UserFactory(username="boss")
    MembershipFactory(user=boss, institution=world.clinic, role=Role.ALLIANCE_ADMIN)
    enrol(boss)
    with pytest.raises(PermissionDenied):
        services.two_factor_reset(scope=adam, user=boss)
    for user in (world.rita, world.adam, world.oscar, boss):
        assert services.two_factor_enrolled(user=user), user
    refusals = AuditEvent.objects.filter(
        event="credential_change", outcome=AuditEvent.Outcome.SERIOUS_FAILURE
    )
    assert {e.detail["reason"] for e in refusals} == {
        "outside_alliance",
        "not_a_member",
        "beyond_authority",
    }
    # The alliance's administrator reaches the reading hospital's radiologist.
    services.two_factor_reset(scope=scope_for_user(boss), user=world.rita)
    assert not services.two_factor_enrolled(user=world.rita)


# --- The middleware ------------------------------------------------------------------------


@override_settings(HUB_TWO_FACTOR_REQUIRED=True)
def test_enforced_a_senior_radiologist_is_sent_to_set_up_then_to_enter_codes(world):
    sara = UserFactory(username="sara")
    MembershipFactory(user=sara, institution=world.reader, role=Role.SENIOR_RADIOLOGIST)
    client = web(sara)
    answer = client.get("/institutions/?page=2")
    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/two-factor/setup/?next=%2Finstitutions%2F%3Fpage%3D2"
    assert client.get("/accounts/two-factor/").status_code == 302
    # The API does not count her session; the exempt pages answer.
    assert client.get("/api/v1/me/").status_code in (401, 403)
    assert client.get("/healthz").status_code == 200
    page = client.get("/accounts/two-factor/setup/?next=/institutions/")
    assert page.status_code == 200
    assert b'src="data:image/svg+xml' in page.content
    device = TOTPDevice.objects.get(user=sara, confirmed=False)
    assert services.two_factor_secret(device).encode() in page.content

    confirmed = client.post(
        "/accounts/two-factor/setup/", {"otp_token": code_now(device), "next": "/"}
    )
    assert confirmed.status_code == 302
    assert confirmed["Location"] == "/accounts/two-factor/recovery-codes/"
    codes = client.get("/accounts/two-factor/recovery-codes/")
    tokens = StaticToken.objects.filter(device__user=sara).values_list("token", flat=True)
    assert all(token.encode() in codes.content for token in tokens)
    # Shown once.
    assert client.get("/accounts/two-factor/recovery-codes/").status_code == 302
    assert client.get("/institutions/").status_code == 200

    # The next sign-in must enter a code before anything else.
    again = web(sara)
    answer = again.get("/institutions/")
    assert answer["Location"] == "/accounts/two-factor/code/?next=%2Finstitutions%2F"
    refused = again.post(
        "/accounts/two-factor/code/", {"otp_token": "12345", "next": "/institutions/"}
    )
    assert refused.status_code == 400
    assert b"That code is not right." in refused.content
    device.refresh_from_db()
    device.throttle_reset()
    passed = again.post(
        "/accounts/two-factor/code/",
        {"otp_token": code_next(device), "next": "https://elsewhere.example/"},
    )
    assert passed.status_code == 302
    assert passed["Location"] == "/"
    assert again.get("/institutions/").status_code == 200


@override_settings(HUB_TWO_FACTOR_REQUIRED=True)
def test_enforced_a_technician_without_a_factor_goes_on_and_sign_out_stays_open(world):
    client = web(world.alice)
    assert client.get("/institutions/").status_code == 200
    rita = web(world.rita)
    assert rita.get("/institutions/").status_code == 302
    assert rita.post("/accounts/logout/").status_code == 302
    assert rita.get("/institutions/")["Location"].startswith("/accounts/login/")


def test_not_enforced_an_enrolled_user_still_enters_a_code(world):
    assert not settings.HUB_TWO_FACTOR_REQUIRED
    assert web(world.rita).get("/institutions/").status_code == 200  # optional: no factor
    enrol(world.alice)
    answer = web(world.alice).get("/institutions/")
    assert answer["Location"] == "/accounts/two-factor/code/?next=%2Finstitutions%2F"
    # The share-link pages (patients, no account) are never held back.
    assert web(world.alice).get("/s/not-a-token/").status_code != 302


def test_the_account_page_sets_up_and_removes_the_factor_when_optional(world):
    client = web(world.alice)
    page = client.get("/accounts/two-factor/").content.decode()
    assert "Off: a password alone signs you in." in page
    assert 'href="/accounts/two-factor/setup/"' in page
    client.get("/accounts/two-factor/setup/")
    device = TOTPDevice.objects.get(user=world.alice)
    client.post("/accounts/two-factor/setup/", {"otp_token": code_now(device)})
    page = client.get("/accounts/two-factor/").content.decode()
    assert "10 recovery codes left." in page
    answer = client.post("/accounts/two-factor/remove/", {"otp_token": code_next(device)})
    assert answer.status_code == 302
    assert not services.two_factor_enrolled(user=world.alice)


# --- The API token's sign-in ---------------------------------------------------------------


def test_a_token_needs_the_code_of_a_user_with_a_second_factor(world):
    _device, codes = enrol(world.alice)
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    form = {"username": "alice", "password": PASSWORD}
    missing = client.post("/api/v1/auth/login/", form)
    assert missing.status_code == 400
    assert "send the current code" in missing.json()["fields"]["otp"][0]
    bad = client.post("/api/v1/auth/login/", {**form, "otp": "000000"})
    assert bad.status_code == 400
    assert "not right" in bad.json()["detail"]
    reasons = [e.detail.get("reason") for e in events("alice", "login_failed")]
    assert reasons == ["missing", "wrong_code"]
    good = client.post("/api/v1/auth/login/", {**form, "otp": codes[0]})
    assert good.status_code == 201
    assert good.json()["token"]
    # A user without a factor signs in as before.
    plain = client.post("/api/v1/auth/login/", {"username": "rita", "password": PASSWORD})
    assert plain.status_code == 201


@override_settings(HUB_TWO_FACTOR_REQUIRED=True)
def test_enforced_a_token_is_refused_until_the_factor_is_set_up(world):
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    refused = client.post("/api/v1/auth/login/", {"username": "rita", "password": PASSWORD})
    assert refused.status_code == 400
    assert "set it up" in refused.json()["detail"]
    alice = client.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD})
    assert alice.status_code == 201
