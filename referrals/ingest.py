"""Storing one received DICOM instance: check it, keep its bytes, index it — atomically.

The bytes go to object storage first, under a key made from a fresh server id; the rows
follow in one transaction. If the transaction fails the object is deleted, so a row exists
if and only if its object exists (`manage.py reconcile_storage` proves it after a crash).
Sending the same SOP Instance again with the same bytes is a success that stores nothing;
with different bytes it is refused and the first copy is kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from tenants.audit import AuditCode, audit_record
from tenants.models import Institution

from .dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DEFLATED_TS,
    DUPLICATE_SOP_INSTANCE,
    PROCESSING_FAILURE,
    Refusal,
    deflate_bomb_check,
    preamble_check,
    size_check,
    uid_check,
)
from .dicom_json import dataset_metadata
from .models import Instance, Patient, Series, Study, instance_object_key
from .patient_key import patient_key

logger = logging.getLogger(__name__)


@dataclass
class StoreOutcome:
    """What happened to one instance: stored, already there, or refused (with why)."""

    status: str  # "stored" | "duplicate" | "refused"
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    instance: Instance | None = None
    reason: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("stored", "duplicate")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path) -> Dataset:
    with path.open("rb") as fp:
        preamble_check(fp)
        try:
            # Pixel data and other large values stay on disk: memory does not grow with size.
            ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=4096)
            if str(ds.file_meta.get("TransferSyntaxUID", "")) == DEFLATED_TS:
                # pydicom inflates the whole data set in memory: bound it first.
                deflate_bomb_check(fp, _meta_end(fp))
            ds.ensure_file_meta()
            # Touch every element now, so malformed values fail here and not later.
            dataset_metadata(ds)
        except Refusal:
            raise
        except InvalidDicomError as exc:
            raise Refusal(CANNOT_UNDERSTAND, f"Not a readable DICOM file: {exc}") from exc
        except RecursionError as exc:
            raise Refusal(CANNOT_UNDERSTAND, "Sequences are nested too deeply.") from exc
        except Exception as exc:  # pydicom raises many kinds on malformed input
            raise Refusal(CANNOT_UNDERSTAND,
                          f"Malformed DICOM data: {exc.__class__.__name__}") from exc
    return ds


def _meta_end(fp: Any) -> int:
    """Where the data set starts: after the file meta group, whose length is its first element."""
    fp.seek(132)
    head = fp.read(12)
    if len(head) < 12 or head[:4] != b"\x02\x00\x00\x00" or head[4:6] != b"UL":
        raise Refusal(CANNOT_UNDERSTAND, "The file meta information has no group length.")
    return 144 + int.from_bytes(head[8:12], "little")


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().replace("\x00", "")[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


def _date(ds: Dataset, keyword: str) -> dt.date | None:
    text = _text(ds, keyword, 8)
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


def name_search_form(name: str) -> str:
    """Patient names are matched case-insensitively, as most archives do (PS3.4 C.2.2.2.1)."""
    return name.upper()


def instance_store(
    *,
    institution: Institution,
    path: Path,
    sha256: str | None = None,
    via: str,
    expected_study_uid: str | None = None,
    actor: Any = None,
) -> StoreOutcome:
    """Store the DICOM file at `path` for `institution`. Never raises for bad input."""
    outcome = StoreOutcome(status="refused")
    try:
        size = path.stat().st_size
        size_check(size)
        ds = _read(path)
        outcome.sop_class_uid = uid_check(ds.get("SOPClassUID"), "SOP Class UID")
        outcome.sop_uid = uid_check(ds.get("SOPInstanceUID"), "SOP Instance UID")
        outcome.study_uid = uid_check(ds.get("StudyInstanceUID"), "Study Instance UID")
        series_uid = uid_check(ds.get("SeriesInstanceUID"), "Series Instance UID")
        meta_sop = str(ds.file_meta.get("MediaStorageSOPInstanceUID", outcome.sop_uid))
        if meta_sop.strip("\x00 ") != outcome.sop_uid:
            raise Refusal(DATASET_DOES_NOT_MATCH,
                          "The file meta SOP Instance UID differs from the data set's.")
        if expected_study_uid and outcome.study_uid != expected_study_uid:
            raise Refusal(DATASET_DOES_NOT_MATCH,
                          "The instance belongs to another study than the one in the URL.")
        sha256 = sha256 or file_sha256(path)
        existing = _existing(institution, outcome.sop_uid, sha256)
        if existing is not None:
            outcome.status, outcome.instance = "duplicate", existing
            return outcome
        outcome.instance = _store_new(institution, path, ds, sha256, size, via, series_uid)
        outcome.status = "stored"
        return outcome
    except Refusal as refusal:
        outcome.status, outcome.reason, outcome.message = "refused", refusal.reason, refusal.message
        return outcome


def _existing(institution: Institution, sop_uid: str, sha256: str) -> Instance | None:
    found = Instance.objects.filter(institution=institution, sop_uid=sop_uid).first()
    if found is None:
        return None
    if found.sha256 != sha256:
        raise Refusal(DUPLICATE_SOP_INSTANCE,
                      "An instance with this SOP Instance UID but different content is "
                      "already stored; the stored copy was kept.")
    return found


def _store_new(institution: Institution, path: Path, ds: Dataset, sha256: str, size: int,
               via: str, series_uid: str) -> Instance:
    object_id = uuid.uuid4()
    key = instance_object_key(object_id)
    with path.open("rb") as fp:
        saved = default_storage.save(key, File(fp))
    if saved != key:  # storage renamed it: never expected with fresh uuids
        default_storage.delete(saved)
        raise Refusal(PROCESSING_FAILURE, "Storage could not keep the object under its key.")
    try:
        with transaction.atomic():
            instance = _index(institution, ds, sha256, size, via, series_uid, object_id)
    except IntegrityError:
        # Another request stored the same SOP Instance a moment ago: ours is a copy.
        default_storage.delete(key)
        existing = _existing(institution, str(ds.SOPInstanceUID), sha256)
        if existing is None:
            raise Refusal(PROCESSING_FAILURE, "Could not index the instance.") from None
        return existing
    except BaseException:
        default_storage.delete(key)
        raise
    return instance


def _index(institution: Institution, ds: Dataset, sha256: str, size: int, via: str,
           series_uid: str, object_id: uuid.UUID) -> Instance:
    now = timezone.now()
    pid = _text(ds, "PatientID", 64)
    issuer = _text(ds, "IssuerOfPatientID", 64)
    pname = _text(ds, "PatientName", 324)
    key = patient_key(patient_id=pid, issuer=issuer, site_code=institution.code)
    patient, _ = Patient.objects.get_or_create(
        institution=institution, issuer=issuer, patient_id=pid,
        defaults={"name": pname, "birth_date": _date(ds, "PatientBirthDate"),
                  "sex": _text(ds, "PatientSex", 16), "patient_key": key},
    )
    study_uid = str(ds.StudyInstanceUID).strip()
    study, _ = Study.objects.get_or_create(
        institution=institution, study_uid=study_uid,
        defaults={
            "patient": patient, "study_date": _date(ds, "StudyDate"),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 16),
            "study_id": _text(ds, "StudyID", 16),
            "description": _text(ds, "StudyDescription", 64),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
            "patient_name": pname, "patient_name_search": name_search_form(pname),
            "pid": pid, "patient_key": key, "received_at": now,
        },
    )
    study = Study.objects.select_for_update().get(pk=study.pk)
    series, series_created = Series.objects.get_or_create(
        study=study, series_uid=series_uid,
        defaults={
            "institution": institution, "modality": _text(ds, "Modality", 16),
            "series_number": _int(ds, "SeriesNumber"),
            "description": _text(ds, "SeriesDescription", 64),
            "body_part": _text(ds, "BodyPartExamined", 64),
        },
    )
    instance = Instance.objects.create(
        institution=institution, study=study, series=series,
        sop_uid=str(ds.SOPInstanceUID).strip(), sop_class_uid=str(ds.SOPClassUID).strip(),
        instance_number=_int(ds, "InstanceNumber"),
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")),
        rows=_int(ds, "Rows"), columns=_int(ds, "Columns"),
        number_of_frames=_int(ds, "NumberOfFrames") or 1, size_bytes=size, sha256=sha256,
        object_id=object_id, metadata=dataset_metadata(ds), received_via=via, created_at=now,
    )
    Series.objects.filter(pk=series.pk).update(num_instances=F("num_instances") + 1)
    modalities = _merge(study.modalities, series.modality)
    body_parts = _merge(study.body_parts, series.body_part, limit=128)
    Study.objects.filter(pk=study.pk).update(
        num_instances=F("num_instances") + 1, size_bytes=F("size_bytes") + size,
        num_series=F("num_series") + (1 if series_created else 0),
        modalities=modalities, body_parts=body_parts, last_received_at=now, stable_at=None,
    )
    return instance


def _merge(joined: str, value: str, limit: int = 64) -> str:
    values = [v for v in joined.split("\\") if v]
    if value and value not in values:
        values.append(value)
    merged = "\\".join(sorted(values))
    return merged[:limit]


def ingest_audit(*, scope: Any, outcomes: list[StoreOutcome], via: str, request: Any = None
                 ) -> None:
    """One audit event per request and study: who sent which instances, with what result."""
    by_study: dict[str, list[StoreOutcome]] = {}
    for outcome in outcomes:
        by_study.setdefault(outcome.study_uid, []).append(outcome)
    for study_uid, items in by_study.items():
        failed = sum(1 for o in items if not o.ok)
        patient_id = next((o.instance.study.pid for o in items if o.instance), "")
        audit_record(
            event=AuditCode.INSTANCES_STORED, action="C", scope=scope, request=request,
            outcome=0 if not failed else (4 if failed < len(items) else 8),
            study_uid=study_uid, patient_id=patient_id, object_type="study",
            detail={"via": via, "stored": sum(1 for o in items if o.status == "stored"),
                    "duplicate": sum(1 for o in items if o.status == "duplicate"),
                    "refused": failed},
        )
