"""Writes of exam registrations: register, cancel, and match an arrived study to its exam."""

from __future__ import annotations

import datetime as dt
import logging
import re

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from pydicom.uid import generate_uid
from pypinyin import lazy_pinyin

from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import ExamRegistration, RegistrationStatus, Study
from tenants.access import Scope
from tenants.audit import AuditCode, AuditObject, audit_record
from tenants.errors import ApplicationError, ConflictError, ForbiddenError
from tenants.roles import REGISTRATION_ROLES

logger = logging.getLogger(__name__)

OPEN = (RegistrationStatus.SCHEDULED, RegistrationStatus.IN_PROGRESS)
SEXES = ("M", "F", "O")
# DICOM CS: upper-case letters, digits, space and underscore.
_CODE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# Characters that would break a DICOM value: component, group and value separators.
_PN_BREAKERS = re.compile(r"[\^=\\\x00-\x1f]")
ACCESSION_ATTEMPTS = 5


# A registration is for an exam about to be done: one registered afterwards (a walk-in, a
# backlog typed in later) is fine within a year; a date decades away is a typing slip, and
# no scanner would ever ask for it.
SCHEDULED_PAST = dt.timedelta(days=366)
SCHEDULED_AHEAD = dt.timedelta(days=3660)


class RegistrationError(ApplicationError):
    default_code = "registration_invalid"


class RegistrationForbiddenError(ForbiddenError):
    default_code = "registration_forbidden"


class RegistrationConflictError(ConflictError):
    default_code = "registration_conflict"


def _is_ascii(text: str) -> bool:
    return all(ord(c) < 128 for c in text)


def _pinyin(text: str) -> str:
    """'建国' -> 'Jianguo': how Chinese names are spelled in the alphabetic group."""
    return "".join(lazy_pinyin(text)).capitalize()


def _clean(text: str) -> str:
    return " ".join(_PN_BREAKERS.sub(" ", text or "").split())


def person_name_compose(
    *, family: str, given: str, family_alphabetic: str = "", given_alphabetic: str = ""
) -> str:
    """A DICOM PN from a person's names: 'Wang^Jianguo=王^建国' from 王 / 建国.

    A name written in Chinese characters gets an ideographic group, and an alphabetic group
    in pinyin (typed, or spelled by pypinyin when left empty), so a scanner that shows only
    Latin letters still shows a name. A name in Latin letters is alphabetic only.
    """
    family, given = _clean(family), _clean(given)
    family_alphabetic, given_alphabetic = _clean(family_alphabetic), _clean(given_alphabetic)
    if not family and not given:
        raise RegistrationError(_("Give the patient's name."), code="patient_name")
    if _is_ascii(family + given):
        groups = [f"{family_alphabetic or family}^{given_alphabetic or given}".rstrip("^")]
    else:
        alphabetic = (
            f"{family_alphabetic or _pinyin(family)}^{given_alphabetic or _pinyin(given)}"
        ).rstrip("^")
        groups = [alphabetic, f"{family}^{given}".rstrip("^")]
    if any(len(group) > 64 for group in groups):
        raise RegistrationError(_("The patient's name is too long."), code="patient_name")
    return "=".join(groups)


def doctor_name_compose(name: str) -> str:
    """A doctor's name typed as one text ('李明' or 'Li^Ming') as a DICOM PN."""
    name = (name or "").strip()
    if not name:
        return ""
    if _is_ascii(name):
        return "^".join(_clean(part) for part in name.split("^", 1))[:64]
    cleaned = _clean(name).replace(" ", "")
    return person_name_compose(family=cleaned[:1], given=cleaned[1:])


def _check_code(value: str, *, what: str, code: str) -> str:
    value = (value or "").strip().upper()
    if not _CODE.match(value):
        raise RegistrationError(
            _("%(what)s: use 1 to 16 capital letters or digits.") % {"what": what}, code=code
        )
    return value


def _check_ae_title(value: str) -> str:
    title = (value or "").strip()
    if not title:
        return ""
    if len(title) > 16 or "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        raise RegistrationError(
            _("A scanner's AE title has at most 16 letters, digits or signs, no backslash."),
            code="station_ae_title",
        )
    return title


def _check_text(value: str, *, limit: int, what: str, code: str, required: bool = False) -> str:
    value = " ".join((value or "").replace("\\", "/").split())
    if required and not value:
        raise RegistrationError(_("%(what)s is required.") % {"what": what}, code=code)
    if len(value) > limit:
        raise RegistrationError(
            _("%(what)s has at most %(limit)d characters.") % {"what": what, "limit": limit},
            code=code,
        )
    return value


def _accession_candidate(institution_id: int, now: dt.datetime) -> str:
    """The next accession number of the site's day: 'YYMMDD' + a 4-digit sequence (10
    characters; a fifth digit after 9,999 exams in a day, still within DICOM's 16)."""
    prefix = timezone.localtime(now).strftime("%y%m%d")
    taken = ExamRegistration.objects.filter(
        institution_id=institution_id, accession_number__startswith=prefix
    ).values_list("accession_number", flat=True)
    numbers = [int(a[len(prefix) :]) for a in taken if a[len(prefix) :].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1:04d}"


def registration_create(
    *,
    scope: Scope,
    patient_id: str,
    family_name: str,
    given_name: str,
    modality: str,
    procedure_description: str,
    scheduled_at: dt.datetime,
    issuer: str = "",
    family_name_alphabetic: str = "",
    given_name_alphabetic: str = "",
    birth_date: dt.date | None = None,
    sex: str = "",
    body_part: str = "",
    requesting_physician: str = "",
    clinical_question: str = "",
    station_ae_title: str = "",
    now: dt.datetime | None = None,
    request: HttpRequest | None = None,
) -> ExamRegistration:
    """Register an exam at the caller's institution, with a new accession number and
    Study Instance UID that the scanner will take from the worklist."""
    if scope.is_gateway or scope.institution is None or not scope.has_any_role(*REGISTRATION_ROLES):
        raise RegistrationForbiddenError(_("Your role at this institution cannot register exams."))
    now = now or timezone.now()
    patient_id = _check_text(
        patient_id, limit=64, what=_("Patient ID"), code="patient_id", required=True
    )
    issuer = _check_text(issuer, limit=64, what=_("Issuer of patient ID"), code="issuer")
    name = person_name_compose(
        family=family_name,
        given=given_name,
        family_alphabetic=family_name_alphabetic,
        given_alphabetic=given_name_alphabetic,
    )
    sex = (sex or "").strip().upper()
    if sex and sex not in SEXES:
        raise RegistrationError(_("Sex is M, F or O."), code="sex")
    if birth_date is not None and birth_date > timezone.localdate(now):
        raise RegistrationError(_("The birth date is in the future."), code="birth_date")
    if timezone.is_naive(scheduled_at):
        scheduled_at = timezone.make_aware(scheduled_at)
    if not now - SCHEDULED_PAST <= scheduled_at <= now + SCHEDULED_AHEAD:
        raise RegistrationError(
            _("Schedule the exam between a year ago and ten years from now."), code="scheduled_at"
        )
    fields = {
        "institution": scope.institution,
        "patient_id": patient_id,
        "issuer": issuer,
        "patient_name": name,
        "birth_date": birth_date,
        "sex": sex,
        "modality": _check_code(modality, what=_("Modality"), code="modality"),
        "body_part": _check_text(body_part, limit=64, what=_("Body part"), code="body_part"),
        "procedure_description": _check_text(
            procedure_description,
            limit=64,
            what=_("Requested procedure"),
            code="procedure_description",
            required=True,
        ),
        "requesting_physician": doctor_name_compose(
            _check_text(
                requesting_physician, limit=64, what=_("Requesting doctor"), code="physician"
            )
        ),
        "clinical_question": (clinical_question or "").strip()[:4000],
        "scheduled_at": scheduled_at,
        "station_ae_title": _check_ae_title(station_ae_title),
        "created_by": scope.user,
        "created_at": now,
    }
    # Two people registering at once may compute the same number: the unique constraint
    # refuses the second, which takes the next one.
    for _attempt in range(ACCESSION_ATTEMPTS):
        accession = _accession_candidate(scope.institution.pk, now)
        try:
            with transaction.atomic():
                registration = ExamRegistration.objects.create(
                    accession_number=accession,
                    study_uid=generate_uid(prefix=HUB_UID_ROOT),
                    **fields,
                )
        except IntegrityError:
            continue
        _audit(scope=scope, request=request, registration=registration, event="registered")
        return registration
    raise RegistrationConflictError(
        _("Could not give the exam an accession number; try again."), code="accession_busy"
    )


def registration_cancel(
    *,
    scope: Scope,
    registration: ExamRegistration,
    now: dt.datetime | None = None,
    request: HttpRequest | None = None,
) -> ExamRegistration:
    """Cancel an exam not yet done: the gateway stops serving it on its next refresh."""
    if scope.is_gateway or not scope.has_any_role(*REGISTRATION_ROLES):
        raise RegistrationForbiddenError(_("Your role at this institution cannot cancel exams."))
    if registration.institution_id != getattr(scope.institution, "pk", None):
        raise RegistrationForbiddenError(_("Only the site that registered an exam can cancel it."))
    now = now or timezone.now()
    changed = ExamRegistration.objects.filter(pk=registration.pk, status__in=OPEN).update(
        status=RegistrationStatus.CANCELLED, cancelled_at=now
    )
    registration.refresh_from_db()
    if not changed and registration.status != RegistrationStatus.CANCELLED:
        raise RegistrationConflictError(
            _("This exam is already done: its study has arrived."), code="registration_done"
        )
    if changed:  # cancelling twice is harmless and writes one row
        _audit(scope=scope, request=request, registration=registration, event="cancelled")
    return registration


def _audit(
    *, scope: Scope, request: HttpRequest | None, registration: ExamRegistration, event: str
) -> None:
    """A registration names a patient: who registered or cancelled which exam, for whom."""
    audit_record(
        event=AuditCode.EXAM_REGISTERED if event == "registered" else AuditCode.EXAM_CANCELLED,
        scope=scope,
        request=request,
        patient_id=registration.patient_id,
        study_uid=registration.study_uid,
        object_type=AuditObject.EXAM_REGISTRATION,
        object_id=registration.pk,
        detail={
            "accession_number": registration.accession_number,
            "issuer": registration.issuer,
            "modality": registration.modality,
        },
    )


def _registration_for_study(study: Study) -> tuple[ExamRegistration | None, str]:
    """The registration `study` was made for, and how it was found."""
    mine = ExamRegistration.objects.filter(institution_id=study.institution_id).exclude(
        status=RegistrationStatus.CANCELLED
    )
    by_uid = mine.filter(study_uid=study.study_uid).first()
    if by_uid is not None:
        return by_uid, "study_uid"
    if not study.accession_number:
        return None, ""
    by_accession = mine.filter(accession_number=study.accession_number)
    # The patient ID too when it agrees; the accession number alone was made here and is
    # unique within the site, so a study that carries it but another patient ID is still
    # this exam (and is flagged).
    chosen = by_accession.filter(patient_id=study.pid).first() or by_accession.first()
    return chosen, ("accession" if chosen is not None else "")


def registration_match_study(
    *, study_id: int, now: dt.datetime | None = None
) -> ExamRegistration | None:
    """Link an arrived study to its registration and mark the exam completed.

    By Study Instance UID, else by accession number (and patient ID) within the site. A
    patient ID that differs from the registered one is recorded on the registration for a
    person to look at; the study itself is not changed. Safe to run twice.
    """
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return None
    registration, how = _registration_for_study(study)
    if registration is None:
        return None
    if registration.study_id not in (None, study.pk):
        logger.warning(
            "Study %s names exam %s, which is already matched to study %s: left alone",
            study.pk,
            registration.accession_number,
            registration.study_id,
        )
        return None
    mismatch = registration.patient_id.strip() != (study.pid or "").strip()
    ExamRegistration.objects.filter(pk=registration.pk, study__isnull=True).update(
        status=RegistrationStatus.COMPLETED,
        study=study,
        matched_at=now or timezone.now(),
        matched_by=how,
    )
    # The study may have been refiled with another patient ID since: keep the flag current.
    ExamRegistration.objects.filter(pk=registration.pk, study=study).update(
        patient_id_mismatch=mismatch, study_patient_id=study.pid if mismatch else ""
    )
    registration.refresh_from_db()
    if mismatch:
        logger.warning(
            "Study %s matched exam %s but carries patient ID %r, registered %r",
            study.pk,
            registration.accession_number,
            study.pid,
            registration.patient_id,
        )
    return registration
