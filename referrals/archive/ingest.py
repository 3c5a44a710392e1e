"""Storing one received DICOM instance: check it, keep its bytes, index it — atomically.

The bytes go to object storage first, under a key made from a fresh server id; the rows
follow in one transaction. If the transaction fails the object is deleted, so a row exists
if and only if its object exists (`manage.py reconcile_storage` proves it after a crash).
Sending the same SOP Instance again with the same bytes is a success that stores nothing;
with different bytes it is refused and the first copy is kept.

One request usually sends many instances of one study: an `IngestContext` carries the
patient, study and series rows it has already indexed from one instance to the next, so each
further instance costs one INSERT in its own transaction. The study's and series' counters
(instances, size, series, modalities) are then *recounted* from the rows, under the study's
row lock, once per study per request (`IngestContext.settle`, and every few seconds in a long
request). A recount is idempotent and self-healing: should a process die between an
instance's commit and the recount, the client never got its answer and sends again, and the
duplicates it sends recount the study.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DataError, IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DEFLATED_TS,
    DUPLICATE_SOP_INSTANCE,
    PIXEL_DATA_TAGS,
    PROCESSING_FAILURE,
    Refusal,
    binary_vr,
    deflate_bomb_check,
    pixel_data_check,
    preamble_check,
    sequence_depth_check,
    size_check,
    stray_bytes_check,
    transfer_syntax_check,
    uid_check,
    value_length_check,
)
from referrals.archive.dicom_json import dataset_metadata
from referrals.archive.patient_key import patient_key
from referrals.models import Instance, Patient, Series, Study, instance_object_key
from tenants.audit import AuditCode, audit_record
from tenants.models import Institution

logger = logging.getLogger(__name__)

# A long request settles its studies' counters at least this often, so a study being
# received never looks idle (`stable_at`, `last_received_at`) nor miscounted for long.
SETTLE_EVERY_SECONDS = 2.0
DEFER_BYTES = 4096  # values longer than this stay on disk until touched
TRAILING_PADDING = 0xFFFCFFFC
INT32_MAX = 2**31 - 1


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


def _read(path: Path, size: int) -> tuple[Dataset, dict[str, Any]]:
    """Parse and check the file; return its data set and its DICOM JSON without bulk data.

    Large values (the pixel data above all) are deferred: pydicom skips over them on disk,
    so memory does not grow with the instance's size.
    """
    with path.open("rb") as fp:
        preamble_check(fp)
        try:
            meta = read_file_meta_info(path)
            transfer_syntax_check(str(meta.get("TransferSyntaxUID", "")))
            deflated = str(meta.get("TransferSyntaxUID", "")) == DEFLATED_TS
            # pydicom inflates a deflated data set in memory: bound it before it does.
            data_end = deflate_bomb_check(fp, _meta_end(fp)) if deflated else size
            ds = pydicom.dcmread(fp, defer_size=DEFER_BYTES)
            last_end = value_length_check(ds, data_end)
            if not deflated:
                stray_bytes_check(fp, last_end, size)
            pixel_data_check(
                ds, str(ds.get("SOPClassUID", "")), str(ds.file_meta.get("TransferSyntaxUID", ""))
            )
            bulk = _drop_bulk_data(ds)
            ds.ensure_file_meta()
            for _element in ds.file_meta:  # converts each: a bad VR there fails here too
                pass
            sequence_depth_check(ds)
            # Converts every element now, so malformed values fail here and not later.
            metadata = _storable(dataset_metadata(ds))
            metadata.update(bulk)
        except Refusal:
            raise
        except InvalidDicomError as exc:
            raise Refusal(CANNOT_UNDERSTAND, f"Not a readable DICOM file: {exc}") from exc
        except RecursionError as exc:
            raise Refusal(CANNOT_UNDERSTAND, "Sequences are nested too deeply.") from exc
        except Exception as exc:  # pydicom raises many kinds on malformed input
            raise Refusal(
                CANNOT_UNDERSTAND, f"Malformed DICOM data: {exc.__class__.__name__}"
            ) from exc
    return ds, metadata


def _drop_bulk_data(ds: Dataset) -> dict[str, Any]:
    """Remove deferred binary values from `ds` (never read them); return their JSON refs.

    The pixel data's reference is added by `dataset_metadata` from Rows and Columns; trailing
    padding is not part of the instance's metadata at all.
    """
    refs: dict[str, Any] = {}
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if int(tag) in PIXEL_DATA_TAGS or int(tag) == TRAILING_PADDING:
            del ds[tag]
            continue
        if not isinstance(elem, RawDataElement) or elem.value is not None or not elem.length:
            continue
        vr = binary_vr(int(tag), elem.VR)
        if vr is not None:
            del ds[tag]
            refs[f"{int(tag):08X}"] = {"vr": vr, "BulkDataURI": f"bulk:{int(tag):08X}"}
    return refs


def _storable(value: Any) -> Any:
    """PostgreSQL's jsonb refuses NUL characters and lone surrogates: drop or replace them."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _clean(text: str) -> str:
    text = text.replace("\x00", "")
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


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
    return _clean(str(value)).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    """An IS/US value that fits the index's integer columns, else None."""
    try:
        value = ds.get(keyword)
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is None or -INT32_MAX <= number <= INT32_MAX else None


def _date(ds: Dataset, keyword: str) -> dt.date | None:
    text = _text(ds, keyword, 8)
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


def name_search_form(name: str) -> str:
    """Patient names are matched case-insensitively, as most archives do (PS3.4 C.2.2.2.1)."""
    return name.upper()


@dataclass
class IngestContext:
    """The rows one request has indexed so far, so its next instances skip the lookups.

    Only rows of committed instances are kept: `_index` stages what it used, and the stage
    is kept once its transaction commits and dropped (with everything else) if it fails.
    """

    institution: Institution
    patients: dict[tuple[str, str], Patient] = field(default_factory=dict)
    studies: dict[str, Study] = field(default_factory=dict)
    series: dict[tuple[int, str], Series] = field(default_factory=dict)
    # Studies (and their series) whose counters owe a recount: study pk -> series pks.
    owed: dict[int, set[int]] = field(default_factory=dict)
    owed_since: float | None = None
    _staged: tuple[Patient | None, Study, Series] | None = None

    def knows(self, study_uid: str, series_uid: str) -> bool:
        """Whether `_index` would find both rows here (and so write nothing but the instance)."""
        study = self.studies.get(study_uid)
        return study is not None and (study.pk, series_uid) in self.series

    def stage(self, patient: Patient | None, study: Study, series: Series) -> None:
        self._staged = (patient, study, series)

    def keep_staged(self) -> None:
        if self._staged is None:
            return
        patient, study, series = self._staged
        if patient is not None:
            self.patients[(patient.issuer, patient.patient_id)] = patient
        self.studies[study.study_uid] = study
        self.series[(study.pk, series.series_uid)] = series
        self._staged = None

    def forget(self) -> None:
        """After a failed transaction nothing staged or cached can be trusted to exist.

        What is owed stays owed: those instances were committed before.
        """
        self.patients.clear()
        self.studies.clear()
        self.series.clear()
        self._staged = None

    def owe(self, study_pk: int, series_pk: int) -> None:
        self.owed.setdefault(study_pk, set()).add(series_pk)
        if self.owed_since is None:
            self.owed_since = time.monotonic()

    def settle_if_due(self) -> None:
        if (
            self.owed_since is not None
            and time.monotonic() - self.owed_since >= SETTLE_EVERY_SECONDS
        ):
            self.settle()

    def settle(self) -> None:
        """Recount every study (and series) this request added to. Call once at its end."""
        owed, self.owed, self.owed_since = self.owed, {}, None
        for study_pk, series_pks in owed.items():
            study_counters_recount(study_pk=study_pk, series_pks=series_pks)


def study_counters_recount(*, study_pk: int, series_pks: set[int] | None = None) -> None:
    """Set a study's counters, modalities and body parts (and those of `series_pks`) from
    its rows, and mark it as receiving (not stable).

    The study's row lock is taken first, so the counting statements that follow see every
    instance committed before it; two recounts of one study run one after the other and the
    later one sees at least what the earlier one saw.
    """
    with transaction.atomic():
        if not Study.objects.select_for_update().filter(pk=study_pk).exists():
            return  # deleted meanwhile: nothing to count
        per_series = {
            row["series_id"]: row
            for row in Instance.objects.filter(study_id=study_pk)
            .order_by()
            .values("series_id")
            .annotate(n=Count("pk"), size=Sum("size_bytes"))
        }
        series = list(
            Series.objects.filter(study_id=study_pk).values_list("pk", "modality", "body_part")
        )
        Study.objects.filter(pk=study_pk).update(
            num_instances=sum(row["n"] for row in per_series.values()),
            size_bytes=sum(row["size"] or 0 for row in per_series.values()),
            num_series=len(per_series),
            modalities=_merged(s[1] for s in series if s[0] in per_series),
            body_parts=_merged((s[2] for s in series if s[0] in per_series), limit=128),
            last_received_at=timezone.now(),
            stable_at=None,
        )
        for series_pk in sorted(series_pks or ()):
            row = per_series.get(series_pk)
            count = row["n"] if row else 0
            Series.objects.filter(pk=series_pk).exclude(num_instances=count).update(
                num_instances=count
            )


def instance_store(
    *,
    institution: Institution,
    path: Path,
    sha256: str | None = None,
    via: str,
    expected_study_uid: str | None = None,
    actor: Any = None,
    context: IngestContext | None = None,
    consume: bool = False,
) -> StoreOutcome:
    """Store the DICOM file at `path` for `institution`. Never raises for bad input.

    `context` carries rows from one instance to the next within a request. With `consume`
    the file at `path` is the caller's to give away: local storage moves it into place
    instead of copying it (it is gone afterwards, whatever the outcome).
    """
    if context is None:
        context = IngestContext(institution)
        try:
            return _instance_store(
                institution=institution,
                path=path,
                sha256=sha256,
                via=via,
                expected_study_uid=expected_study_uid,
                context=context,
                consume=consume,
            )
        finally:
            context.settle()
    if context.institution.pk != institution.pk:
        raise ValueError("An ingest context serves one institution.")
    outcome = _instance_store(
        institution=institution,
        path=path,
        sha256=sha256,
        via=via,
        expected_study_uid=expected_study_uid,
        context=context,
        consume=consume,
    )
    context.settle_if_due()
    return outcome


def _instance_store(
    *,
    institution: Institution,
    path: Path,
    sha256: str | None,
    via: str,
    expected_study_uid: str | None,
    context: IngestContext,
    consume: bool,
) -> StoreOutcome:
    outcome = StoreOutcome(status="refused")
    try:
        size = path.stat().st_size
        size_check(size)
        ds, metadata = _read(path, size)
        outcome.sop_class_uid = uid_check(ds.get("SOPClassUID"), "SOP Class UID")
        outcome.sop_uid = uid_check(ds.get("SOPInstanceUID"), "SOP Instance UID")
        outcome.study_uid = uid_check(ds.get("StudyInstanceUID"), "Study Instance UID")
        series_uid = uid_check(ds.get("SeriesInstanceUID"), "Series Instance UID")
        meta_sop = str(ds.file_meta.get("MediaStorageSOPInstanceUID", outcome.sop_uid))
        if meta_sop.strip("\x00 ") != outcome.sop_uid:
            raise Refusal(
                DATASET_DOES_NOT_MATCH,
                "The file meta SOP Instance UID differs from the data set's.",
            )
        if expected_study_uid and outcome.study_uid != expected_study_uid:
            raise Refusal(
                DATASET_DOES_NOT_MATCH,
                "The instance belongs to another study than the one in the URL.",
            )
        sha256 = sha256 or file_sha256(path)
        new = _NewInstance(
            ds=ds,
            metadata=metadata,
            sha256=sha256,
            size=size,
            via=via,
            sop_uid=outcome.sop_uid,
            sop_class_uid=outcome.sop_class_uid,
            study_uid=outcome.study_uid,
            series_uid=series_uid,
        )
        # No look-up before the INSERT: a resend is rare, and the unique constraint finds
        # it anyway (then the copy just written is deleted and the first one answered).
        outcome.instance, created = _store_new(institution, path, new, context, consume)
        outcome.status = "stored" if created else "duplicate"
        # A duplicate owes a recount too: it may be the resend of an instance whose first
        # request died before settling its study.
        context.owe(outcome.instance.study_id, outcome.instance.series_id)
        outcome.extra["series_uid"] = outcome.instance.series.series_uid
        outcome.extra["patient_id"] = outcome.instance.study.pid
        return outcome
    except Refusal as refusal:
        outcome.status, outcome.reason, outcome.message = "refused", refusal.reason, refusal.message
        return outcome


@dataclass
class _NewInstance:
    """What the index keeps of a checked instance (UIDs already validated)."""

    ds: Dataset
    metadata: dict[str, Any]
    sha256: str
    size: int
    via: str
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str


def _existing(institution: Institution, sop_uid: str, sha256: str) -> Instance | None:
    found = (
        Instance.objects.select_related("study", "series")
        .filter(institution=institution, sop_uid=sop_uid)
        .first()
    )
    if found is None:
        return None
    if found.sha256 != sha256:
        raise Refusal(
            DUPLICATE_SOP_INSTANCE,
            "An instance with this SOP Instance UID but different content is "
            "already stored; the stored copy was kept.",
        )
    return found


class _PartFile(File):
    """A received file local storage may move into place (Django's TemporaryUploadedFile
    protocol: `temporary_file_path`) instead of copying its bytes once more."""

    def temporary_file_path(self) -> str:
        return str(self.name)


def _store_new(
    institution: Institution,
    path: Path,
    new: _NewInstance,
    context: IngestContext,
    consume: bool = False,
) -> tuple[Instance, bool]:
    """Object first, rows second; any failure of the rows deletes the object again."""
    object_id = uuid.uuid4()
    key = instance_object_key(object_id)
    with path.open("rb") as fp:
        saved = default_storage.save(key, _PartFile(fp, name=str(path)) if consume else File(fp))
    if saved != key:  # storage renamed it: never expected with fresh uuids
        default_storage.delete(saved)
        raise Refusal(PROCESSING_FAILURE, "Storage could not keep the object under its key.")
    # When the request already indexed the study and series, the row is one INSERT, atomic
    # on its own: no BEGIN and COMMIT round trips around it (unless the caller holds a
    # transaction, where a failed INSERT needs its savepoint).
    alone = (
        context.knows(new.study_uid, new.series_uid)
        and not transaction.get_connection().in_atomic_block
    )
    try:
        with contextlib.nullcontext() if alone else transaction.atomic():
            instance = _index(institution, new, object_id, context)
    except IntegrityError:
        # The SOP Instance is held already (sent before, or by another request a moment
        # ago): ours is a copy, or different bytes under its UID.
        context.forget()
        default_storage.delete(key)
        existing = _existing(institution, new.sop_uid, new.sha256)
        if existing is None:
            raise Refusal(PROCESSING_FAILURE, "Could not index the instance.") from None
        return existing, False
    except DataError as exc:
        # A value PostgreSQL will not hold (the checks above should have caught it).
        context.forget()
        default_storage.delete(key)
        logger.warning("Refused an instance the index could not hold: %s", exc)
        raise Refusal(
            CANNOT_UNDERSTAND, "The data set holds a value the index cannot keep."
        ) from exc
    except BaseException:
        context.forget()
        default_storage.delete(key)
        raise
    context.keep_staged()
    return instance, True


def _index(
    institution: Institution,
    new: _NewInstance,
    object_id: uuid.UUID,
    context: IngestContext | None = None,
) -> Instance:
    """The instance's row, in the caller's transaction, with its patient, study and series.

    Those come from `context` when an earlier instance of the request indexed them, else from
    get_or_create. The counters are not touched here (see `IngestContext.settle`); but the
    first instance of a request for a study already held marks it as receiving again in its
    own transaction, so the study is never "stable" while an instance of it is committed.
    """
    context = context or IngestContext(institution)
    ds = new.ds
    now = timezone.now()
    patient, study = None, context.studies.get(new.study_uid)
    if study is None:
        patient, study, study_created = _patient_and_study(institution, new, now, context)
        if not study_created:
            Study.objects.filter(pk=study.pk).update(last_received_at=now, stable_at=None)
    series = context.series.get((study.pk, new.series_uid))
    if series is None:
        series, _created = Series.objects.get_or_create(
            study=study,
            series_uid=new.series_uid,
            defaults={
                "institution": institution,
                "modality": _text(ds, "Modality", 16),
                "series_number": _int(ds, "SeriesNumber"),
                "description": _text(ds, "SeriesDescription", 64),
                "body_part": _text(ds, "BodyPartExamined", 64),
            },
        )
    instance = Instance.objects.create(
        institution=institution,
        study=study,
        series=series,
        sop_uid=new.sop_uid,
        sop_class_uid=new.sop_class_uid,
        instance_number=_int(ds, "InstanceNumber"),
        transfer_syntax_uid=_text(ds.file_meta, "TransferSyntaxUID", 64),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=max(_int(ds, "NumberOfFrames") or 1, 1),
        size_bytes=new.size,
        sha256=new.sha256,
        object_id=object_id,
        metadata=new.metadata,
        received_via=new.via,
        created_at=now,
    )
    context.stage(patient, study, series)
    return instance


def _patient_and_study(
    institution: Institution, new: _NewInstance, now: dt.datetime, context: IngestContext
) -> tuple[Patient | None, Study, bool]:
    ds = new.ds
    pid = _text(ds, "PatientID", 64)
    issuer = _text(ds, "IssuerOfPatientID", 64)
    pname = _text(ds, "PatientName", 324)
    key = patient_key(patient_id=pid, issuer=issuer, site_code=institution.code)
    patient = context.patients.get((issuer, pid))
    if patient is None:
        patient, _ = Patient.objects.get_or_create(
            institution=institution,
            issuer=issuer,
            patient_id=pid,
            defaults={
                "name": pname,
                "birth_date": _date(ds, "PatientBirthDate"),
                "sex": _text(ds, "PatientSex", 16),
                "patient_key": key,
            },
        )
    study, created = Study.objects.get_or_create(
        institution=institution,
        study_uid=new.study_uid,
        defaults={
            "patient": patient,
            "study_date": _date(ds, "StudyDate"),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 16),
            "study_id": _text(ds, "StudyID", 16),
            "description": _text(ds, "StudyDescription", 64),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
            "patient_name": pname,
            "patient_name_search": name_search_form(pname),
            "pid": pid,
            "patient_key": key,
            "received_at": now,
        },
    )
    return patient, study, created


def _merged(values: Any, limit: int = 64) -> str:
    """The distinct non-empty values, sorted, joined as DICOM does ("CT\\SR"), cut short."""
    return "\\".join(sorted({v for v in values if v}))[:limit]


def ingest_audit(
    *, scope: Any, outcomes: list[StoreOutcome], via: str, request: Any = None
) -> None:
    """One audit event per request and study: who sent which instances, with what result."""
    by_study: dict[str, list[StoreOutcome]] = {}
    for outcome in outcomes:
        by_study.setdefault(outcome.study_uid, []).append(outcome)
    for study_uid, items in by_study.items():
        failed = sum(1 for o in items if not o.ok)
        patient_id = next(
            (
                o.instance.study.pid if o.instance else o.extra["patient_id"]
                for o in items
                if o.instance or "patient_id" in o.extra
            ),
            "",
        )
        audit_record(
            event=AuditCode.INSTANCES_STORED,
            action="C",
            scope=scope,
            request=request,
            outcome=0 if not failed else (4 if failed < len(items) else 8),
            study_uid=study_uid,
            patient_id=patient_id,
            object_type="study",
            detail={
                "via": via,
                "stored": sum(1 for o in items if o.status == "stored"),
                "duplicate": sum(1 for o in items if o.status == "duplicate"),
                "refused": failed,
            },
        )
