"""A final CT chest report on a really stored study (4 slices), for PDF/FHIR/share tests."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient
from referrals.models import Instance, Patient, Study
from referrals.workflow import services as referral_services
from reporting import services
from reporting.models import Report, ReportTemplate
from tenants import access
from tenants.models import Role, User

from .conftest import World, _person
from .dicom_support import ct_files
from .reporting_support import CHEST, Desk, desk_make

PATIENT = SyntheticPatient("P-9", "Wang^Xiaoming=王^小明")


@dataclass
class Signed:
    desk: Desk
    report: Report
    study: Study
    instances: list[Instance]
    tech: User  # a clinic technician at the sending clinic


def stored_study(world: World, count: int = 4, patient: SyntheticPatient = PATIENT) -> Study:
    with tempfile.TemporaryDirectory() as folder:
        for n, data in enumerate(ct_files(count, size=64, patient=patient, body_part="CHEST")):
            path = Path(folder) / f"{n}.dcm"
            path.write_bytes(data)
            outcome = instance_store(institution=world.clinic, path=path, via="test")
            assert outcome.status == "stored", outcome
    return Study.objects.get(institution=world.clinic, pid=patient.patient_id)


def signed_report(world: World, capture) -> Signed:
    """rita (junior) writes and signs preliminary; sam's second read makes it final."""
    desk = desk_make(world, capture)
    study = stored_study(world)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    with capture(execute=True):
        referral, _ = referral_services.referral_request(scope=alice, study=study)
    with capture(execute=True):
        referral_services.referral_claim(scope=desk.rita(), referral_id=referral.pk)
    template = ReportTemplate.objects.get(alliance=world.north, code="ct-chest")
    with capture(execute=True):
        report = services.report_create(
            scope=desk.rita(), referral_id=referral.pk, template_id=template.pk
        )
        report = services.report_autosave(
            scope=desk.rita(),
            report_id=report.pk,
            version=report.version,
            content=CHEST,
            free_text="建议12个月后复查。",
        )
        report = services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
        report = services.report_second_read(
            scope=desk.sam(), report_id=report.pk, outcome="agree", version=report.version
        )
    report = Report.objects.get(pk=report.pk)
    tech = _person("tina", "蒂娜", "Tina", world.clinic, Role.CLINIC_TECHNICIAN)
    return Signed(
        desk=desk,
        report=report,
        study=study,
        instances=list(Instance.objects.filter(study=study).order_by("pk")),
        tech=tech,
    )


def signed_mr_same_patient(signed: Signed, capture) -> Report:
    """sam's own final MR report, on a study of the same patient at another site: both sites
    file the person under one issuer and ID (one own key)."""
    desk = signed.desk
    key = signed.study.patient_key
    Patient.objects.filter(pk__in=(signed.study.patient_id, desk.mr.study.patient_id)).update(
        own_key=key, patient_key=key
    )
    Study.objects.filter(pk=desk.mr.study_id).update(patient_key=key)
    with capture(execute=True):
        report = services.report_create(
            scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
        )
        report = services.report_autosave(
            scope=desk.sam(),
            report_id=report.pk,
            version=report.version,
            content={"findings": "半月板撕裂。", "impression": "内侧半月板后角撕裂。"},
        )
        report = services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="final", version=report.version
        )
    return Report.objects.get(pk=report.pk)
