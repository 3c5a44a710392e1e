"""MDT sessions through the API and the access layer: creating, inviting, grants in the
window only, revoking, the minutes as a record and a PDF."""

from __future__ import annotations

import contextlib
import re
import zlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from consultations import services
from consultations.models import Invitation, MdtSession, RoomEvent, SessionCase, Vote
from referrals.models import Study, StudyGrant
from tenants import access

from .conftest import api_client_for
from .mdt_support import mdt_setup
from .referral_support import study_at

pytestmark = pytest.mark.django_db


def pdf_objects(pdf: bytes) -> bytes:
    """The PDF with its compressed streams inflated (font names live in object streams)."""
    out = [pdf]
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(stream))
    return b"".join(out)


def alice_sees(world, study: Study) -> bool:
    scope = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    return access.visible(scope, Study).filter(pk=study.pk).exists()


def test_the_chair_creates_a_morning_reading_invites_and_revokes_through_the_api(world):
    study = study_at(world.reader, modality="MR", patient_id="MR-9")
    rita = api_client_for(world.rita, world.reader)
    now = timezone.now()
    created = rita.post(
        "/api/v1/mdt-sessions/",
        {
            "title": "晨间读片",
            "kind": "morning_reading",
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "cases": [{"study": study.pk, "clinical_summary": "头痛两周"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    session_id = created.json()["id"]
    assert created.json()["kind"] == "morning_reading"
    assert created.json()["cases"][0]["study_uid"] == study.study_uid
    assert not alice_sees(world, study)
    invited = rita.post(
        f"/api/v1/mdt-sessions/{session_id}/invitations/",
        {"user": world.alice.pk, "institution": world.clinic.pk, "role": "participant"},
        format="json",
    )
    assert invited.status_code == 201, invited.content
    assert alice_sees(world, study)
    mine = api_client_for(world.alice).get("/api/v1/mdt-sessions/").json()["results"]
    assert [s["id"] for s in mine] == [session_id]
    # Only the chair invites; alice is not the chair (and her role cannot organise).
    assert (
        api_client_for(world.alice)
        .post(
            f"/api/v1/mdt-sessions/{session_id}/invitations/",
            {"user": world.adam.pk, "institution": world.clinic.pk, "role": "observer"},
            format="json",
        )
        .status_code
        == 403
    )
    revoked = rita.post(f"/api/v1/mdt-invitations/{invited.json()['id']}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert not alice_sees(world, study)
    assert api_client_for(world.alice).get("/api/v1/mdt-sessions/").json()["results"] == []
    # Invited again: the same grants come back.
    assert (
        rita.post(
            f"/api/v1/mdt-sessions/{session_id}/invitations/",
            {"user": world.alice.pk, "institution": world.clinic.pk, "role": "observer"},
            format="json",
        ).status_code
        == 201
    )
    assert alice_sees(world, study)
    assert StudyGrant.objects.filter(source="mdt", source_id=session_id).count() == 2  # rita too


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"title": "x", "starts_at": "2026-01-01T10:00:00Z", "ends_at": "2026-01-01T09:00:00Z"},
            "ends_at",
        ),
        ({"title": "x", "starts_at": "soon", "ends_at": "2026-01-01T09:00:00Z"}, "starts_at"),
        (
            {
                "title": "x",
                "starts_at": "2026-01-01T08:00:00Z",
                "ends_at": "2026-01-01T09:00:00Z",
                "cases": [{"study": 999999}],
            },
            "study",
        ),
        (
            {
                "title": "x",
                "starts_at": "2026-01-01T08:00:00Z",
                "ends_at": "2026-01-01T09:00:00Z",
                "kind": "party",
            },
            "kind",
        ),
    ],
)
def test_bad_session_input_is_a_400_naming_the_field(world, body, field):
    response = api_client_for(world.rita, world.reader).post(
        "/api/v1/mdt-sessions/", body, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.content.decode()


def test_an_outsider_cannot_be_invited_and_a_clinic_study_of_another_site_cannot_be_listed(world):
    mdt = mdt_setup(world)
    rita = api_client_for(world.rita, world.reader)
    base = f"/api/v1/mdt-sessions/{mdt.session.pk}/"
    assert (
        rita.post(
            f"{base}invitations/",
            {"user": world.oscar.pk, "institution": world.outsider.pk, "role": "participant"},
            format="json",
        ).status_code
        == 400
    )
    south_study = study_at(world.outsider, patient_id="S-1")
    assert rita.post(f"{base}cases/", {"study": south_study.pk}, format="json").status_code == 400
    assert not alice_sees(world, south_study)


def test_grants_hold_only_inside_the_window(world):
    mdt = mdt_setup(world, opens_in=timedelta(hours=3))
    assert not alice_sees(world, mdt.study)
    grant = StudyGrant.objects.get(source="mdt", source_id=mdt.session.pk, user=world.alice)
    assert (grant.valid_from, grant.valid_until) == (mdt.session.starts_at, mdt.session.ends_at)
    assert grant.institution_id == world.clinic.pk
    # Personal: adam at the same clinic sees nothing of it.
    adam = access.scope_for_user(world.adam, institution_id=world.clinic.pk)
    assert not access.visible(adam, Study).filter(pk=mdt.study.pk).exists()


def test_room_event_sequence_numbers_are_dense_and_unique(world):
    mdt = mdt_setup(world)
    actor = services.actor_for(world.rita, world.reader)
    frames = [
        services.room_event_append(
            session_id=mdt.session.pk, type="chat", data={"text": str(n)}, actor=actor
        )
        for n in range(5)
    ]
    assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]
    assert MdtSession.objects.get(pk=mdt.session.pk).next_seq == 5
    assert RoomEvent.objects.filter(session=mdt.session).count() == 5


def test_minutes_record_and_pdf_with_chinese_text(world):
    mdt = mdt_setup(world)
    case = SessionCase.objects.get(session=mdt.session)
    rita = services.actor_for(world.rita, world.reader)
    alice = services.actor_for(world.alice, world.clinic)
    for actor in (rita, alice):
        services.room_event_append(
            session_id=mdt.session.pk, type="presence.join", data={}, actor=actor
        )
    services.case_conclude(
        session_id=mdt.session.pk,
        actor=rita,
        case_id=case.pk,
        conclusion="考虑周围型肺癌",
        recommendations="建议胸腔镜手术",
    )
    services.vote_cast(
        session_id=mdt.session.pk, actor=alice, case_id=case.pk, choice="agree", comment="同意"
    )
    services.session_close(session_id=mdt.session.pk, chair=rita)
    record = (
        api_client_for(world.alice).get(f"/api/v1/mdt-sessions/{mdt.session.pk}/minutes/").json()
    )
    assert record["closed"] is True
    attended = {p["name"]: p["attended"] for p in record["attendance"]}
    assert attended == {
        world.rita.display_name: True,
        world.alice.display_name: True,
        mdt.mia.display_name: False,
    }
    assert record["cases"][0]["conclusion"] == "考虑周围型肺癌"
    assert record["cases"][0]["tally"] == {"agree": 1, "disagree": 0, "abstain": 0}
    assert Vote.objects.get(case=case).institution_id == world.clinic.pk
    client = Client()
    client.force_login(world.alice)
    page = client.get(f"/mdt/{mdt.session.pk}/minutes/").content.decode()
    assert "考虑周围型肺癌" in page
    assert "建议胸腔镜手术" in page
    pdf = client.get(f"/mdt/{mdt.session.pk}/minutes.pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    # The Chinese text is set in an embedded CJK font, not dropped or boxed.
    assert b"CJK" in pdf_objects(pdf.content)
    assert Invitation.objects.filter(session=mdt.session).count() == 3


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "reason"),
    [
        ("0522-04-15T03:37:20Z", "0522-04-15T05:00:00Z", "before the year 2000"),
        ("2026-01-01T08:00:00Z", "6120-11-06T22:47:17Z", "at most 7 days"),
    ],
)
def test_a_session_is_a_meeting_not_centuries(world, starts_at, ends_at, reason):
    """Years no meeting of the hub can have (and offsets no timestamp can write) are refused."""
    answer = api_client_for(world.rita, world.reader).post(
        "/api/v1/mdt-sessions/",
        {"title": "x", "starts_at": starts_at, "ends_at": ends_at},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert reason in answer.json()["detail"]
