"""The benchmark's tenants: a site with a technician (API token) and an administrator.

A run stores into a site of its own: the hub keys instances by site, so the same corpus
is new to each run's site and is stored for real, never answered as "already held".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from referrals.models import Instance, Patient, Series, Study, instance_object_key
from tenants.access import scope_for_user
from tenants.models import Institution, InstitutionKind, Membership, Role, User
from tenants.services import gateway_credential_create


@dataclass
class BenchSite:
    institution: Institution
    technician: User
    admin: User
    token: str

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def _user(username: str, institution: Institution, role: str) -> User:
    user, _created = User.objects.get_or_create(
        username=username, defaults={"name": "基准测试", "name_en": "Benchmark"}
    )
    Membership.objects.get_or_create(user=user, institution=institution, role=role)
    return user


@transaction.atomic
def bench_site(code: str | None = None, *, prefix: str = "bench") -> BenchSite:
    """The site `code` (made if missing), or a fresh one named from `prefix` and the time."""
    code = code or f"{prefix}-{timezone.now():%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    institution, _created = Institution.objects.get_or_create(
        code=code,
        defaults={
            "name": f"基准测试站点 {code}",
            "name_en": f"Benchmark {code}",
            "kind": InstitutionKind.GRASSROOTS_CLINIC,
            "region_code": "421000",
        },
    )
    technician = _user(f"{code}-tech"[:150], institution, Role.CLINIC_TECHNICIAN)
    admin = _user(f"{code}-admin"[:150], institution, Role.HOSPITAL_ADMIN)
    _instance, token = AuthToken.objects.create(user=technician)
    return BenchSite(institution=institution, technician=technician, admin=admin, token=token)


def gateway_credential(site: BenchSite, calling_ae_titles: list[str]) -> tuple[str, str]:
    """A gateway credential for the site, made as an administrator would: (key id, secret)."""
    credential, secret = gateway_credential_create(
        scope=scope_for_user(site.admin),
        label="benchmark gateway",
        calling_ae_titles=calling_ae_titles,
    )
    return credential.key_id, secret


def site_purge(institution: Institution) -> int:
    """Delete what a benchmark stored for its site: objects first, then the index rows.

    A STOW-RS run leaves about 1 GB in storage; re-runs on a developer's machine would
    fill its disk otherwise. The site, its users and its audit trail stay.
    """
    instances = Instance.objects.filter(institution=institution)
    keys = [
        instance_object_key(object_id)
        for object_id in instances.values_list("object_id", flat=True).iterator()
    ]
    keys += list(
        Series.objects.filter(institution=institution)
        .exclude(thumbnail_key="")
        .values_list("thumbnail_key", flat=True)
    )
    for key in keys:
        default_storage.delete(key)
    with transaction.atomic():
        Study.objects.filter(institution=institution).delete()  # series and instances cascade
        Patient.objects.filter(institution=institution).delete()
    return len(keys)
