"""Who sees which alliance rows, institutions and figures; registered with tenants/access.py."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from tenants.access import NOTHING, Scope, get_visible_or_404, in_alliance, register_rules
from tenants.models import Institution, Role

from .models import Alliance, AllianceMember


def alliances_of(institution: Institution) -> list[int]:
    """Alliances an institution belongs to, leads or (as a commission) oversees."""
    return list(
        Alliance.objects.filter(
            Q(members__institution=institution)
            | Q(lead_hospital=institution)
            | Q(commission=institution)
        ).values_list("pk", flat=True)
    )


def institutions(scope: Scope) -> Q:
    """The caller's own institution and every institution of its alliances."""
    assert scope.institution is not None
    alliances = list(scope.alliance_ids)
    return (
        Q(pk=scope.institution.pk)
        | Q(pk__in=AllianceMember.objects.filter(alliance__in=alliances).values("institution"))
        | Q(pk__in=Alliance.objects.filter(pk__in=alliances).values("lead_hospital"))
        | Q(pk__in=Alliance.objects.filter(pk__in=alliances).values("commission"))
    )


def analytics_alliance_ids(scope: Scope) -> frozenset[int]:
    """Alliances whose figures `scope` may see: a commission viewer, those its commission
    oversees; an alliance administrator, their own alliance. Nobody else sees any."""
    if scope.institution is None:
        return frozenset()
    ids: set[int] = set()
    if scope.has_any_role(Role.COMMISSION_VIEWER):
        ids |= set(
            Alliance.objects.filter(commission=scope.institution).values_list("pk", flat=True)
        )
    if scope.has_any_role(Role.ALLIANCE_ADMIN):
        ids |= set(scope.alliance_ids)
    return frozenset(ids)


def analytics(scope: Scope) -> Q:
    """Figures only, per alliance."""
    ids = analytics_alliance_ids(scope)
    return Q(alliance__in=list(ids)) if ids else NOTHING


def own_alliances(scope: Scope) -> Q:
    return Q(pk__in=list(scope.alliance_ids))


def alliance_for_user(scope: Scope, pk: Any) -> Alliance:
    return get_visible_or_404(scope, Alliance, pk=pk)


RULES = {
    "tenants.institution": institutions,
    "alliance.alliance": own_alliances,
    "alliance.alliancemember": in_alliance("alliance"),
    "alliance.alliancepolicy": in_alliance("alliance"),
    "alliance.sitesettings": in_alliance("member__alliance"),
    "alliance.readerpool": in_alliance("alliance"),
    "alliance.poolmember": in_alliance("pool__alliance"),
    "alliance.rostershift": in_alliance("pool__alliance"),
    "alliance.routingrule": in_alliance("alliance"),
    "alliance.readingrollup": analytics,
    "alliance.studyrollup": analytics,
}


def register() -> None:
    from tenants import access

    access.register_alliance_lookup(alliances_of)
    register_rules(RULES)
