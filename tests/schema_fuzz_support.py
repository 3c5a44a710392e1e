"""A demo hub with real data behind every detail route, for Schemathesis runs over the API.

The demo alliance (alliance/demo.py) and its eight users, plus: studies at the demo clinic
(one really stored, so key images, thumbnails and the viewer have pixels), referrals in
every state a reader meets (requested, claimed, reporting, waiting for a second read,
reported, acknowledged, returned, cancelled), reports draft / preliminary / final with an
addendum, a critical finding open and one acknowledged, a share link, and an MDT session
chaired by the senior radiologist with the MDT member invited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone
from knox.models import AuthToken

from alliance.demo import demo_seed
from consultations import services as mdt_services
from referrals.models import Study
from referrals.workflow import services as referral_services
from reporting import critical, services, sharing
from reporting.models import Report, ReportTemplate
from tenants import access
from tenants.models import Institution, User

from .referral_support import study_at
from .share_support import PATIENT
from .share_support import stored_study as _stored_study_of_world

# The demo's people, each holding one role (alliance/demo.py DEMO_USERS).
DEMO_ROLES = (
    "tech",
    "referrer",
    "radiologist",
    "senior",
    "hospadmin",
    "allianceadmin",
    "commission",
    "mdt",
)
CHEST = {"findings": "右上肺 6 mm 实性结节。", "lung_rads": "2", "impression": "良性表现。"}


@contextlib.contextmanager
def tasks_inline() -> Iterator[None]:
    """Celery tasks queued while the world is built run at once, in this process."""
    from alliance.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


class _Clinic:
    """Just enough of the test world for `share_support.stored_study` (it reads `.clinic`)."""

    def __init__(self, clinic: Institution) -> None:
        self.clinic = clinic


def _held_instance_of_world(clinic: Institution, study: Study) -> None:
    """Another patient's instance under `study`'s UID: held for a person to decide."""
    import io
    import tempfile
    from pathlib import Path

    import pydicom
    from django.core.files.storage import default_storage
    from pydicom.uid import generate_uid

    from referrals.archive.ingest import instance_store
    from referrals.archive.synthetic import to_bytes
    from referrals.models import HeldInstance, Instance, instance_object_key

    first = Instance.objects.filter(study=study).order_by("pk").first()
    assert first is not None
    with default_storage.open(instance_object_key(first.object_id)) as fp:
        ds = pydicom.dcmread(io.BytesIO(fp.read()))
    ds.PatientID, ds.PatientName = "FZ-OTHER", "Other^Patient"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "other.dcm"
        path.write_bytes(to_bytes(ds))
        instance_store(institution=clinic, path=path, via="upload")
    assert HeldInstance.objects.filter(institution=clinic, resolved_at__isnull=True).exists()


def fuzz_world_build() -> dict[str, str]:
    """Build the world (committed) and return an API token for each demo user."""
    with tasks_inline():
        alliance = demo_seed()
        clinic = Institution.objects.get(code="qingshan-thc")
        central = Institution.objects.get(code="jc-central")
        east = Institution.objects.get(code="jc-east-county")
        users = {u.username: u for u in User.objects.filter(username__in=DEMO_ROLES)}

        def scope(name: str, institution: Institution) -> access.Scope:
            return access.scope_for_user(users[name], institution_id=institution.pk)

        tech, rad = scope("tech", clinic), scope("radiologist", central)
        senior = scope("senior", central)

        def referred(study: Study) -> int:
            referral, _ = referral_services.referral_request(
                scope=tech, study=study, clinical_question="咳嗽两周", queue_routing=False
            )
            referral_services.referral_route(referral.pk)
            return referral.pk

        def study(n: int, modality: str = "CT", body_part: str = "CHEST") -> Study:
            return study_at(
                clinic,
                modality=modality,
                body_part=body_part,
                patient_id=f"FZ{n:04d}",
                patient_name=f"Fuzz^Patient{n}",
                patient_key=f"fuzz-key-{n}",
            )

        template = ReportTemplate.objects.get(alliance=alliance, code="ct-chest")

        def report_of(referral_id: int, reader: access.Scope) -> Report:
            referral_services.referral_claim(scope=reader, referral_id=referral_id)
            report = services.report_create(
                scope=reader, referral_id=referral_id, template_id=template.pk
            )
            return services.report_autosave(
                scope=reader, report_id=report.pk, version=report.version, content=CHEST
            )

        # Waiting in the pool, one with a real series of pixels.
        stored = _stored_study_of_world(_Clinic(clinic), 4, PATIENT)  # type: ignore[arg-type]
        referred(stored)
        _held_instance_of_world(clinic, stored)
        referred(study(1, "MR", "KNEE"))
        # Claimed, not yet reported; returned to the clinic; cancelled by the clinic.
        referral_services.referral_claim(scope=rad, referral_id=referred(study(2)))
        returned = referred(study(3))
        referral_services.referral_return(scope=rad, referral_id=returned, reason="motion_artefact")
        referral_services.referral_cancel(scope=tech, referral_id=referred(study(4)))
        # A draft with a critical finding still open.
        draft = report_of(referred(study(5)), rad)
        critical.critical_flag(scope=rad, referral_id=draft.referral_id, text="张力性气胸")
        # A junior's preliminary waiting for the senior's second read.
        waiting = report_of(referred(study(6)), rad)
        services.report_sign(
            scope=rad, report_id=waiting.pk, kind="preliminary", version=waiting.version
        )
        # Final (second read agreed), with an addendum, an acknowledged critical finding
        # and a link for the patient; then the clinic acknowledges the report.
        final = report_of(referred(study(7)), rad)
        final = services.report_sign(
            scope=rad, report_id=final.pk, kind="preliminary", version=final.version
        )
        final = services.report_second_read(
            scope=senior, report_id=final.pk, outcome="agree", version=final.version
        )
        services.addendum_add(scope=senior, report_id=final.pk, text="补充, 纵隔未见肿大淋巴结。")
        finding = critical.critical_flag(scope=rad, referral_id=final.referral_id, text="肺栓塞")
        critical.critical_acknowledge(scope=tech, finding_id=finding.pk, note="已电话通知")
        sharing.share_link_create(scope=tech, report_id=final.pk)
        referral_services.referral_acknowledge(scope=tech, referral_id=final.referral_id)
        # The senior's own final report.
        own = report_of(referred(study(8)), senior)
        services.report_sign(scope=senior, report_id=own.pk, kind="final", version=own.version)
        # An MDT session open now, over a study of the central hospital.
        starts = timezone.now() - timedelta(minutes=5)
        session = mdt_services.session_create(
            scope=senior,
            title="胸部肿瘤 MDT",
            starts_at=starts,
            ends_at=starts + timedelta(days=2),
            cases=[(study_at(central, patient_id="MDT-1", patient_key="fuzz-mdt"), "肺结节")],
        )
        mdt_services.invitation_create(
            scope=senior, session=session, user=users["mdt"], institution=east, role="participant"
        )
        mdt_services.invitation_create(
            scope=senior,
            session=session,
            user=users["radiologist"],
            institution=central,
            role="observer",
        )
        # An exam the clinic registered for its scanners' worklist.
        from referrals.registration.services import registration_create

        registration_create(
            scope=tech,
            patient_id="REG-1",
            family_name="王",
            given_name="建国",
            modality="CT",
            procedure_description="胸部CT平扫",
            scheduled_at=timezone.now() + timedelta(hours=2),
        )
    return {name: AuthToken.objects.create(users[name])[1] for name in DEMO_ROLES}
