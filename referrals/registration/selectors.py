"""Reads of exam registrations: a day's list, one exam, and a gateway's worklist items."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from pydicom.dataset import Dataset

from referrals.archive.person_names import dicom_person_name
from referrals.models import ExamRegistration, RegistrationStatus, Study
from tenants import access
from tenants.access import Scope
from tenants.models import GatewayCredential

# The worklist a gateway is given: what is scheduled from a little before today (a patient
# who came late) to a few weeks ahead. Older scheduled exams stay on the site's list.
WORKLIST_PAST = dt.timedelta(days=2)
WORKLIST_AHEAD = dt.timedelta(days=31)
# A clinic's scanners, not a hospital's: far more than a few weeks of its exams.
WORKLIST_MAX_ITEMS = 5000


def registrations_visible(*, scope: Scope) -> QuerySet[ExamRegistration]:
    return access.visible(scope, ExamRegistration.objects.select_related("study", "created_by"))


def day_parse(text: str) -> dt.date | None:
    """A calendar day from 'YYYY-MM-DD', or None; far-off years (where a day's bounds in
    local time would overflow) are not days anyone schedules an exam on."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2999 else None


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The start and end of `day` in the hub's local time zone."""
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return start, start + dt.timedelta(days=1)


def registrations_of_day(*, scope: Scope, day: dt.date) -> QuerySet[ExamRegistration]:
    """The site's exams scheduled on `day` (its local calendar day), in time order."""
    start, end = day_bounds(day)
    return (
        registrations_visible(scope=scope)
        .filter(scheduled_at__gte=start, scheduled_at__lt=end)
        .order_by("scheduled_at", "pk")
    )


def registration_for_user(scope: Scope, pk: Any) -> ExamRegistration:
    """One registration the caller may see, or 404 alike for missing and not-yours."""
    return access.get_visible_or_404(scope, ExamRegistration, pk=pk)


def registration_for_study(*, scope: Scope, study: Study) -> ExamRegistration | None:
    """The registration a study was matched to, if the caller may see it."""
    return registrations_visible(scope=scope).filter(study=study).first()


def _da(value: dt.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def worklist_item(registration: ExamRegistration) -> Dataset:
    """One scheduled exam as a Modality Worklist item (PS3.4 K.6 return keys)."""
    local = timezone.localtime(registration.scheduled_at)
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: Chinese names as they are
    item.PatientName = registration.patient_name
    item.PatientID = registration.patient_id
    item.IssuerOfPatientID = registration.issuer
    item.PatientBirthDate = _da(registration.birth_date)
    item.PatientSex = registration.sex
    item.AccessionNumber = registration.accession_number
    item.StudyInstanceUID = registration.study_uid
    item.RequestedProcedureID = registration.accession_number
    item.RequestedProcedureDescription = registration.procedure_description
    item.ReferringPhysicianName = registration.requesting_physician
    item.RequestingPhysician = registration.requesting_physician
    # LO: one line, no backslash (a value separator).
    reason = " ".join(registration.clinical_question.replace("\\", "/").split())
    item.ReasonForTheRequestedProcedure = reason[:64]
    step = Dataset()
    step.Modality = registration.modality
    step.ScheduledStationAETitle = registration.station_ae_title
    step.ScheduledProcedureStepStartDate = local.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = local.strftime("%H%M%S")
    step.ScheduledProcedureStepDescription = registration.procedure_description
    step.ScheduledProcedureStepID = registration.accession_number
    step.ScheduledProcedureStepStatus = "SCHEDULED"
    step.BodyPartExamined = registration.body_part[:16].upper()
    item.ScheduledProcedureStepSequence = [step]
    return item


def worklist_for_gateway(
    *, credential: GatewayCredential, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """The scheduled exams of the credential's site only, as DICOM JSON (PS3.18 F.2)."""
    now = now or timezone.now()
    scope = access.scope_for_gateway(credential)
    registrations = (
        access.visible(scope, ExamRegistration)
        .filter(
            status=RegistrationStatus.SCHEDULED,
            scheduled_at__gte=now - WORKLIST_PAST,
            scheduled_at__lt=now + WORKLIST_AHEAD,
        )
        .order_by("scheduled_at", "pk")[:WORKLIST_MAX_ITEMS]
    )
    return [worklist_item(r).to_json_dict() for r in registrations]


def referral_defaults_for_study(*, scope: Scope, study: Study) -> dict[str, str]:
    """What the "send for reading" form starts with for a registered exam: the clinical
    question and the requesting doctor given at registration (the sender may edit them)."""
    registration = registration_for_study(scope=scope, study=study)
    if registration is None:
        return {}
    lines = [registration.clinical_question.strip()]
    if registration.requesting_physician:
        lines.append(
            _("Requesting doctor: %(name)s")
            % {"name": dicom_person_name(registration.requesting_physician)}
        )
    text = "\n".join(line for line in lines if line)
    return {"clinical_question": text} if text else {}
