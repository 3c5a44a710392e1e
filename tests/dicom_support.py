"""Helpers for tests that send DICOM: multipart bodies, synthetic studies, peers."""

from __future__ import annotations

import uuid

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes

PATIENT = SyntheticPatient("P0001", "Wang^Xiaoming=王^小明")


def multipart_related(
    parts: list[bytes], boundary: str | None = None, part_type: str = "application/dicom"
) -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def ct_files(
    count: int = 3, size: int = 64, patient: SyntheticPatient = PATIENT, **kwargs: object
) -> list[bytes]:
    return [to_bytes(ds) for ds in ct_series(patient=patient, count=count, size=size, **kwargs)]
