"""Referral fixtures: studies as index rows (no pixels needed) and a reading setup.

The reading setup on top of the small world (tests/conftest.py):
- the north reader hospital has a general pool ("North general", rita and rob, capacity 10)
  which is also the alliance's fallback, and a thoracic pool (rita only);
- rule 10: CT CHEST from grassroots → thoracic pool; rule 20: any MR → general pool.
- sam: a senior radiologist at the reader hospital, lead of the general pool.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from alliance.models import AlliancePolicy, PoolMember, ReaderPool, RoutingRule
from referrals.models import Patient, Study
from tenants.models import Institution, Role, User

from .conftest import World, _person

_uids = itertools.count(1)


def study_at(
    institution: Institution,
    *,
    modality: str = "CT",
    body_part: str = "CHEST",
    patient_id: str = "P-1",
    patient_name: str = "Wang^Xiaoming",
    patient_key: str = "key-p1",
    study_date: str = "2026-11-20",
) -> Study:
    """A study row as ingest would leave it (no objects: the referral side needs none)."""
    patient, _ = Patient.objects.get_or_create(
        institution=institution,
        issuer="",
        patient_id=patient_id,
        defaults={"name": patient_name, "patient_key": patient_key},
    )
    n = next(_uids)
    return Study.objects.create(
        institution=institution,
        patient=patient,
        study_uid=f"1.2.826.0.1.3680043.10.{n}",
        study_date=study_date,
        modalities=modality,
        body_parts=body_part,
        pid=patient_id,
        patient_name=patient_name,
        patient_key=patient_key,
        num_series=1,
        num_instances=1,
        accession_number=f"ACC{n}",
    )


@dataclass
class Reading:
    general: ReaderPool
    thoracic: ReaderPool
    chest_rule: RoutingRule
    mr_rule: RoutingRule
    policy: AlliancePolicy
    rob: User
    sam: User


def reading_setup(world: World) -> Reading:
    rob = _person("rob", "罗伯", "Rob", world.reader, Role.RADIOLOGIST)
    sam = _person("sam", "山姆", "Sam", world.reader, Role.SENIOR_RADIOLOGIST)
    general = ReaderPool.objects.create(
        alliance=world.north,
        institution=world.reader,
        name="北城综合",
        name_en="North general",
        lead=sam,
    )
    thoracic = ReaderPool.objects.create(
        alliance=world.north,
        institution=world.reader,
        name="北城胸部",
        name_en="North thoracic",
        subspecialty="thoracic",
        overflow_to=general,
    )
    for pool, user in [(general, world.rita), (general, rob), (thoracic, world.rita)]:
        PoolMember.objects.create(pool=pool, user=user, capacity=10)
    chest = RoutingRule.objects.create(
        alliance=world.north,
        order=10,
        name="CT chest",
        source_tier="grassroots",
        modality="CT",
        body_part="CHEST",
        pool=thoracic,
    )
    mr = RoutingRule.objects.create(
        alliance=world.north, order=20, name="MR", modality="MR", pool=general
    )
    policy = AlliancePolicy.objects.create(alliance=world.north, fallback_pool=general)
    return Reading(
        general=general,
        thoracic=thoracic,
        chest_rule=chest,
        mr_rule=mr,
        policy=policy,
        rob=rob,
        sam=sam,
    )
