"""Reporting fixtures: a claimed CT chest case (rita, junior) and an MR case (sam, senior)."""

from __future__ import annotations

from dataclasses import dataclass

from alliance.models import PoolMember
from referrals.models import Referral
from referrals.workflow import services as referral_services
from reporting.models import ReportTemplate
from reporting.seed import templates_seed
from tenants import access
from tenants.models import Role, User

from .conftest import World, _person
from .referral_support import Reading, reading_setup, study_at


def scope(user, institution) -> access.Scope:
    return access.scope_for_user(user, institution_id=institution.pk)


CHEST = {"findings": "右上肺 6 mm 实性结节。", "lung_rads": "2", "impression": "良性表现。"}


@dataclass
class Desk:
    world: World
    reading: Reading
    chest: Referral  # claimed by rita (radiologist)
    mr: Referral  # claimed by sam (senior radiologist)
    ct_chest: ReportTemplate
    mr_knee: ReportTemplate
    ada: User  # alliance admin at the north reader hospital

    def rita(self) -> access.Scope:
        return scope(self.world.rita, self.world.reader)

    def sam(self) -> access.Scope:
        return scope(self.reading.sam, self.world.reader)

    def rob(self) -> access.Scope:
        return scope(self.reading.rob, self.world.reader)

    def alice(self) -> access.Scope:
        return scope(self.world.alice, self.world.clinic)


def desk_make(world: World, django_capture_on_commit_callbacks) -> Desk:
    """The reading desk (wrap it in a fixture: `desk_make(world, capture)`)."""
    reading = reading_setup(world)
    PoolMember.objects.create(pool=reading.general, user=reading.sam, capacity=10)
    templates_seed(alliance=world.north)
    alice = scope(world.alice, world.clinic)
    with django_capture_on_commit_callbacks(execute=True):
        chest, _ = referral_services.referral_request(scope=alice, study=study_at(world.clinic))
        mr, _ = referral_services.referral_request(
            scope=alice,
            study=study_at(
                world.clinic,
                modality="MR",
                body_part="KNEE",
                patient_id="P-2",
                patient_key="key-p2",
            ),
        )
    with django_capture_on_commit_callbacks(execute=True):
        referral_services.referral_claim(
            scope=scope(world.rita, world.reader), referral_id=chest.pk
        )
        referral_services.referral_claim(scope=scope(reading.sam, world.reader), referral_id=mr.pk)
    chest.refresh_from_db()
    mr.refresh_from_db()
    return Desk(
        world=world,
        reading=reading,
        chest=chest,
        mr=mr,
        ct_chest=ReportTemplate.objects.get(alliance=world.north, code="ct-chest"),
        mr_knee=ReportTemplate.objects.get(alliance=world.north, code="mr-knee"),
        ada=_person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN),
    )
