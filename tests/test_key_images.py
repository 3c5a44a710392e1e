"""Key images: the author attaches frames of the report's study to the draft; they freeze at
final (services refuse with 409, and the database trigger refuses raw SQL too)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from referrals.models import Instance, Series
from reporting import key_images, services
from reporting.models import KeyImage

from .referral_support import study_at
from .reporting_support import desk_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def _instances(study, n=2, frames=1):
    series = Series.objects.create(
        institution=study.institution, study=study, series_uid=f"{study.study_uid}.1", modality="CT"
    )
    return [
        Instance.objects.create(
            institution=study.institution,
            study=study,
            series=series,
            sop_uid=f"{study.study_uid}.1.{i}",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            rows=8,
            columns=8,
            number_of_frames=frames,
            size_bytes=100,
            sha256="0" * 64,
            received_via="test",
        )
        for i in range(1, n + 1)
    ]


@pytest.fixture
def draft(desk):
    report = services.report_create(
        scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
    )
    return services.report_autosave(
        scope=desk.sam(),
        report_id=report.pk,
        version=report.version,
        content={"findings": "半月板撕裂", "impression": "撕裂"},
    )


def test_add_list_remove_through_the_api(desk, draft, api_for):
    first, second = _instances(draft.study, frames=3)
    sam = api_for(desk.reading.sam, desk.world.reader)
    url = f"/api/v1/reports/{draft.pk}/key-images/"
    answer = sam.post(url, {"sop_uid": first.sop_uid, "frame": 2, "note": "内侧"}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["frame"], body["note"], body["order"]) == (2, "内侧", 0)
    assert body["thumbnail"].endswith(f"/instances/{first.sop_uid}/frames/2/thumbnail")
    again = sam.post(url, {"sop_uid": first.sop_uid, "frame": 2}, format="json")
    assert again.json()["id"] == body["id"]  # the same frame twice is one key image
    assert sam.post(url, {"sop_uid": second.sop_uid}, format="json").json()["order"] == 1
    assert [k["frame"] for k in sam.get(url).json()] == [2, 1]
    assert sam.delete(f"{url}{body['id']}/").status_code == 204
    assert sam.delete(f"{url}{body['id']}/").status_code == 404
    assert [k["sop_uid"] for k in sam.get(url).json()] == [second.sop_uid]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"sop_uid": "9.9.9", "frame": 1}, "bad_instance"),
        ({"sop_uid": "FIRST", "frame": 4}, "bad_frame"),
        ({"sop_uid": "OTHER", "frame": 1}, "bad_instance"),  # another study's image
    ],
)
def test_bad_frames_are_refused(desk, draft, api_for, body, code):
    (first,) = _instances(draft.study, n=1, frames=3)
    (other,) = _instances(study_at(desk.world.clinic, patient_id="P-9"), n=1)
    body = {
        **body,
        "sop_uid": {"FIRST": first.sop_uid, "OTHER": other.sop_uid}.get(
            body["sop_uid"], body["sop_uid"]
        ),
    }
    answer = api_for(desk.reading.sam, desk.world.reader).post(
        f"/api/v1/reports/{draft.pk}/key-images/", body, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert not KeyImage.objects.exists()


def test_only_the_author_while_draft(desk, draft, api_for):
    (first,) = _instances(draft.study, n=1)
    rob = api_for(desk.reading.rob, desk.world.reader)
    answer = rob.post(
        f"/api/v1/reports/{draft.pk}/key-images/", {"sop_uid": first.sop_uid}, format="json"
    )
    assert answer.status_code == 403
    alice = api_for(desk.world.alice, desk.world.clinic)  # the clinic does not see drafts
    assert alice.get(f"/api/v1/reports/{draft.pk}/key-images/").status_code == 404


def test_frozen_after_final(desk, draft, api_for, django_capture_on_commit_callbacks):
    (first,) = _instances(draft.study, n=1)
    image = key_images.key_image_add(scope=desk.sam(), report_id=draft.pk, sop_uid=first.sop_uid)
    with django_capture_on_commit_callbacks(execute=True):
        services.report_sign(
            scope=desk.sam(), report_id=draft.pk, kind="final", version=draft.version
        )
    sam = api_for(desk.reading.sam, desk.world.reader)
    url = f"/api/v1/reports/{draft.pk}/key-images/"
    again = sam.post(url, {"sop_uid": first.sop_uid, "frame": 1}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "report_final"
    answer = sam.delete(f"{url}{image.pk}/")
    assert answer.status_code == 409
    assert answer.json()["code"] == "report_final"
    for sql in (
        "UPDATE reporting_keyimage SET note = 'x' WHERE id = %s",
        "DELETE FROM reporting_keyimage WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [image.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        KeyImage.objects.create(report=draft, instance=first, frame=1, order=5)
    # The clinic sees the key images of the final report, on its page too.
    alice = api_for(desk.world.alice, desk.world.clinic)
    assert [k["id"] for k in alice.get(url).json()] == [image.pk]
