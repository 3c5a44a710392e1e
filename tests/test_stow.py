"""STOW-RS: storing, duplicates, conflicts, bad parts, atomicity, and who may send."""

from __future__ import annotations

import pydicom
import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from referrals.models import Instance, Series, Study
from tenants.models import AuditEvent

from .conftest import api_client_for
from .dicom_support import ct_files, multipart_related

pytestmark = pytest.mark.django_db


def stow(client: APIClient, parts: list[bytes], path: str = "/dicomweb/studies", **kw):
    body, content_type = multipart_related(parts, **kw)
    return client.post(
        path, data=body, content_type=content_type, HTTP_ACCEPT="application/dicom+json"
    )


def sop_uids(parts: list[bytes]) -> list[str]:
    import io

    return [pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts]


def test_a_study_is_stored_and_indexed(world):
    parts = ct_files(3)
    response = stow(api_client_for(world.alice), parts)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == sop_uids(parts)
    study = Study.objects.get()
    assert (study.institution, study.num_instances, study.num_series) == (world.clinic, 3, 1)
    assert study.modalities == "CT"
    assert study.patient_name.startswith("Wang^Xiaoming")
    for instance in Instance.objects.all():
        with default_storage.open(instance.object_key) as fp:
            assert fp.read() in parts
    assert (
        AuditEvent.objects.filter(
            event="instances_stored", study_uid=study.study_uid, outcome=0
        ).count()
        == 1
    )


def test_the_same_instance_again_is_a_success_without_a_copy(world):
    parts = ct_files(2)
    client = api_client_for(world.alice)
    assert stow(client, parts).status_code == 200
    again = stow(client, parts)
    assert again.status_code == 200
    assert Instance.objects.count() == 2
    assert Study.objects.get().num_instances == 2


def test_different_bytes_under_a_stored_uid_are_refused_and_the_first_kept(world):
    import io

    [original] = ct_files(1)
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.PatientName = "Changed^Name"
    changed = io.BytesIO()
    ds.save_as(changed, enforce_file_format=True)
    client = api_client_for(world.alice)
    stow(client, [original])
    response = stow(client, [changed.getvalue()])
    assert response.status_code == 409
    failure = response.json()["00081198"]["Value"][0]
    assert failure["00081197"]["Value"] == [0x0111]
    assert "different content" in failure["00091001"]["Value"][0]
    instance = Instance.objects.get()
    with default_storage.open(instance.object_key) as fp:
        assert fp.read() == original


def test_a_mixed_request_stores_the_good_and_names_the_bad(world):
    good = ct_files(2)
    response = stow(api_client_for(world.alice), [good[0], b"not dicom at all" * 20, good[1]])
    assert response.status_code == 202
    failures = response.json()["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failures] == [0xC000]
    assert "DICM" in failures[0]["00091001"]["Value"][0]
    assert Instance.objects.count() == 2


def test_storing_into_another_study_url_is_refused(world):
    parts = ct_files(1)
    response = stow(api_client_for(world.alice), parts, path="/dicomweb/studies/1.2.3.4")
    assert response.status_code == 409
    assert "another study" in str(response.json())
    assert not Instance.objects.exists()


def test_a_truncated_body_keeps_the_complete_parts_only(world):
    parts = ct_files(2)
    body, content_type = multipart_related(parts)
    cut = body[: len(body) - len(parts[1]) // 2]  # the connection dropped mid-part 2
    response = api_client_for(world.alice).post(
        "/dicomweb/studies", data=cut, content_type=content_type
    )
    assert response.status_code == 202
    assert "closing boundary" in response["Warning"]
    assert list(Instance.objects.values_list("sop_uid", flat=True)) == sop_uids(parts)[:1]


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/dicom", 415),
        ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 415),
    ],
)
def test_wrong_media_types_get_415(world, content_type, status):
    response = api_client_for(world.alice).post(
        "/dicomweb/studies", data=b"x", content_type=content_type
    )
    assert response.status_code == status


def test_a_body_that_is_not_multipart_gets_400(world):
    response = api_client_for(world.alice).post(
        "/dicomweb/studies",
        data=b"garbage without boundaries",
        content_type='multipart/related; type="application/dicom"; boundary=abc',
    )
    assert response.status_code == 400


def test_an_oversized_instance_is_refused(world, settings):
    settings.HUB_MAX_INSTANCE_BYTES = 2000
    response = stow(api_client_for(world.alice), ct_files(1))
    assert response.status_code == 409
    # 0xC001 (too large) is permanent: a gateway sets the file aside instead of retrying.
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC001]


def test_roles_without_image_rights_cannot_send(world):
    assert stow(api_client_for(world.carl), ct_files(1)).status_code == 403
    assert stow(api_client_for(world.adam), ct_files(1)).status_code == 403
    assert APIClient().post("/dicomweb/studies").status_code == 401


def test_each_institution_keeps_its_own_copy(world):
    parts = ct_files(1)
    stow(api_client_for(world.alice), parts)
    stow(api_client_for(world.oscar), parts)
    assert sorted(Instance.objects.values_list("institution__code", flat=True)) == [
        "north-clinic",
        "south-clinic",
    ]
    assert Series.objects.count() == 2
