"""A mutated corpus: pydicom's own small test files, bit-flipped, cut, spliced and with lying
length fields (seeded, so every failure replays). Each case must come out stored, a
duplicate, or refused with a specific reason — never an exception, a hang, an object
without its row or a row without its object.

Crashes this found are kept as plain regression cases at the bottom of the file.
"""

from __future__ import annotations

import contextlib
import signal
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from pydicom.uid import generate_uid

from bench.archive.mutations import cases
from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    TOO_LARGE,
)
from referrals.archive.ingest import instance_store
from referrals.models import Instance

from .conftest import api_client_for
from .ingest_support import (
    assert_index_matches_storage,
    data_set,
    element,
    media,  # noqa: F401 - fixture
    part10,
    stow,
    text_value,
)

# Broken input is what pydicom warns about: the warnings are the point, not news.
pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")]

SEED = 20_250_311
DIRECT_CASES = 3_000  # through instance_store
HTTP_CASES = 200  # through STOW-RS over the Django test client
CASE_WATCHDOG_SECONDS = 20  # a hang guard, far above any case's time, not a speed figure
# A refusal must name what is wrong with the file; "processing failure" would mean a bug.
SPECIFIC_REASONS = {
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    TOO_LARGE,
}


class RecordingStorage(FileSystemStorage):
    """Local files, remembering which keys each case created and deleted."""

    saved: list[str] = []
    deleted: list[str] = []

    def _save(self, name, content):
        name = super()._save(name, content)
        RecordingStorage.saved.append(name)
        return name

    def delete(self, name):
        RecordingStorage.deleted.append(name)
        super().delete(name)


class CaseHung(BaseException):  # not an Exception: ingest must not swallow it
    pass


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Interrupt a case that hangs. pytest-timeout runs as a thread for this module."""

    def interrupt(signum, frame):
        raise CaseHung(f"a case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def recording_storage(settings, tmp_path: Path) -> type[RecordingStorage]:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tests.test_fuzz_corpus.RecordingStorage",
            "OPTIONS": {"location": tmp_path / "media"},
        },
    }
    RecordingStorage.saved, RecordingStorage.deleted = [], []
    return RecordingStorage


def _check_case(outcome, saved: list[str], deleted: list[str], label: str) -> None:
    left = [key for key in saved if key not in deleted]
    if outcome.status in ("stored", "duplicate"):
        assert outcome.instance is not None, label
        assert Instance.objects.filter(pk=outcome.instance.pk).exists(), label
        assert default_storage.exists(outcome.instance.object_key), label
        expected = [outcome.instance.object_key] if outcome.status == "stored" else []
        assert left == expected, label
    else:
        assert outcome.status == "refused", label
        assert outcome.reason in SPECIFIC_REASONS, f"{label}: 0x{outcome.reason:04X}"
        assert outcome.message, label
        assert left == [], label  # an object written for a refused case was deleted again
        assert not Instance.objects.exists(), label


@pytest.mark.timeout(300, method="thread")
def test_thousands_of_mutated_files_are_stored_or_refused_cleanly(
    world, tmp_path, recording_storage
):
    path = tmp_path / "case.dcm"
    tally: Counter[str] = Counter()
    for number, name, kind, data in cases(DIRECT_CASES, SEED):
        label = f"case {number} ({name}, {kind}; replay with cases({DIRECT_CASES}, {SEED}))"
        path.write_bytes(data)
        recording_storage.saved, recording_storage.deleted = [], []
        try:
            with watchdog(CASE_WATCHDOG_SECONDS), transaction.atomic():
                outcome = instance_store(institution=world.clinic, path=path, via="fuzz")
                _check_case(outcome, recording_storage.saved, recording_storage.deleted, label)
                # Each case starts from an empty index, so every readable mutation is
                # indexed in full rather than refused as a duplicate of an earlier one.
                transaction.set_rollback(True)
        except CaseHung as hung:
            raise AssertionError(f"{label}: {hung}") from None
        if outcome.status == "stored":
            default_storage.delete(outcome.instance.object_key)
        tally[outcome.status] += 1
    print(f"\n{DIRECT_CASES} mutated cases: {dict(tally)}")
    assert tally["stored"]  # the corpus exercised both paths
    assert tally["refused"]
    assert_index_matches_storage()


@pytest.mark.timeout(300, method="thread")
@pytest.mark.usefixtures("media")
def test_a_mutated_sample_over_stow_never_gets_a_500(world):
    client = api_client_for(world.alice)
    statuses: Counter[int] = Counter()
    for number, name, kind, data in cases(HTTP_CASES, SEED + 1):
        response = stow(client, [data])
        assert response.status_code in (200, 202, 409), (number, name, kind, response.content)
        if response.status_code == 409:
            assert "00081198" in response.json()
        statuses[response.status_code] += 1
    print(f"\n{HTTP_CASES} mutated cases over STOW-RS: {dict(statuses)}")
    assert_index_matches_storage()


# --- What the corpus found, kept as plain cases ----------------------------------------------


@pytest.mark.usefixtures("media")
def test_rows_read_as_text_do_not_multiply_into_a_giant_string(world, tmp_path):
    """Case 46 (badVR.dcm, a bit flip): Rows arrived as text and pydicom's expected-length
    helper multiplied the *string* by Columns, samples, bits and frames (gigabytes)."""
    import tracemalloc

    sop = generate_uid()
    image = (
        element(0x0028, 0x0002, "US", struct.pack("<H", 3))
        + element(0x0028, 0x0008, "IS", text_value("200"))
        + element(0x0028, 0x0010, "LO", text_value("AB"))
        + element(0x0028, 0x0011, "US", struct.pack("<H", 65535))
        + element(0x0028, 0x0100, "US", struct.pack("<H", 16))
        + element(0x7FE0, 0x0010, "OW", b"\0" * 8)
    )
    body = data_set(sop_uid=sop, sop_class="1.2.840.10008.5.1.4.1.1.7")
    path = tmp_path / "rows-as-text.dcm"
    path.write_bytes(part10(body + image, sop_uid=sop))
    tracemalloc.start()
    try:
        with watchdog(CASE_WATCHDOG_SECONDS):
            outcome = instance_store(institution=world.clinic, path=path, via="fuzz")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024  # the old path allocated 1.2 GB here
    assert outcome.status == "stored"  # odd, but readable: the viewer will say it can't draw
    assert outcome.instance.rows is None
    assert_index_matches_storage()


@pytest.mark.usefixtures("media")
def test_a_transfer_syntax_that_is_not_one_is_refused_by_name(world, tmp_path):
    """Case 421 (a bit flip in the meta group's transfer syntax UID)."""
    sop = generate_uid()
    path = tmp_path / "unknown-syntax.dcm"
    path.write_bytes(
        part10(data_set(sop_uid=sop), sop_uid=sop, transfer_syntax="1.2.840.10008.5.1.4.1.1.2")
    )
    outcome = instance_store(institution=world.clinic, path=path, via="fuzz")
    assert (outcome.status, outcome.reason) == ("refused", CANNOT_UNDERSTAND)
    assert "Transfer syntax '1.2.840.10008.5.1.4.1.1.2'" in outcome.message
    assert_index_matches_storage()


@pytest.mark.usefixtures("media")
def test_an_unknown_vr_in_the_file_meta_is_refused_not_raised(world, tmp_path):
    """Seed 4 case 2877 (SC_rgb_rle_32bit.dcm, a bit flip): (0002,0003) arrived with VR
    'UK'; the meta group was converted only after the checks, and pydicom's
    NotImplementedError escaped instance_store."""
    sop = generate_uid()
    data = part10(data_set(sop_uid=sop), sop_uid=sop)
    header = struct.pack("<HH", 0x0002, 0x0003)
    assert data.count(header + b"UI") == 1
    path = tmp_path / "meta-vr.dcm"
    path.write_bytes(data.replace(header + b"UI", header + b"UK"))
    outcome = instance_store(institution=world.clinic, path=path, via="fuzz")
    assert (outcome.status, outcome.reason) == ("refused", CANNOT_UNDERSTAND)
    assert_index_matches_storage()
