"""Sessions end after 30 idle minutes, and after one shift whatever the activity."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client, override_settings
from freezegun import freeze_time

from tenants.session_timeout import SIGNED_IN_AT, session_expiry

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


@override_settings(HUB_SESSION_IDLE_MINUTES=30, SESSION_COOKIE_AGE=8 * 3600)
def test_the_expiry_is_the_idle_limit_capped_by_the_shift():
    start = T0.timestamp()
    assert session_expiry(now=start, signed_in_at=start) == 30 * 60
    assert session_expiry(now=start + 7.75 * 3600, signed_in_at=start) == 15 * 60
    assert session_expiry(now=start + 8 * 3600 + 1, signed_in_at=start) == 0


@override_settings(HUB_SESSION_IDLE_MINUTES=30)
def test_a_session_left_alone_for_half_an_hour_signs_out(world):
    client = Client()
    with freeze_time(T0):
        client.force_login(world.alice)
        assert client.get("/").status_code == 200
    with freeze_time(T0 + dt.timedelta(minutes=29)):
        assert client.get("/").status_code == 200  # still in, and the clock starts again
    with freeze_time(T0 + dt.timedelta(minutes=29 + 31)):
        answer = client.get("/")
        assert answer.status_code == 302
        assert answer["Location"].startswith("/accounts/login/")


@override_settings(HUB_SESSION_IDLE_MINUTES=30, SESSION_COOKIE_AGE=8 * 3600)
def test_a_busy_session_still_ends_with_the_shift(world):
    client = Client()
    with freeze_time(T0):
        client.force_login(world.alice)
        assert client.get("/").status_code == 200
        assert client.session[SIGNED_IN_AT] == T0.timestamp()
    for minutes in range(20, 8 * 60, 20):  # a request every 20 minutes all day
        with freeze_time(T0 + dt.timedelta(minutes=minutes)):
            assert client.get("/").status_code == 200, minutes
    with freeze_time(T0 + dt.timedelta(hours=8, minutes=1)):
        assert client.get("/").status_code == 302
