"""The web shell: health, sign-in, the institution switch, language, lockout."""

from __future__ import annotations

import pytest
from django.test import Client

from tenants.models import AuditEvent, Role

from .factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"
    assert "worker_heartbeat_age_s" in response.json()["checks"]


def test_pages_need_a_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_sign_in_lands_on_home_with_the_active_institution(world, client):
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert "Beishan Township Health Centre" in response.content.decode()


def test_the_login_page_speaks_chinese_by_default_and_english_on_request(client):
    assert '<html lang="zh-hans">' in client.get("/accounts/login/").content.decode()
    english = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in english


def test_switching_institution_changes_what_the_home_page_shows(world):
    MembershipFactory(user=world.alice, institution=world.reader, role=Role.RADIOLOGIST)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    client.post("/accounts/institution/", {"institution": world.reader.pk})
    page = client.get("/").content.decode()
    assert 'id="active-institution"' in page
    assert "<h2>North Central Hospital</h2>" in page
    assert AuditEvent.objects.filter(
        event="institution_switch", object_id=str(world.reader.pk)
    ).exists()


def test_sign_out_is_a_post(world, client):
    client.force_login(world.alice)
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_repeated_failures_lock_the_account(world, client):
    for _ in range(5):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_audit_page_is_for_admins(world):
    client = Client()
    client.force_login(world.alice)
    assert client.get("/audit/").status_code == 403
    client.force_login(world.adam)
    assert client.get("/audit/").status_code == 200


def test_the_api_docs_render(world, client):
    client.force_login(world.alice)
    assert client.get("/api/docs/").status_code == 200
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/institutions/" in schema.content


def test_error_pages_speak_the_users_language(world):
    client = Client()
    client.force_login(world.alice)
    chinese = client.get("/institutions/999999999/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 404
    assert "未找到" in chinese.content.decode()
    english = client.get("/audit/", HTTP_ACCEPT_LANGUAGE="en")
    assert english.status_code == 403
    assert "Not allowed" in english.content.decode()
