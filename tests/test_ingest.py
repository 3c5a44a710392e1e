"""instance_store: atomic per instance, one row and one object under concurrency, memory flat
in the instance's size, bulk data kept out of the index, and the alliance-wide patient key.
"""

from __future__ import annotations

import io
import struct
import threading
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from django.db import DataError, connection
from pydicom.uid import generate_uid

from referrals.archive import ingest
from referrals.archive.dicom_checks import CANNOT_UNDERSTAND
from referrals.archive.ingest import instance_store
from referrals.archive.patient_key import patient_key
from referrals.archive.synthetic import SyntheticPatient, ct_slice, to_bytes
from referrals.models import Instance, Patient, Series, Study

from .dicom_support import ct_files
from .ingest_support import (
    assert_index_matches_storage,
    data_set,
    element,
    media,  # noqa: F401 - fixture
    object_keys,
    part10,
    text_value,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def _file(tmp_path: Path, data: bytes, name: str = "instance.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- Atomicity ---------------------------------------------------------------------------


def test_a_failure_inside_the_index_transaction_deletes_the_object(world, tmp_path, monkeypatch):
    path = _file(tmp_path, ct_files(1, size=16)[0])

    def broken_index(*args, **kwargs):
        Patient.objects.create(institution=world.clinic, patient_id="half", patient_key="x")
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr(ingest, "_index", broken_index)
    with pytest.raises(RuntimeError, match="went away"):
        instance_store(institution=world.clinic, path=path, via="test")
    assert not Patient.objects.filter(patient_id="half").exists()  # rolled back
    assert not Instance.objects.exists()
    assert object_keys() == set()


def test_a_value_the_database_refuses_is_a_refusal_without_an_object(world, tmp_path, monkeypatch):
    path = _file(tmp_path, ct_files(1, size=16)[0])

    def refusing_index(*args, **kwargs):
        raise DataError("value too long for type character varying(64)")

    monkeypatch.setattr(ingest, "_index", refusing_index)
    outcome = instance_store(institution=world.clinic, path=path, via="test")
    assert (outcome.status, outcome.reason) == ("refused", CANNOT_UNDERSTAND)
    assert object_keys() == set()


def test_a_stored_instance_has_exactly_one_row_and_one_object(world, tmp_path):
    data = ct_files(1, size=16)[0]
    outcome = instance_store(institution=world.clinic, path=_file(tmp_path, data), via="test")
    assert outcome.status == "stored"
    assert object_keys() == {outcome.instance.object_key}
    again = instance_store(institution=world.clinic, path=_file(tmp_path, data), via="test")
    assert (again.status, again.instance) == ("duplicate", outcome.instance)
    assert object_keys() == {outcome.instance.object_key}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_the_same_instance_sent_by_eight_clients_at_once_is_stored_once(
    world, tmp_path, monkeypatch
):
    data = ct_files(1, size=16)[0]
    path = _file(tmp_path, data)
    threads_count = 8
    # Hold every thread at the door of the transaction until all have written their object,
    # so the race is on the rows, not on who reads first.
    door = threading.Barrier(threads_count, timeout=30)
    original_index = ingest._index

    def racing_index(*args, **kwargs):
        door.wait()
        return original_index(*args, **kwargs)

    monkeypatch.setattr(ingest, "_index", racing_index)
    outcomes: list = []
    errors: list = []

    def send() -> None:
        try:
            outcomes.append(instance_store(institution=world.clinic, path=path, via="test"))
        except Exception as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(o.status for o in outcomes) == ["duplicate"] * 7 + ["stored"]
    [instance] = Instance.objects.all()
    assert {o.instance.pk for o in outcomes} == {instance.pk}
    assert object_keys() == {instance.object_key}  # the seven losers deleted their copies
    study = Study.objects.get()
    assert (study.num_instances, study.num_series, Series.objects.get().num_instances) == (1, 1, 1)
    assert Patient.objects.count() == 1


# --- Memory -------------------------------------------------------------------------------


def _large_ct(path: Path, frames: int) -> Path:
    """A 512x512 16-bit multi-frame CT of `frames` frames, written without holding its pixels."""
    ds = ct_slice(
        patient=SyntheticPatient("MEM-1", "Memory^Test"),
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        index=0,
        count=1,
        size=16,
    )
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    del ds.PixelData
    header = to_bytes(ds)
    frame = 512 * 512 * 2
    with path.open("wb") as fp:
        fp.write(header)
        fp.write(struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\0\0" + struct.pack("<I", frame * frames))
        chunk = b"\x10\x00" * (frame // 2)
        for _ in range(frames):
            fp.write(chunk)
    return path


def _peak_while_storing(world, path: Path) -> int:
    tracemalloc.start()
    try:
        outcome = instance_store(institution=world.clinic, path=path, via="test")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.status == "stored", outcome.message
    return peak


@pytest.mark.timeout(120)
def test_ingest_memory_does_not_grow_with_the_instance_size(world, tmp_path):
    _peak_while_storing(world, _large_ct(tmp_path / "warm.dcm", 1))  # imports, caches
    small = _peak_while_storing(world, _large_ct(tmp_path / "small.dcm", 2))  # 1 MB
    large_path = _large_ct(tmp_path / "large.dcm", 200)  # 100 MB
    large = _peak_while_storing(world, large_path)
    assert large_path.stat().st_size > 100 * 1024 * 1024
    # 99 MB more data may cost buffers, never the data: a 4 MB margin is 4 % of it.
    print(f"\ntracemalloc peak storing 1 MB: {small} B, 100 MB: {large} B")
    assert large - small < 4 * 1024 * 1024, (small, large)
    [stored] = Instance.objects.filter(number_of_frames=200)
    assert stored.size_bytes == large_path.stat().st_size
    assert stored.metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk:7FE00010"}
    assert_index_matches_storage()


def test_large_binary_values_stay_out_of_the_index_as_bulk_data(world, tmp_path):
    sop = generate_uid()
    private = element(0x0009, 0x0010, "LO", text_value("ACME")) + element(
        0x0009, 0x1010, "OB", b"\x01" * 100_000
    )
    data = part10(data_set(sop_uid=sop, extra=private), sop_uid=sop) + (
        element(0xFFFC, 0xFFFC, "OB", b"\0" * 64)
    )  # trailing padding
    outcome = instance_store(institution=world.clinic, path=_file(tmp_path, data), via="test")
    assert outcome.status == "stored", outcome.message
    metadata = outcome.instance.metadata
    assert metadata["00091010"] == {"vr": "OB", "BulkDataURI": "bulk:00091010"}
    assert "FFFCFFFC" not in metadata
    assert metadata["00090010"]["Value"] == ["ACME"]


def test_text_the_index_cannot_hold_is_cleaned_not_fatal(world, tmp_path):
    [data] = ct_files(1, size=16)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyDescription = "CHEST\x00WITH NUL"
    ds.InstanceNumber = "999999999999"  # an IS the index's integer column cannot hold
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    outcome = instance_store(
        institution=world.clinic, path=_file(tmp_path, buffer.getvalue()), via="test"
    )
    assert outcome.status == "stored", outcome.message
    assert Study.objects.get().description == "CHESTWITH NUL"
    assert outcome.instance.instance_number is None
    assert "\x00" not in str(outcome.instance.metadata)


# --- The alliance-wide patient key --------------------------------------------------------


def test_the_same_id_under_the_same_issuer_links_across_sites():
    north = patient_key(
        patient_id="110101199001011234", issuer="CN-RESIDENT-ID", site_code="north-clinic"
    )
    south = patient_key(
        patient_id="110101199001011234", issuer="CN-RESIDENT-ID", site_code="south-clinic"
    )
    assert north == south


def test_an_id_without_issuer_means_nothing_outside_its_site():
    assert patient_key(patient_id="P0001", issuer="", site_code="north-clinic") != patient_key(
        patient_id="P0001", issuer="", site_code="south-clinic"
    )
    assert patient_key(patient_id="P0001", issuer="A", site_code="x") != patient_key(
        patient_id="P0001", issuer="B", site_code="x"
    )


def test_the_key_never_contains_the_id(settings):
    for patient_id in ("110101199001011234", "P0001", "ZHANG-SAN-0001", "0420315"):
        key = patient_key(patient_id=patient_id, issuer="CN-RESIDENT-ID", site_code="s")
        assert patient_id not in key
        assert len(key) == 64


def test_changing_the_secret_changes_every_key(settings):
    before = patient_key(patient_id="P0001", issuer="CN", site_code="s")
    settings.PATIENT_KEY_SECRET = "another-secret-of-the-alliance"
    assert patient_key(patient_id="P0001", issuer="CN", site_code="s") != before


def test_ingest_links_one_patient_sent_by_two_sites(world, tmp_path):
    person = SyntheticPatient("110101199001011234", "Li^Lei", issuer="CN-RESIDENT-ID")
    local = SyntheticPatient("P0001", "Li^Lei")
    for institution in (world.clinic, world.outsider):
        for patient in (person, local):
            [data] = ct_files(1, size=16, patient=patient)
            outcome = instance_store(
                institution=institution, path=_file(tmp_path, data), via="test"
            )
            assert outcome.status == "stored"
    keys = {(s.institution.code, s.pid): s.patient_key for s in Study.objects.all()}
    pid = person.patient_id
    assert keys[("north-clinic", pid)] == keys[("south-clinic", pid)]
    assert keys[("north-clinic", "P0001")] != keys[("south-clinic", "P0001")]
    assert all(pid not in key and "P0001" not in key for key in keys.values())
