"""MDT fixtures on top of the small world (tests/conftest.py).

rita (radiologist, north reader hospital) chairs a session over one study of her hospital;
alice (technician, north clinic) and mia (MDT member, north clinic) are invited; oscar
(south: another alliance) cannot be. The window is open now unless a test says otherwise.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from consultations import services
from consultations.models import Invitation, MdtSession
from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient
from referrals.models import Study
from tenants import access
from tenants.models import Institution, Role, User

from .conftest import World, _person
from .dicom_support import ct_files
from .referral_support import study_at


@dataclass
class Mdt:
    session: MdtSession
    study: Study
    mia: User
    alice_invitation: Invitation
    mia_invitation: Invitation


def chair_scope(world: World) -> access.Scope:
    return access.scope_for_user(world.rita, institution_id=world.reader.pk)


def mdt_setup(
    world: World,
    *,
    study: Study | None = None,
    opens_in: timedelta = timedelta(0),
    lasts: timedelta = timedelta(hours=2),
) -> Mdt:
    mia = _person("mia", "米娅", "Mia", world.clinic, Role.MDT_MEMBER)
    study = study or study_at(
        world.reader, modality="CT", patient_id="MDT-1", patient_name="Li^Lei=李^雷"
    )
    starts = timezone.now() - timedelta(minutes=5) + opens_in
    session = services.session_create(
        scope=chair_scope(world),
        title="胸部肿瘤 MDT",
        starts_at=starts,
        ends_at=starts + lasts,
        cases=[(study, "肺结节随访 讨论手术指征")],
    )
    alice = services.invitation_create(
        scope=chair_scope(world),
        session=session,
        user=world.alice,
        institution=world.clinic,
        role="participant",
    )
    mia_inv = services.invitation_create(
        scope=chair_scope(world),
        session=session,
        user=mia,
        institution=world.clinic,
        role="observer",
    )
    return Mdt(
        session=session, study=study, mia=mia, alice_invitation=alice, mia_invitation=mia_inv
    )


def stored_ct(institution: Institution, count: int, *, patient_id: str = "MDT-CT") -> Study:
    """A CT series of `count` slices really stored (files and rows) at `institution`."""
    patient = SyntheticPatient(patient_id, "Zhao^Lei=赵^雷")
    with tempfile.TemporaryDirectory() as folder:
        for n, data in enumerate(ct_files(count, size=64, patient=patient, body_part="CHEST")):
            path = Path(folder) / f"{n}.dcm"
            path.write_bytes(data)
            outcome = instance_store(institution=institution, path=path, via="test")
            assert outcome.status == "stored", outcome
    return Study.objects.get(institution=institution, pid=patient_id)
