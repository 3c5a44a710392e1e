"""Reads of patient data through the REST API leave exactly one audit row per request: a
list one QUERY row (its filter terms, how many rows, patients and studies), one object or
its sub-resource one STUDY_VIEWED row with the patient and study; a refused read none.
Another alliance's administrators never see those rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from consultations import services as mdt_services
from reporting import critical
from tenants.audit import AuditCode
from tenants.models import AuditEvent

from .conftest import api_client_for
from .ingest_support import media  # noqa: F401
from .mdt_support import chair_scope, mdt_setup
from .referral_support import study_at
from .share_support import signed_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(world, media, django_capture_on_commit_callbacks):  # noqa: F811
    return signed_report(world, django_capture_on_commit_callbacks)


def _new_rows(call: Callable[[], Any], *, status: int = 200) -> list[AuditEvent]:
    """What one request added to the trail (every row, whoever wrote it)."""
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    answer = call()
    assert answer.status_code == status, getattr(answer, "content", b"")[:300]
    return list(AuditEvent.objects.filter(id__gt=before).order_by("id"))


def _one(call: Callable[[], Any], *, status: int = 200) -> AuditEvent:
    rows = _new_rows(call, status=status)
    assert len(rows) == 1, [(r.event, r.object_type, r.detail) for r in rows]
    return rows[0]


def test_the_referral_api_list_retrieve_and_timeline_leave_one_row_each(world, signed):
    referral = signed.report.referral
    study = signed.study
    api = api_client_for(world.alice, world.clinic)

    listed = _one(lambda: api.get("/api/v1/referrals/", {"side": "sent"}))
    assert listed.event == AuditCode.QUERY
    assert listed.action == AuditEvent.Action.READ
    assert listed.outcome == AuditEvent.Outcome.SUCCESS
    assert (listed.username, listed.role) == ("alice", "clinic_technician")
    assert listed.institution_code == world.clinic.code
    assert listed.source_address == "127.0.0.1"
    assert listed.object_type == "referral"
    assert listed.patient_id == listed.study_uid == ""
    assert listed.detail["filters"] == {"side": "sent"}
    assert listed.detail["list"] == "referral"
    # signed_report's stored study plus the desk's two referrals (P-1 chest, P-2 knee).
    assert listed.detail["shown"] == 3
    assert (listed.detail["patients"], listed.detail["studies"]) == (3, 3)

    for path, view in [("", "retrieve"), ("events/", "events")]:
        viewed = _one(lambda p=path: api.get(f"/api/v1/referrals/{referral.pk}/{p}"))
        assert viewed.event == AuditCode.STUDY_VIEWED
        assert viewed.action == AuditEvent.Action.READ
        assert (viewed.patient_id, viewed.study_uid) == ("P-9", study.study_uid)
        assert (viewed.object_type, viewed.object_id) == ("referral", str(referral.pk))
        assert viewed.detail == {"via": "api", "view": view}
        assert viewed.institution_code == world.clinic.code
        assert viewed.source_address == "127.0.0.1"


def test_a_refused_read_leaves_no_row_here(world, signed):
    referral = signed.report.referral
    oscar = api_client_for(world.oscar, world.outsider)
    assert _new_rows(lambda: oscar.get(f"/api/v1/referrals/{referral.pk}/"), status=404) == []
    assert _new_rows(lambda: oscar.get(f"/api/v1/reports/{signed.report.pk}/"), status=404) == []
    alice = api_client_for(world.alice, world.clinic)
    assert _new_rows(lambda: alice.get("/api/v1/referrals/?status=nonsense"), status=400) == []
    # Writes are audited (or not) by their own services, never as reads.
    assert [r.event for r in _new_rows(lambda: alice.options("/api/v1/referrals/"))] == []


def test_the_worklist_names_its_filter_terms_and_counts(world, signed):
    rita = api_client_for(world.rita, world.reader)
    row = _one(lambda: rita.get("/api/v1/worklist/", {"view": "mine", "patient": "P-"}))
    assert row.event == AuditCode.QUERY
    assert row.object_type == "referral"
    assert row.institution_code == world.reader.code
    assert row.detail["list"] == "worklist"
    assert row.detail["filters"] == {"patient": "P-", "view": "mine"}
    shown = len(rita.get("/api/v1/worklist/", {"view": "mine", "patient": "P-"}).json()["results"])
    assert shown >= 1
    assert row.detail["shown"] == row.detail["studies"] == shown


def test_the_report_api_reads_leave_one_row_each(world, signed):
    report, study = signed.report, signed.study
    api = api_client_for(world.alice, world.clinic)

    listed = _one(lambda: api.get("/api/v1/reports/", {"referral": report.referral_id}))
    assert listed.event == AuditCode.QUERY
    assert listed.object_type == "report"
    assert listed.detail["filters"] == {"referral": str(report.referral_id)}
    assert (listed.detail["shown"], listed.detail["patients"], listed.detail["total"]) == (1, 1, 1)

    for path, view in [
        ("", "retrieve"),
        ("addenda/", "addenda"),
        ("key-images/", "key_images"),
    ]:
        viewed = _one(lambda p=path: api.get(f"/api/v1/reports/{report.pk}/{p}"))
        assert viewed.event == AuditCode.STUDY_VIEWED
        assert (viewed.patient_id, viewed.study_uid) == ("P-9", study.study_uid)
        assert (viewed.object_type, viewed.object_id) == ("report", str(report.pk))
        assert viewed.detail["view"] == view
        assert viewed.username == "alice"

    # The PDF and FHIR exports: their own export row, and no second one.
    for kind in ("pdf", "fhir"):
        exported = _one(lambda k=kind: api.get(f"/api/v1/reports/{report.pk}/{k}/"))
        assert exported.event == AuditCode.EXPORT
        assert (exported.patient_id, exported.study_uid) == ("P-9", study.study_uid)
        assert exported.detail == {"format": kind}


def test_critical_findings_reads_leave_one_row_each(
    world, signed, django_capture_on_commit_callbacks
):
    desk = signed.desk
    with django_capture_on_commit_callbacks(execute=True):
        finding = critical.critical_flag(
            scope=desk.rita(), referral_id=desk.chest.pk, text="张力性气胸"
        )
    api = api_client_for(world.alice, world.clinic)
    listed = _one(lambda: api.get("/api/v1/critical-findings/", {"open": "1"}))
    assert listed.event == AuditCode.QUERY
    assert listed.object_type == "criticalfinding"
    assert (listed.detail["shown"], listed.detail["patients"]) == (1, 1)
    assert listed.detail["filters"] == {"open": "1"}
    viewed = _one(lambda: api.get(f"/api/v1/critical-findings/{finding.pk}/"))
    assert viewed.event == AuditCode.STUDY_VIEWED
    assert (viewed.patient_id, viewed.study_uid) == ("P-1", desk.chest.study.study_uid)
    assert viewed.object_id == str(finding.pk)


def test_mdt_session_reads_name_their_cases(world):
    mdt = mdt_setup(world)
    second = study_at(world.reader, modality="MR", patient_id="MDT-2", patient_key="k-2")
    mdt_services.case_add(
        scope=chair_scope(world), session=mdt.session, study=second, clinical_summary=""
    )
    api = api_client_for(world.alice, world.clinic)  # invited as a participant
    listed = _one(lambda: api.get("/api/v1/mdt-sessions/"))
    assert listed.event == AuditCode.QUERY
    assert listed.object_type == "mdt_session"
    assert (listed.detail["shown"], listed.detail["patients"], listed.detail["studies"]) == (
        1,
        2,
        2,
    )
    for path, view in [("", "retrieve"), ("minutes/", "minutes")]:
        viewed = _one(lambda p=path: api.get(f"/api/v1/mdt-sessions/{mdt.session.pk}/{p}"))
        assert viewed.event == AuditCode.STUDY_VIEWED
        assert (viewed.object_type, viewed.object_id) == ("mdt_session", str(mdt.session.pk))
        # Two cases: no single patient on the row, both studies named in its detail.
        assert viewed.patient_id == ""
        assert viewed.detail["view"] == view
        assert viewed.detail["patients"] == 2
        assert sorted(viewed.detail["studies"]) == sorted([mdt.study.study_uid, second.study_uid])


def test_one_case_session_names_its_patient(world):
    mdt = mdt_setup(world)
    api = api_client_for(world.alice, world.clinic)
    viewed = _one(lambda: api.get(f"/api/v1/mdt-sessions/{mdt.session.pk}/"))
    assert (viewed.patient_id, viewed.study_uid) == ("MDT-1", mdt.study.study_uid)


def test_another_alliances_admin_never_sees_the_rows(world, signed):
    alice = api_client_for(world.alice, world.clinic)
    alice.get(f"/api/v1/referrals/{signed.report.referral_id}/")
    alice.get(f"/api/v1/reports/{signed.report.pk}/")
    alice.get("/api/v1/referrals/")
    mine = AuditEvent.objects.filter(username="alice", event__in=["study_viewed", "query"])
    assert mine.count() == 3
    ids = set(mine.values_list("id", flat=True))

    # The clinic's own administrator sees them, through the API and on the audit page.
    seen = api_client_for(world.adam, world.clinic).get("/api/v1/audit-events/?limit=200")
    assert ids <= {row["id"] for row in seen.json()["results"]}

    otto = api_client_for(world.otto, world.outsider)
    listed = otto.get("/api/v1/audit-events/?limit=200").json()["results"]
    assert not ids & {row["id"] for row in listed}
    for pk in ids:
        assert otto.get(f"/api/v1/audit-events/{pk}/").status_code == 404

    def audit_page(user) -> str:
        page = Client(HTTP_ACCEPT_LANGUAGE="en")
        page.force_login(user)
        return page.get("/audit/").content.decode()

    adams, ottos = audit_page(world.adam), audit_page(world.otto)
    for pk in ids:
        assert f"<td>{pk}</td>" in adams
        assert f"<td>{pk}</td>" not in ottos
