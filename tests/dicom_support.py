"""Helpers for tests that send DICOM: multipart bodies, synthetic studies, peers."""

from __future__ import annotations

import uuid

from pydicom.dataset import Dataset

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


def ecg_two_groups(patient: SyntheticPatient = PATIENT) -> Dataset:
    """A 12-lead ECG with two waveform groups whose samples differ: bulk data in items."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from referrals.archive.synthetic import HUB_UID_ROOT

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(HUB_UID_ROOT)
    ds.StudyInstanceUID = generate_uid(HUB_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(HUB_UID_ROOT)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.name
    ds.Modality = "ECG"
    ds.StudyDate = "20240105"
    ds.InstanceNumber = 1
    groups = []
    for number, fill in ((1, 0x11), (2, 0x22)):
        group = Dataset()
        group.MultiplexGroupLabel = f"GROUP {number}"
        group.NumberOfWaveformChannels = 1
        group.NumberOfWaveformSamples = 1000
        group.SamplingFrequency = "500"
        group.WaveformBitsAllocated = 16
        group.WaveformSampleInterpretation = "SS"
        group.WaveformData = bytes([fill, number]) * 1000  # 2000 bytes: bulk, not inline
        groups.append(group)
    ds.WaveformSequence = groups
    return ds


def with_icon(ds: Dataset, size: int = 64) -> Dataset:
    """`ds` with an 8-bit icon image whose pixels differ from the main image's."""
    icon = Dataset()
    icon.Rows = icon.Columns = size
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = bytes((7 * i) % 251 for i in range(size * size))
    ds.IconImageSequence = [icon]
    return ds
