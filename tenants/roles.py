"""The one table of roles: what each may do, who may grant it, and where it is held.

Every role list of the hub is defined here and nowhere else; the access layer, services,
views, the API and the navigation import these sets. Least privilege (PRODUCT.md):
commission viewers and administrators see numbers and settings, never images or cases.


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

# A gateway credential acts for its site with this role alone: it sends images, nothing else.
GATEWAY_ROLE = "gateway"
# A connected system (the hospital's PACS, a viewer: tenants.models.ConnectedSystem) acts for
# its institution with these alone: it reads images over DICOMweb, and stores only if allowed.
CONNECTED_SYSTEM_ROLE = "connected_system"
CONNECTED_SYSTEM_STORE_ROLE = "connected_system_store"

# --- What each may do --------------------------------------------------------------------

READER_ROLES = frozenset({Role.RADIOLOGIST, Role.SENIOR_RADIOLOGIST})
"""Read from worklists, claim cases, write and sign (preliminary) reports."""
FINAL_SIGN_ROLES = frozenset({Role.SENIOR_RADIOLOGIST})
"""Sign reports as final, and second-read a junior's."""
CLINIC_ROLES = frozenset({Role.CLINIC_TECHNICIAN, Role.REFERRING_PHYSICIAN})
"""Send studies and follow the site's requests and results."""
REGISTRATION_ROLES = CLINIC_ROLES
"""Register the site's exams before the scan (its Modality Worklist) and cancel them."""
CLINICAL_ROLES = CLINIC_ROLES | READER_ROLES
REQUEST_ROLES = CLINICAL_ROLES
"""Ask another institution for a read."""
IMAGE_READ_ROLES = CLINICAL_ROLES | {Role.MDT_MEMBER, CONNECTED_SYSTEM_ROLE}
"""Look at images (a connected system too: it signs in only to DICOMweb)."""
IMAGE_SEND_ROLES = frozenset({GATEWAY_ROLE, CONNECTED_SYSTEM_STORE_ROLE}) | CLINICAL_ROLES
"""Store images (the site's gateway among them, and a connected system allowed to)."""
UPLOAD_ROLES = IMAGE_SEND_ROLES - {GATEWAY_ROLE, CONNECTED_SYSTEM_STORE_ROLE}
"""Send studies from the browser."""
INSTITUTION_ADMIN_ROLES = frozenset({Role.HOSPITAL_ADMIN})
"""The institution's gateway credentials and audit trail."""
AUDIT_ROLES = INSTITUTION_ADMIN_ROLES
CONNECTED_SYSTEM_ADMIN_ROLES = INSTITUTION_ADMIN_ROLES
"""Connect the institution's own systems (PACS, viewers): create, list and revoke their
long-lived DICOMweb credentials."""
CORRECTION_ROLES = INSTITUTION_ADMIN_ROLES
"""Correct the institution's own stored studies (IHE IOCM): edit patient and study
attributes, merge, split, move series, reject instances and undo a rejection. Readers may
not: they read what the site sent. (No separate archive-manager role exists yet.)"""
ARCHIVE_MANAGE_ROLES = INSTITUTION_ADMIN_ROLES | {Role.CLINIC_TECHNICIAN}
"""Resolve the site's reconciliation queue: instances held because their patient contradicts
the study they name (accept into it, file as a new study, reject). The technician knows who
was scanned; the hospital administrator answers for the archive."""
WORKLOAD_ROLES = READER_ROLES | INSTITUTION_ADMIN_ROLES
"""See the reading institution's worklists."""
QUALITY_ROLES = frozenset({Role.HOSPITAL_ADMIN, Role.SENIOR_RADIOLOGIST})
"""The second-read quality record."""
REGION_VIEWER_ROLES = frozenset({Role.COMMISSION_VIEWER, Role.ALLIANCE_ADMIN})
"""The region's figures, without patient identities."""
TEMPLATE_ROLES = frozenset({Role.ALLIANCE_ADMIN})
"""Edit the alliance's report templates."""
SHARE_ROLES = CLINICAL_ROLES | {Role.HOSPITAL_ADMIN}
"""Give a patient a link to their report."""
CRITICAL_ACK_ROLES = CLINIC_ROLES | {Role.HOSPITAL_ADMIN}
"""Acknowledge a critical finding at the site that asked."""
CRITICAL_ROLES = READER_ROLES | CRITICAL_ACK_ROLES | {Role.ALLIANCE_ADMIN}
"""Flag, acknowledge or escalate critical findings."""
MDT_ORGANISER_ROLES = frozenset(
    {Role.MDT_MEMBER, Role.RADIOLOGIST, Role.SENIOR_RADIOLOGIST, Role.REFERRING_PHYSICIAN}
)
"""Schedule MDT sessions and invite people."""
ROUTING_ROLES = frozenset({Role.ALLIANCE_ADMIN})
"""Configure the alliance's routing: every reading pool, the routing rules, overflow."""
POOL_STAFFING_ROLES = frozenset({Role.ALLIANCE_ADMIN, Role.HOSPITAL_ADMIN})
"""Staff reading pools: settings, members and the roster (a hospital administrator, only the
pools whose reading institution is their own)."""
ALLIANCE_POLICY_ROLES = frozenset({Role.ALLIANCE_ADMIN})
PATIENT_IDENTITY_ROLES = frozenset({Role.ALLIANCE_ADMIN})
"""Review, link and unlink patient records across the alliance's sites (the master patient
index). Only the alliance administrator: a review shows two sites' demographics side by side,
which a hospital administrator may not see of another site."""
PATIENT_ID_ISSUER_ROLES = INSTITUTION_ADMIN_ROLES
"""Set the issuer of patient IDs of the institution and of each of its gateways."""
"""Edit the alliance's deadline policy (the administration console)."""
TWO_FACTOR_ROLES = frozenset(
    {
        Role.HOSPITAL_ADMIN,
        Role.ALLIANCE_ADMIN,
        Role.COMMISSION_VIEWER,
        Role.RADIOLOGIST,
        Role.SENIOR_RADIOLOGIST,
    }
)
"""Must sign in with a second factor when HUB_TWO_FACTOR_REQUIRED is on (MLPS level 3:
administrators, the commission's viewers and everyone who signs reports)."""

# --- Who grants what, where --------------------------------------------------------------

STAFF_ROLES = frozenset(
    {
        Role.CLINIC_TECHNICIAN,
        Role.REFERRING_PHYSICIAN,
        Role.RADIOLOGIST,
        Role.SENIOR_RADIOLOGIST,
        Role.MDT_MEMBER,
    }
)

# Who may grant what. The alliance-wide roles (administration of the whole alliance, the
# commission's view of the region) are granted only by an alliance administrator; a hospital
# administrator manages their own institution's staff and fellow administrators.
GRANTED_BY: dict[str, frozenset[str]] = {
    Role.HOSPITAL_ADMIN: STAFF_ROLES | {Role.HOSPITAL_ADMIN},
    Role.ALLIANCE_ADMIN: STAFF_ROLES
    | {Role.HOSPITAL_ADMIN, Role.ALLIANCE_ADMIN, Role.COMMISSION_VIEWER},
}

# Roles that grant others at all (the membership API's writers).
GRANTER_ROLES = frozenset(GRANTED_BY)
CONSOLE_ROLES = GRANTER_ROLES
"""Open the administration console (/console/): invite staff, grant and revoke roles."""

# A commission holds no clinical roles; a medical institution holds no commission role.
HELD_AT: dict[str, frozenset[str]] = {
    Role.COMMISSION_VIEWER: frozenset({InstitutionKind.HEALTH_COMMISSION}),
    Role.HOSPITAL_ADMIN: frozenset(InstitutionKind.values),
    Role.ALLIANCE_ADMIN: frozenset(InstitutionKind.values) - {InstitutionKind.HEALTH_COMMISSION},
    **{
        role: frozenset(InstitutionKind.values) - {InstitutionKind.HEALTH_COMMISSION}
        for role in STAFF_ROLES
    },
}


def grantable_roles(granter_roles: frozenset[str]) -> frozenset[str]:
    """Every role a holder of `granter_roles` may grant at their institution."""
    granted: frozenset[str] = frozenset()
    for role in granter_roles:
        granted |= GRANTED_BY.get(role, frozenset())
    return granted


def may_be_held_at(role: str, institution_kind: str) -> bool:
    return institution_kind in HELD_AT.get(role, frozenset())
