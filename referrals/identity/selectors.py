"""Reads of the master patient index, for the alliance administrator's identity pages.

Who may see what is decided here and in referrals/access_rules.py: links through the access
layer (the caller's alliances); patient records for identity work only at the sites of the
caller's alliances, and only for the roles of `PATIENT_IDENTITY_ROLES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from alliance.models import AllianceMember
from referrals.models import LinkStatus, Patient, PatientIdDomain, PatientLink
from tenants import access
from tenants.access import Scope
from tenants.models import GatewayCredential
from tenants.roles import PATIENT_IDENTITY_ROLES

from .names import name_match_form
from .resident_id import resident_id_normalize, resident_key


def identity_sites(scope: Scope) -> QuerySet[AllianceMember]:
    """The member rows of the caller's alliances, for who reviews identities; none else."""
    if not scope.has_any_role(*PATIENT_IDENTITY_ROLES):
        return AllianceMember.objects.none()
    return AllianceMember.objects.filter(alliance_id__in=list(scope.alliance_ids))


def _patients(scope: Scope) -> QuerySet[Patient]:
    sites = identity_sites(scope).values("institution_id")
    return Patient.objects.filter(institution_id__in=sites)


def patient_for_identity(scope: Scope, pk: Any) -> Patient:
    """One patient record of the caller's alliances, or 404 alike for missing and not yours."""
    try:
        return _patients(scope).select_related("institution").get(pk=pk)
    except (Patient.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def link_for_user(scope: Scope, pk: Any) -> PatientLink:
    return access.get_visible_or_404(
        scope,
        PatientLink.objects.select_related(
            "patient_a__institution", "patient_b__institution", "decided_by"
        ),
        pk=pk,
    )


def links_proposed(scope: Scope) -> QuerySet[PatientLink]:
    """Pairs waiting for a person, the most likely first."""
    return (
        access.visible(scope, PatientLink)
        .filter(status=LinkStatus.PROPOSED)
        .select_related("patient_a__institution", "patient_b__institution")
        .order_by("-score", "pk")
    )


def links_of_patient(scope: Scope, patient: Patient) -> QuerySet[PatientLink]:
    return (
        access.visible(scope, PatientLink)
        .filter(Q(patient_a=patient) | Q(patient_b=patient))
        .select_related("patient_a__institution", "patient_b__institution", "decided_by")
        .prefetch_related("events__by")
        .order_by("-decided_at", "-pk")
    )


def records_of_person(scope: Scope, patient: Patient) -> QuerySet[Patient]:
    """The records linked as the same person as `patient` (itself included)."""
    return (
        _patients(scope)
        .filter(patient_key=patient.patient_key)
        .select_related("institution")
        .annotate(study_count=Count("studies"))
        .order_by("institution__code", "pk")
    )


def patients_search(scope: Scope, query: str, *, limit: int = 50) -> list[Patient]:
    """Records of the caller's alliances by name (hanzi or pinyin), patient ID or resident
    number (found through its hash: the number is not stored)."""
    query = query.strip()
    if not query:
        return []
    wanted = Q(patient_id=query) | Q(name__icontains=query)
    form = name_match_form(query)
    if form:
        wanted |= Q(name_match__startswith=form)
    number = resident_id_normalize(query)
    if number:
        wanted |= Q(resident_key=resident_key(number))
    return list(
        _patients(scope)
        .filter(wanted)
        .select_related("institution")
        .annotate(study_count=Count("studies"))
        .order_by("name_match", "pk")[:limit]
    )


def alliance_of_pair(scope: Scope, a: Patient, b: Patient) -> int | None:
    """An alliance of the caller that holds both records' sites (where their link lives)."""
    rows = identity_sites(scope).filter(institution_id__in=[a.institution_id, b.institution_id])
    by_alliance: dict[int, set[int]] = {}
    for alliance_id, site in rows.values_list("alliance_id", "institution_id"):
        by_alliance.setdefault(alliance_id, set()).add(site)
    wanted = {a.institution_id, b.institution_id}
    return min((aid for aid, sites in by_alliance.items() if sites >= wanted), default=None)


@dataclass(frozen=True)
class IssuerRow:
    gateway: GatewayCredential | None
    issuer: str


def issuer_settings(scope: Scope) -> list[IssuerRow]:
    """The institution's issuer of patient IDs, then each active gateway's own."""
    configured: dict[int | None, str] = dict(
        access.visible(scope, PatientIdDomain).values_list("gateway_id", "issuer")
    )
    rows = [IssuerRow(gateway=None, issuer=configured.get(None, ""))]
    gateways = access.visible(scope, GatewayCredential).filter(revoked_at__isnull=True)
    rows += [IssuerRow(gateway=g, issuer=configured.get(g.pk, "")) for g in gateways]
    return rows


def gateway_for_issuer(scope: Scope, pk: Any) -> GatewayCredential:
    return access.gateway_credential_for_user(scope, pk)
