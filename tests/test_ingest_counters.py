"""Lean ingest keeps every guarantee: one request's rows looked up once, counters recounted
once per study per request, and still right with several studies, repeats, conflicts,
failures in the middle, concurrent requests and a crash before the recount."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.db import DataError, connection
from django.utils import timezone
from pydicom.uid import generate_uid

from referrals.archive import ingest
from referrals.archive.ingest import IngestContext, instance_store
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient
from referrals.models import Instance, Series, Study
from tenants.models import AuditEvent

from .conftest import api_client_for
from .dicom_support import ct_files, multipart_related
from .ingest_support import assert_index_matches_storage, media, object_keys  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def _restyled(parts: list[bytes], **attributes: str) -> list[bytes]:
    """The same instances with some attributes changed (a new modality, say)."""
    out = []
    for part in parts:
        ds = pydicom.dcmread(io.BytesIO(part))
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _stow(client, parts: list[bytes]):
    body, content_type = multipart_related(parts)
    return client.post(
        "/dicomweb/studies",
        data=body,
        content_type=content_type,
        HTTP_ACCEPT="application/dicom+json",
    )


def _counters(study: Study) -> tuple[int, int, int, str, str]:
    study.refresh_from_db()
    return (
        study.num_instances,
        study.num_series,
        study.size_bytes,
        study.modalities,
        study.body_parts,
    )


def _truth(study: Study) -> tuple[int, int, int, str, str]:
    """What the counters must say, from the rows themselves."""
    instances = Instance.objects.filter(study=study)
    series = Series.objects.filter(study=study)
    return (
        instances.count(),
        series.count(),
        sum(i.size_bytes for i in instances),
        "\\".join(sorted({s.modality for s in series if s.modality})),
        "\\".join(sorted({s.body_part for s in series if s.body_part})),
    )


def test_a_request_of_two_studies_with_repeats_and_a_conflict_counts_each_study_right(world):
    first_uid = generate_uid(prefix=HUB_UID_ROOT)
    ct = ct_files(3, size=16, study_uid=first_uid)
    mr = _restyled(
        ct_files(2, size=16, study_uid=first_uid), Modality="MR", BodyPartExamined="HEAD"
    )
    other = ct_files(2, size=16, patient=SyntheticPatient("P0002", "Li^Lei"))
    conflict = _restyled(ct[:1], PatientName="Changed^Name")
    client = api_client_for(world.alice)
    # Interleaved, with repeats of the same bytes and a conflicting copy inside the request.
    parts = [ct[0], other[0], mr[0], ct[1], ct[0], other[1], mr[1], conflict[0], ct[2], other[1]]
    response = _stow(client, parts)
    assert response.status_code == 202, response.content
    body = response.json()
    assert len(body["00081199"]["Value"]) == 9  # stored and already-held alike
    [failure] = body["00081198"]["Value"]
    assert failure["00081197"]["Value"] == [0x0111]

    first = Study.objects.get(study_uid=first_uid)
    second = Study.objects.exclude(pk=first.pk).get()
    assert _counters(first)[:2] == (5, 2)
    assert _counters(second)[:2] == (2, 1)
    assert _counters(first)[3:] == ("CT\\MR", "CHEST\\HEAD")
    for study in (first, second):
        assert _counters(study) == _truth(study)
        assert study.stable_at is None
        for series in Series.objects.filter(study=study):
            assert series.num_instances == series.instances.count()
    assert Instance.objects.count() == 7
    assert_index_matches_storage()
    # One audit event per study, saying what was stored, repeated and refused.
    details = {
        e.study_uid: (e.detail, e.outcome)
        for e in AuditEvent.objects.filter(event="instances_stored")
    }
    assert details[first_uid] == ({"via": "stow", "stored": 5, "duplicate": 1, "refused": 1}, 4)
    assert details[second.study_uid] == (
        {"via": "stow", "stored": 2, "duplicate": 1, "refused": 0},
        0,
    )

    # A later request adds to the first study: the recount includes what came before.
    more = _restyled(ct_files(2, size=16, study_uid=first_uid), Modality="SR", BodyPartExamined="")
    assert _stow(client, more + ct[:1]).status_code == 200
    assert _counters(first) == _truth(first)
    assert _counters(first)[:2] == (7, 3)
    assert _counters(first)[3] == "CT\\MR\\SR"


def test_a_failed_instance_mid_request_neither_stops_nor_miscounts_the_rest(world, monkeypatch):
    parts = ct_files(4, size=16)
    doomed = pydicom.dcmread(io.BytesIO(parts[1])).SOPInstanceUID
    original_index = ingest._index

    def failing_index(institution, new, object_id, context=None):
        if new.sop_uid == doomed:
            raise DataError("value too long for type character varying(64)")
        return original_index(institution, new, object_id, context)

    monkeypatch.setattr(ingest, "_index", failing_index)
    response = _stow(api_client_for(world.alice), parts)
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert _counters(study)[:2] == (3, 1)
    assert _counters(study) == _truth(study)
    assert not Instance.objects.filter(sop_uid=doomed).exists()
    assert len(object_keys()) == 3  # the refused instance's object was deleted
    assert_index_matches_storage()


def test_a_resend_after_a_crash_before_the_recount_repairs_the_counters(world, tmp_path):
    parts = ct_files(3, size=16)
    paths = []
    for index, data in enumerate(parts):
        paths.append(tmp_path / f"{index}.dcm")
        paths[-1].write_bytes(data)
    context = IngestContext(world.clinic)
    for path in paths:
        assert (
            instance_store(institution=world.clinic, path=path, via="stow", context=context).status
            == "stored"
        )
    context.owed.clear()  # the process died here: the request never settled
    study = Study.objects.get()
    assert Instance.objects.count() == 3  # the rows are there...
    assert study.num_instances == 0  # ...the counters are behind
    # The client got no answer and sends again: the duplicates recount the study.
    response = _stow(api_client_for(world.alice), parts)
    assert response.status_code == 200, response.content
    assert _counters(study) == _truth(study)
    assert study.num_instances == 3


def test_the_first_instance_of_a_request_makes_a_stable_study_unstable_at_once(world, tmp_path):
    study_uid = generate_uid(prefix=HUB_UID_ROOT)
    first, second = ct_files(2, size=16, study_uid=study_uid)
    (tmp_path / "a.dcm").write_bytes(first)
    (tmp_path / "b.dcm").write_bytes(second)
    assert instance_store(institution=world.clinic, path=tmp_path / "a.dcm", via="t").ok
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Study.objects.update(stable_at=long_ago, last_received_at=long_ago)
    context = IngestContext(world.clinic)
    outcome = instance_store(
        institution=world.clinic, path=tmp_path / "b.dcm", via="t", context=context
    )
    assert outcome.status == "stored"
    study = Study.objects.get()
    # Before the request settles: already receiving, so no "stable" event can fire now.
    assert study.stable_at is None
    assert study.last_received_at > long_ago
    context.settle()
    assert _counters(study) == _truth(study)


def test_a_consumed_part_is_moved_into_storage_with_its_bytes(world, tmp_path):
    [data] = ct_files(1, size=16)
    path = tmp_path / "part.dcm"
    path.write_bytes(data)
    outcome = instance_store(institution=world.clinic, path=path, via="stow", consume=True)
    assert outcome.status == "stored"
    assert not path.exists()  # moved, not copied
    assert_index_matches_storage()
    with default_storage.open(outcome.instance.object_key) as fp:
        assert fp.read() == data


def test_a_context_serves_one_institution(world, tmp_path):
    [data] = ct_files(1, size=16)
    path = tmp_path / "part.dcm"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="one institution"):
        instance_store(
            institution=world.outsider, path=path, via="t", context=IngestContext(world.clinic)
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_four_requests_storing_one_study_at_once_leave_exact_counters(world, tmp_path):
    study_uid = generate_uid(prefix=HUB_UID_ROOT)
    series = [ct_files(6, size=16, study_uid=study_uid) for _ in range(2)]
    # Four "requests", each its own context and connection, over two shared series.
    batches = [series[0][:3], series[0][3:], series[1][:3], series[1][3:] + series[0][:1]]
    door = threading.Barrier(len(batches), timeout=30)
    errors: list[BaseException] = []

    def send(index: int, parts: list[bytes]) -> None:
        try:
            context = IngestContext(world.clinic)
            door.wait()
            for n, data in enumerate(parts):
                path = Path(tmp_path / f"{index}-{n}.dcm")
                path.write_bytes(data)
                assert instance_store(
                    institution=world.clinic, path=path, via="stow", context=context, consume=True
                ).ok
            context.settle()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i, b)) for i, b in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    study = Study.objects.get()
    assert _counters(study) == _truth(study)
    assert _counters(study)[:2] == (12, 2)
    assert sorted(Series.objects.values_list("num_instances", flat=True)) == [6, 6]
    assert_index_matches_storage()


@pytest.mark.django_db(transaction=True)
def test_a_repeat_within_one_request_outside_any_transaction_is_held_or_refused(world, tmp_path):
    # Outside a transaction, an instance of a study and series the request already knows is
    # one INSERT on its own: its conflict must still answer "held" or "refused, first kept".
    first, second = ct_files(2, size=16)
    conflict = _restyled([first], PatientName="Changed^Name")[0]
    context = IngestContext(world.clinic)
    outcomes = []
    for index, data in enumerate([first, second, first, conflict]):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(data)
        assert not connection.in_atomic_block
        outcomes.append(
            instance_store(
                institution=world.clinic, path=path, via="stow", context=context, consume=True
            )
        )
    context.settle()
    assert [o.status for o in outcomes] == ["stored", "stored", "duplicate", "refused"]
    assert outcomes[3].reason == 0x0111
    assert outcomes[2].instance.pk == outcomes[0].instance.pk
    with default_storage.open(outcomes[0].instance.object_key) as fp:
        assert fp.read() == first
    study = Study.objects.get()
    assert _counters(study) == _truth(study)
    assert study.num_instances == 2
    assert_index_matches_storage()
