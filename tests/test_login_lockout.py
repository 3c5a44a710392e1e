"""Sign-in lockout per account across addresses, with a growing wait, written to the audit
trail as a security alert under the account's institution (tenants/lockout.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client, RequestFactory, override_settings

from tenants.audit import AuditCode
from tenants.lockout import cool_off
from tenants.models import AuditEvent

from .factories import PASSWORD

pytestmark = pytest.mark.django_db


def _attempt(password: str, address: str, **headers: str):
    return Client(REMOTE_ADDR=address, **headers).post(
        "/accounts/login/", {"username": "alice", "password": password}
    )


def test_failures_from_many_addresses_lock_the_account_for_every_address(world):
    for n in range(4):
        assert _attempt("wrong", f"10.0.0.{n + 1}").status_code == 200
    assert _attempt("wrong", "10.0.0.5").status_code == 429  # the fifth locks the account
    # The right password, from an address that never failed: still locked.
    locked = _attempt(PASSWORD, "10.0.0.99")
    assert locked.status_code == 429
    # A forged X-Forwarded-For changes nothing either.
    assert _attempt(PASSWORD, "10.0.0.98", HTTP_X_FORWARDED_FOR="192.0.2.7").status_code == 429
    alert = AuditEvent.objects.filter(event=AuditCode.SECURITY_ALERT).first()
    assert alert is not None
    assert alert.username == "alice"
    assert alert.institution_code == world.clinic.code
    assert alert.detail["alert"] == "account_locked"


def test_a_failed_sign_in_is_audited_under_the_accounts_institution(world):
    _attempt("wrong", "10.0.0.1")
    failed = AuditEvent.objects.get(event=AuditCode.LOGIN_FAILED)
    assert failed.username == "alice"
    assert failed.institution_code == world.clinic.code
    assert failed.source_address == "10.0.0.1"
    # An unknown name has no institution to tell.
    Client(REMOTE_ADDR="10.0.0.2").post("/accounts/login/", {"username": "nobody", "password": "x"})
    unknown = AuditEvent.objects.filter(event=AuditCode.LOGIN_FAILED, username="nobody").get()
    assert unknown.institution_code == ""


def test_signing_out_is_audited_under_the_institution(world):
    client = Client()
    client.force_login(world.adam)
    client.post("/accounts/logout/")
    logout = AuditEvent.objects.get(event=AuditCode.LOGOUT)
    assert logout.institution_code == world.clinic.code


@override_settings(HUB_LOCKOUT_BASE_MINUTES=1, HUB_LOCKOUT_MAX_MINUTES=30, AXES_FAILURE_LIMIT=5)
@pytest.mark.parametrize(
    ("failures", "minutes"), [(0, 1), (5, 1), (9, 1), (10, 2), (15, 4), (20, 8), (500, 30)]
)
def test_the_wait_doubles_with_each_round_of_failures(world, failures, minutes):
    if failures:
        AccessAttempt.objects.create(
            username="alice",
            ip_address="10.0.0.1",
            user_agent="t",
            get_data="",
            post_data="",
            http_accept="",
            path_info="/accounts/login/",
            failures_since_start=failures,
        )
    request = RequestFactory().post("/accounts/login/", {"username": "alice"})
    assert cool_off(request) == timedelta(minutes=minutes)
