"""Correcting stored studies (IHE IOCM): edit, split, move, merge, reject, undo.

Studies are stored the real way (ingest, objects on disk); the checks read them back the
way peers do: QIDO-RS, WADO-RS bytes parsed with pydicom, WADO-RS metadata.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.utils import translation

from referrals.archive.correction.services import correction_run
from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import (
    Correction,
    Instance,
    Referral,
    ReferralEvent,
    Series,
    Study,
)
from tenants.models import AuditEvent, Notification, Role

from .conftest import World, api_client_for
from .factories import MembershipFactory
from .ingest_support import media  # noqa: F401  (a storage of each test's own)
from .referral_flow_support import referral_row

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

WANG = SyntheticPatient("P0001", "Wang^Xiaoming", birth_date="19650412", sex="M")
ZHAO = SyntheticPatient("P0777", "Zhao^Lei", birth_date="19900101", sex="F")
DICOM_JSON = "application/dicom+json"
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def store(world: World, patient: SyntheticPatient, tmp_path: Path, *, study_uid=None, count=2):
    """One series of `count` instances into the clinic's archive; its study."""
    datasets = list(
        ct_series(
            patient=patient,
            count=count,
            size=16,
            study_uid=study_uid,
            accession="A100",
            study_date=dt.date(2024, 1, 10),
        )
    )
    for ds in datasets:
        path = tmp_path / f"{uuid.uuid4().hex}.dcm"
        path.write_bytes(to_bytes(ds))
        outcome = instance_store(institution=world.clinic, path=path, via="stow")
        assert outcome.ok, outcome.message
    return Study.objects.get(institution=world.clinic, study_uid=datasets[0].StudyInstanceUID)


def parts(response) -> list[pydicom.Dataset]:
    """The instances of a multipart WADO-RS answer."""
    body = b"".join(response.streaming_content)
    boundary = re.search(r"boundary=([^;]+)", response["Content-Type"]).group(1)
    found = []
    for chunk in body.split(f"--{boundary}".encode())[1:-1]:
        payload = chunk.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")]
        found.append(pydicom.dcmread(io.BytesIO(payload)))
    return found


def correct(world: World, study: Study, django_capture_on_commit_callbacks, **data):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(world.adam).post(
            f"/api/v1/archive/studies/{study.study_uid}/corrections/", data, format="json"
        )
    return response


def qido_study_uids(user, **params) -> set[str]:
    response = api_client_for(user).get("/dicomweb/studies", params, HTTP_ACCEPT=DICOM_JSON)
    assert response.status_code == 200
    return {row["0020000D"]["Value"][0] for row in response.json()}


def test_an_edit_rewrites_objects_metadata_and_index_alike(
    world, tmp_path, django_capture_on_commit_callbacks
):
    study = store(world, WANG, tmp_path, count=3)
    before = set(Instance.objects.values_list("object_id", flat=True))
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="edit",
        reason="Wrong patient picked at the scanner",
        changes={
            "PatientName": "Li^Si=李^四",
            "PatientID": "P0999",
            "PatientBirthDate": "19700203",
            "AccessionNumber": "A200",
        },
    )
    assert response.status_code == 202, response.content
    correction = Correction.objects.get(pk=response.json()["id"])
    assert (correction.status, correction.done, correction.total) == ("done", 3, 3)
    assert correction.previous["PatientName"] == "Wang^Xiaoming"
    progress = api_client_for(world.adam).get(
        f"/api/v1/archive/studies/{study.study_uid}/corrections/{correction.pk}/"
    )
    assert progress.json()["status"] == "done"
    assert (progress.json()["done"], progress.json()["total"]) == (3, 3)

    # QIDO: the new name and ID find it, the old ones no longer do.
    assert qido_study_uids(world.alice, PatientName="LI^SI") == {study.study_uid}
    assert qido_study_uids(world.alice, PatientName="李^四") == {study.study_uid}
    assert qido_study_uids(world.alice, PatientID="P0999") == {study.study_uid}
    assert qido_study_uids(world.alice, PatientName="Wang*") == set()
    # WADO-RS: the bytes carry the new values.
    retrieved = api_client_for(world.alice).get(
        f"/dicomweb/studies/{study.study_uid}", HTTP_ACCEPT=ANY_SYNTAX
    )
    datasets = parts(retrieved)
    assert len(datasets) == 3
    for ds in datasets:
        assert str(ds.PatientName) == "Li^Si=李^四"
        assert (ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber) == (
            "P0999",
            "19700203",
            "A200",
        )
        assert ds.SpecificCharacterSet == "ISO_IR 192"
    # WADO-RS metadata agrees.
    metadata = api_client_for(world.alice).get(
        f"/dicomweb/studies/{study.study_uid}/metadata", HTTP_ACCEPT=DICOM_JSON
    )
    for item in json_of(metadata):
        assert item["00100010"]["Value"][0]["Alphabetic"] == "Li^Si"
        assert item["00100010"]["Value"][0]["Ideographic"] == "李^四"
        assert item["00100020"]["Value"] == ["P0999"]
    # New objects; the rows name only them.
    after = set(Instance.objects.values_list("object_id", flat=True))
    assert not before & after
    for instance in Instance.objects.all():
        assert default_storage.exists(instance.object_key)
    study.refresh_from_db()
    assert (study.pid, study.patient.patient_id, study.accession_number) == (
        "P0999",
        "P0999",
        "A200",
    )
    assert study.patient.birth_date == dt.date(1970, 2, 3)
    event = AuditEvent.objects.get(event="study_corrected")
    assert event.study_uid == study.study_uid
    assert event.detail["previous"]["PatientID"] == "P0001"

    # Run twice (a redelivered task): nothing is rewritten again.
    Correction.objects.filter(pk=correction.pk).update(status="running")
    correction_run(correction_id=correction.pk)
    assert set(Instance.objects.values_list("object_id", flat=True)) == after
    assert Correction.objects.get(pk=correction.pk).status == "done"


def json_of(response) -> list[dict]:
    import json

    return json.loads(b"".join(response.streaming_content))


def test_split_then_move_back_then_merge_keep_counters_and_bytes_consistent(
    world, tmp_path, django_capture_on_commit_callbacks
):
    study = store(world, WANG, tmp_path, count=2)
    store(world, WANG, tmp_path, study_uid=study.study_uid, count=3)
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (2, 5)
    second = Series.objects.get(study=study, num_instances=3)

    # Split: the 3-instance series becomes a study of its own, with a new UID.
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="split",
        reason="Two exams in one",
        series_uids=[second.series_uid],
    )
    assert response.status_code == 202, response.content
    new_uid = Correction.objects.get(kind="split").params["target_study_uid"]
    new = Study.objects.get(study_uid=new_uid)
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (1, 2)
    assert (new.num_series, new.num_instances) == (1, 3)
    assert new.pid == "P0001"
    moved = parts(
        api_client_for(world.alice).get(f"/dicomweb/studies/{new_uid}", HTTP_ACCEPT=ANY_SYNTAX)
    )
    assert {ds.StudyInstanceUID for ds in moved} == {new_uid}
    assert {ds.SeriesInstanceUID for ds in moved} == {second.series_uid}
    assert qido_study_uids(world.alice, StudyInstanceUID=new_uid) == {new_uid}

    # Move it back: every series of the new study goes, so it is merged away.
    response = correct(
        world,
        new,
        django_capture_on_commit_callbacks,
        kind="move",
        reason="Was one exam after all",
        series_uids=[second.series_uid],
        target_study_uid=study.study_uid,
    )
    assert response.status_code == 202, response.content
    assert not Study.objects.filter(study_uid=new_uid).exists()
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (2, 5)

    # Merge another patient's study into it: its objects take this study's UID and patient.
    other = store(world, ZHAO, tmp_path, count=2)
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="merge",
        reason="Filed under a second study by mistake",
        other_study_uid=other.study_uid,
    )
    assert response.status_code == 202, response.content
    assert not Study.objects.filter(pk=other.pk).exists()
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (3, 7)
    everything = parts(
        api_client_for(world.alice).get(
            f"/dicomweb/studies/{study.study_uid}", HTTP_ACCEPT=ANY_SYNTAX
        )
    )
    assert len(everything) == 7
    assert {(ds.StudyInstanceUID, ds.PatientID, str(ds.PatientName)) for ds in everything} == {
        (study.study_uid, "P0001", "Wang^Xiaoming")
    }
    assert qido_study_uids(world.alice, PatientID="P0777") == set()
    assert AuditEvent.objects.filter(event="study_corrected").count() == 3


def test_a_rejection_hides_the_images_and_stores_a_rejection_note(
    world, tmp_path, django_capture_on_commit_callbacks
):
    study = store(world, WANG, tmp_path, count=2)
    store(world, WANG, tmp_path, study_uid=study.study_uid, count=3)
    bad = Series.objects.get(study=study, num_instances=3)
    bad_sops = set(Instance.objects.filter(series=bad).values_list("sop_uid", flat=True))
    bad_keys = [i.object_key for i in Instance.objects.filter(series=bad)]

    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="reject",
        reason="Motion, repeated",
        code="113001",
        series_uids=[bad.series_uid],
    )
    assert response.status_code == 202, response.content
    alice = api_client_for(world.alice)
    # Gone from QIDO.
    listed = alice.get(f"/dicomweb/studies/{study.study_uid}/instances", HTTP_ACCEPT=DICOM_JSON)
    sops = {row["00080018"]["Value"][0] for row in listed.json()}
    assert not sops & bad_sops
    assert len(sops) == 3  # two images and the rejection note
    series = alice.get(f"/dicomweb/studies/{study.study_uid}/series", HTTP_ACCEPT=DICOM_JSON)
    assert bad.series_uid not in {row["0020000E"]["Value"][0] for row in series.json()}
    # Gone from WADO-RS, with a sentence that says why.
    sop = sorted(bad_sops)[0]
    with translation.override("en"):
        gone = alice.get(
            f"/dicomweb/studies/{study.study_uid}/series/{bad.series_uid}/instances/{sop}",
            HTTP_ACCEPT=ANY_SYNTAX,
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert gone.status_code == 410
    assert "rejected for quality reasons" in gone.content.decode()
    assert (
        alice.get(
            f"/dicomweb/studies/{study.study_uid}/series/{bad.series_uid}/metadata",
            HTTP_ACCEPT=DICOM_JSON,
        ).status_code
        == 410
    )
    # The objects are kept.
    assert all(default_storage.exists(key) for key in bad_keys)
    # The counters no longer count them.
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (2, 3)
    assert "KO" in study.modalities
    # The rejection note (KOS), retrievable by WADO-RS, names the rejected instances.
    note_uid = Correction.objects.get(kind="reject").params["note_sop_uid"]
    note_row = Instance.objects.get(sop_uid=note_uid)
    [note] = parts(
        alice.get(
            f"/dicomweb/studies/{study.study_uid}/series/{note_row.series.series_uid}"
            f"/instances/{note_uid}",
            HTTP_ACCEPT=ANY_SYNTAX,
        )
    )
    assert note.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113001", "DCM")
    assert title.CodeMeaning == "Rejected for Quality Reasons"
    evidence = note.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == study.study_uid
    referenced = {
        sop.ReferencedSOPInstanceUID
        for series_item in evidence.ReferencedSeriesSequence
        for sop in series_item.ReferencedSOPSequence
    }
    assert referenced == bad_sops
    audit = AuditEvent.objects.get(event="instances_rejected")
    assert audit.detail["instances"] == 3

    # Undo (an administrator, with a reason): the images are back, the note hidden.
    rejection = Correction.objects.get(kind="reject")
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="restore",
        reason="Rejected the wrong series",
        rejection=rejection.pk,
    )
    assert response.status_code == 202, response.content
    listed = alice.get(f"/dicomweb/studies/{study.study_uid}/instances", HTTP_ACCEPT=DICOM_JSON)
    sops = {row["00080018"]["Value"][0] for row in listed.json()}
    assert bad_sops <= sops
    assert note_uid not in sops
    study.refresh_from_db()
    assert (study.num_series, study.num_instances) == (2, 5)
    assert AuditEvent.objects.filter(event="rejection_undone").exists()
    again = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="restore",
        reason="twice",
        rejection=rejection.pk,
    )
    assert again.status_code == 409


def test_retention_expiry_is_not_a_reason_a_person_picks(
    world, tmp_path, django_capture_on_commit_callbacks
):
    study = store(world, WANG, tmp_path)
    response = correct(
        world, study, django_capture_on_commit_callbacks, kind="reject", reason="x", code="113039"
    )
    assert response.status_code == 400
    assert "rejection reason" in response.json()["detail"]
    assert not Instance.objects.filter(rejected_at__isnull=False).exists()


def test_who_may_correct(world, tmp_path, django_capture_on_commit_callbacks):
    study = store(world, WANG, tmp_path)
    url = f"/api/v1/archive/studies/{study.study_uid}/corrections/"
    data = {"kind": "edit", "reason": "r", "changes": {"PatientName": "X^Y"}}
    # A technician of the site may not (a reader of what the site sent, neither).
    refused = api_client_for(world.alice).post(url, data, format="json")
    assert refused.status_code == 403
    assert "administrators" in refused.json()["detail"]
    # The reading hospital's radiologist does not even see it here.
    assert api_client_for(world.rita).post(url, data, format="json").status_code == 404
    assert api_client_for(world.rita).get(url).status_code == 404
    assert not Correction.objects.exists()
    # The site's administrator may, and sees the list.
    assert api_client_for(world.adam).get(url).status_code == 200
    # A reason is required, and a no-op is refused with a sentence.
    no_reason = api_client_for(world.adam).post(url, {**data, "reason": " "}, format="json")
    assert no_reason.status_code == 400
    same = api_client_for(world.adam).post(
        url, {**data, "changes": {"PatientName": "Wang^Xiaoming"}}, format="json"
    )
    assert same.status_code == 400
    assert "Nothing to change" in same.json()["detail"]
    bad_date = api_client_for(world.adam).post(
        url, {**data, "changes": {"PatientBirthDate": "19701399"}}, format="json"
    )
    assert bad_date.status_code == 400


def test_the_readers_of_an_open_case_are_told(world, tmp_path, django_capture_on_commit_callbacks):
    study = store(world, WANG, tmp_path)
    referral = referral_row(world, study=study, status="claimed", target=world.reader)
    Referral.objects.filter(pk=referral.pk).update(claimed_by=world.rita)
    closed = referral_row(world, study=study, status="cancelled", kind="consultation")
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="edit",
        reason="Name misspelt",
        changes={"PatientName": "Wang^Xiaomin"},
    )
    assert response.status_code == 202, response.content
    note = Notification.objects.get(user=world.rita)
    assert note.code == "study.corrected"
    assert note.params["text"] == "Name misspelt"
    with translation.override("en"):
        assert note.display_title == "A study of your case was corrected"
    assert Notification.objects.filter(user=world.alice, code="study.corrected").count() == 1
    event = ReferralEvent.objects.get(referral=referral, action="study_corrected")
    assert event.actor == world.adam
    with translation.override("en"):
        assert "Name misspelt" in event.reason_text
    assert not ReferralEvent.objects.filter(referral=closed, action="study_corrected").exists()


def test_the_correct_page(world, tmp_path, django_capture_on_commit_callbacks):
    from django.test import Client

    study = store(world, WANG, tmp_path)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.adam)
    page = client.get(f"/studies/{study.pk}/correct/")
    assert page.status_code == 200
    assert "Wang^Xiaoming" in page.content.decode()
    assert AuditEvent.objects.filter(
        event="study_viewed", study_uid=study.study_uid, user_id_value=world.adam.pk
    ).exists()
    # A rejection without its confirmation is not done.
    client.post(
        f"/studies/{study.pk}/correct/",
        {"kind": "reject", "code": "113001", "reason": "blurred"},
    )
    assert not Instance.objects.filter(rejected_at__isnull=False).exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            f"/studies/{study.pk}/correct/",
            {"kind": "edit", "reason": "typo", "patient_name": "Wang^Xiao", "sex": "M"},
        )
    assert done.status_code == 302
    study.refresh_from_db()
    assert study.patient_name == "Wang^Xiao"
    technician = Client()
    technician.force_login(world.alice)
    assert technician.get(f"/studies/{study.pk}/correct/").status_code == 403
    assert "study-correct" not in technician.get(f"/studies/{study.pk}/").content.decode()
    # An administrator who also reads images finds the way from the study page.
    MembershipFactory(user=world.adam, institution=world.clinic, role=Role.CLINIC_TECHNICIAN)
    study_page = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/studies/{study.pk}/correct/"' in study_page


def test_rejecting_one_image_keeps_its_series_with_one_image_less(
    world, tmp_path, django_capture_on_commit_callbacks
):
    study = store(world, WANG, tmp_path, count=3)
    series = Series.objects.get(study=study)
    Series.objects.filter(pk=series.pk).update(thumbnail_key="thumbnails/old.jpg")
    default_storage.save("thumbnails/old.jpg", io.BytesIO(b"old"))
    middle = Instance.objects.get(series=series, instance_number=2)
    response = correct(
        world,
        study,
        django_capture_on_commit_callbacks,
        kind="reject",
        reason="Wrong side marker",
        code="113037",
        sop_uids=[middle.sop_uid],
    )
    assert response.status_code == 202, response.content
    series.refresh_from_db()
    assert series.rejected_at is None
    assert series.num_instances == 2
    assert series.thumbnail_key == ""
    assert not default_storage.exists("thumbnails/old.jpg")
    alice = api_client_for(world.alice)
    rows = alice.get(
        f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}/instances",
        HTTP_ACCEPT=DICOM_JSON,
    ).json()
    assert middle.sop_uid not in {row["00080018"]["Value"][0] for row in rows}
    assert len(rows) == 2
    # The thumbnail is drawn again from the images left.
    thumbnail = alice.get(
        f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}/thumbnail",
        HTTP_ACCEPT="image/jpeg",
    )
    assert thumbnail.status_code == 200
    series.refresh_from_db()
    assert f"-{middle.pk}-" not in series.thumbnail_key
    with translation.override("en"):
        gone = alice.get(
            f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{middle.sop_uid}/metadata",
            HTTP_ACCEPT=DICOM_JSON,
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert gone.status_code == 410
    assert "patient safety" in gone.content.decode()
