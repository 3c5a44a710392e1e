"""Hostile and broken input through STOW-RS: a specific refusal every time, never a 500, a hang
or a half-stored instance (each test ends by checking the index against storage both ways).
"""

from __future__ import annotations

import io
import zlib

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    MAX_SEQUENCE_DEPTH,
    TOO_LARGE,
)
from referrals.models import Instance, Patient, Study

from .conftest import api_client_for
from .dicom_support import ct_files, multipart_related
from .ingest_support import (
    assert_index_matches_storage,
    data_set,
    element,
    failures,
    media,  # noqa: F401 - fixture
    minimal_instance,
    nested_sequences,
    part10,
    stow,
    text_value,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("media"),
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*"),
]


def refused(response, reasons: set[int], text: str = "") -> list[tuple[int, str]]:
    """The request stored nothing and every part failed with one of `reasons`."""
    assert response.status_code == 409, response.content
    found = failures(response)
    assert found, response.content
    for reason, message in found:
        assert reason in reasons, (hex(reason), message)
        assert text in message, message
    assert "00081199" not in response.json()
    assert not Instance.objects.exists()
    assert_index_matches_storage()
    return found


@pytest.fixture
def client(world):
    return api_client_for(world.alice)


def test_a_file_that_is_not_dicom_is_refused(client):
    refused(stow(client, [b"%PDF-1.7 " * 100]), {CANNOT_UNDERSTAND}, "DICM")


def test_a_file_without_dicm_after_the_preamble_is_refused(client):
    [good] = ct_files(1, size=16)
    refused(stow(client, [good[:128] + b"DICX" + good[132:]]), {CANNOT_UNDERSTAND}, "DICM")


def test_a_bare_data_set_without_the_part_10_header_is_refused(client):
    [good] = ct_files(1, size=16)
    refused(stow(client, [good[132:]]), {CANNOT_UNDERSTAND}, "DICM")


def test_files_cut_at_any_offset_are_refused_never_stored(client):
    [good] = ct_files(1, size=32)
    ds = pydicom.dcmread(io.BytesIO(good))
    pixel_start = len(good) - len(ds.PixelData)
    # Every byte of the header region (meta, data set elements and their headers), then a
    # spread of offsets inside the pixel data, then one byte short of whole.
    offsets = [
        *range(132, pixel_start + 12),
        *range(pixel_start + 12, len(good), 97),
        len(good) - 1,
    ]
    parts = [good[:offset] for offset in offsets]
    found = refused(stow(client, parts), {CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH})
    assert len(found) == len(offsets)
    # A cut pixel data is named as such, not stored as a smaller image.
    assert "truncated" in dict(zip(offsets, found, strict=True))[len(good) - 1][1]


def test_stray_bytes_of_a_cut_element_header_after_the_pixels_are_refused(client):
    [good] = ct_files(1, size=16)
    refused(stow(client, [good + b"\xe0\x7f\x10"]), {CANNOT_UNDERSTAND}, "stray")


def test_zero_padding_after_the_last_element_is_tolerated(client):
    [good] = ct_files(1, size=16)
    assert stow(client, [good + b"\0\0\0"]).status_code == 200
    assert_index_matches_storage()


def test_pixel_data_shorter_than_its_image_is_refused(client):
    [good] = ct_files(1, size=16)
    ds = pydicom.dcmread(io.BytesIO(good))
    ds.PixelData = ds.PixelData[:-64]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    refused(stow(client, [buffer.getvalue()]), {CANNOT_UNDERSTAND}, "pixel data holds")


@pytest.mark.parametrize(
    ("vr", "length"),
    [
        ("UT", 0xFFFFFFF0),
        ("OB", 0xFFFFFFF0),
        ("UN", 0xFFFFFFF0),
        ("LO", 0xFFF0),
    ],
)
def test_absurd_element_lengths_are_refused(client, vr, length):
    sop = generate_uid()
    extra = element(0x0008, 0x2111 if vr in ("UT", "LO") else 0x0009, vr, b"abcd", length=length)
    if vr in ("OB", "UN"):  # a private element, as a fuzzer or a broken writer would send
        extra = element(0x0009, 0x0010, "LO", text_value("X")) + element(
            0x0009, 0x1010, vr, b"abcd", length=length
        )
    data = part10(data_set(sop_uid=sop, extra=extra), sop_uid=sop)
    refused(stow(client, [data]), {CANNOT_UNDERSTAND}, "claims")


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 200, 10_000])
def test_deeply_nested_sequences_are_refused_cleanly(client, depth, defined_length):
    """pydicom parses sequences recursively: 10,000 levels would raise RecursionError."""
    sop = generate_uid()
    data = part10(
        data_set(sop_uid=sop, extra=nested_sequences(depth, defined_length=defined_length)),
        sop_uid=sop,
    )
    [(_reason, message)] = refused(stow(client, [data]), {CANNOT_UNDERSTAND})
    assert "nested" in message


def test_sequences_nested_as_deep_as_allowed_are_stored(client):
    sop = generate_uid()
    data = part10(
        data_set(sop_uid=sop, extra=nested_sequences(MAX_SEQUENCE_DEPTH, defined_length=False)),
        sop_uid=sop,
    )
    response = stow(client, [data])
    assert response.status_code == 200, response.content
    assert_index_matches_storage()


@pytest.mark.parametrize(
    "uid",
    [
        "../../etc/passwd",
        "1.2.3/../4",
        "1.2.3\\..\\4",
        "1." + "2" * 64,
        "1.2.abc.4",
        "1.02.3",
        "1.2.3.",
        " ",
        "1.2.3\x00.4",
    ],
)
@pytest.mark.parametrize("which", ["sop", "study", "series"])
def test_path_like_over_long_or_malformed_uids_are_refused(client, tmp_path, uid, which):
    sop = uid if which == "sop" else generate_uid()
    body = data_set(
        sop_uid=sop,
        study_uid=uid if which == "study" else None,
        series_uid=uid if which == "series" else None,
    )
    data = part10(body, sop_uid=sop, meta_sop_uid=sop if sop.strip() else generate_uid())
    refused(stow(client, [data]), {DATASET_DOES_NOT_MATCH, CANNOT_UNDERSTAND}, "UID")
    # Nothing was written anywhere, inside the storage folder or beside it.
    assert not any(tmp_path.rglob("passwd"))


def test_a_meta_header_naming_another_instance_is_refused(client):
    sop = generate_uid()
    data = part10(data_set(sop_uid=sop), sop_uid=sop, meta_sop_uid=generate_uid())
    refused(stow(client, [data]), {DATASET_DOES_NOT_MATCH}, "file meta")


def test_script_tags_in_names_are_kept_as_data(client):
    evil = '<script>alert("x")</script>^<b onmouseover>Hi</b>'  # no '=': it splits a PN
    response = stow(client, [minimal_instance(patient_name=evil)])
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/dicom+json")
    assert b"<script" not in response.content
    assert Patient.objects.get().name == evil
    assert Study.objects.get().patient_name == evil
    assert Instance.objects.get().metadata["00100010"]["Value"][0]["Alphabetic"] == evil
    assert_index_matches_storage()


def _deflated(body: bytes, sop: str) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return part10(
        squeeze.compress(body) + squeeze.flush(),
        sop_uid=sop,
        transfer_syntax=DeflatedExplicitVRLittleEndian,
    )


def test_a_deflate_bomb_is_refused_before_it_inflates(client, settings):
    settings.HUB_MAX_INSTANCE_BYTES = 200_000
    sop = generate_uid()
    zeros = element(0x0009, 0x0010, "LO", text_value("X")) + element(
        0x0009, 0x1010, "OB", b"\0" * 20_000_000
    )
    data = _deflated(data_set(sop_uid=sop, extra=zeros), sop)
    assert len(data) < 100_000  # small on the wire, 100x the limit once inflated
    refused(stow(client, [data]), {TOO_LARGE}, "inflates past")


def test_a_corrupt_deflate_stream_is_refused(client):
    sop = generate_uid()
    data = _deflated(data_set(sop_uid=sop), sop)
    refused(stow(client, [data[:-40] + b"\xff" * 40]), {CANNOT_UNDERSTAND})


def test_a_small_deflated_instance_is_stored(client):
    sop = generate_uid()
    response = stow(client, [_deflated(data_set(sop_uid=sop), sop)])
    assert response.status_code == 200, response.content
    assert_index_matches_storage()


def test_a_body_over_the_request_limit_gets_413(client, settings):
    settings.HUB_MAX_STOW_BYTES = 50_000
    response = stow(client, ct_files(2, size=128))  # two 32 KB images
    assert response.status_code == 413
    assert b"larger than 50000" in response.content
    assert not Instance.objects.exists()
    assert_index_matches_storage()


def test_a_part_over_the_instance_limit_is_refused_and_the_rest_stored(client, settings):
    settings.HUB_MAX_INSTANCE_BYTES = 10_000
    small = minimal_instance()
    [large] = ct_files(1, size=128)
    response = stow(client, [small, large])
    assert response.status_code == 202, response.content
    [(reason, message)] = failures(response)
    assert reason == TOO_LARGE
    assert "larger than 10000" in message
    assert Instance.objects.count() == 1
    assert_index_matches_storage()


def test_garbage_between_boundaries_is_a_failure_entry_not_a_500(client):
    body, content_type = multipart_related([b"\0" * 10_000, b"DICM" * 500])
    response = client.post("/dicomweb/studies", data=body, content_type=content_type)
    refused(response, {CANNOT_UNDERSTAND})
