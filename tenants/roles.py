"""The table of roles: who may grant which role, and at which kind of institution it is held.

A grant is within the granter's authority when all of these hold:
- the granter holds a role that may grant the role (`GRANTED_BY`), at the institution where
  the role is granted (the API grants at the caller's active institution only);
- the role may be held at that kind of institution (`HELD_AT`);
- the grantee is not the granter (nobody raises their own privileges);
- the grantee belongs to no institution outside the granter's alliances (a hospital
  administrator cannot pull another alliance's staff into their own institution).
Anything else is refused, and an attempt at self-escalation is a security alert.
"""

from __future__ import annotations

from .models import InstitutionKind, Role

STAFF_ROLES = frozenset({
    Role.CLINIC_TECHNICIAN, Role.REFERRING_PHYSICIAN, Role.RADIOLOGIST,
    Role.SENIOR_RADIOLOGIST, Role.MDT_MEMBER,
})

# Who may grant what. The alliance-wide roles (administration of the whole alliance, the
# commission's view of the region) are granted only by an alliance administrator; a hospital
# administrator manages their own institution's staff and fellow administrators.
GRANTED_BY: dict[str, frozenset[str]] = {
    Role.HOSPITAL_ADMIN: STAFF_ROLES | {Role.HOSPITAL_ADMIN},
    Role.ALLIANCE_ADMIN: STAFF_ROLES | {Role.HOSPITAL_ADMIN, Role.ALLIANCE_ADMIN,
                                       Role.COMMISSION_VIEWER},
}

# Roles that grant others at all (the membership API's writers).
GRANTER_ROLES = frozenset(GRANTED_BY)

# A commission holds no clinical roles; a medical institution holds no commission role.
HELD_AT: dict[str, frozenset[str]] = {
    Role.COMMISSION_VIEWER: frozenset({InstitutionKind.HEALTH_COMMISSION}),
    Role.HOSPITAL_ADMIN: frozenset(InstitutionKind.values),
    Role.ALLIANCE_ADMIN: frozenset(InstitutionKind.values) - {InstitutionKind.HEALTH_COMMISSION},
    **{role: frozenset(InstitutionKind.values) - {InstitutionKind.HEALTH_COMMISSION}
       for role in STAFF_ROLES},
}


def grantable_roles(granter_roles: frozenset[str]) -> frozenset[str]:
    """Every role a holder of `granter_roles` may grant at their institution."""
    granted: frozenset[str] = frozenset()
    for role in granter_roles:
        granted |= GRANTED_BY.get(role, frozenset())
    return granted


def may_be_held_at(role: str, institution_kind: str) -> bool:
    return institution_kind in HELD_AT.get(role, frozenset())
