"""The demo alliance: one central hospital, two county hospitals, five clinics, a commission."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from tenants.models import Institution, InstitutionKind, Membership, Role, User

from .models import (
    Alliance,
    AllianceMember,
    AlliancePolicy,
    PoolMember,
    ReaderPool,
    RoutingRule,
    SiteSettings,
    Tier,
)
from .signals import alliance_created

DEMO_PASSWORD = "hub-demo-2026"  # noqa: S105 - printed on purpose; demo data only

K = InstitutionKind
INSTITUTIONS = [
    # code, Chinese name, English name, kind, tier, region code
    (
        "jc-central",
        "江城市中心医院",
        "Jiangcheng Central Hospital",
        K.CENTRAL_HOSPITAL,
        Tier.CENTRAL,
        "421000",
    ),
    (
        "jc-east-county",
        "江东县人民医院",
        "Jiangdong County People's Hospital",
        K.COUNTY_HOSPITAL,
        Tier.COUNTY,
        "421021",
    ),
    (
        "jc-west-county",
        "江西县人民医院",
        "Jiangxi County People's Hospital",
        K.COUNTY_HOSPITAL,
        Tier.COUNTY,
        "421022",
    ),
    (
        "qingshan-thc",
        "青山镇卫生院",
        "Qingshan Township Health Centre",
        K.TOWNSHIP_CENTRE,
        Tier.GRASSROOTS,
        "421021",
    ),
    (
        "liuhe-thc",
        "柳河镇卫生院",
        "Liuhe Township Health Centre",
        K.TOWNSHIP_CENTRE,
        Tier.GRASSROOTS,
        "421021",
    ),
    (
        "donghu-chc",
        "东湖社区卫生服务中心",
        "Donghu Community Health Service Centre",
        K.GRASSROOTS_CLINIC,
        Tier.GRASSROOTS,
        "421002",
    ),
    (
        "shiqiao-vc",
        "石桥村卫生室",
        "Shiqiao Village Clinic",
        K.GRASSROOTS_CLINIC,
        Tier.GRASSROOTS,
        "421022",
    ),
    (
        "nanling-thc",
        "南岭镇卫生院",
        "Nanling Township Health Centre",
        K.TOWNSHIP_CENTRE,
        Tier.GRASSROOTS,
        "421022",
    ),
]
COMMISSION = ("jc-hc", "江城市卫生健康委员会", "Jiangcheng Municipal Health Commission")


@dataclass(frozen=True)
class DemoUser:
    username: str
    name: str
    name_en: str
    institution: str
    role: str
    staff: bool = False


DEMO_USERS = [
    DemoUser("tech", "王小明", "Wang Xiaoming", "qingshan-thc", Role.CLINIC_TECHNICIAN),
    DemoUser("referrer", "李华", "Li Hua", "qingshan-thc", Role.REFERRING_PHYSICIAN),
    DemoUser("radiologist", "张伟", "Zhang Wei", "jc-central", Role.RADIOLOGIST),
    DemoUser("senior", "陈静", "Chen Jing", "jc-central", Role.SENIOR_RADIOLOGIST),
    DemoUser("hospadmin", "刘洋", "Liu Yang", "jc-central", Role.HOSPITAL_ADMIN),
    DemoUser("allianceadmin", "赵敏", "Zhao Min", "jc-central", Role.ALLIANCE_ADMIN, staff=True),
    DemoUser("commission", "孙丽", "Sun Li", "jc-hc", Role.COMMISSION_VIEWER),
    DemoUser("mdt", "周强", "Zhou Qiang", "jc-east-county", Role.MDT_MEMBER),
]


def demo_is_seeded() -> bool:
    return Institution.objects.exists()


@transaction.atomic
def demo_seed() -> Alliance:
    """Create the demo alliance and its users. Safe to run again: it only fills gaps."""
    by_code: dict[str, Institution] = {}
    tiers: dict[str, Tier] = {}
    for code, name, name_en, kind, tier, region in INSTITUTIONS:
        by_code[code], _ = Institution.objects.get_or_create(
            code=code,
            defaults={"name": name, "name_en": name_en, "kind": kind, "region_code": region},
        )
        tiers[code] = tier
    code, name, name_en = COMMISSION
    by_code[code], _ = Institution.objects.get_or_create(
        code=code,
        defaults={
            "name": name,
            "name_en": name_en,
            "kind": K.HEALTH_COMMISSION,
            "region_code": "421000",
        },
    )
    alliance, created = Alliance.objects.get_or_create(
        code="jiangcheng",
        defaults={
            "name": "江城市医疗联合体",
            "name_en": "Jiangcheng Medical Alliance",
            "region_code": "421000",
            "lead_hospital": by_code["jc-central"],
            "commission": by_code["jc-hc"],
        },
    )
    for code, tier in tiers.items():
        AllianceMember.objects.get_or_create(
            alliance=alliance, institution=by_code[code], defaults={"tier": tier}
        )
    for demo in DEMO_USERS:
        user = User.objects.filter(username=demo.username).first()
        if user is None:
            user = User.objects.create_user(
                username=demo.username,
                password=DEMO_PASSWORD,
                name=demo.name,
                name_en=demo.name_en,
                is_staff=demo.staff,
            )
        elif user.is_superuser:
            # Earlier demos made the alliance administrator a superuser, who sees every
            # alliance; an alliance administrator sees their own alliance only.
            User.objects.filter(pk=user.pk).update(is_superuser=False)
        Membership.objects.get_or_create(
            user=user,
            institution=by_code[demo.institution],
            role=demo.role,
            revoked_at=None,
        )
    demo_routing_seed(alliance, by_code)
    if created:  # a reader's first case must find templates: "Start the report" needs one
        alliance_created.send(sender=Alliance, alliance=alliance)
    return alliance


# Reader pools at the central hospital: (name, English name, subspecialty, readers).
DEMO_POOLS = [
    ("放射科综合组", "Radiology general", "", ["radiologist", "senior"]),
    ("胸部影像组", "Thoracic imaging", "thoracic", ["radiologist", "senior"]),
]
# Routing rules: (order, name, source tier, modality, body part, pool index).
DEMO_RULES = [
    (10, "CT chest from grassroots → thoracic", Tier.GRASSROOTS, "CT", "CHEST", 1),
    (20, "Everything else from grassroots → general", Tier.GRASSROOTS, "", "", 0),
    (30, "County hospitals → general", Tier.COUNTY, "", "", 0),
]
# The site whose studies are sent for a remote read as soon as they are complete.
DEMO_AUTO_READ_SITE = "qingshan-thc"


def demo_routing_seed(alliance: Alliance, by_code: dict[str, Institution]) -> None:
    """Pools, rules, a deadline policy with a fallback, and one clinic on automatic reads.

    With these, a study uploaded at the demo clinic reaches the demo radiologists'
    worklist by itself. Like the rest of the seed, it only fills gaps.
    """
    central = by_code["jc-central"]
    users = {
        u.username: u
        for u in User.objects.filter(username__in=["radiologist", "senior", "hospadmin"])
    }
    pools = []
    for name, name_en, subspecialty, readers in DEMO_POOLS:
        pool, _ = ReaderPool.objects.get_or_create(
            alliance=alliance,
            institution=central,
            name=name,
            defaults={
                "name_en": name_en,
                "subspecialty": subspecialty,
                "lead": users.get("senior"),
            },
        )
        for username in readers:
            if username in users:
                PoolMember.objects.get_or_create(pool=pool, user=users[username])
        pools.append(pool)
    if pools[1].overflow_to_id is None:
        ReaderPool.objects.filter(pk=pools[1].pk).update(overflow_to=pools[0])
    for order, name, tier, modality, body_part, pool_index in DEMO_RULES:
        RoutingRule.objects.get_or_create(
            alliance=alliance,
            name=name,
            defaults={
                "order": order,
                "source_tier": tier,
                "modality": modality,
                "body_part": body_part,
                "pool": pools[pool_index],
            },
        )
    policy, _ = AlliancePolicy.objects.get_or_create(
        alliance=alliance,
        defaults={"fallback_pool": pools[0], "duty_officer": users.get("hospadmin")},
    )
    if policy.fallback_pool_id is None:
        AlliancePolicy.objects.filter(pk=policy.pk).update(fallback_pool=pools[0])
    member = AllianceMember.objects.get(alliance=alliance, institution=by_code[DEMO_AUTO_READ_SITE])
    SiteSettings.objects.get_or_create(member=member, defaults={"auto_remote_read": True})


DEMO_PATIENTS = [
    # (clinic, patient ID, DICOM person name, birth date, sex, study description)
    ("qingshan-thc", "QS0001", "Wang^Jianguo=王^建国", "19580312", "M", "CT CHEST"),
    ("qingshan-thc", "QS0002", "Li^Xiuying=李^秀英", "19660721", "F", "CT CHEST"),
    ("donghu-chc", "DH0107", "Zhang^Min=张^敏", "19790105", "F", "CT CHEST"),
]


def demo_studies_seed(*, slices: int = 24) -> int:
    """A few synthetic chest CTs at the clinics, stored the way any upload is."""
    import tempfile
    from pathlib import Path

    from referrals.archive.ingest import instance_store
    from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
    from referrals.models import Study

    if Study.objects.exists():
        return 0
    stored = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (code, pid, name, birth, sex, description) in enumerate(DEMO_PATIENTS):
            clinic = Institution.objects.get(code=code)
            patient = SyntheticPatient(pid, name, birth_date=birth, sex=sex)
            for index, ds in enumerate(
                ct_series(
                    patient=patient,
                    count=slices,
                    accession=f"DEMO{n + 1:04d}",
                    description=description,
                )
            ):
                path = Path(tmp) / f"{n}-{index}.dcm"
                path.write_bytes(to_bytes(ds))
                if instance_store(institution=clinic, path=path, via="demo").ok:
                    stored += 1
    return stored


def demo_logins() -> list[str]:
    lines = []
    for demo in DEMO_USERS:
        role = Role(demo.role).label
        lines.append(f"  {demo.username:<14} {DEMO_PASSWORD}   {role} · {demo.name_en}")
    return lines
