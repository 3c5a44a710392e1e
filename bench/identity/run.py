"""Run the master patient index over a synthetic alliance and score it against the truth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations

from django.db import transaction

from alliance.models import Alliance, AllianceMember, Tier
from referrals.archive.patient_key import patient_key
from referrals.identity import matching
from referrals.identity.services import alliance_links_rebuild
from referrals.models import LinkStatus, Patient, PatientLink
from tenants.models import Institution, InstitutionKind

from .synthetic import SyntheticAlliance

PREFIX = "bench-identity"


@dataclass(frozen=True)
class LinkageScore:
    records: int
    true_pairs: int
    linked_pairs: int
    true_linked_pairs: int
    proposed: int
    proposed_true: int
    recall_after_review: float
    seconds: float

    @property
    def precision(self) -> float:
        return self.true_linked_pairs / self.linked_pairs if self.linked_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_linked_pairs / self.true_pairs if self.true_pairs else 1.0


def world_load(synthetic: SyntheticAlliance, *, tag: str) -> tuple[Alliance, dict[int, int]]:
    """The alliance, its sites and its patient records in the database; record pk -> person."""
    sites = []
    for n in range(synthetic.sites):
        site, _ = Institution.objects.get_or_create(
            code=f"{PREFIX}-{tag}-{n}",
            defaults={
                "name": f"基准身份站点{n}",
                "name_en": f"Identity bench site {n}",
                "kind": InstitutionKind.CENTRAL_HOSPITAL
                if n == 0
                else InstitutionKind.TOWNSHIP_CENTRE,
                "region_code": "421000",
            },
        )
        sites.append(site)
    commission, _ = Institution.objects.get_or_create(
        code=f"{PREFIX}-{tag}-hc",
        defaults={
            "name": "基准身份卫健委",
            "name_en": "Identity bench commission",
            "kind": InstitutionKind.HEALTH_COMMISSION,
            "region_code": "421000",
        },
    )
    alliance, _ = Alliance.objects.get_or_create(
        code=f"{PREFIX}-{tag}",
        defaults={
            "name": "基准身份医联体",
            "name_en": "Identity bench",
            "region_code": "421000",
            "lead_hospital": sites[0],
            "commission": commission,
        },
    )
    for n, site in enumerate(sites):
        AllianceMember.objects.get_or_create(
            alliance=alliance,
            institution=site,
            defaults={"tier": Tier.CENTRAL if n == 0 else Tier.GRASSROOTS},
        )
    rows: dict[tuple[int, str, str], Patient] = {}
    truth: dict[tuple[int, str, str], int] = {}
    for r in synthetic.records:
        site = sites[r.site]
        ident = (site.pk, r.issuer, r.patient_id)
        if ident in rows:  # one site's one ID is one record (as the index holds it)
            continue
        key = patient_key(patient_id=r.patient_id, issuer=r.issuer, site_code=site.code)
        rows[ident] = Patient(
            institution=site,
            patient_id=r.patient_id,
            issuer=r.issuer,
            name=r.name,
            birth_date=r.birth_date,
            sex=r.sex,
            patient_key=key,
            own_key=key,
        )
        truth[ident] = r.person
    with transaction.atomic():
        Patient.objects.bulk_create(list(rows.values()), batch_size=2000)
    return alliance, {rows[i].pk: person for i, person in truth.items()}


def _components(edges: list[tuple[int, int]], nodes: list[int]) -> dict[int, int]:
    parent = {n: n for n in nodes}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        parent[find(a)] = find(b)
    return {n: find(n) for n in nodes}


def linkage_score(
    alliance: Alliance, truth: dict[int, int], *, upper: float, lower: float
) -> LinkageScore:
    """Run the linker and compare its persons (equal patient keys) with the truth."""
    started = time.perf_counter()
    alliance_links_rebuild(alliance_id=alliance.pk, upper=upper, lower=lower)
    seconds = time.perf_counter() - started
    keys = dict(Patient.objects.filter(pk__in=truth).values_list("pk", "patient_key"))
    true_pairs = linked = true_linked = 0
    by_key: dict[str, list[int]] = {}
    by_person: dict[int, list[int]] = {}
    for pk, key in keys.items():
        by_key.setdefault(key, []).append(pk)
        by_person.setdefault(truth[pk], []).append(pk)
    for members in by_person.values():
        true_pairs += len(members) * (len(members) - 1) // 2
    for members in by_key.values():
        for a, b in combinations(members, 2):
            linked += 1
            true_linked += truth[a] == truth[b]
    proposals = list(
        PatientLink.objects.filter(alliance=alliance, status=LinkStatus.PROPOSED).values_list(
            "patient_a_id", "patient_b_id"
        )
    )
    proposed_true = [(a, b) for a, b in proposals if truth[a] == truth[b]]
    # A reviewer who accepts the true proposals (and refuses the others) would join these.
    same_key = [(members[0], m) for members in by_key.values() for m in members[1:]]
    after = _components(same_key + proposed_true, list(keys))
    groups: dict[int, list[int]] = {}
    for pk, root in after.items():
        groups.setdefault(root, []).append(pk)
    reviewed_true = sum(
        truth[a] == truth[b] for members in groups.values() for a, b in combinations(members, 2)
    )
    return LinkageScore(
        records=len(keys),
        true_pairs=true_pairs,
        linked_pairs=linked,
        true_linked_pairs=true_linked,
        proposed=len(proposals),
        proposed_true=len(proposed_true),
        recall_after_review=reviewed_true / true_pairs if true_pairs else 1.0,
        seconds=seconds,
    )


def world_remove(alliance: Alliance) -> None:
    sites = list(
        AllianceMember.objects.filter(alliance=alliance).values_list("institution_id", flat=True)
    )
    with transaction.atomic():
        PatientLink.objects.filter(alliance=alliance).delete()
        Patient.objects.filter(institution_id__in=sites).delete()
        commission_id = alliance.commission_id
        alliance.delete()
        Institution.objects.filter(pk__in=[*sites, commission_id]).delete()


DEFAULT_UPPER, DEFAULT_LOWER = matching.UPPER, matching.LOWER
