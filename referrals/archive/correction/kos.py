"""The IHE IOCM rejection note: a Key Object Selection document naming the rejected instances.

highdicom builds and checks the document (TID 2010, the title from CID 7010, the evidence
sequence); the hub stores it into the study through ordinary ingest, so it is queried and
retrieved like any instance and a peer that speaks IOCM hides what it names.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from referrals.archive.ingest import StoreOutcome, instance_store
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import Instance, Study

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
# Series number of rejection notes: high, so viewers list them after the images.
KOS_SERIES_NUMBER = 9999
RECEIVED_VIA = "iocm"

# (code value, meaning): DICOM CID 7011 "Rejected for ..." titles, scheme DCM.
REASONS: dict[str, str] = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
# Retention expiry is decided by retention rules, never picked by a person.
SELECTABLE_REASONS = ("113001", "113037", "113038")


class KosError(Exception):
    """The rejection note could not be made or stored (message says why)."""


def _evidence(study: Study, instance: Instance) -> Dataset:
    """What highdicom needs of each rejected instance: its identity and the study's."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = instance.sop_class_uid
    ds.SOPInstanceUID = instance.sop_uid
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = instance.series.series_uid
    ds.PatientID = study.pid
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = (
        study.patient.birth_date.strftime("%Y%m%d") if study.patient.birth_date else ""
    )
    ds.PatientSex = study.patient.sex
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.study_id
    ds.StudyDate = study.study_date.strftime("%Y%m%d") if study.study_date else ""
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = study.referring_physician_name
    if instance.rows and instance.columns:
        ds.Rows, ds.Columns = instance.rows, instance.columns
    return ds


def rejection_note_build(*, study: Study, instances: Sequence[Instance], code: str) -> Dataset:
    """The KOS document rejecting `instances` of `study` for reason `code`."""
    title = CodedConcept(value=code, scheme_designator="DCM", meaning=REASONS[code])
    evidence = [_evidence(study, i) for i in instances]
    content = KeyObjectSelection(document_title=title, referenced_objects=evidence)
    document = KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=generate_uid(prefix=HUB_UID_ROOT),
        series_number=KOS_SERIES_NUMBER,
        sop_instance_uid=generate_uid(prefix=HUB_UID_ROOT),
        instance_number=1,
        manufacturer="Imaging hub",
        institution_name=study.institution.name[:64],
    )
    return document


def rejection_note_store(*, study: Study, instances: Sequence[Instance], code: str) -> Instance:
    """Build the rejection note and store it into the study; the stored instance row."""
    document = rejection_note_build(study=study, instances=instances, code=code)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kos.dcm"
        document.save_as(path, enforce_file_format=True)
        outcome: StoreOutcome = instance_store(
            institution=study.institution, path=path, via=RECEIVED_VIA
        )
    if outcome.instance is None:
        raise KosError(outcome.message or "the rejection note was not stored")
    return outcome.instance
