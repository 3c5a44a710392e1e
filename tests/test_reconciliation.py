"""Right patient, right study: instances held when their patient contradicts their study, the
three decisions about them, and duplicates judged by data set rather than file bytes."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import translation
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from referrals.archive.ingest import IngestContext, instance_store
from referrals.archive.patient_match import PatientAttributes, patient_differences
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient, to_bytes
from referrals.models import HeldInstance, Instance, Study
from tenants.models import AuditEvent

from .conftest import api_client_for
from .dicom_support import ct_files, multipart_related
from .test_wado import multipart

pytestmark = pytest.mark.django_db

FIRST = SyntheticPatient("P-A-1", "Wang^Xiaoming=王^小明", birth_date="19650412", sex="M")
SECOND = SyntheticPatient("P-B-2", "Li^Hua=李^华", birth_date="19900101", sex="F")
HELD = 0xC002


def stow(client, parts: list[bytes]):
    body, content_type = multipart_related(parts)
    return client.post(
        "/dicomweb/studies",
        data=body,
        content_type=content_type,
        HTTP_ACCEPT="application/dicom+json",
    )


def failures(response) -> list[tuple[int, str]]:
    return [
        (item["00081197"]["Value"][0], item["00091001"]["Value"][0])
        for item in response.json().get("00081198", {}).get("Value", [])
    ]


def referenced(response) -> list[str]:
    return [
        item["00081155"]["Value"][0]
        for item in response.json().get("00081199", {}).get("Value", [])
    ]


def sop(part: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True).SOPInstanceUID)


def rewritten(part: bytes, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(part))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def with_meta(part: bytes, **meta: str) -> bytes:
    """The same data set under other file meta (another sending program)."""
    ds = pydicom.dcmread(io.BytesIO(part))
    for keyword, value in meta.items():
        setattr(ds.file_meta, keyword, value)
    out = to_bytes(ds)
    assert out != part
    return out


def implicit_copy(part: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(part))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def patient_ids(user, **params) -> set[str]:
    response = api_client_for(user).get(
        "/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json"
    )
    assert response.status_code == 200, response.content
    return {item["00100020"]["Value"][0] for item in response.json()}


@pytest.fixture
def first_study(world):
    parts = ct_files(3, size=32, patient=FIRST)
    assert stow(api_client_for(world.alice), parts).status_code == 200
    return parts


def second_patient_on(parts: list[bytes], count: int = 2, new_series: bool = True) -> list[bytes]:
    """Instances of SECOND carrying the first study's Study Instance UID."""
    study_uid = pydicom.dcmread(io.BytesIO(parts[0])).StudyInstanceUID
    return ct_files(count, size=32, patient=SECOND, study_uid=study_uid)


# --- Patient contradiction --------------------------------------------------------------


def test_normalised_names_ids_and_absent_values_do_not_contradict():
    held = PatientAttributes("p1", "", "WANG^XIAOMING=王^小明", "19650412", "M")
    same = PatientAttributes(" P1 ", "HOSP", "wang^xiaoming^^", "", "")
    assert patient_differences(same, held) == []
    other = PatientAttributes("P1", "", "Li^Hua", "19650413", "F")
    assert patient_differences(other, held) == ["name", "birth_date", "sex"]
    assert patient_differences(PatientAttributes("P2"), held) == ["patient_id"]


def test_a_second_patient_on_a_held_study_uid_is_held_not_filed(world, first_study):
    study = Study.objects.get()
    before = (study.patient_id, study.num_instances, study.pid, study.patient_name)
    second = second_patient_on(first_study)
    response = stow(api_client_for(world.alice), second)
    assert response.status_code == 409
    assert [reason for reason, _ in failures(response)] == [HELD, HELD]
    assert "contradicts the study" in failures(response)[0][1]
    assert "do not send it again" in failures(response)[0][1]
    study.refresh_from_db()
    assert (study.patient_id, study.num_instances, study.pid, study.patient_name) == before
    assert Instance.objects.count() == 3
    rows = HeldInstance.objects.order_by("pk")
    assert [r.sop_uid for r in rows] == [sop(p) for p in second]
    row = rows[0]
    assert (row.kind, row.patient_id, row.study_id, row.received_via) == (
        "patient",
        "P-B-2",
        study.pk,
        "stow",
    )
    assert row.differences == ["patient_id", "name", "birth_date", "sex"]
    with default_storage.open(row.object_key) as fp:
        assert fp.read() == second[0]  # kept as sent
    # A search for the second patient finds nothing until a person decides.
    assert patient_ids(world.alice, PatientID="P-B-2") == set()
    assert patient_ids(world.alice) == {"P-A-1"}
    held_event = AuditEvent.objects.get(event="instance_held")
    assert held_event.detail["rows"] == [r.pk for r in rows]


def test_a_held_instance_sent_again_is_held_once(world, first_study):
    [second] = second_patient_on(first_study, count=1)
    client = api_client_for(world.alice)
    stow(client, [second])
    again = stow(client, [with_meta(second, SourceApplicationEntityTitle="OTHER_AE")])
    assert [reason for reason, _ in failures(again)] == [HELD]
    row = HeldInstance.objects.get()
    assert row.resent == 1
    # Another data set under the held UID is a conflict, not a second hold.
    changed = stow(client, [rewritten(second, PatientName="Zhao^Liu")])
    assert [reason for reason, _ in failures(changed)] == [0x0111]
    assert HeldInstance.objects.filter(resolved_at__isnull=True).count() == 1


def test_one_request_with_both_patients_holds_the_second(world):
    study_uid = generate_uid(prefix=HUB_UID_ROOT)
    first = ct_files(2, size=32, patient=FIRST, study_uid=study_uid)
    second = ct_files(1, size=32, patient=SECOND, study_uid=study_uid)
    response = stow(api_client_for(world.alice), [*first, *second])
    assert response.status_code == 202
    assert referenced(response) == [sop(p) for p in first]
    assert [reason for reason, _ in failures(response)] == [HELD]
    assert Study.objects.get().pid == "P-A-1"


def test_a_series_moving_to_another_study_is_held(world, first_study):
    series_uid = pydicom.dcmread(io.BytesIO(first_study[0])).SeriesInstanceUID
    [moved] = ct_files(1, size=32, patient=FIRST)
    moved = rewritten(moved, SeriesInstanceUID=series_uid)
    response = stow(api_client_for(world.alice), [moved])
    assert [reason for reason, _ in failures(response)] == [HELD]
    assert "series is already held under another study" in failures(response)[0][1]
    row = HeldInstance.objects.get()
    assert (row.kind, row.differences) == ("series", ["series_study"])
    assert row.study == Study.objects.get()  # the study holding the series
    assert Study.objects.count() == 1  # the study it named was not created


def test_the_upload_check_reports_a_held_file(world, first_study):
    [second] = second_patient_on(first_study, count=1)
    client = api_client_for(world.alice)
    import hashlib

    asked = {"sop_instance_uid": sop(second), "sha256": hashlib.sha256(second).hexdigest()}
    check = client.post("/api/v1/uploads/check/", {"instances": [asked]}, format="json")
    assert check.json()["instances"][0]["status"] == "missing"
    stow(client, [second])
    check = client.post("/api/v1/uploads/check/", {"instances": [asked]}, format="json")
    assert check.json()["instances"][0]["status"] == "held"


def test_the_common_case_costs_no_query_for_the_patient_check(world, tmp_path, first_study):
    """A further instance of a study the request met already: one INSERT, nothing else."""
    study_uid = pydicom.dcmread(io.BytesIO(first_study[0])).StudyInstanceUID
    more = ct_files(3, size=32, patient=FIRST, study_uid=study_uid)
    context = IngestContext(world.clinic)
    paths = []
    for index, part in enumerate(more):
        paths.append(tmp_path / f"{index}.dcm")
        paths[-1].write_bytes(part)
    instance_store(institution=world.clinic, path=paths[0], via="stow", context=context)
    with CaptureQueriesContext(connection) as queries:
        outcome = instance_store(
            institution=world.clinic, path=paths[1], via="stow", context=context
        )
    assert outcome.status == "stored"
    # (The test's own transaction adds a savepoint around it; a request has none.)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == ["INSERT"]


# --- Decisions ---------------------------------------------------------------------------


def held_for(world, first_study, count: int = 2) -> list[bytes]:
    second = second_patient_on(first_study, count=count)
    stow(api_client_for(world.alice), second)
    assert HeldInstance.objects.filter(resolved_at__isnull=True).count() == count
    return second


def test_accept_files_them_into_the_study_as_sent(world, first_study):
    second = held_for(world, first_study)
    held = HeldInstance.objects.earliest("pk")
    response = api_client_for(world.adam).post(f"/api/v1/archive/held/{held.pk}/accept/")
    assert response.status_code == 200, response.content
    assert response.json()["resolved"] == 2
    study = Study.objects.get()
    assert study.num_instances == 5
    for part in second:
        instance = Instance.objects.get(sop_uid=sop(part))
        assert instance.study == study
        with default_storage.open(instance.object_key) as fp:
            assert fp.read() == part
    assert set(HeldInstance.objects.values_list("decision", flat=True)) == {"accepted"}
    event = AuditEvent.objects.get(event="instance_reconciled")
    assert event.detail["decision"] == "accepted"
    assert event.username == "adam"


def test_file_as_new_study_rewrites_the_objects_and_retrieves_by_the_new_uid(
    world, first_study, django_capture_on_commit_callbacks
):
    second = held_for(world, first_study)
    held = HeldInstance.objects.earliest("pk")
    old_keys = {row.object_key for row in HeldInstance.objects.all()}
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(world.alice).post(f"/api/v1/archive/held/{held.pk}/new-study/")
    assert response.status_code == 200, response.content
    new_uid = response.json()["study_uid"]
    old_uid = held.study_uid
    assert new_uid != old_uid
    new_study = Study.objects.get(study_uid=new_uid)
    assert (new_study.pid, new_study.num_instances) == ("P-B-2", 2)
    assert Study.objects.get(study_uid=old_uid).num_instances == 3
    assert not any(default_storage.exists(key) for key in old_keys)
    # The second patient is found now, under the new study.
    assert patient_ids(world.alice, PatientID="P-B-2") == {"P-B-2"}
    retrieved = multipart(
        api_client_for(world.alice).get(
            f"/dicomweb/studies/{new_uid}",
            HTTP_ACCEPT='multipart/related; type="application/dicom"',
        )
    )
    assert len(retrieved) == 2
    for _headers, content in retrieved:
        ds = pydicom.dcmread(io.BytesIO(content))
        assert ds.StudyInstanceUID == new_uid
        assert ds.PatientID == "P-B-2"
        original = ds.OriginalAttributesSequence[0]
        assert original.ModifiedAttributesSequence[0].StudyInstanceUID == old_uid
        assert original.ReasonForTheAttributeModification == "CORRECT"
    metadata = api_client_for(world.alice).get(
        f"/dicomweb/studies/{new_uid}/metadata", HTTP_ACCEPT="application/dicom+json"
    )
    items = json.loads(b"".join(getattr(metadata, "streaming_content")))  # noqa: B009
    assert {item["0020000D"]["Value"][0] for item in items} == {new_uid}
    assert {sop(p) for p in second} == set(
        Instance.objects.filter(study=new_study).values_list("sop_uid", flat=True)
    )


def test_reject_deletes_the_objects_and_keeps_the_rows(
    world, first_study, django_capture_on_commit_callbacks
):
    held_for(world, first_study)
    held = HeldInstance.objects.earliest("pk")
    keys = {row.object_key for row in HeldInstance.objects.all()}
    client = api_client_for(world.adam)
    unconfirmed = client.post(f"/api/v1/archive/held/{held.pk}/reject/", {}, format="json")
    assert unconfirmed.status_code == 400
    assert all(default_storage.exists(key) for key in keys)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/v1/archive/held/{held.pk}/reject/", {"confirm": True}, format="json"
        )
    assert response.status_code == 200, response.content
    assert not any(default_storage.exists(key) for key in keys)
    assert set(HeldInstance.objects.values_list("decision", flat=True)) == {"rejected"}
    assert Instance.objects.count() == 3
    again = client.post(f"/api/v1/archive/held/{held.pk}/accept/")
    assert again.status_code == 409
    assert "already decided" in again.json()["detail"]
    assert AuditEvent.objects.get(event="instance_reconciled").action == "D"


def test_the_queue_page_shows_both_patients_and_asks_before_rejecting(world, first_study):
    held_for(world, first_study, count=1)
    held = HeldInstance.objects.get()
    browser = Client()
    browser.force_login(world.adam)
    with translation.override("en"):
        page = browser.get("/archive/held/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("P-B-2", "P-A-1", "Li^Hua=李^华", "19900101"):
        assert shown in text
    assert f"/archive/held/{held.pk}/reject/" in text
    refused = browser.post(f"/archive/held/{held.pk}/reject/")
    assert refused.status_code == 302
    assert HeldInstance.objects.get().resolved_at is None
    done = browser.post(f"/archive/held/{held.pk}/reject/", {"confirm": "yes"})
    assert done.status_code == 302
    assert HeldInstance.objects.get().decision == "rejected"


def test_only_archive_managers_see_the_queue(world, first_study):
    held_for(world, first_study, count=1)
    held = HeldInstance.objects.get()
    rita = api_client_for(world.rita)  # a reader elsewhere: not the clinic's archive
    assert rita.get("/api/v1/archive/held/").status_code == 403
    browser = Client()
    browser.force_login(world.rita)
    assert browser.get("/archive/held/").status_code == 403
    listed = api_client_for(world.alice).get("/api/v1/archive/held/")
    assert [row["id"] for row in listed.json()["results"]] == [held.pk]
    assert listed.json()["results"][0]["study_patient"]["patient_id"] == "P-A-1"


# --- Duplicates by data set --------------------------------------------------------------


def test_the_same_data_set_under_other_file_meta_is_a_duplicate(world):
    [part] = ct_files(1, size=32)
    client = api_client_for(world.alice)
    assert stow(client, [part]).status_code == 200
    for copy in (
        with_meta(part, SourceApplicationEntityTitle="CT_ROOM2"),
        with_meta(part, ImplementationClassUID="1.2.3.4.5", ImplementationVersionName="OTHER"),
        implicit_copy(part),
    ):
        response = stow(client, [copy])
        assert response.status_code == 200, failures(response)
        assert referenced(response) == [sop(part)]
    instance = Instance.objects.get()
    with default_storage.open(instance.object_key) as fp:
        assert fp.read() == part
    assert not HeldInstance.objects.exists()


def test_an_old_row_gets_its_data_set_digest_when_a_resend_meets_it(world):
    [part] = ct_files(1, size=32)
    client = api_client_for(world.alice)
    stow(client, [part])
    Instance.objects.update(dataset_sha256="")  # indexed before the digest was kept
    response = stow(client, [with_meta(part, SourceApplicationEntityTitle="CT_ROOM2")])
    assert response.status_code == 200
    assert len(Instance.objects.get().dataset_sha256) == 64


def test_a_different_data_set_under_a_stored_uid_is_refused_and_listed(world):
    [part] = ct_files(1, size=32)
    client = api_client_for(world.alice)
    stow(client, [part])
    changed = rewritten(part, PatientName="Other^Person")
    response = stow(client, [changed])
    assert [reason for reason, _ in failures(response)] == [0x0111]
    assert "stored copy was kept" in failures(response)[0][1]
    with default_storage.open(Instance.objects.get().object_key) as fp:
        assert fp.read() == part
    stow(client, [changed])
    conflict = HeldInstance.objects.get()
    assert (conflict.kind, conflict.decision, conflict.resent) == ("conflict", "refused", 1)
    assert conflict.object_id is None
    assert AuditEvent.objects.filter(event="instance_conflict").count() == 2
    listed = api_client_for(world.adam).get("/api/v1/archive/held/?state=conflict")
    assert [row["sop_uid"] for row in listed.json()["results"]] == [sop(part)]
    cannot = api_client_for(world.adam).post(f"/api/v1/archive/held/{conflict.pk}/accept/")
    assert cannot.status_code == 409


def test_the_upload_check_knows_a_copy_by_its_data_set(world):
    import hashlib

    from referrals.archive.digests import stream_digests

    [part] = ct_files(1, size=32)
    client = api_client_for(world.alice)
    stow(client, [part])
    copy = with_meta(part, SourceApplicationEntityTitle="CT_ROOM2")
    _file, dataset = stream_digests(io.BytesIO(copy))
    asked = {"sop_instance_uid": sop(copy), "sha256": hashlib.sha256(copy).hexdigest()}
    answers = client.post(
        "/api/v1/uploads/check/",
        {"instances": [asked, {**asked, "dataset_sha256": dataset}]},
        format="json",
    ).json()["instances"]
    assert [a["status"] for a in answers] == ["missing", "stored"]
    _file, other = stream_digests(io.BytesIO(rewritten(part, PatientName="X")))
    conflict = client.post(
        "/api/v1/uploads/check/",
        {"instances": [{**asked, "dataset_sha256": other}]},
        format="json",
    ).json()["instances"]
    assert conflict[0]["status"] == "conflict"


def test_the_held_reason_is_named_in_the_upload_page_strings(world):
    from referrals.archive.upload_views import upload_strings

    with translation.override("en"):
        strings = upload_strings()
    assert "review" in strings["reasons"]["C002"]
    assert json.dumps(strings)  # the page embeds them as JSON


def test_a_moved_series_accepted_is_filed_under_the_study_it_named(world, first_study):
    series_uid = pydicom.dcmread(io.BytesIO(first_study[0])).SeriesInstanceUID
    [moved] = ct_files(1, size=32, patient=FIRST)
    moved = rewritten(moved, SeriesInstanceUID=series_uid)
    stow(api_client_for(world.alice), [moved])
    held = HeldInstance.objects.get()
    browser = Client()
    browser.force_login(world.alice)
    assert browser.post(f"/archive/held/{held.pk}/accept/").status_code == 302
    named = Study.objects.get(study_uid=held.study_uid)
    assert named != held.study
    instance = Instance.objects.get(sop_uid=sop(moved))
    assert (instance.study, instance.series.series_uid) == (named, series_uid)
    assert HeldInstance.objects.get().decision == "accepted"


def test_the_navigation_offers_the_queue_to_those_who_decide(world):
    from alliance.navigation import navigation_for
    from tenants.access import scope_for_user

    def offered(user) -> bool:
        links = navigation_for(scope_for_user(user), current_path="/")
        return "/archive/held/" in {link.url for link in links}

    assert offered(world.adam)
    assert offered(world.alice)
    assert not offered(world.rita)
    assert not offered(world.carl)


def test_a_lossless_re_encoding_is_the_same_data_set_and_an_edited_one_is_not(world):
    from pydicom.uid import RLELossless

    [part] = ct_files(1, size=32)
    client = api_client_for(world.alice)
    stow(client, [part])
    ds = pydicom.dcmread(io.BytesIO(part))
    ds.compress(RLELossless, generate_instance_uid=False)
    rle = to_bytes(ds)
    response = stow(client, [rle])
    assert response.status_code == 200, failures(response)
    edited = pydicom.dcmread(io.BytesIO(implicit_copy(part)))
    edited.PatientSex = "F"
    buffer = io.BytesIO()
    edited.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    refused = stow(client, [buffer.getvalue()])
    assert [reason for reason, _ in failures(refused)] == [0x0111]
    assert Instance.objects.get().transfer_syntax_uid == "1.2.840.10008.1.2.1"


# --- A known Patient ID in a new study whose demographics contradict its record -----------

# Another person given the first one's clinic ID (ID reuse or a typo at the front desk).
NAMESAKE = SyntheticPatient("P-A-1", "Zhang^Wei=张^伟", birth_date="19800101", sex="F")


def namesake_study(count: int = 2) -> list[bytes]:
    return ct_files(count, size=32, patient=NAMESAKE)


def held_against_record(world, first_study, count: int = 2) -> list[bytes]:
    parts = namesake_study(count)
    response = stow(api_client_for(world.alice), parts)
    assert [reason for reason, _ in failures(response)] == [HELD] * count
    return parts


def test_a_known_id_with_other_demographics_in_a_new_study_is_held(world, first_study):
    from referrals.models import Patient

    record = Patient.objects.get()
    parts = namesake_study()
    response = stow(api_client_for(world.alice), parts)
    assert response.status_code == 409
    assert [reason for reason, _ in failures(response)] == [HELD, HELD]
    assert "contradicts the patient already held under this Patient ID" in failures(response)[0][1]
    rows = HeldInstance.objects.order_by("pk")
    assert [r.sop_uid for r in rows] == [sop(p) for p in parts]
    assert {(r.kind, r.study_id) for r in rows} == {("patient_record", None)}
    assert rows[0].differences == ["name", "birth_date", "sex"]
    # Nothing filed: no study for the namesake, the record keeps its demographics.
    assert Study.objects.count() == 1
    assert Patient.objects.get() == record
    record.refresh_from_db()
    assert (record.name, record.sex) == ("Wang^Xiaoming=王^小明", "M")
    assert Instance.objects.count() == 3
    assert AuditEvent.objects.get(event="instance_held").detail["rows"] == [r.pk for r in rows]


def test_a_known_id_with_absent_or_differently_written_values_is_filed(world, first_study):
    same = SyntheticPatient("P-A-1", "WANG^XIAOMING^^", birth_date="", sex="")
    response = stow(api_client_for(world.alice), ct_files(2, size=32, patient=same))
    assert response.status_code == 200, response.content
    assert HeldInstance.objects.count() == 0
    assert Study.objects.count() == 2
    assert len({s.patient_id for s in Study.objects.all()}) == 1


def test_a_resend_of_an_instance_held_against_the_record_is_held_once(world, first_study):
    [part] = held_against_record(world, first_study, count=1)
    client = api_client_for(world.alice)
    again = stow(client, [with_meta(part, SourceApplicationEntityTitle="OTHER_AE")])
    assert [reason for reason, _ in failures(again)] == [HELD]
    assert HeldInstance.objects.get().resent == 1


def test_the_upload_page_route_holds_it_and_the_check_reports_it(world, first_study):
    import hashlib

    [part] = namesake_study(1)
    browser = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    browser.force_login(world.alice)
    token = browser.get("/studies/upload/").cookies["csrftoken"].value
    body, content_type = multipart_related([part])
    sent = browser.post(
        "/dicomweb/studies",
        data=body,
        content_type=content_type,
        HTTP_X_CSRFTOKEN=token,
        HTTP_X_INSTITUTION=str(world.clinic.pk),
    )
    assert [reason for reason, _ in failures(sent)] == [HELD]
    assert HeldInstance.objects.get().kind == "patient_record"
    asked = {"sop_instance_uid": sop(part), "sha256": hashlib.sha256(part).hexdigest()}
    check = api_client_for(world.alice).post(
        "/api/v1/uploads/check/", {"instances": [asked]}, format="json"
    )
    assert check.json()["instances"][0]["status"] == "held"


def test_accepting_files_them_under_the_existing_record_unchanged(world, first_study):
    from referrals.models import Patient

    parts = held_against_record(world, first_study)
    held = HeldInstance.objects.earliest("pk")
    response = api_client_for(world.adam).post(f"/api/v1/archive/held/{held.pk}/accept/")
    assert response.status_code == 200, response.content
    assert response.json()["resolved"] == 2
    record = Patient.objects.get()
    assert record.name == "Wang^Xiaoming=王^小明"  # a person judged it the same patient
    study = Study.objects.get(study_uid=held.study_uid)
    assert (study.patient, study.num_instances) == (record, 2)
    for part in parts:
        with default_storage.open(Instance.objects.get(sop_uid=sop(part)).object_key) as fp:
            assert fp.read() == part  # the instance's own attributes stay as sent


def test_filing_as_a_new_patient_makes_a_second_record_under_the_same_id(
    world, first_study, django_capture_on_commit_callbacks
):
    from referrals.models import Patient

    parts = held_against_record(world, first_study)
    held = HeldInstance.objects.earliest("pk")
    old_keys = {row.object_key for row in HeldInstance.objects.all()}
    client = api_client_for(world.adam)
    # Filing "as a new study" answers nothing for this kind: the study is new already.
    assert client.post(f"/api/v1/archive/held/{held.pk}/new-study/").status_code == 409
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/archive/held/{held.pk}/new-patient/")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "decision": "new_patient",
        "resolved": 2,
        "study_uid": held.study_uid,
    }
    first, second = Patient.objects.order_by("pk")
    assert (first.patient_id, first.issuer) == ("P-A-1", "")
    assert (second.patient_id, second.issuer, second.name) == (
        "P-A-1",
        "north-clinic~2",
        "Zhang^Wei=张^伟",
    )
    assert second.patient_key != first.patient_key
    study = Study.objects.get(study_uid=held.study_uid)
    assert (study.patient, study.num_instances) == (second, 2)
    assert not any(default_storage.exists(key) for key in old_keys)
    # A search by the ID the clinic wrote finds both people's studies.
    assert patient_ids(world.alice, PatientID="P-A-1") == {"P-A-1"}
    response = api_client_for(world.alice).get(
        "/dicomweb/studies", {"PatientID": "P-A-1"}, HTTP_ACCEPT="application/dicom+json"
    )
    assert len(response.json()) == 2
    retrieved = multipart(
        api_client_for(world.alice).get(
            f"/dicomweb/studies/{held.study_uid}",
            HTTP_ACCEPT='multipart/related; type="application/dicom"',
        )
    )
    assert {sop(content) for _h, content in retrieved} == {sop(p) for p in parts}
    for _headers, content in retrieved:
        ds = pydicom.dcmread(io.BytesIO(content))
        assert (ds.PatientID, ds.IssuerOfPatientID) == ("P-A-1", "north-clinic~2")
        modified = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
        assert modified.IssuerOfPatientID == ""
    assert AuditEvent.objects.get(event="instance_reconciled").detail["decision"] == "new_patient"
    # The same namesake's next study, held again and filed anew, joins the same record;
    # another namesake gets a third one.
    held_against_record(world, first_study, count=1)
    again = HeldInstance.objects.get(resolved_at__isnull=True)
    assert client.post(f"/api/v1/archive/held/{again.pk}/new-patient/").status_code == 200
    assert Patient.objects.count() == 2
    third = SyntheticPatient("P-A-1", "Zhao^Liu", birth_date="20010203", sex="M")
    stow(api_client_for(world.alice), ct_files(1, size=32, patient=third))
    other = HeldInstance.objects.get(resolved_at__isnull=True)
    assert client.post(f"/api/v1/archive/held/{other.pk}/new-patient/").status_code == 200
    assert Patient.objects.order_by("pk").last().issuer == "north-clinic~3"


def test_a_study_contradiction_cannot_be_filed_as_a_new_patient(world, first_study):
    held_for(world, first_study, count=1)
    held = HeldInstance.objects.get()
    response = api_client_for(world.adam).post(f"/api/v1/archive/held/{held.pk}/new-patient/")
    assert response.status_code == 409
    assert HeldInstance.objects.get().resolved_at is None


def test_the_queue_page_compares_with_the_patient_record(world, first_study):
    held_against_record(world, first_study, count=1)
    held = HeldInstance.objects.get()
    browser = Client()
    browser.force_login(world.adam)
    with translation.override("en"):
        text = browser.get("/archive/held/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for shown in ("The patient record", "Zhang^Wei=张^伟", "Wang^Xiaoming=王^小明", "19800101"):
        assert shown in text
    assert f"/archive/held/{held.pk}/new-patient/" in text
    assert f"/archive/held/{held.pk}/new-study/" not in text
    done = browser.post(f"/archive/held/{held.pk}/new-patient/")
    assert done.status_code == 302
    assert HeldInstance.objects.get().decision == "new_patient"


def test_the_request_cache_does_not_skip_the_record_check(world, tmp_path, first_study):
    """A patient met earlier in the same request is compared too (in Python)."""
    context = IngestContext(world.clinic)
    parts = [*ct_files(1, size=32, patient=FIRST), *namesake_study(1)]
    outcomes = []
    for index, part in enumerate(parts):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(part)
        outcomes.append(
            instance_store(institution=world.clinic, path=path, via="stow", context=context)
        )
    assert [o.status for o in outcomes] == ["stored", "held"]


# --- The people who decide are told --------------------------------------------------------


def held_notices():
    from tenants.models import Notification

    return Notification.objects.filter(kind="archive_held").order_by("user__username")


def test_the_deciders_get_one_notice_per_study_for_a_whole_series(world, first_study):
    study_uid = pydicom.dcmread(io.BytesIO(first_study[0])).StudyInstanceUID
    client = api_client_for(world.alice)
    stow(client, ct_files(3, size=32, patient=SECOND, study_uid=study_uid))
    stow(client, ct_files(2, size=32, patient=SECOND, study_uid=study_uid))  # the rest of it
    assert HeldInstance.objects.count() == 5
    notices = list(held_notices())
    # alice (clinic technician) and adam (hospital admin) decide; nobody else is told.
    assert [n.user.username for n in notices] == ["adam", "alice"]
    notice = notices[0]
    assert (notice.code, notice.params, notice.link) == (
        "archive.held",
        {"n": 3, "study": study_uid},
        "/archive/held/",
    )
    assert notice.institution == world.clinic
    with translation.override("en"):
        assert notice.display_title == "Instances held for review"
        assert f"3 instances of study {study_uid} were held" in notice.display_body
    with translation.override("zh-hans"):
        assert notice.display_title  # put into words in the reader's language


def test_a_hold_against_the_record_and_a_conflict_notify_too(world, first_study):
    held_against_record(world, first_study, count=1)
    assert [n.code for n in held_notices()] == ["archive.held", "archive.held"]
    changed = rewritten(first_study[0], SeriesDescription="edited")
    stow(api_client_for(world.alice), [changed])
    conflicts = held_notices().filter(code="archive.conflict")
    assert conflicts.count() == 2
    assert conflicts[0].params["n"] == 1


def test_another_study_held_is_another_notice_and_nothing_held_is_none(world, first_study):
    client = api_client_for(world.alice)
    stow(client, ct_files(2, size=32, patient=FIRST))  # filed: no notice
    assert held_notices().count() == 0
    held_for(world, first_study, count=1)
    held_against_record(world, first_study, count=1)
    assert held_notices().count() == 4  # two studies, two deciders
