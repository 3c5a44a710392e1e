"""Synthetic DICOM studies: the demo alliance's images, the test corpus, the benchmarks.

A CT slice is 512x512, 16-bit, a phantom of a body outline with a few organs, so the
viewer shows something a radiologist recognises and compressed sizes are realistic
(about 0.5 MB uncompressed per instance).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

HUB_UID_ROOT = "1.2.826.0.1.3680043.10.1342."  # a pydicom-issued root for generated UIDs


@dataclass(frozen=True)
class SyntheticPatient:
    patient_id: str
    name: str  # DICOM PN, e.g. "Wang^Xiaoming=王^小明"
    birth_date: str = "19650412"
    sex: str = "M"
    issuer: str = ""


def _phantom(size: int, z: float) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : complex(size), -1 : 1 : complex(size)]
    image = np.full((size, size), -1000, dtype=np.int16)  # air
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1
    image[body] = 40  # soft tissue
    for cx in (-0.38, 0.38):  # lungs
        lung = ((x - cx) / 0.28) ** 2 + ((y + 0.05) / (0.42 - 0.1 * abs(z))) ** 2 <= 1
        image[lung] = -850
    spine = (x / 0.09) ** 2 + ((y - 0.45) / 0.09) ** 2 <= 1
    image[spine] = 700
    heart = ((x + 0.08) / 0.2) ** 2 + ((y + 0.05) / 0.18) ** 2 <= 1 - abs(z)
    image[heart] = 55
    rng = np.random.default_rng(int(abs(z) * 1000))
    noise = rng.normal(0, 12, (size, size)).astype(np.int16)
    return (image + noise).astype(np.int16)


def ct_slice(
    *,
    patient: SyntheticPatient,
    study_uid: str,
    series_uid: str,
    index: int,
    count: int,
    accession: str = "",
    study_date: dt.date | None = None,
    size: int = 512,
    description: str = "CT CHEST",
    body_part: str = "CHEST",
    referring: str = "",
) -> Dataset:
    """One slice of an axial CT series, as a complete Part 10 data set."""
    sop_uid = generate_uid(prefix=HUB_UID_ROOT)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(HUB_UID_ROOT + "1")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    date = (study_date or dt.date.today()).strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = "093000"
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.StudyDescription = description
    ds.SeriesDescription = "Axial 5mm"
    ds.BodyPartExamined = body_part
    ds.ReferringPhysicianName = referring
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    if patient.issuer:
        ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    z = (index - count / 2) / max(count, 1)
    ds.ImagePositionPatient = [-250.0, -250.0, round(-5.0 * index, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 5.0
    ds.PixelSpacing = [500 / size, 500 / size]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.PixelData = _phantom(size, z).tobytes()
    return ds


def ct_series(
    *, patient: SyntheticPatient, count: int, study_uid: str | None = None, **kwargs: object
) -> Iterator[Dataset]:
    study_uid = study_uid or generate_uid(prefix=HUB_UID_ROOT)
    series_uid = generate_uid(prefix=HUB_UID_ROOT)
    for index in range(count):
        yield ct_slice(
            patient=patient,
            study_uid=study_uid,
            series_uid=series_uid,
            index=index,
            count=count,
            **kwargs,  # type: ignore[arg-type]
        )


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
