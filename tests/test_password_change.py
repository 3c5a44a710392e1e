"""Users change their own password, under the policy: long enough, not common, not only
digits, and none of their last passwords; audited."""

from __future__ import annotations

import pytest
from django.test import Client

from tenants.audit import AuditCode
from tenants.models import AuditEvent

from .factories import PASSWORD

pytestmark = pytest.mark.django_db
URL = "/accounts/password/"


def _client(user, language="en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def _change(client: Client, old: str, new: str):
    return client.post(URL, {"old_password": old, "new_password1": new, "new_password2": new})


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        ("Short-1x", "too short"),
        ("password1234", "too common"),
        ("739182736451", "entirely numeric"),
    ],
)
def test_a_weak_password_is_refused_with_its_reason(world, new, reason):
    answer = _change(_client(world.alice), PASSWORD, new)
    assert answer.status_code == 200
    assert reason in answer.content.decode()
    world.alice.refresh_from_db()
    assert world.alice.check_password(PASSWORD)


def test_a_new_password_is_kept_and_audited_and_an_old_one_cannot_come_back(world):
    client = _client(world.alice)
    assert _change(client, PASSWORD, "Plum-orchard-at-dawn-77").status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("Plum-orchard-at-dawn-77")
    change = AuditEvent.objects.get(event=AuditCode.CREDENTIAL_CHANGE, object_type="password")
    assert change.username == "alice"
    assert change.institution_code == world.clinic.code
    # Still signed in here, and the earlier password is refused as a "new" one.
    assert client.get("/").status_code == 200
    again = _change(client, "Plum-orchard-at-dawn-77", PASSWORD)
    assert again.status_code == 200
    assert "already used" in again.content.decode()


def test_the_page_speaks_chinese_by_default_and_needs_a_sign_in(world):
    page = _client(world.alice, "zh-hans").get(URL).content.decode()
    assert "修改密码" in page
    assert Client().get(URL).status_code == 302
