"""Registration at the source: a clinic registers exams (page and API), its gateway reads its
own scheduled ones, and a study that arrives is matched back to its registration."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone, translation
from pydicom.dataset import Dataset
from rest_framework.test import APIClient

from referrals.archive.stability import generation_of, studies_mark_stable, study_stable_hooks
from referrals.models import ExamRegistration, RegistrationStatus, Study
from referrals.registration import selectors, services
from referrals.tasks import registration_match_when_stable
from tenants.access import scope_for_user
from tenants.models import Role
from tenants.services import gateway_credential_create

from .conftest import World, _person, api_client_for
from .referral_support import study_at

pytestmark = pytest.mark.django_db

# A fixed day, so nothing here depends on the date the suite runs.
DAY = dt.date(2031, 5, 6)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, minute)))


def register(world: World, **overrides: Any) -> ExamRegistration:
    fields: dict[str, Any] = {
        "patient_id": "MZ-0001",
        "family_name": "王",
        "given_name": "建国",
        "modality": "CT",
        "procedure_description": "胸部CT平扫",
        "scheduled_at": at(9, 30),
        "requesting_physician": "李明",
        "birth_date": dt.date(1961, 3, 2),
        "sex": "M",
    }
    fields.update(overrides)
    return services.registration_create(scope=scope_for_user(world.alice), **fields)


def gateway_client(world: World, user) -> APIClient:
    credential, secret = gateway_credential_create(
        scope=scope_for_user(user), label="CT room", calling_ae_titles=["CT_ROOM1"]
    )
    client = APIClient()
    token = base64.b64encode(f"{credential.key_id}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}", HTTP_ACCEPT_LANGUAGE="en")
    return client


# --- The registration itself -------------------------------------------------------------------


def test_a_name_in_characters_gets_its_pinyin_and_ideographic_groups():
    assert services.person_name_compose(family="王", given="建国") == "Wang^Jianguo=王^建国"
    assert (
        services.person_name_compose(family="欧阳", given="娜娜", family_alphabetic="OuYang")
        == "OuYang^Nana=欧阳^娜娜"
    )
    assert services.person_name_compose(family="Smith", given="Anna") == "Smith^Anna"
    # Separators typed into a name cannot break the PN apart.
    assert services.person_name_compose(family="王^=", given="建\\国") == "Wang^Jian guo=王^建 国"
    with pytest.raises(services.RegistrationError):
        services.person_name_compose(family="", given=" ")


def test_registering_gives_a_unique_short_accession_number_and_a_study_uid(world):
    first = register(world)
    second = register(world, patient_id="MZ-0002")
    assert first.patient_name == "Wang^Jianguo=王^建国"
    assert first.requesting_physician == "Li^Ming=李^明"
    assert first.status == RegistrationStatus.SCHEDULED
    assert first.accession_number != second.accession_number
    assert all(len(r.accession_number) <= 16 for r in (first, second))
    assert first.study_uid != second.study_uid
    assert first.study_uid.startswith("1.2.826.0.1.3680043.10.1342.")
    # Another site numbers its own exams: the same number may exist there.
    south = services.registration_create(
        scope=scope_for_user(world.oscar),
        patient_id="S-1",
        family_name="李",
        given_name="四",
        modality="DX",
        procedure_description="胸片",
        scheduled_at=at(10),
    )
    assert south.institution == world.outsider


def test_only_clinic_staff_register(world):
    with pytest.raises(services.RegistrationForbiddenError):
        services.registration_create(
            scope=scope_for_user(world.rita),
            patient_id="X",
            family_name="王",
            given_name="五",
            modality="CT",
            procedure_description="CT",
            scheduled_at=at(9),
        )
    with pytest.raises(services.RegistrationForbiddenError):
        services.registration_create(
            scope=scope_for_user(world.adam),
            patient_id="X",
            family_name="王",
            given_name="五",
            modality="CT",
            procedure_description="CT",
            scheduled_at=at(9),
        )


# --- Pages -------------------------------------------------------------------------------------


def test_a_technician_registers_on_the_page_and_finds_it_on_the_days_list(world):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    form = client.get("/registrations/new/")
    assert form.status_code == 200
    assert 'name="family_name"' in form.content.decode()
    response = client.post(
        "/registrations/new/",
        {
            "patient_id": "MZ-0100",
            "family_name": "张",
            "given_name": "三",
            "birth_date": "1970-01-02",
            "sex": "F",
            "modality": "US",
            "body_part": "ABDOMEN",
            "procedure_description": "腹部彩超",
            "requesting_physician": "赵医生",
            "clinical_question": "右上腹痛",
            "scheduled_at": "2031-05-06T14:20",
            "station_ae_title": "US_ROOM1",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/registrations/?day=2031-05-06"
    registration = ExamRegistration.objects.get(patient_id="MZ-0100")
    assert registration.patient_name == "Zhang^San=张^三"
    assert registration.station_ae_title == "US_ROOM1"
    page = client.get(response["Location"]).content.decode()
    assert registration.accession_number in page
    assert "Zhang San (张三)" in page
    assert "Scheduled" in page
    with translation.override("zh-hans"):
        chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
        chinese.force_login(world.alice)
        page = chinese.get("/registrations/?day=2031-05-06").content.decode()
    assert "张三 (Zhang San)" in page
    # Another day lists nothing; a wrong form says so.
    assert (
        registration.accession_number
        not in client.get("/registrations/?day=2031-05-07").content.decode()
    )
    assert client.get("/registrations/?day=9999-12-31").status_code == 200  # today instead
    refused = client.post("/registrations/new/", {"patient_id": "", "family_name": "张"})
    assert refused.status_code == 400


def test_the_page_is_for_clinic_staff_and_linked_from_home(world):
    reader = Client(HTTP_ACCEPT_LANGUAGE="en")
    reader.force_login(world.rita)
    assert reader.get("/registrations/").status_code == 403
    assert reader.get("/registrations/new/").status_code == 403
    clinic = Client(HTTP_ACCEPT_LANGUAGE="en")
    clinic.force_login(world.alice)
    home = clinic.get("/").content.decode()
    assert 'href="/registrations/new/"' in home
    assert 'href="/registrations/"' in home  # the navigation bar and the home section


def test_cancel_on_the_page(world):
    registration = register(world)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    response = client.post(f"/registrations/{registration.pk}/cancel/")
    assert response.status_code == 302
    registration.refresh_from_db()
    assert registration.status == RegistrationStatus.CANCELLED
    assert registration.cancelled_at is not None


# --- API ---------------------------------------------------------------------------------------


def test_an_exam_scheduled_decades_away_is_refused(world):
    """A typing slip (year 7) is refused with a sentence, not stored (nor answered in LMT)."""
    api = api_client_for(world.alice)
    now = timezone.now()
    for when in (now.replace(year=7), now + dt.timedelta(days=3700), now - dt.timedelta(days=400)):
        answer = api.post(
            "/api/v1/registrations/",
            {
                "patient_id": "MZ-0300",
                "family_name": "刘",
                "given_name": "洋",
                "modality": "CT",
                "procedure_description": "胸部CT平扫",
                "scheduled_at": when.isoformat(),
            },
            format="json",
            HTTP_ACCEPT_LANGUAGE="en",
        )
        assert answer.status_code == 400, (when, answer.json())
        assert "between a year ago and ten years from now" in answer.json()["detail"]
    assert not ExamRegistration.objects.filter(patient_id="MZ-0300").exists()


def test_register_list_and_cancel_through_the_api(world):
    api = api_client_for(world.alice)
    created = api.post(
        "/api/v1/registrations/",
        {
            "patient_id": "MZ-0200",
            "family_name": "刘",
            "given_name": "洋",
            "modality": "dx",
            "procedure_description": "胸部正位片",
            "scheduled_at": "2031-05-06T08:15:00+08:00",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["patient_name"] == "Liu^Yang=刘^洋"
    assert body["modality"] == "DX"
    assert body["status"] == "scheduled"
    listed = api.get("/api/v1/registrations/?day=2031-05-06").json()
    assert [r["accession_number"] for r in listed["results"]] == [body["accession_number"]]
    assert api.get("/api/v1/registrations/?day=2031-05-07").json()["results"] == []
    assert api.get("/api/v1/registrations/?day=May").status_code == 400
    assert api.get("/api/v1/registrations/?day=9999-12-31").status_code == 400
    cancelled = api.post(f"/api/v1/registrations/{body['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = api.post(f"/api/v1/registrations/{body['id']}/cancel/")
    assert again.status_code == 200  # cancelling twice is still cancelled
    bad = api.post(
        "/api/v1/registrations/",
        {
            "patient_id": "X",
            "family_name": "刘",
            "modality": "C/T",
            "procedure_description": "x",
            "scheduled_at": "2031-05-06T08:15:00+08:00",
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "capital letters" in bad.json()["detail"]
    misspelt = api.post(
        "/api/v1/registrations/",
        {"patient_id": "X", "family_name": "刘", "modality": "CT", "procedur": "x"},
        format="json",
    )
    assert misspelt.status_code == 400
    assert misspelt.json()["code"] == "unknown_field"


def test_a_completed_exam_cannot_be_cancelled(world):
    registration = register(world)
    ExamRegistration.objects.filter(pk=registration.pk).update(status=RegistrationStatus.COMPLETED)
    answer = api_client_for(world.alice).post(f"/api/v1/registrations/{registration.pk}/cancel/")
    assert answer.status_code == 409
    assert answer.json()["code"] == "registration_done"


def test_readers_and_commission_see_no_registrations(world):
    register(world)
    for user in (world.rita, world.carl):
        answer = api_client_for(user).get("/api/v1/registrations/")
        assert answer.status_code == 403, user


# --- The gateway's worklist --------------------------------------------------------------------


def test_a_gateway_reads_its_own_sites_scheduled_exams_only(world):
    soon = timezone.now() + dt.timedelta(hours=1)
    mine = register(world, scheduled_at=soon)
    cancelled = register(world, patient_id="MZ-0009", scheduled_at=soon)
    services.registration_cancel(scope=scope_for_user(world.alice), registration=cancelled)
    done = register(world, patient_id="MZ-0010", scheduled_at=soon)
    ExamRegistration.objects.filter(pk=done.pk).update(status=RegistrationStatus.COMPLETED)
    services.registration_create(
        scope=scope_for_user(world.oscar),
        patient_id="S-1",
        family_name="李",
        given_name="四",
        modality="DX",
        procedure_description="胸片",
        scheduled_at=soon,
    )
    answer = gateway_client(world, world.adam).get("/api/v1/gateway/worklist/")
    assert answer.status_code == 200
    body = answer.json()
    assert body["institution"] == "north-clinic"
    items = [Dataset.from_json(item) for item in body["items"]]
    assert [i.AccessionNumber for i in items] == [mine.accession_number]
    item = items[0]
    assert str(item.PatientName) == "Wang^Jianguo=王^建国"
    assert item.StudyInstanceUID == mine.study_uid
    assert item.PatientBirthDate == "19610302"
    assert item.RequestingPhysician == "Li^Ming=李^明"
    step = item.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepStartDate == timezone.localtime(soon).strftime("%Y%m%d")
    south = gateway_client(world, world.otto).get("/api/v1/gateway/worklist/").json()
    assert [Dataset.from_json(i).PatientID for i in south["items"]] == ["S-1"]


def test_the_gateway_worklist_is_for_gateways(world):
    assert api_client_for(world.alice).get("/api/v1/gateway/worklist/").status_code in (401, 403)
    assert APIClient().get("/api/v1/gateway/worklist/").status_code in (401, 403)


def test_the_worklist_window_leaves_out_old_and_far_exams(world):
    now = at(12)
    register(world, scheduled_at=now - dt.timedelta(days=3))
    kept = register(world, patient_id="MZ-2", scheduled_at=now - dt.timedelta(days=1))
    register(world, patient_id="MZ-3", scheduled_at=now + dt.timedelta(days=40))
    credential, _ = gateway_credential_create(
        scope=scope_for_user(world.adam), label="x", calling_ae_titles=[]
    )
    items = selectors.worklist_for_gateway(credential=credential, now=now)
    assert [Dataset.from_json(i).AccessionNumber for i in items] == [kept.accession_number]


# --- Matching the study that arrives -----------------------------------------------------------


def _arrived(world: World, registration: ExamRegistration, **kwargs) -> Study:
    study = study_at(world.clinic, patient_id=kwargs.pop("patient_id", registration.patient_id))
    Study.objects.filter(pk=study.pk).update(**kwargs)
    study.refresh_from_db()
    return study


def test_a_study_with_the_worklists_uid_completes_its_registration(
    world, django_capture_on_commit_callbacks
):
    registration = register(world)
    assert "referrals.tasks.registration_match_when_stable" in {
        hook.name for hook in study_stable_hooks()
    }
    study = _arrived(world, registration, study_uid=registration.study_uid)
    Study.objects.filter(pk=study.pk).update(
        last_received_at=timezone.now() - dt.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert study.pk in studies_mark_stable(quiet=dt.timedelta(seconds=1))  # hooks inline
    registration.refresh_from_db()
    assert registration.status == RegistrationStatus.COMPLETED
    assert registration.study_id == study.pk
    assert registration.matched_by == "study_uid"
    assert not registration.patient_id_mismatch


def test_matched_by_accession_and_a_different_patient_id_is_flagged(world):
    registration = register(world)
    other = register(world, patient_id="MZ-0777")
    study = _arrived(
        world, registration, patient_id="TYPO-1", accession_number=registration.accession_number
    )
    stable_at = timezone.now()
    Study.objects.filter(pk=study.pk).update(stable_at=stable_at)
    assert registration_match_when_stable(study.pk, generation_of(stable_at)) == registration.pk
    registration.refresh_from_db()
    assert registration.status == RegistrationStatus.COMPLETED
    assert registration.matched_by == "accession"
    assert registration.patient_id_mismatch
    assert registration.study_patient_id == "TYPO-1"
    study.refresh_from_db()
    assert study.pid == "TYPO-1"  # the study is left as it arrived
    other.refresh_from_db()
    assert other.status == RegistrationStatus.SCHEDULED
    # A second run changes nothing; the list shows the flag.
    assert registration_match_when_stable(study.pk, generation_of(stable_at)) == registration.pk
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    page = client.get(
        f"/registrations/?day={timezone.localtime(registration.scheduled_at).date()}"
    ).content.decode()
    assert "The study came with patient ID TYPO-1" in page
    assert 'id="registration-mismatch-alert"' in page


def test_cancelled_and_other_sites_registrations_are_not_matched(world):
    registration = register(world)
    services.registration_cancel(scope=scope_for_user(world.alice), registration=registration)
    study = _arrived(world, registration, study_uid=registration.study_uid)
    assert services.registration_match_study(study_id=study.pk) is None
    south_study = study_at(world.outsider, patient_id=registration.patient_id)
    live = register(world, patient_id="MZ-5")
    Study.objects.filter(pk=south_study.pk).update(accession_number=live.accession_number)
    assert services.registration_match_study(study_id=south_study.pk) is None
    live.refresh_from_db()
    assert live.status == RegistrationStatus.SCHEDULED


def test_a_stale_stable_event_matches_nothing(world):
    registration = register(world)
    study = _arrived(world, registration, study_uid=registration.study_uid)
    assert registration_match_when_stable(study.pk, generation_of(timezone.now())) is None
    registration.refresh_from_db()
    assert registration.status == RegistrationStatus.SCHEDULED


def test_a_registration_needs_a_clinic_role_even_for_an_admin_of_the_clinic(world):
    nurse = _person("nina", "妮娜", "Nina", world.clinic, Role.REFERRING_PHYSICIAN)
    made = services.registration_create(
        scope=scope_for_user(nurse),
        patient_id="MZ-9",
        family_name="周",
        given_name="七",
        modality="CT",
        procedure_description="CT",
        scheduled_at=at(9),
    )
    assert made.created_by == nurse


def test_sending_a_registered_study_for_reading_starts_from_its_clinical_question(world):
    registration = register(world, clinical_question="咳嗽两周 发热")
    study = _arrived(world, registration, study_uid=registration.study_uid)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    before = client.get(f"/studies/{study.pk}/refer/").content.decode()
    assert "咳嗽两周" not in before  # not matched yet: nothing to start from
    services.registration_match_study(study_id=study.pk)
    page = client.get(f"/studies/{study.pk}/refer/").content.decode()
    assert "咳嗽两周 发热\nRequesting doctor: Li Ming (李明)" in page
    assert "咳嗽两周" in client.get(f"/studies/{study.pk}/").content.decode()


# --- The audit trail (registrations name patients) ---------------------------------------------


def test_registering_cancelling_and_listing_exams_are_audited(world):
    from tenants.audit import AuditCode
    from tenants.models import AuditEvent

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    response = client.post(
        "/registrations/new/",
        {
            "patient_id": "MZ-0777",
            "family_name": "张",
            "given_name": "三",
            "modality": "US",
            "procedure_description": "腹部彩超",
            "scheduled_at": "2031-05-06T14:20",
        },
    )
    assert response.status_code == 302
    registration = ExamRegistration.objects.get(patient_id="MZ-0777")
    created = AuditEvent.objects.get(event=AuditCode.EXAM_REGISTERED)
    assert created.patient_id == "MZ-0777"
    assert created.study_uid == registration.study_uid
    assert created.detail["accession_number"] == registration.accession_number
    assert created.username == world.alice.username
    assert created.source_address  # the page passes the request

    client.post(f"/registrations/{registration.pk}/cancel/")
    client.post(f"/registrations/{registration.pk}/cancel/")  # twice is harmless: one row
    cancelled = AuditEvent.objects.filter(event=AuditCode.EXAM_CANCELLED)
    assert cancelled.count() == 1
    assert cancelled.get().patient_id == "MZ-0777"
    assert cancelled.get().detail["accession_number"] == registration.accession_number

    before = AuditEvent.objects.filter(event=AuditCode.QUERY).count()
    assert client.get("/registrations/?day=2031-05-06").status_code == 200
    query = AuditEvent.objects.filter(event=AuditCode.QUERY).latest("id")
    assert AuditEvent.objects.filter(event=AuditCode.QUERY).count() == before + 1
    assert query.object_type == "exam_registration"
    assert query.detail == {"day": "2031-05-06", "shown": 1}


def test_registering_through_the_api_is_audited(world):
    from tenants.audit import AuditCode
    from tenants.models import AuditEvent

    client = api_client_for(world.alice)
    response = client.post(
        "/api/v1/registrations/",
        {
            "patient_id": "MZ-0778",
            "family_name": "李",
            "given_name": "四",
            "modality": "DX",
            "procedure_description": "胸片",
            "scheduled_at": "2031-05-06T10:00:00+08:00",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    row = AuditEvent.objects.get(event=AuditCode.EXAM_REGISTERED)
    assert row.patient_id == "MZ-0778"
    cancel = client.post(f"/api/v1/registrations/{response.json()['id']}/cancel/")
    assert cancel.status_code == 200
    assert AuditEvent.objects.get(event=AuditCode.EXAM_CANCELLED).patient_id == "MZ-0778"
