"""Reads of patient data leave one audit row each, with who, where, which patient and study:
the referral page and list, the worklist case, the report editor, the patient search, and
the audit trail itself."""

from __future__ import annotations

import pytest
from django.test import Client

from referrals.workflow import services
from tenants import access
from tenants.audit import AuditCode
from tenants.models import AuditEvent

from .conftest import api_client_for
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def referral(world):
    reading_setup(world)
    study = study_at(world.clinic, modality="MR", body_part="BRAIN", patient_id="P-77")
    made, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk), study=study
    )
    return services.referral_route(made.pk)


def _rows(event: str, user) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=event, username=user.username))


def test_the_referral_page_and_list_are_audited_once(world, referral):
    client = web(world.alice)
    assert client.get(f"/referrals/{referral.pk}/").status_code == 200
    (viewed,) = _rows(AuditCode.STUDY_VIEWED, world.alice)
    assert (viewed.patient_id, viewed.study_uid) == ("P-77", referral.study.study_uid)
    assert viewed.institution_code == world.clinic.code
    assert viewed.action == AuditEvent.Action.READ
    assert client.get("/referrals/").status_code == 200
    (listed,) = _rows(AuditCode.QUERY, world.alice)
    assert listed.object_type == "referral"


def test_the_worklist_case_and_the_report_editor_are_audited(world, referral):
    services.referral_claim(scope=access.scope_for_user(world.rita), referral_id=referral.pk)
    client = web(world.rita)
    assert client.get(f"/worklist/{referral.pk}/").status_code == 200
    assert client.get(f"/reports/{referral.pk}/edit/").status_code == 200
    viewed = _rows(AuditCode.STUDY_VIEWED, world.rita)
    assert sorted(row.object_type for row in viewed) == ["referral", "report_editor"]
    assert {row.patient_id for row in viewed} == {"P-77"}
    assert {row.institution_code for row in viewed} == {world.reader.code}


def test_a_patient_search_is_audited_with_its_terms_and_a_plain_list_is_not(world, referral):
    client = web(world.alice)
    client.get("/studies/")
    assert _rows(AuditCode.QUERY, world.alice) == []
    client.get("/studies/?q=P-77")
    (search,) = _rows(AuditCode.QUERY, world.alice)
    assert search.detail == {"query": "P-77", "shown": 1}


def test_reading_the_audit_trail_is_itself_audited(world):
    assert web(world.adam).get("/audit/").status_code == 200
    assert len(_rows(AuditCode.AUDIT_VIEWED, world.adam)) == 1
    assert api_client_for(world.adam).get("/api/v1/audit-events/").status_code == 200
    rows = _rows(AuditCode.AUDIT_VIEWED, world.adam)
    assert len(rows) == 2
    assert {row.institution_code for row in rows} == {world.clinic.code}
    # Another institution's administrators do not see those rows.
    listed = api_client_for(world.otto).get("/api/v1/audit-events/").json()["results"]
    assert not [row for row in listed if row["username"] == "adam"]
