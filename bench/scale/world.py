"""The scale world's people and places: alliances of sites in tiers, pools, rules, readers.

A few hundred rows made with the ORM (bulk_create); the million studies and their referral
history are written in SQL by bench/scale/seed.py. Everything is named from
`PREFIX`, so a benchmark finds the world again in a later run and never touches other data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth.hashers import make_password
from django.db import transaction

from alliance.models import (
    Alliance,
    AllianceMember,
    AlliancePolicy,
    BreachAction,
    PoolMember,
    ReaderPool,
    RoutingRule,
    SiteSettings,
    Tier,
)
from tenants.models import Institution, InstitutionKind, Membership, Role, User

PREFIX = "scale-"
SITES_PER_ALLIANCE = 50
CENTRAL_READERS = 50
COUNTY_READERS = 6
READER_CAPACITY = 40
POOL_CAP = 2000


@dataclass
class SiteRow:
    """One member site, in the order studies are spread over (biggest first)."""

    institution_id: int
    alliance_id: int
    tier: str
    code: str


@dataclass
class PoolRow:
    pool_id: int
    alliance_id: int
    institution_id: int
    key: str  # general, thoracic, neuro, msk, county
    readers: list[int] = field(default_factory=list)


@dataclass
class ScaleWorld:
    alliances: list[Alliance]
    sites: list[SiteRow]
    pools: list[PoolRow]


def alliance_code(index: int) -> str:
    return f"{PREFIX}a{index}"


def world_exists() -> bool:
    return Alliance.objects.filter(code=alliance_code(0)).exists()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _institution(code: str, name: str, name_en: str, kind: str) -> Institution:
    return Institution(code=code, name=name, name_en=name_en, kind=kind, region_code="421000")


def _users(specs: list[tuple[str, str, str]], password: str) -> list[User]:
    """Users by (username, Chinese name, English name), created in one statement."""
    User.objects.bulk_create(
        [User(username=u, name=n, name_en=e, password=password) for u, n, e in specs],
        ignore_conflicts=True,
    )
    by_name = User.objects.in_bulk([u for u, _n, _e in specs], field_name="username")
    return [by_name[u] for u, _n, _e in specs]


@transaction.atomic
def world_create(*, sites: int) -> ScaleWorld:
    """Alliances of about 50 sites each: one central hospital, county hospitals (one per
    twelve sites), the rest township centres; a commission over each."""
    password = make_password(None)  # unusable: benchmarks sign in with tokens or sessions
    count = max(1, round(sites / SITES_PER_ALLIANCE))
    alliances: list[Alliance] = []
    site_rows: list[SiteRow] = []
    pool_rows: list[PoolRow] = []
    for a, size in enumerate(_split(sites, count)):
        code = alliance_code(a)
        counties = max(1, (size - 1) // 12) if size >= 3 else size - 1
        grassroots = size - 1 - counties
        central = _institution(
            f"{code}-central",
            f"基准中心医院{a}",
            f"Scale Central {a}",
            InstitutionKind.CENTRAL_HOSPITAL,
        )
        commission = _institution(
            f"{code}-hc",
            f"基准卫健委{a}",
            f"Scale Commission {a}",
            InstitutionKind.HEALTH_COMMISSION,
        )
        county_insts = [
            _institution(
                f"{code}-county{c:02d}",
                f"基准县医院{a}-{c}",
                f"Scale County {a}-{c}",
                InstitutionKind.COUNTY_HOSPITAL,
            )
            for c in range(counties)
        ]
        clinic_insts = [
            _institution(
                f"{code}-site{s:03d}",
                f"基准卫生院{a}-{s}",
                f"Scale Township {a}-{s}",
                InstitutionKind.TOWNSHIP_CENTRE,
            )
            for s in range(grassroots)
        ]
        made = Institution.objects.bulk_create([central, commission, *county_insts, *clinic_insts])
        central, commission = made[0], made[1]
        county_insts, clinic_insts = made[2 : 2 + counties], made[2 + counties :]
        alliance = Alliance.objects.create(
            code=code,
            name=f"基准医联体{a}",
            name_en=f"Scale alliance {a}",
            region_code="421000",
            lead_hospital=central,
            commission=commission,
        )
        alliances.append(alliance)
        placed = (
            [(central, Tier.CENTRAL)]
            + [(c, Tier.COUNTY) for c in county_insts]
            + [(c, Tier.GRASSROOTS) for c in clinic_insts]
        )
        members = AllianceMember.objects.bulk_create(
            [AllianceMember(alliance=alliance, institution=i, tier=t) for i, t in placed]
        )
        SiteSettings.objects.bulk_create(
            [SiteSettings(member=m, auto_remote_read=m.tier == Tier.GRASSROOTS) for m in members]
        )
        site_rows += [SiteRow(i.pk, alliance.pk, str(t), i.code) for i, t in placed]

        # People: readers at the central hospital and each county, a technician per site.
        central_readers = _users(
            [
                (f"{code}-reader{r:02d}", f"阅片医生{a}-{r}", f"Reader {a}-{r}")
                for r in range(CENTRAL_READERS)
            ],
            password,
        )
        county_readers = [
            _users(
                [
                    (
                        f"{code}-county{c:02d}-reader{r}",
                        f"县医生{a}-{c}-{r}",
                        f"County reader {a}-{c}-{r}",
                    )
                    for r in range(COUNTY_READERS)
                ],
                password,
            )
            for c in range(counties)
        ]
        technicians = _users(
            [
                (f"{i.code}-tech", f"技师{i.code[-3:]}", f"Technician {i.code}")
                for i in clinic_insts
            ],
            password,
        )
        admins = _users([(f"{code}-admin", f"管理员{a}", f"Admin {a}")], password)
        memberships = [
            Membership(
                user=u,
                institution=central,
                role=Role.SENIOR_RADIOLOGIST if r < 10 else Role.RADIOLOGIST,
            )
            for r, u in enumerate(central_readers)
        ]
        memberships += [
            Membership(user=u, institution=county_insts[c], role=Role.RADIOLOGIST)
            for c, readers in enumerate(county_readers)
            for u in readers
        ]
        memberships += [
            Membership(user=u, institution=i, role=Role.CLINIC_TECHNICIAN)
            for u, i in zip(technicians, clinic_insts, strict=True)
        ]
        memberships += [Membership(user=admins[0], institution=central, role=Role.ALLIANCE_ADMIN)]
        Membership.objects.bulk_create(memberships)

        # Pools: the central hospital's general pool (every reader; also the fallback) and
        # three subspecialty pools overflowing into it; a general pool per county.
        general = ReaderPool.objects.create(
            alliance=alliance,
            institution=central,
            name="综合阅片组",
            name_en="General reading",
            cap=POOL_CAP,
            lead=central_readers[0],
        )
        subs = {
            key: ReaderPool.objects.create(
                alliance=alliance,
                institution=central,
                name=name,
                name_en=name_en,
                subspecialty=key,
                cap=POOL_CAP,
                overflow_to=general,
                lead=central_readers[0],
            )
            for key, name, name_en in [
                ("thoracic", "胸部组", "Thoracic"),
                ("neuro", "神经组", "Neuro"),
                ("msk", "骨肌组", "Musculoskeletal"),
            ]
        }
        county_pools = [
            ReaderPool.objects.create(
                alliance=alliance,
                institution=inst,
                name=f"县阅片组{c}",
                name_en=f"County {c}",
                cap=POOL_CAP,
                overflow_to=general,
                lead=county_readers[c][0],
            )
            for c, inst in enumerate(county_insts)
        ]
        thirds = CENTRAL_READERS // 3
        membership_of = {general.pk: central_readers}
        for n, pool in enumerate(subs.values()):
            membership_of[pool.pk] = central_readers[n * thirds : (n + 1) * thirds]
        for c, pool in enumerate(county_pools):
            membership_of[pool.pk] = county_readers[c]
        PoolMember.objects.bulk_create(
            [
                PoolMember(pool_id=pool_id, user=u, capacity=READER_CAPACITY)
                for pool_id, readers in membership_of.items()
                for u in readers
            ]
        )
        pool_rows.append(
            PoolRow(general.pk, alliance.pk, central.pk, "general", [u.pk for u in central_readers])
        )
        pool_rows += [
            PoolRow(p.pk, alliance.pk, central.pk, key, [u.pk for u in membership_of[p.pk]])
            for key, p in subs.items()
        ]
        pool_rows += [
            PoolRow(
                p.pk, alliance.pk, p.institution_id, "county", [u.pk for u in membership_of[p.pk]]
            )
            for p in county_pools
        ]

        # Rules, tried in order; what none matches goes to the general pool (flagged).
        rules = [
            RoutingRule(order=5, name="STAT → general", priority="stat", pool=general),
            RoutingRule(
                order=10, name="CT chest", modality="CT", body_part="CHEST", pool=subs["thoracic"]
            ),
            RoutingRule(order=20, name="MR", modality="MR", pool=subs["neuro"]),
            RoutingRule(
                order=30, name="CT head", modality="CT", body_part="HEAD", pool=subs["neuro"]
            ),
            RoutingRule(
                order=40,
                name="Night DX/CR",
                modality="DX",
                time_from=dt.time(22),
                time_to=dt.time(8),
                pool=general,
            ),
            RoutingRule(order=50, name="CR", modality="CR", pool=subs["msk"]),
            RoutingRule(order=60, name="Any CT", modality="CT", pool=general),
        ]
        # The rest of each clinic's work is read at its county hospital.
        rules += [
            RoutingRule(
                order=100 + s,
                name=f"{inst.code} → county {s % counties}",
                source_institution=inst,
                pool=county_pools[s % counties],
            )
            for s, inst in enumerate(clinic_insts)
        ]
        for rule in rules:
            rule.alliance = alliance
        RoutingRule.objects.bulk_create(rules)
        AlliancePolicy.objects.create(
            alliance=alliance,
            fallback_pool=general,
            breach_action=BreachAction.NOTIFY_LEAD,
            duty_officer=admins[0],
        )
    # Studies go to big sites first: central hospitals, then counties, then the clinics.
    order = {Tier.CENTRAL: 0, Tier.COUNTY: 1, Tier.GRASSROOTS: 2}
    site_rows.sort(key=lambda s: (order[Tier(s.tier)], s.code))
    return ScaleWorld(alliances=alliances, sites=site_rows, pools=pool_rows)


def central_readers(alliance_index: int = 0) -> list[User]:
    """The readers of an alliance's central hospital, in name order."""
    code = alliance_code(alliance_index)
    return list(User.objects.filter(username__startswith=f"{code}-reader").order_by("username"))


def central_hospital(alliance_index: int = 0) -> Institution:
    return Institution.objects.get(code=f"{alliance_code(alliance_index)}-central")


def grassroots_sites(alliance_index: int = 0) -> list[Institution]:
    code = alliance_code(alliance_index)
    return list(Institution.objects.filter(code__startswith=f"{code}-site").order_by("code"))
