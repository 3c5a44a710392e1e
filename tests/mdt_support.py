"""MDT fixtures on top of the small world (tests/conftest.py).

rita (radiologist, north reader hospital) chairs a session over one study of her hospital;
alice (technician, north clinic) and mia (MDT member, north clinic) are invited; oscar
(south: another alliance) cannot be. The window is open now unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from consultations import services
from consultations.models import Invitation, MdtSession
from referrals.models import Study
from tenants import access
from tenants.models import Role, User

from .conftest import World, _person
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


def mdt_setup(world: World, *, study: Study | None = None, opens_in: timedelta = timedelta(0),
              lasts: timedelta = timedelta(hours=2)) -> Mdt:
    mia = _person("mia", "米娅", "Mia", world.clinic, Role.MDT_MEMBER)
    study = study or study_at(world.reader, modality="CT", patient_id="MDT-1",
                              patient_name="Li^Lei=李^雷")
    starts = timezone.now() - timedelta(minutes=5) + opens_in
    session = services.session_create(
        scope=chair_scope(world), title="胸部肿瘤 MDT", starts_at=starts, ends_at=starts + lasts,
        cases=[(study, "肺结节随访 讨论手术指征")])
    alice = services.invitation_create(scope=chair_scope(world), session=session,
                                       user=world.alice, institution=world.clinic,
                                       role="participant")
    mia_inv = services.invitation_create(scope=chair_scope(world), session=session, user=mia,
                                         institution=world.clinic, role="observer")
    return Mdt(session=session, study=study, mia=mia, alice_invitation=alice,
               mia_invitation=mia_inv)
