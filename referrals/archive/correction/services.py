"""Correcting stored studies (IHE IOCM): edit attributes, merge, split, move series, reject.

Each change is a `Correction` row. Changes that rewrite objects (edit, merge, split, move)
are done by `correction_run` in a Celery task, instance by instance, and switch the index
rows (study, patient, series) at the end in one transaction; running it twice rewrites
nothing twice. A rejection rewrites nothing: the instances are marked rejected (hidden by
the access layer), their objects kept, and a rejection note (KOS) is stored in the study.
Every change is audited, and the readers and the requesting site of an open referral on
the study are told, on its timeline too.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, ProtectedError, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from pydicom.uid import generate_uid

from referrals.archive.correction.kos import (
    KOS_SOP_CLASS,
    REASONS,
    SELECTABLE_REASONS,
    KosError,
    rejection_note_store,
)
from referrals.archive.correction.objects import RewriteError, instance_rewrite
from referrals.archive.ingest import name_search_form, study_counters_recount
from referrals.archive.patient_key import patient_key
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import (
    OPEN_STATUSES,
    Correction,
    CorrectionKind,
    CorrectionStatus,
    Instance,
    Patient,
    Referral,
    ReferralEvent,
    ReferralStudy,
    Series,
    Study,
)
from tenants.access import Scope
from tenants.audit import AuditCode, audit_record
from tenants.errors import ApplicationError
from tenants.models import AuditEvent, User
from tenants.roles import CORRECTION_ROLES

logger = logging.getLogger(__name__)

# What may be edited: the form's field → the DICOM keyword it rewrites.
EDITABLE = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "accession_number": "AccessionNumber",
    "description": "StudyDescription",
    "study_date": "StudyDate",
}
PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYWORDS = ("AccessionNumber", "StudyDescription", "StudyDate")
# The longest value each keyword holds (its VR's limit, and the index column's).
MAX_LENGTH = {
    "PatientName": 324,
    "PatientID": 64,
    "PatientBirthDate": 8,
    "PatientSex": 1,
    "AccessionNumber": 16,
    "StudyDescription": 64,
    "StudyDate": 8,
}
SEXES = ("", "M", "F", "O")
PROGRESS_EVERY = 20


class CorrectionError(ApplicationError):
    """A correction refused, with the HTTP status and a sentence a person understands."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, code={403: "forbidden", 404: "not_found"}.get(status, "invalid"))
        self.message = message
        self.status_code = status


# --- Who may correct what ----------------------------------------------------------------


def may_correct(scope: Scope) -> bool:
    return scope.institution is not None and scope.has_any_role(*CORRECTION_ROLES)


def study_for_correction(*, scope: Scope, study_uid: str | None = None, pk: Any = None) -> Study:
    """The caller's own study to correct: 404 for another institution's (alike for "does not
    exist"), 403 for a person of the institution who may not correct."""
    lookup = {"study_uid": study_uid} if study_uid is not None else {"pk": pk}
    try:
        study = (
            Study.objects.select_related("patient", "institution")
            .filter(institution=scope.institution, **lookup)
            .first()
            if scope.institution is not None
            else None
        )
    except (ValueError, TypeError):
        study = None
    if study is None:
        raise CorrectionError(_("No such study in your institution's archive."), 404)
    if not may_correct(scope):
        raise CorrectionError(
            _("Only your institution's administrators may correct stored studies."), 403
        )
    return study


# --- Edit ----------------------------------------------------------------------------------


def _checked_value(keyword: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_LENGTH[keyword] or "\\" in value:
        raise CorrectionError(_("%(field)s is too long or holds a backslash.") % {"field": keyword})
    if keyword in ("PatientBirthDate", "StudyDate") and value:
        try:
            dt.datetime.strptime(value, "%Y%m%d")
        except ValueError:
            raise CorrectionError(
                _("%(field)s: %(value)s is not a date (YYYYMMDD).")
                % {"field": keyword, "value": value[:20]}
            ) from None
    if keyword == "PatientSex" and value.upper() not in SEXES:
        raise CorrectionError(_("PatientSex is M, F, O or empty."))
    if keyword == "PatientSex":
        value = value.upper()
    if keyword == "PatientID" and not value:
        raise CorrectionError(_("A patient ID cannot be empty."))
    return value


def study_attributes(study: Study) -> dict[str, str]:
    """The study's correctable attributes as the index holds them (DICOM keyword → value)."""
    patient = study.patient
    return {
        "PatientName": study.patient_name,
        "PatientID": study.pid,
        "PatientBirthDate": patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "",
        "PatientSex": patient.sex,
        "AccessionNumber": study.accession_number,
        "StudyDescription": study.description,
        "StudyDate": study.study_date.strftime("%Y%m%d") if study.study_date else "",
    }


def correction_edit_request(
    *,
    scope: Scope,
    study: Study,
    changes: dict[str, str],
    reason: str,
    request: Any = None,
) -> Correction:
    """Ask for `study`'s attributes (DICOM keyword → new value) to be changed everywhere."""
    unknown = set(changes) - set(MAX_LENGTH)
    if unknown:
        raise CorrectionError(
            _("These attributes cannot be edited: %(names)s")
            % {"names": ", ".join(sorted(unknown))}
        )
    before = study_attributes(study)
    wanted = {k: _checked_value(k, str(v)) for k, v in changes.items()}
    wanted = {k: v for k, v in wanted.items() if v != before[k]}
    if not wanted:
        raise CorrectionError(_("Nothing to change: these are the values already stored."))
    _require_reason(reason)
    return _correction_start(
        scope=scope,
        study=study,
        kind=CorrectionKind.EDIT,
        params={"changes": wanted},
        previous={k: before[k] for k in wanted},
        reason=reason,
        request=request,
    )


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise CorrectionError(_("Say why: a correction needs a reason."))


def _correction_start(
    *,
    scope: Scope,
    study: Study,
    kind: str,
    params: dict[str, Any],
    previous: dict[str, Any],
    reason: str,
    request: Any,
) -> Correction:
    from referrals.tasks import correction_run_task

    correction = Correction.objects.create(
        institution=study.institution,
        kind=kind,
        study=study,
        study_uid=study.study_uid,
        params=params,
        previous=previous,
        reason=reason.strip()[:2000],
        requested_by=scope.user,
    )
    audit_record(
        event=AuditCode.STUDY_CORRECTED,
        action=AuditEvent.Action.UPDATE,
        scope=scope,
        request=request,
        patient_id=study.pid,
        study_uid=study.study_uid,
        object_type="study",
        object_id=study.study_uid,
        detail={
            "correction": correction.pk,
            "kind": kind,
            "params": params,
            "previous": previous,
            "reason": correction.reason,
        },
    )
    transaction.on_commit(lambda: correction_run_task.delay(correction.pk))
    return correction


# --- Move, merge, split ------------------------------------------------------------------


def _series_of(study: Study, series_uids: list[str]) -> list[Series]:
    found = list(Series.objects.filter(study=study, series_uid__in=series_uids))
    missing = set(series_uids) - {s.series_uid for s in found}
    if missing or not series_uids:
        raise CorrectionError(_("Choose series of this study to move."))
    return found


def _same_site_target(study: Study, target_uid: str) -> Study:
    target = (
        Study.objects.select_related("patient")
        .filter(institution=study.institution, study_uid=target_uid)
        .first()
    )
    if target is None:
        raise CorrectionError(_("No such study in your institution's archive."), 404)
    if target.pk == study.pk:
        raise CorrectionError(_("A study cannot be merged with or moved into itself."))
    return target


def _no_series_clash(series: list[Series], target: Study) -> None:
    uids = [s.series_uid for s in series]
    if Series.objects.filter(study=target, series_uid__in=uids).exists():
        raise CorrectionError(_("The other study already holds a series with the same UID."), 409)


def series_move_request(
    *,
    scope: Scope,
    study: Study,
    series_uids: list[str],
    target_study_uid: str,
    reason: str,
    request: Any = None,
) -> Correction:
    """Move some series of `study` into another study of the same institution."""
    _require_reason(reason)
    series = _series_of(study, series_uids)
    target = _same_site_target(study, target_study_uid)
    _no_series_clash(series, target)
    if len(series) == Series.objects.filter(study=study).count():
        kind = CorrectionKind.MERGE  # every series goes: the study is merged into the target
    else:
        kind = CorrectionKind.MOVE
    return _correction_start(
        scope=scope,
        study=study,
        kind=kind,
        params={"series_uids": sorted(series_uids), "target_study_uid": target.study_uid},
        previous={"study_uid": study.study_uid},
        reason=reason,
        request=request,
    )


def study_merge_request(
    *, scope: Scope, study: Study, other_study_uid: str, reason: str, request: Any = None
) -> Correction:
    """Merge another study into `study`: every series of the other one moves here, its
    objects rewritten with this study's UID and patient."""
    _require_reason(reason)
    other = _same_site_target(study, other_study_uid)
    series = list(Series.objects.filter(study=other))
    if not series:
        raise CorrectionError(_("The other study holds no series."))
    _no_series_clash(series, study)
    return _correction_start(
        scope=scope,
        study=other,
        kind=CorrectionKind.MERGE,
        params={
            "series_uids": sorted(s.series_uid for s in series),
            "target_study_uid": study.study_uid,
        },
        previous={"study_uid": other.study_uid},
        reason=reason,
        request=request,
    )


def study_split_request(
    *, scope: Scope, study: Study, series_uids: list[str], reason: str, request: Any = None
) -> Correction:
    """Split the chosen series off into a new study (a new Study Instance UID), same patient."""
    _require_reason(reason)
    series = _series_of(study, series_uids)
    if len(series) == Series.objects.filter(study=study).count():
        raise CorrectionError(_("Leave at least one series in the study when splitting it."))
    with transaction.atomic():
        target = Study.objects.create(
            institution=study.institution,
            patient=study.patient,
            study_uid=generate_uid(prefix=HUB_UID_ROOT),
            study_date=study.study_date,
            study_time=study.study_time,
            accession_number=study.accession_number,
            study_id=study.study_id,
            description=study.description,
            referring_physician_name=study.referring_physician_name,
            patient_name=study.patient_name,
            patient_name_search=study.patient_name_search,
            pid=study.pid,
            patient_key=study.patient_key,
        )
        return _correction_start(
            scope=scope,
            study=study,
            kind=CorrectionKind.SPLIT,
            params={"series_uids": sorted(series_uids), "target_study_uid": target.study_uid},
            previous={"study_uid": study.study_uid},
            reason=reason,
            request=request,
        )


# --- Running a correction (the Celery task's one service) --------------------------------


def correction_run(*, correction_id: int) -> Correction | None:
    """Do (or finish) a correction's work. Safe to run twice: a finished one is left alone,
    instances already rewritten are skipped."""
    correction = Correction.objects.filter(pk=correction_id).first()
    if correction is None or correction.status == CorrectionStatus.DONE:
        return correction
    Correction.objects.filter(pk=correction.pk).update(status=CorrectionStatus.RUNNING, error="")
    try:
        if correction.kind == CorrectionKind.EDIT:
            studies = _run_edit(correction)
        else:
            studies = _run_move(correction)
    except (RewriteError, CorrectionError) as exc:
        logger.warning("correction %s failed: %s", correction.pk, exc)
        Correction.objects.filter(pk=correction.pk).update(
            status=CorrectionStatus.FAILED, error=str(exc)[:2000]
        )
        correction.refresh_from_db()
        return correction
    Correction.objects.filter(pk=correction.pk).update(
        status=CorrectionStatus.DONE, finished_at=timezone.now()
    )
    correction.refresh_from_db()
    for study in studies:
        readers_tell(study=study, correction=correction)
    return correction


def _rewrite_all(correction: Correction, work: list[tuple[Instance, dict[str, str]]]) -> None:
    Correction.objects.filter(pk=correction.pk).update(total=len(work), done=0)
    for index, (instance, changes) in enumerate(work, start=1):
        instance_rewrite(instance=instance, changes=changes)
        if index % PROGRESS_EVERY == 0 or index == len(work):
            Correction.objects.filter(pk=correction.pk).update(done=index)


def _run_edit(correction: Correction) -> list[Study]:
    study = correction.study
    if study is None:
        raise CorrectionError(_("The study no longer exists."), 404)
    changes: dict[str, str] = correction.params["changes"]
    patient_only = {k: v for k, v in changes.items() if k in PATIENT_KEYWORDS}
    studies = [study]
    if patient_only and "PatientID" not in changes:
        # One patient row, one set of demographics: the patient's other studies here follow.
        studies += list(
            Study.objects.filter(patient=study.patient).exclude(pk=study.pk).order_by("pk")
        )
    work: list[tuple[Instance, dict[str, str]]] = []
    for each in studies:
        wanted = changes if each.pk == study.pk else patient_only
        work += [(i, wanted) for i in Instance.objects.filter(study=each).order_by("pk")]
    _rewrite_all(correction, work)
    with transaction.atomic():
        for each in studies:
            locked = Study.objects.select_for_update().select_related("patient").get(pk=each.pk)
            _index_apply(locked, changes if each.pk == study.pk else patient_only)
    return studies


def _date_or_none(value: str) -> dt.date | None:
    return dt.datetime.strptime(value, "%Y%m%d").date() if value else None


def _index_apply(study: Study, changes: dict[str, str]) -> None:
    """The index rows say what the rewritten objects say."""
    patient = study.patient
    if "PatientID" in changes:
        pid = changes["PatientID"]
        patient, _created = Patient.objects.get_or_create(
            institution=study.institution,
            issuer=patient.issuer,
            patient_id=pid,
            defaults={
                "name": patient.name,
                "birth_date": patient.birth_date,
                "sex": patient.sex,
                "patient_key": patient_key(
                    patient_id=pid, issuer=patient.issuer, site_code=study.institution.code
                ),
            },
        )
        study.patient = patient
        study.pid = pid
        study.patient_key = patient.patient_key
    if "PatientName" in changes:
        patient.name = changes["PatientName"]
        study.patient_name = changes["PatientName"]
        study.patient_name_search = name_search_form(changes["PatientName"])
    if "PatientBirthDate" in changes:
        patient.birth_date = _date_or_none(changes["PatientBirthDate"])
    if "PatientSex" in changes:
        patient.sex = changes["PatientSex"]
    patient.save(update_fields=["name", "birth_date", "sex"])
    if "AccessionNumber" in changes:
        study.accession_number = changes["AccessionNumber"]
    if "StudyDescription" in changes:
        study.description = changes["StudyDescription"]
    if "StudyDate" in changes:
        study.study_date = _date_or_none(changes["StudyDate"])
    study.save()


def _run_move(correction: Correction) -> list[Study]:
    """Move the correction's series into the target study (merge, split and move alike)."""
    source = correction.study
    target = (
        Study.objects.select_related("patient")
        .filter(institution=correction.institution, study_uid=correction.params["target_study_uid"])
        .first()
    )
    if target is None:
        raise CorrectionError(_("The study to move into no longer exists."), 404)
    uids = correction.params["series_uids"]
    series = list(Series.objects.filter(institution=correction.institution, series_uid__in=uids))
    series = [s for s in series if s.study_id in {target.pk, getattr(source, "pk", None)}]
    changes = {"StudyInstanceUID": target.study_uid, **_target_attributes(target)}
    work = [
        (i, changes) for i in Instance.objects.filter(series__in=series).order_by("series", "pk")
    ]
    _rewrite_all(correction, work)
    with transaction.atomic():
        ids = [s.pk for s in series]
        Series.objects.filter(pk__in=ids).update(study=target)
        Instance.objects.filter(series_id__in=ids).update(study=target)
    study_counters_recount(study_pk=target.pk, series_pks=set(ids))
    studies = [target]
    if source is not None:
        study_counters_recount(study_pk=source.pk)
        studies.append(source)
        if correction.kind == CorrectionKind.MERGE:
            _drop_if_empty(source)
    return studies


def _target_attributes(target: Study) -> dict[str, str]:
    """The patient and study attributes a moved instance takes from its new study."""
    values = study_attributes(target)
    return {k: values[k] for k in (*PATIENT_KEYWORDS, *STUDY_KEYWORDS)}


def _drop_if_empty(study: Study) -> None:
    """A merged-away study with nothing left goes, unless a referral or report still names
    it (then it stays, empty, so their history keeps its study)."""
    if Instance.objects.filter(study=study).exists():
        return
    try:
        with transaction.atomic():
            Study.objects.filter(pk=study.pk).delete()
    except ProtectedError:
        pass


# --- Reject and undo -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    correction: Correction
    note: Instance
    count: int


def instances_reject(
    *,
    scope: Scope,
    study: Study,
    code: str,
    reason: str,
    series_uids: list[str] | None = None,
    sop_uids: list[str] | None = None,
    request: Any = None,
) -> Rejected:
    """Reject instances of `study` (all, or the named series or instances) for `code`.

    The instances vanish from every read of the archive; their objects stay. A rejection
    note (KOS) naming them is stored in the study, as IHE IOCM asks, so peers see it.
    """
    if code not in SELECTABLE_REASONS:
        raise CorrectionError(
            _("Choose a rejection reason: quality, patient safety or wrong worklist entry.")
        )
    _require_reason(reason)
    instances = Instance.objects.filter(study=study, rejected_at__isnull=True).exclude(
        sop_class_uid=KOS_SOP_CLASS
    )
    if series_uids:
        instances = instances.filter(series__series_uid__in=series_uids)
    if sop_uids:
        instances = instances.filter(sop_uid__in=sop_uids)
    chosen = list(instances.select_related("series").order_by("series_id", "pk"))
    if not chosen:
        raise CorrectionError(
            _("Nothing to reject: no such image in this study, or rejected already.")
        )
    try:
        note = rejection_note_store(study=study, instances=chosen, code=code)
    except KosError as exc:
        raise CorrectionError(
            _("The rejection note could not be stored: %(why)s") % {"why": str(exc)}, 409
        ) from exc
    now = timezone.now()
    with transaction.atomic():
        Instance.objects.filter(pk__in=[i.pk for i in chosen]).update(
            rejected_at=now, rejection_code=code
        )
        series_ids = {i.series_id for i in chosen}
        _series_rejected_flags(series_ids, now)
        correction = Correction.objects.create(
            institution=study.institution,
            kind=CorrectionKind.REJECT,
            status=CorrectionStatus.DONE,
            study=study,
            study_uid=study.study_uid,
            params={
                "code": code,
                "sop_uids": [i.sop_uid for i in chosen],
                "note_sop_uid": note.sop_uid,
            },
            reason=reason.strip()[:2000],
            requested_by=scope.user,
            total=len(chosen),
            done=len(chosen),
            finished_at=now,
        )
        audit_record(
            event=AuditCode.INSTANCES_REJECTED,
            action=AuditEvent.Action.DELETE,
            scope=scope,
            request=request,
            patient_id=study.pid,
            study_uid=study.study_uid,
            object_type="study",
            object_id=study.study_uid,
            detail={
                "correction": correction.pk,
                "code": f'({code}, DCM, "{REASONS[code]}")',
                "instances": len(chosen),
                "series": sorted({i.series.series_uid for i in chosen}),
                "note": note.sop_uid,
                "reason": correction.reason,
            },
        )
    study_counters_recount(study_pk=study.pk, series_pks=series_ids)
    readers_tell(study=study, correction=correction)
    return Rejected(correction=correction, note=note, count=len(chosen))


def _series_rejected_flags(series_ids: set[int], now: dt.datetime) -> None:
    """A series whose every instance is rejected is rejected (hidden) itself; one with an
    instance left is not."""
    live = Instance.objects.filter(series_id=OuterRef("pk"), rejected_at__isnull=True)
    rows = Series.objects.filter(pk__in=series_ids).annotate(has_live=Exists(live))
    rows.filter(has_live=False).update(rejected_at=now)
    rows.filter(has_live=True).update(rejected_at=None)
    # The thumbnail may show a rejected image: drop it; the next request renders it again
    # from the images left (rendering.series_middle_instance skips rejected ones).
    old_keys = [k for k in rows.values_list("thumbnail_key", flat=True) if k]
    Series.objects.filter(pk__in=series_ids).update(thumbnail_key="")
    transaction.on_commit(lambda: _objects_delete(old_keys))


def _objects_delete(keys: list[str]) -> None:
    for key in keys:
        default_storage.delete(key)


def rejection_undo(
    *, scope: Scope, study: Study, correction_id: int, reason: str, request: Any = None
) -> Correction:
    """Bring a rejection's instances back (an administrator's undo, with a reason). Its
    rejection note is then rejected itself, so peers no longer hide the instances."""
    _require_reason(reason)
    rejection = Correction.objects.filter(
        pk=correction_id, study=study, kind=CorrectionKind.REJECT
    ).first()
    if rejection is None:
        raise CorrectionError(_("No such rejection of this study."), 404)
    if rejection.params.get("undone_by"):
        raise CorrectionError(_("This rejection was undone already."), 409)
    now = timezone.now()
    with transaction.atomic():
        back = Instance.objects.filter(study=study, sop_uid__in=rejection.params["sop_uids"])
        series_ids = set(back.values_list("series_id", flat=True))
        back.update(rejected_at=None, rejection_code="")
        note = Instance.objects.filter(study=study, sop_uid=rejection.params["note_sop_uid"])
        series_ids |= set(note.values_list("series_id", flat=True))
        note.update(rejected_at=now, rejection_code=rejection.params["code"])
        _series_rejected_flags(series_ids, now)
        correction = Correction.objects.create(
            institution=study.institution,
            kind=CorrectionKind.RESTORE,
            status=CorrectionStatus.DONE,
            study=study,
            study_uid=study.study_uid,
            params={"rejection": rejection.pk, "sop_uids": rejection.params["sop_uids"]},
            reason=reason.strip()[:2000],
            requested_by=scope.user,
            total=len(rejection.params["sop_uids"]),
            done=len(rejection.params["sop_uids"]),
            finished_at=now,
        )
        rejection.params = {**rejection.params, "undone_by": correction.pk}
        rejection.save(update_fields=["params"])
        audit_record(
            event=AuditCode.REJECTION_UNDONE,
            action=AuditEvent.Action.UPDATE,
            scope=scope,
            request=request,
            patient_id=study.pid,
            study_uid=study.study_uid,
            object_type="study",
            object_id=study.study_uid,
            detail={"correction": correction.pk, "rejection": rejection.pk, "reason": reason},
        )
    study_counters_recount(study_pk=study.pk, series_pks=series_ids)
    readers_tell(study=study, correction=correction)
    return correction


# --- Telling the readers -------------------------------------------------------------------


def _open_referrals(study: Study) -> list[Referral]:
    carried = ReferralStudy.objects.filter(study=study).values("referral_id")
    return list(
        Referral.objects.filter(Q(study=study) | Q(pk__in=carried), status__in=OPEN_STATUSES)
        .select_related("requested_by", "source", "target", "pool__lead")
        .order_by("pk")
    )


def readers_tell(*, study: Study, correction: Correction) -> None:
    """The readers (claimed, assigned) and the requesting site of each open referral on the
    study hear of the change, and the referral's timeline records it."""
    from referrals.workflow.notify import clinic_recipients, notify
    from tenants.messages import choice, step

    actor: User | None = correction.requested_by
    for referral in _open_referrals(study):
        readers = [u for u in (referral.claimed_by, referral.assigned_to) if u is not None]
        params = {
            "what": choice("correction_kind", correction.kind),
            "accession": study.accession_number,
            "text": correction.reason,
        }
        notify(
            [*readers, *clinic_recipients(referral)],
            referral,
            kind="study_corrected",
            code="study.corrected",
            params=params,
            dedup=f"correction-{correction.pk}",
        )
        ReferralEvent.objects.create(
            referral=referral,
            action="study_corrected",
            from_status=referral.status,
            to_status=referral.status,
            actor=actor,
            actor_institution=correction.institution,
            reason=correction.reason,
            reason_steps=[
                step(
                    "correction.done",
                    what=choice("correction_kind", correction.kind),
                    text=correction.reason,
                )
            ],
            data={"correction": correction.pk, "kind": correction.kind},
        )


# --- One entry for the API and the page ----------------------------------------------------


def correction_request(
    *, scope: Scope, study: Study, kind: str, data: dict[str, Any], request: Any = None
) -> Correction:
    """Dispatch one asked correction (the API's and the page's form) to its service."""
    reason = str(data.get("reason", ""))
    uids = [str(u) for u in data.get("series_uids") or []]
    if kind == CorrectionKind.EDIT:
        changes = data.get("changes") or {}
        if not isinstance(changes, dict):
            raise CorrectionError(_("Give the changes as attribute names and new values."))
        return correction_edit_request(
            scope=scope, study=study, changes=changes, reason=reason, request=request
        )
    if kind == CorrectionKind.MERGE:
        return study_merge_request(
            scope=scope,
            study=study,
            other_study_uid=str(data.get("other_study_uid", "")),
            reason=reason,
            request=request,
        )
    if kind == CorrectionKind.SPLIT:
        return study_split_request(
            scope=scope, study=study, series_uids=uids, reason=reason, request=request
        )
    if kind == CorrectionKind.MOVE:
        return series_move_request(
            scope=scope,
            study=study,
            series_uids=uids,
            target_study_uid=str(data.get("target_study_uid", "")),
            reason=reason,
            request=request,
        )
    if kind == CorrectionKind.REJECT:
        return instances_reject(
            scope=scope,
            study=study,
            code=str(data.get("code", "")),
            reason=reason,
            series_uids=uids or None,
            sop_uids=[str(u) for u in data.get("sop_uids") or []] or None,
            request=request,
        ).correction
    if kind == CorrectionKind.RESTORE:
        try:
            correction_id = int(data.get("rejection", ""))
        except (TypeError, ValueError):
            raise CorrectionError(_("Name the rejection to undo.")) from None
        return rejection_undo(
            scope=scope, study=study, correction_id=correction_id, reason=reason, request=request
        )
    raise CorrectionError(_("Unknown kind of correction."))
