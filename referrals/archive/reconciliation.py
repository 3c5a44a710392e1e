"""The reconciliation queue: instances the hub kept aside, and what a person decides.

An instance is held when its patient contradicts the study it names, or when its series is
already held under another study (referrals/archive/ingest.py). Nothing of it is filed: its
object waits in storage. A person who may manage the site's archive (tenants/roles.py
ARCHIVE_MANAGE_ROLES) then decides, for the instance and every instance held with it (the
same study named, the same patient sent):

- accept: file it into the study it names, as sent;
- file as a new study: its object is rewritten with a new Study Instance UID (and a new
  Series Instance UID where the site holds its series elsewhere), the old UIDs kept in its
  Original Attributes Sequence, so index, metadata and retrieve agree; the old object goes
  only once the new one is indexed;
- reject: its object is deleted, its row kept with the decision.

Every decision is audited. Instances refused because another data set is stored under their
SOP Instance UID are listed too (kind `conflict`), read-only: the stored copy was kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from referrals.archive.dicom_checks import Refusal
from referrals.archive.ingest import held_object_index
from referrals.archive.patient_match import PatientAttributes, patient_differences
from referrals.identity.issuers import patient_id_issuer
from referrals.models import HeldInstance, Instance, Patient, Series, Study, instance_object_key
from tenants import access
from tenants.access import Scope
from tenants.audit import AuditCode, AuditObject, audit_record
from tenants.roles import ARCHIVE_MANAGE_ROLES

# UIDs made when a held instance is filed as a new study: derived from what it was sent
# with, so every instance of that patient's study (held now or later) lands in one new study.
UID_ROOT = "1.2.826.0.1.3680043.10.1342.9."
MODIFYING_SYSTEM = "ALLIANCE HUB"


class ReconciliationError(Exception):
    """A decision that cannot be carried out; the message says why, in the caller's language."""


@dataclass(frozen=True)
class HeldGroup:
    """Open held instances that one decision resolves together: one study named, one patient."""

    first: HeldInstance
    count: int
    study_patient: PatientAttributes | None

    @property
    def sent_patient(self) -> PatientAttributes:
        return _sent_patient(self.first)


# --- Selectors ---------------------------------------------------------------------------


def held_instances_for_user(*, scope: Scope) -> QuerySet[HeldInstance]:
    """Every queue row of the caller's active institution they may see (open and resolved)."""
    return access.visible(scope, HeldInstance).select_related(
        "study", "study__patient", "resolved_by"
    )


def held_instance_for_user(*, scope: Scope, pk: Any) -> HeldInstance:
    return access.get_visible_or_404(
        scope, HeldInstance.objects.select_related("study", "study__patient"), pk=pk
    )


def held_groups_for_user(*, scope: Scope) -> list[HeldGroup]:
    """The open queue, one entry per decision to make, oldest first."""
    groups: dict[tuple[str, ...], list[HeldInstance]] = {}
    rows = held_instances_for_user(scope=scope).filter(resolved_at__isnull=True)
    for row in rows.order_by("created_at", "pk"):
        groups.setdefault(_group_key(row), []).append(row)
    return [
        HeldGroup(
            first=items[0],
            count=len(items),
            study_patient=_held_against(items[0]),
        )
        for items in groups.values()
    ]


def _held_against(row: HeldInstance) -> PatientAttributes | None:
    """The patient a row contradicts: its study's, or the patient record under its ID."""
    if row.kind == HeldInstance.Kind.PATIENT_RECORD:
        record = patient_record_of(row)
        return PatientAttributes.of_patient(record) if record else None
    return PatientAttributes.of_patient(row.study.patient) if row.study else None


def held_conflicts_for_user(*, scope: Scope, limit: int = 50) -> list[HeldInstance]:
    """The latest instances refused as conflicts (read-only entries)."""
    rows = held_instances_for_user(scope=scope).filter(kind=HeldInstance.Kind.CONFLICT)
    return list(rows.order_by("-created_at", "-pk")[:limit])


def held_group_members(held: HeldInstance) -> QuerySet[HeldInstance]:
    """The open rows one decision about `held` resolves (itself among them)."""
    return HeldInstance.objects.filter(
        institution_id=held.institution_id,
        resolved_at__isnull=True,
        kind=held.kind,
        study_uid=held.study_uid,
        patient_id=held.patient_id,
        issuer=held.issuer,
        patient_name=held.patient_name,
        birth_date=held.birth_date,
        sex=held.sex,
    ).order_by("pk")


def _group_key(row: HeldInstance) -> tuple[str, ...]:
    return (
        row.kind,
        row.study_uid,
        row.patient_id,
        row.issuer,
        row.patient_name,
        row.birth_date,
        row.sex,
    )


def _sent_patient(row: HeldInstance) -> PatientAttributes:
    return PatientAttributes(
        patient_id=row.patient_id,
        issuer=row.issuer,
        name=row.patient_name,
        birth_date=row.birth_date,
        sex=row.sex,
    )


# --- Services ----------------------------------------------------------------------------


@dataclass
class Resolution:
    """What one decision did."""

    decision: str
    resolved: int
    study_uid: str
    instances: list[Instance]


def held_instance_accept(
    *, scope: Scope, held: HeldInstance, request: HttpRequest | None = None
) -> Resolution:
    """File the held instances into the study they name, as they were sent."""
    _check_may_resolve(scope, held)
    filed: list[Instance] = []
    for row in _claimed(held):
        with transaction.atomic(), _local_copy(row) as path:
            if not _lock_open(row):
                continue
            instance = _file(row, path, row.object_id)
            _close(row, scope, HeldInstance.Decision.ACCEPTED, instance=instance)
        filed.append(instance)
    resolved = len(filed)
    _audit(scope, request, held, HeldInstance.Decision.ACCEPTED, resolved, held.study_uid)
    return Resolution(HeldInstance.Decision.ACCEPTED, resolved, held.study_uid, filed)


def held_instance_file_as_new_study(
    *, scope: Scope, held: HeldInstance, request: HttpRequest | None = None
) -> Resolution:
    """Rewrite the held instances with a new Study Instance UID and file them there."""
    _check_may_resolve(scope, held)
    if held.kind == HeldInstance.Kind.PATIENT_RECORD:
        raise ReconciliationError(
            _("Its study is new: file it as a new patient, accept it or reject it.")
        )
    new_study_uid = _derived_uid(held, "study", held.study_uid)
    filed: list[Instance] = []
    for row in _claimed(held):
        new_series_uid = _new_series_uid(row, new_study_uid)
        changes = {"StudyInstanceUID": new_study_uid}
        if new_series_uid != row.series_uid:
            changes["SeriesInstanceUID"] = new_series_uid
        instance = _file_rewritten(
            row, scope, changes, HeldInstance.Decision.NEW_STUDY, new_study=new_study_uid
        )
        if instance is not None:
            filed.append(instance)
    resolved = len(filed)
    _audit(scope, request, held, HeldInstance.Decision.NEW_STUDY, resolved, new_study_uid)
    return Resolution(HeldInstance.Decision.NEW_STUDY, resolved, new_study_uid, filed)


def held_instance_file_as_new_patient(
    *, scope: Scope, held: HeldInstance, request: HttpRequest | None = None
) -> Resolution:
    """File instances held against a patient record as another person's: a new patient
    record under the same Patient ID and a derived issuer (see `_new_patient_issuer`)."""
    _check_may_resolve(scope, held)
    if held.kind != HeldInstance.Kind.PATIENT_RECORD:
        raise ReconciliationError(
            _("Only an instance held against the patient record can be filed as a new patient.")
        )
    issuer = _new_patient_issuer(held)
    taken = (
        Study.objects.filter(institution_id=held.institution_id, study_uid=held.study_uid)
        .exclude(patient__issuer=issuer)
        .exists()
    )
    if taken:
        raise ReconciliationError(
            _("A study with this Study Instance UID has been filed meanwhile: reject instead.")
        )
    filed: list[Instance] = []
    for row in _claimed(held):
        instance = _file_rewritten(
            row, scope, {"IssuerOfPatientID": issuer}, HeldInstance.Decision.NEW_PATIENT
        )
        if instance is not None:
            filed.append(instance)
    resolved = len(filed)
    _audit(scope, request, held, HeldInstance.Decision.NEW_PATIENT, resolved, held.study_uid)
    return Resolution(HeldInstance.Decision.NEW_PATIENT, resolved, held.study_uid, filed)


def _file_rewritten(
    row: HeldInstance,
    scope: Scope,
    changes: dict[str, str],
    decision: str,
    *,
    new_study: str = "",
) -> Instance | None:
    """Rewrite the row's object with `changes`, store and index the copy, close the row;
    None when another person decided first."""
    with transaction.atomic(), _local_copy(row) as path:
        if not _lock_open(row):
            return None
        _rewrite(path, changes)
        object_id = uuid.uuid4()
        key = instance_object_key(object_id)
        with path.open("rb") as fp:
            saved = default_storage.save(key, File(fp))
        if saved != key:
            default_storage.delete(saved)
            raise ReconciliationError(_("Storage could not keep the rewritten instance."))
        try:
            instance = _file(row, path, object_id)
            _close(row, scope, decision, instance=instance, new_study=new_study)
        except BaseException:
            default_storage.delete(key)
            raise
        # The original object goes only once the rewritten one is stored and indexed.
        old_key = row.object_key
        transaction.on_commit(partial(default_storage.delete, old_key))
    return instance


def patient_record_of(held: HeldInstance) -> Patient | None:
    """The patient record a `patient_record` hold contradicts: the site's row under its
    Patient ID and issuer (the site's configured issuer when none was sent)."""
    issuer = held.issuer or patient_id_issuer(institution_id=held.institution_id)
    return Patient.objects.filter(
        institution_id=held.institution_id, issuer=issuer, patient_id=held.patient_id
    ).first()


def _new_patient_issuer(held: HeldInstance) -> str:
    """The issuer of the new record: the ID's issuer (or the site's code) + "~2", "~3"...

    The Patient ID itself is kept, so a search by the ID the clinic wrote on the request
    finds both people, told apart by name and issuer. The same person filed again later
    lands in the same record: a derived record whose demographics agree is reused.
    """
    base = held.issuer or patient_id_issuer(institution_id=held.institution_id)
    base = base or held.institution.code
    sent = _sent_patient(held)
    rows = Patient.objects.filter(
        institution_id=held.institution_id,
        patient_id=held.patient_id,
        issuer__startswith=f"{base}~",
    ).order_by("pk")
    used: set[int] = set()
    for row in rows:
        suffix = row.issuer[len(base) + 1 :]
        if not suffix.isdigit():
            continue
        as_filed = dataclasses.replace(sent, issuer=row.issuer)
        if not patient_differences(as_filed, PatientAttributes.of_patient(row)):
            return row.issuer
        used.add(int(suffix))
    number = max(used, default=1) + 1
    return f"{base[: 64 - len(str(number)) - 1]}~{number}"


def held_instance_reject(
    *, scope: Scope, held: HeldInstance, request: HttpRequest | None = None
) -> Resolution:
    """Delete the held instances' objects; their rows stay with the decision."""
    _check_may_resolve(scope, held)
    resolved = 0
    for row in _claimed(held):
        with transaction.atomic():
            if not _lock_open(row):
                continue
            _close(row, scope, HeldInstance.Decision.REJECTED)
            if row.object_id is not None:
                key = row.object_key
                transaction.on_commit(partial(default_storage.delete, key))
        resolved += 1
    _audit(scope, request, held, HeldInstance.Decision.REJECTED, resolved, held.study_uid)
    return Resolution(HeldInstance.Decision.REJECTED, resolved, held.study_uid, [])


# --- Steps -------------------------------------------------------------------------------


def _check_may_resolve(scope: Scope, held: HeldInstance) -> None:
    if not scope.has_any_role(*ARCHIVE_MANAGE_ROLES) or scope.institution is None:
        raise ReconciliationError(_("Your role at the active institution does not allow this."))
    if held.institution_id != scope.institution.pk:
        raise ReconciliationError(_("This held instance belongs to another institution."))
    if held.kind == HeldInstance.Kind.CONFLICT:
        raise ReconciliationError(
            _("A refused conflict is listed for information only: the stored copy was kept.")
        )
    if held.resolved_at is not None:
        raise ReconciliationError(_("Someone has already decided about this held instance."))


def _claimed(held: HeldInstance) -> list[HeldInstance]:
    return list(held_group_members(held).select_related("institution"))


def _lock_open(row: HeldInstance) -> bool:
    """Lock the row for this decision; False if another person decided first."""
    return (
        HeldInstance.objects.select_for_update()
        .filter(pk=row.pk, resolved_at__isnull=True)
        .exists()
    )


@contextmanager
def _local_copy(row: HeldInstance) -> Iterator[Path]:
    """The held object as a local file (storage may be S3), removed afterwards."""
    if row.object_id is None:
        raise ReconciliationError(_("The held instance's object is no longer stored."))
    with tempfile.TemporaryDirectory(prefix="held-") as folder:
        path = Path(folder) / "instance.dcm"
        try:
            with default_storage.open(row.object_key, "rb") as source, path.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except OSError as exc:
            raise ReconciliationError(
                _("The held instance's object could not be read from storage.")
            ) from exc
        yield path


def _file(row: HeldInstance, path: Path, object_id: uuid.UUID | None) -> Instance:
    assert object_id is not None
    try:
        return held_object_index(
            institution=row.institution, path=path, object_id=object_id, via=row.received_via
        )
    except IntegrityError as exc:
        raise ReconciliationError(
            _(
                "An instance with this SOP Instance UID has been stored meanwhile: reject "
                "the held copy instead."
            )
        ) from exc
    except Refusal as exc:
        raise ReconciliationError(_("The held instance could not be read again.")) from exc


def _close(
    row: HeldInstance,
    scope: Scope,
    decision: str,
    *,
    instance: Instance | None = None,
    new_study: str = "",
) -> None:
    """Record the decision on a row this transaction has locked open."""
    HeldInstance.objects.filter(pk=row.pk).update(
        resolved_at=timezone.now(),
        resolved_by=scope.user,
        decision=decision,
        instance=instance,
        new_study_uid=new_study,
    )


def _derived_uid(held: HeldInstance, what: str, old_uid: str) -> str:
    sources = [
        what,
        str(held.institution_id),
        old_uid,
        held.patient_id,
        held.issuer,
        held.patient_name,
        held.birth_date,
        held.sex,
    ]
    return generate_uid(prefix=UID_ROOT, entropy_srcs=sources)


def _new_series_uid(row: HeldInstance, new_study_uid: str) -> str:
    """The series keeps its UID unless the site holds it under another study already."""
    elsewhere = (
        Series.objects.filter(institution_id=row.institution_id, series_uid=row.series_uid)
        .exclude(study__study_uid=new_study_uid)
        .exists()
    )
    if not elsewhere:
        return row.series_uid
    return _derived_uid(row, "series", row.series_uid)


def _rewrite(path: Path, changes: dict[str, str]) -> None:
    """Apply `changes` to the file at `path`, the replaced values kept in its Original
    Attributes Sequence (PS3.3 C.12.1.1.9)."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ReconciliationError(_("The held instance could not be read again.")) from exc
    modified = Dataset()
    for keyword in changes:
        setattr(modified, keyword, ds.get(keyword, ""))
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([modified])
    item.AttributeModificationDateTime = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.ReasonForTheAttributeModification = "CORRECT"
    original = list(ds.get("OriginalAttributesSequence", []))
    ds.OriginalAttributesSequence = Sequence([*original, item])
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _audit(
    scope: Scope,
    request: HttpRequest | None,
    held: HeldInstance,
    decision: str,
    resolved: int,
    study_uid: str,
) -> None:
    audit_record(
        event=AuditCode.INSTANCE_RECONCILED,
        action="U" if decision != HeldInstance.Decision.REJECTED else "D",
        scope=scope,
        request=request,
        patient_id=held.patient_id,
        study_uid=study_uid,
        object_type=AuditObject.HELD_INSTANCE,
        object_id=held.pk,
        detail={
            "decision": decision,
            "resolved": resolved,
            "study_named": held.study_uid,
            "kind": held.kind,
            "differences": held.differences,
        },
    )
