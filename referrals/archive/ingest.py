"""Storing one received DICOM instance: check it, keep its bytes, index it — atomically.

The bytes go to object storage first, under a key made from a fresh server id; the rows
follow in one transaction. If the transaction fails the object is deleted, so a row exists
if and only if its object exists (`manage.py reconcile_storage` proves it after a crash).
Sending the same SOP Instance again with the same data set is a success that stores nothing,
whatever its file meta says (another route, another calling AE: see digests.py); a different
data set under its UID is refused and the first copy is kept. An instance whose patient
contradicts the study it names, or whose series is held under another study, is kept aside
in the reconciliation queue for a person to decide (reconciliation.py), never filed there.

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
from django.db import DataError, IntegrityError, models, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DEFLATED_TS,
    DUPLICATE_SOP_INSTANCE,
    HELD_FOR_RECONCILIATION,
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
from referrals.archive.digests import canonical_dataset_digest, stream_digests
from referrals.archive.held_notify import CONFLICT, HELD, held_notification_send
from referrals.archive.patient_key import patient_key
from referrals.archive.patient_match import (
    DIFFERENCE_LABELS,
    SERIES_STUDY,
    PatientAttributes,
    patient_differences,
)
from referrals.identity.issuers import issuer_metadata_coerced, patient_id_issuer
from referrals.models import (
    HeldInstance,
    Instance,
    Patient,
    Series,
    Study,
    instance_object_key,
)
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

    status: str  # "stored" | "duplicate" | "held" | "refused"
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


def file_digests(path: Path) -> tuple[str, str]:
    """(SHA-256 of the file, SHA-256 of its data set without file meta), one read."""
    with path.open("rb") as fp:
        return stream_digests(fp)


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
            raise Refusal(
                CANNOT_UNDERSTAND, gettext_lazy("Not a readable DICOM file: %(why)s"), why=exc
            ) from exc
        except RecursionError as exc:
            raise Refusal(
                CANNOT_UNDERSTAND, gettext_lazy("Sequences are nested too deeply.")
            ) from exc
        except Exception as exc:  # pydicom raises many kinds on malformed input
            raise Refusal(
                CANNOT_UNDERSTAND,
                gettext_lazy("Malformed DICOM data: %(kind)s"),
                kind=exc.__class__.__name__,
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
        raise Refusal(
            CANNOT_UNDERSTAND, gettext_lazy("The file meta information has no group length.")
        )
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
    # The patient of each study met so far, as compared with every further instance of it.
    study_patients: dict[int, PatientAttributes] = field(default_factory=dict)
    # The gateway credential that sent the request, whose issuer of patient IDs may apply.
    gateway_id: int | None = None
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
        self.study_patients.clear()
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
            # Rejected instances (IHE IOCM) are no longer part of the study's figures.
            for row in Instance.objects.filter(study_id=study_pk, rejected_at__isnull=True)
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
    dataset_sha256: str | None = None,
    via: str,
    expected_study_uid: str | None = None,
    actor: Any = None,
    context: IngestContext | None = None,
    consume: bool = False,
) -> StoreOutcome:
    """Store the DICOM file at `path` for `institution`. Never raises for bad input.

    `context` carries rows from one instance to the next within a request. With `consume`
    the file at `path` is the caller's to give away: local storage moves it into place
    instead of copying it (it is gone afterwards, whatever the outcome). `sha256` and
    `dataset_sha256` are the file's digests when the caller hashed it on arrival.
    """
    if context is None:
        context = IngestContext(institution)
        try:
            return _instance_store(
                institution=institution,
                path=path,
                sha256=sha256,
                dataset_sha256=dataset_sha256,
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
        dataset_sha256=dataset_sha256,
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
    dataset_sha256: str | None,
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
                gettext_lazy("The file meta SOP Instance UID differs from the data set's."),
            )
        if expected_study_uid and outcome.study_uid != expected_study_uid:
            raise Refusal(
                DATASET_DOES_NOT_MATCH,
                gettext_lazy("The instance belongs to another study than the one in the URL."),
            )
        if not sha256 or dataset_sha256 is None:
            sha256, dataset_sha256 = file_digests(path)
        new = _NewInstance(
            ds=ds,
            metadata=metadata,
            sha256=sha256,
            # A file without a file meta group length: its whole bytes stand for its data set.
            dataset_sha256=dataset_sha256 or sha256,
            size=size,
            via=via,
            sop_uid=outcome.sop_uid,
            sop_class_uid=outcome.sop_class_uid,
            study_uid=outcome.study_uid,
            series_uid=series_uid,
            transfer_syntax_uid=_text(ds.file_meta, "TransferSyntaxUID", 64),
        )
        # No look-up before the INSERT: a resend is rare, and the unique constraint finds
        # it anyway (then the copy just written is deleted and the first one answered).
        stored = _store_new(institution, path, new, context, consume)
        if isinstance(stored, HeldInstance):
            outcome.status = "held"
            outcome.reason = HELD_FOR_RECONCILIATION
            outcome.message = held_message(stored)
            outcome.extra.update(
                series_uid=series_uid, patient_id=stored.patient_id, held_id=stored.pk
            )
            return outcome
        outcome.instance, created = stored
        outcome.status = "stored" if created else "duplicate"
        # A duplicate owes a recount too: it may be the resend of an instance whose first
        # request died before settling its study.
        context.owe(outcome.instance.study_id, outcome.instance.series_id)
        outcome.extra["series_uid"] = outcome.instance.series.series_uid
        outcome.extra["patient_id"] = outcome.instance.study.pid
        return outcome
    except Refusal as refusal:
        outcome.status, outcome.reason, outcome.message = "refused", refusal.reason, refusal.message
        if isinstance(refusal, _Conflict):
            outcome.extra["conflict_id"] = refusal.conflict_id
        return outcome


def held_object_index(
    *, institution: Institution, path: Path, object_id: uuid.UUID, via: str
) -> Instance:
    """File the stored object at `path` (a local copy of the object `object_id`) as it is:
    a person decided, so the checks that held it are not made again. Raises Refusal if the
    object no longer reads, IntegrityError if its SOP Instance UID was stored meanwhile."""
    size = path.stat().st_size
    ds, metadata = _read(path, size)
    sha256, dataset_sha256 = file_digests(path)
    new = _NewInstance(
        ds=ds,
        metadata=metadata,
        sha256=sha256,
        dataset_sha256=dataset_sha256 or sha256,
        size=size,
        via=via,
        sop_uid=uid_check(ds.get("SOPInstanceUID"), "SOP Instance UID"),
        sop_class_uid=uid_check(ds.get("SOPClassUID"), "SOP Class UID"),
        study_uid=uid_check(ds.get("StudyInstanceUID"), "Study Instance UID"),
        series_uid=uid_check(ds.get("SeriesInstanceUID"), "Series Instance UID"),
        transfer_syntax_uid=_text(ds.file_meta, "TransferSyntaxUID", 64),
    )
    context = IngestContext(institution)
    with transaction.atomic():
        instance = _index(institution, new, object_id, context, checked=False)
    context.owe(instance.study_id, instance.series_id)
    context.settle()
    return instance


def held_message(held: HeldInstance) -> str:
    """The sentence a sender reads, in the request's language (English for a program)."""
    if held.kind == HeldInstance.Kind.PATIENT_RECORD:
        differing = ", ".join(str(DIFFERENCE_LABELS.get(d, d)) for d in held.differences)
        return str(
            gettext_lazy(
                "Held for review, not filed: its patient (%(differing)s) contradicts the "
                "patient already held under this Patient ID. A person at the site will decide; "
                "do not send it again."
            )
            % {"differing": differing}
        )
    if held.kind == HeldInstance.Kind.SERIES:
        return str(
            gettext_lazy(
                "Held for review, not filed: its series is already held under another "
                "study. A person at the site will decide; do not send it again."
            )
        )
    differing = ", ".join(str(DIFFERENCE_LABELS.get(d, d)) for d in held.differences)
    return str(
        gettext_lazy(
            "Held for review, not filed: its patient (%(differing)s) contradicts the study "
            "already held under this Study Instance UID. A person at the site will decide; "
            "do not send it again."
        )
    ) % {"differing": differing}


class _Conflict(Refusal):
    """A different data set under a stored SOP Instance UID; reported in the queue."""

    def __init__(self, message: Any, conflict_id: int | None) -> None:
        super().__init__(DUPLICATE_SOP_INSTANCE, message)
        self.conflict_id = conflict_id


class _Held(Exception):  # noqa: N818 - a control signal inside the index transaction
    """The instance contradicts a study already held: keep it aside, file nothing."""

    def __init__(self, kind: str, study: Study | None, differences: list[str]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.study = study
        self.differences = differences


@dataclass
class _NewInstance:
    """What the index keeps of a checked instance (UIDs already validated)."""

    ds: Dataset
    metadata: dict[str, Any]
    sha256: str
    dataset_sha256: str
    size: int
    via: str
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str = ""

    @property
    def patient(self) -> PatientAttributes:
        return _patient_attributes(self.ds)


def _existing(institution: Institution, new: _NewInstance, new_key: str) -> Instance | None:
    """The stored instance `new` resends, or None; a _Conflict if it is another data set.

    Judged on the data set, not the file: the same bytes, else the same data set bytes, else
    (when the two copies use different transfer syntaxes) the same canonical data set.
    """
    found = (
        Instance.objects.select_related("study", "series")
        .filter(institution=institution, sop_uid=new.sop_uid)
        .first()
    )
    if found is None:
        return None
    if found.sha256 == new.sha256 or _stored_dataset_digest(found) == new.dataset_sha256:
        return found
    if found.transfer_syntax_uid != new.transfer_syntax_uid and _same_canonical(
        found.object_key, new_key
    ):
        return found
    raise _conflict(institution, new, found.study_id)


def _stored_dataset_digest(instance: Instance) -> str:
    """The stored object's data set digest; computed once for rows indexed before it was
    kept (they have it blank), then saved on the row."""
    if instance.dataset_sha256:
        return instance.dataset_sha256
    try:
        with default_storage.open(instance.object_key, "rb") as fp:
            file_digest, digest = stream_digests(fp)
    except OSError:
        return ""
    if file_digest != instance.sha256:
        return ""  # the row no longer describes this object (a rewrite in flight)
    digest = digest or file_digest
    Instance.objects.filter(pk=instance.pk, dataset_sha256="").update(dataset_sha256=digest)
    instance.dataset_sha256 = digest
    return digest


def _same_canonical(stored_key: str, new_key: str) -> bool:
    try:
        with default_storage.open(stored_key, "rb") as fp:
            stored = canonical_dataset_digest(fp)
        with default_storage.open(new_key, "rb") as fp:
            sent = canonical_dataset_digest(fp)
    except OSError:
        return False
    return stored is not None and stored == sent


def _conflict(institution: Institution, new: _NewInstance, study_id: int | None) -> _Conflict:
    """Report a different data set under a stored UID in the site's queue (read-only)."""
    row = HeldInstance.objects.filter(
        institution=institution,
        kind=HeldInstance.Kind.CONFLICT,
        sop_uid=new.sop_uid,
        dataset_sha256=new.dataset_sha256,
    ).first()
    if row is not None:
        HeldInstance.objects.filter(pk=row.pk).update(resent=models.F("resent") + 1)
    else:
        now = timezone.now()
        row = HeldInstance.objects.create(
            **_held_row(institution, new),
            kind=HeldInstance.Kind.CONFLICT,
            study_id=study_id,
            created_at=now,
            resolved_at=now,
            decision=HeldInstance.Decision.REFUSED,
        )
    return _Conflict(
        gettext_lazy(
            "An instance with this SOP Instance UID but different content (another data "
            "set, not just other file meta) is already stored; the stored copy was kept and "
            "the site's administrators can see this one in the reconciliation queue."
        ),
        row.pk,
    )


def _patient_attributes(ds: Dataset) -> PatientAttributes:
    return PatientAttributes(
        patient_id=_text(ds, "PatientID", 64),
        issuer=_text(ds, "IssuerOfPatientID", 64),
        name=_text(ds, "PatientName", 324),
        birth_date=_text(ds, "PatientBirthDate", 16),
        sex=_text(ds, "PatientSex", 16),
    )


def _hold(
    institution: Institution, new: _NewInstance, object_id: uuid.UUID, held: _Held
) -> HeldInstance:
    """The held instance's row (its object stays where it was written)."""
    return HeldInstance.objects.create(
        **_held_row(institution, new),
        kind=held.kind,
        study=held.study,
        differences=held.differences,
        object_id=object_id,
    )


def _held_row(institution: Institution, new: _NewInstance) -> dict[str, Any]:
    """What every held row (hold or conflict) records of the instance as it arrived."""
    attrs = new.patient
    return {
        "institution": institution,
        "sop_uid": new.sop_uid,
        "sop_class_uid": new.sop_class_uid,
        "study_uid": new.study_uid,
        "series_uid": new.series_uid,
        "transfer_syntax_uid": new.transfer_syntax_uid,
        "patient_id": attrs.patient_id,
        "issuer": attrs.issuer,
        "patient_name": attrs.name,
        "birth_date": attrs.birth_date,
        "sex": attrs.sex,
        "received_via": new.via,
        "size_bytes": new.size,
        "sha256": new.sha256,
        "dataset_sha256": new.dataset_sha256,
        "metadata": new.metadata,
    }


def _held_again(institution: Institution, new: _NewInstance) -> HeldInstance:
    """A resend of an instance still held: the same answer, or a conflict."""
    held = HeldInstance.objects.filter(
        institution=institution, sop_uid=new.sop_uid, resolved_at__isnull=True
    ).first()
    if held is None:
        raise Refusal(
            PROCESSING_FAILURE, gettext_lazy("Could not hold the instance; send it again.")
        )
    if held.sha256 != new.sha256 and held.dataset_sha256 != new.dataset_sha256:
        raise _conflict(institution, new, held.study_id)
    HeldInstance.objects.filter(pk=held.pk).update(resent=models.F("resent") + 1)
    return held


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
) -> tuple[Instance, bool] | HeldInstance:
    """Object first, rows second; any failure of the rows deletes the object again.

    A held instance keeps its object, named by its HeldInstance row instead.
    """
    object_id = uuid.uuid4()
    key = instance_object_key(object_id)
    with path.open("rb") as fp:
        saved = default_storage.save(key, _PartFile(fp, name=str(path)) if consume else File(fp))
    if saved != key:  # storage renamed it: never expected with fresh uuids
        default_storage.delete(saved)
        raise Refusal(
            PROCESSING_FAILURE, gettext_lazy("Storage could not keep the object under its key.")
        )
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
    except _Held as held:
        # Nothing of this instance was filed (the transaction rolled back); it is kept aside.
        return _store_held(institution, new, key, object_id, held)
    except IntegrityError:
        # The SOP Instance is held already (sent before, or by another request a moment
        # ago): ours is a copy, or a different data set under its UID.
        context.forget()
        try:
            existing = _existing(institution, new, key)
        finally:
            default_storage.delete(key)
        if existing is None:
            raise Refusal(
                PROCESSING_FAILURE, gettext_lazy("Could not index the instance.")
            ) from None
        return existing, False
    except DataError as exc:
        # A value PostgreSQL will not hold (the checks above should have caught it).
        context.forget()
        default_storage.delete(key)
        logger.warning("Refused an instance the index could not hold: %s", exc)
        raise Refusal(
            CANNOT_UNDERSTAND, gettext_lazy("The data set holds a value the index cannot keep.")
        ) from exc
    except BaseException:
        context.forget()
        default_storage.delete(key)
        raise
    context.keep_staged()
    return instance, True


def _store_held(
    institution: Institution, new: _NewInstance, key: str, object_id: uuid.UUID, held: _Held
) -> HeldInstance | tuple[Instance, bool]:
    """Keep a contradicting instance aside (its object stays), once per SOP Instance UID.

    Only on this path is the UID looked up: an instance already stored under it makes this a
    resend (the same data set) or a conflict, never a hold.
    """
    keep = False
    try:
        existing = _existing(institution, new, key)
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                row = _hold(institution, new, object_id, held)
        except IntegrityError:
            return _held_again(institution, new)
        keep = True
        return row
    finally:
        if not keep:
            default_storage.delete(key)


def _index(
    institution: Institution,
    new: _NewInstance,
    object_id: uuid.UUID,
    context: IngestContext | None = None,
    *,
    checked: bool = True,
) -> Instance:
    """The instance's row, in the caller's transaction, with its patient, study and series.

    With `checked` (always, but for a held instance a person decided to file as it is) an
    instance whose patient contradicts the study, or whose series another study holds,
    raises _Held instead.

    Those come from `context` when an earlier instance of the request indexed them, else from
    get_or_create. The counters are not touched here (see `IngestContext.settle`); but the
    first instance of a request for a study already held marks it as receiving again in its
    own transaction, so the study is never "stable" while an instance of it is committed.
    """
    context = context or IngestContext(institution)
    ds = new.ds
    now = timezone.now()
    patient, study, study_created = None, context.studies.get(new.study_uid), False
    if study is None:
        patient, study, study_created = _patient_and_study(
            institution, new, now, context, checked=checked
        )
    if not study_created and checked:
        # One comparison in Python per instance: the study's patient is cached in `context`.
        _patient_check(study, new, context)
    series = context.series.get((study.pk, new.series_uid))
    if series is None:
        series = _series(institution, study, new, checked=checked)
    if not study_created and new.study_uid not in context.studies:
        Study.objects.filter(pk=study.pk).update(last_received_at=now, stable_at=None)
    instance = Instance.objects.create(
        institution=institution,
        study=study,
        series=series,
        sop_uid=new.sop_uid,
        sop_class_uid=new.sop_class_uid,
        instance_number=_int(ds, "InstanceNumber"),
        transfer_syntax_uid=new.transfer_syntax_uid,
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=max(_int(ds, "NumberOfFrames") or 1, 1),
        size_bytes=new.size,
        sha256=new.sha256,
        dataset_sha256=new.dataset_sha256,
        object_id=object_id,
        metadata=issuer_metadata_coerced(new.metadata, new.ds, study),
        received_via=new.via,
        created_at=now,
    )
    context.stage(patient, study, series)
    return instance


def _patient_check(study: Study, new: _NewInstance, context: IngestContext) -> None:
    held = context.study_patients.get(study.pk)
    if held is None:
        held = context.study_patients[study.pk] = PatientAttributes.of_patient(study.patient)
    differences = patient_differences(new.patient, held)
    if differences:
        raise _Held(HeldInstance.Kind.PATIENT, study, differences)


def _series(
    institution: Institution, study: Study, new: _NewInstance, *, checked: bool = True
) -> Series:
    """The study's series row; a _Held if the site holds this series under another study.

    One query either way (the site's series by UID), as the plain get_or_create was.
    """
    rows = list(
        Series.objects.filter(institution=institution, series_uid=new.series_uid)
        .select_related("study")
        .order_by("pk")
    )
    for row in rows:
        if row.study_id == study.pk:
            return row
    if rows and checked:
        raise _Held(HeldInstance.Kind.SERIES, rows[0].study, [SERIES_STUDY])
    ds = new.ds
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
    return series


def _patient_and_study(
    institution: Institution,
    new: _NewInstance,
    now: dt.datetime,
    context: IngestContext,
    *,
    checked: bool = True,
) -> tuple[Patient | None, Study, bool]:
    """The study the instance names, with its patient; created (with the instance's patient)
    when the site does not hold it yet. A study already held is returned as it is: the
    caller compares its patient with the instance's, and no patient row is made for an
    instance that may be held."""
    held = (
        Study.objects.select_related("patient")
        .filter(institution=institution, study_uid=new.study_uid)
        .first()
    )
    if held is not None:
        return None, held, False
    ds = new.ds
    pid = _text(ds, "PatientID", 64)
    # No issuer sent: the gateway's or the site's configured one (referrals/identity/issuers).
    issuer = _text(ds, "IssuerOfPatientID", 64) or patient_id_issuer(
        institution_id=institution.pk, gateway_id=context.gateway_id
    )
    pname = _text(ds, "PatientName", 324)
    key = patient_key(patient_id=pid, issuer=issuer, site_code=institution.code)
    patient = context.patients.get((issuer, pid))
    created = False
    if patient is None:
        patient, created = Patient.objects.get_or_create(
            institution=institution,
            issuer=issuer,
            patient_id=pid,
            defaults={
                "name": pname,
                "birth_date": _date(ds, "PatientBirthDate"),
                "sex": _text(ds, "PatientSex", 16),
                "patient_key": key,
                "own_key": key,
            },
        )
    if not created and checked:
        # A known patient ID in a new study: its demographics must not contradict the
        # patient record (one comparison in Python, on the row get_or_create returned).
        sent = PatientAttributes(
            pid, issuer, pname, _text(ds, "PatientBirthDate", 16), _text(ds, "PatientSex", 16)
        )
        differences = patient_differences(sent, PatientAttributes.of_patient(patient))
        if differences:
            raise _Held(HeldInstance.Kind.PATIENT_RECORD, None, differences)
    study, created = Study.objects.select_related("patient").get_or_create(
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
            # The key of the patient's linked set (the master patient index), not its own.
            "patient_key": patient.patient_key,
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
                "refused": sum(1 for o in items if o.status == "refused"),
                # Only when some were: the usual event keeps its usual shape.
                **({"held": held} if (held := sum(o.status == "held" for o in items)) else {}),
            },
        )
        _reconciliation_audit(scope=scope, request=request, study_uid=study_uid, items=items)


def _reconciliation_audit(*, scope: Any, request: Any, study_uid: str, items: list[Any]) -> None:
    """Instances held for a person, and data sets refused as conflicts: one event each kind
    per request and study, naming the queue rows."""
    for event, key in (
        (AuditCode.INSTANCE_HELD, "held_id"),
        (AuditCode.INSTANCE_CONFLICT, "conflict_id"),
    ):
        rows = [o for o in items if key in o.extra]
        if not rows:
            continue
        _deciders_notify(study_uid=study_uid, key=key, rows=rows)
        audit_record(
            event=event,
            action="C",
            scope=scope,
            request=request,
            outcome=4,
            study_uid=study_uid,
            patient_id=rows[0].extra.get("patient_id", ""),
            object_type="held_instance",
            object_id=rows[0].extra[key],
            detail={
                "rows": sorted({o.extra[key] for o in rows}),
                "sop_uids": [o.sop_uid for o in rows][:50],
            },
        )


def _deciders_notify(*, study_uid: str, key: str, rows: list[Any]) -> None:
    """One notice per study and hour to the people who resolve the site's queue."""
    held = HeldInstance.objects.select_related("institution").filter(pk=rows[0].extra[key])
    row = held.first()
    if row is None:
        return
    code = HELD if key == "held_id" else CONFLICT
    held_notification_send(
        institution=row.institution, study_uid=study_uid, code=code, count=len(rows)
    )
