"""Helpers for the ingest tests: a storage of each test's own, hand-made DICOM bytes, and the
check that the index and storage agree in both directions (no half-stored instance).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from rest_framework.test import APIClient

from referrals.archive.storage_reconcile import stored_objects
from referrals.models import Instance

from .dicom_support import multipart_related

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UNDEFINED = 0xFFFFFFFF
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@pytest.fixture
def media(settings, tmp_path: Path) -> Path:
    """Instances of this test go to a folder of its own (no objects left by other tests)."""
    location = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
    }
    return location


def object_keys() -> set[str]:
    return {obj.key for obj in stored_objects(default_storage, listdir=True)}


def assert_index_matches_storage() -> None:
    """A row exists if and only if its object exists."""
    rows = {instance.object_key for instance in Instance.objects.all()}
    assert rows == object_keys()


def stow(client: APIClient, parts: list[bytes], path: str = "/dicomweb/studies"):
    body, content_type = multipart_related(parts)
    return client.post(
        path, data=body, content_type=content_type, HTTP_ACCEPT="application/dicom+json"
    )


def failures(response) -> list[tuple[int, str]]:
    """(reason, text) of each failed SOP in a STOW response."""
    return [
        (item["00081197"]["Value"][0], item["00091001"]["Value"][0])
        for item in response.json().get("00081198", {}).get("Value", [])
    ]


# --- Hand-made DICOM (explicit VR little endian) -------------------------------------------


def element(group: int, elem: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One element; `length` may lie about the value's length."""
    length = len(value) if length is None else length
    head = struct.pack("<HH", group, elem) + vr.encode()
    if vr in LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", length) + value
    return head + struct.pack("<H", length) + value


def uid_value(uid: str) -> bytes:
    raw = uid.encode()
    return raw + (b"\0" if len(raw) % 2 else b"")


def text_value(text: str) -> bytes:
    raw = text.encode()
    return raw + (b" " if len(raw) % 2 else b"")


def part10(
    body: bytes,
    *,
    sop_uid: str,
    transfer_syntax: str = ExplicitVRLittleEndian,
    meta_sop_uid: str | None = None,
) -> bytes:
    """Preamble, DICM, a correct file meta group, then `body` as the data set."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = meta_sop_uid or sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1342.1"
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue() + body


def data_set(
    *,
    sop_uid: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_class: str = BASIC_TEXT_SR,
    extra: bytes = b"",
    patient_name: str = "Test^Patient",
) -> bytes:
    """A minimal data set (a text report: not an image, so it needs no pixel data)."""
    return (
        element(0x0008, 0x0016, "UI", uid_value(sop_class))
        + element(0x0008, 0x0018, "UI", uid_value(sop_uid))
        + element(0x0008, 0x0060, "CS", text_value("SR"))
        + element(0x0010, 0x0010, "PN", text_value(patient_name))
        + element(0x0010, 0x0020, "LO", text_value("P-BAD-1"))
        + extra
        + element(0x0020, 0x000D, "UI", uid_value(study_uid or generate_uid()))
        + element(0x0020, 0x000E, "UI", uid_value(series_uid or generate_uid()))
    )


def minimal_instance(**kwargs: object) -> bytes:
    sop_uid = str(kwargs.pop("sop_uid", None) or generate_uid())
    return part10(data_set(sop_uid=sop_uid, **kwargs), sop_uid=sop_uid)  # type: ignore[arg-type]


def nested_sequences(depth: int, *, defined_length: bool) -> bytes:
    """ContentSequence inside ContentSequence, `depth` levels."""
    inner = b""
    for _ in range(depth):
        if defined_length:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = element(0x0040, 0xA730, "SQ", item)
        else:
            inner = (
                element(0x0040, 0xA730, "SQ", b"", length=UNDEFINED)
                + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
                + inner
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
            )
    return inner
