"""Who sees which images and referrals; registered with tenants/access.py.

Images: the institution's own, and the studies a grant gives it (a referral's reader
institution, an MDT invitee within its window). A referral: the site that sent it and the
institution reading it; an alliance administrator sees every referral of their alliance;
the commission sees figures, never cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Q

from referrals.models import Referral, RegistrationStatus, Study, StudyGrant
from tenants.access import NOTHING, Scope, admins_of_own_institution, named, register_rules
from tenants.models import Role
from tenants.roles import (
    ARCHIVE_MANAGE_ROLES,
    CLINICAL_ROLES,
    CORRECTION_ROLES,
    IMAGE_READ_ROLES,
    PATIENT_ID_ISSUER_ROLES,
    PATIENT_IDENTITY_ROLES,
    REGISTRATION_ROLES,
)


def _granted_studies(scope: Scope) -> Any:
    """Ids of the studies grants give `scope` now (a subquery), or None when there are none.

    Most institutions hold no grant; they keep the plain per-site filter that the imaging
    indexes serve best.
    """
    grants = StudyGrant.objects.active().filter(
        Q(user__isnull=True) | Q(user=scope.user),
        institution=scope.institution,
    )
    if not grants.exists():
        return None
    return grants.values("study_id")


def image_rule(via: str) -> Callable[[Scope], Q]:
    """Imaging rows; `via` is the path from the row to its study ("pk" for a study)."""

    def rule(scope: Scope) -> Q:
        if not scope.has_any_role(*IMAGE_READ_ROLES):
            return NOTHING
        own = Q(institution=scope.institution)
        granted = _granted_studies(scope)
        if granted is None:
            return own
        if via == "patient":
            return own | Q(pk__in=Study.objects.filter(pk__in=granted).values("patient_id"))
        return own | Q(**{f"{via}__in": granted})

    return named(rule, f"image_rule({via!r})")


def archive_managers_of_own_institution(scope: Scope) -> Q:
    """The reconciliation queue: the site's own held instances, for who may resolve them."""
    if scope.has_any_role(*ARCHIVE_MANAGE_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def not_rejected(rule: Callable[[Scope], Q]) -> Callable[[Scope], Q]:
    """Rejected series and instances (IHE IOCM) are gone for every reader of the archive: an
    extra condition on the rows the imaging indexes already found, not a scan of its own."""
    return named(lambda scope: rule(scope) & Q(rejected_at__isnull=True), "not_rejected")


def correctors_of_own_institution(scope: Scope) -> Q:
    """Corrections of the institution's own studies, seen by those who may correct."""
    if scope.has_any_role(*CORRECTION_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def identity_reviewers(via: str) -> Callable[[Scope], Q]:
    """The master patient index's links, for who reviews identities in the link's alliance;
    `via` is the path from the row to its alliance."""

    def rule(scope: Scope) -> Q:
        if not scope.has_any_role(*PATIENT_IDENTITY_ROLES):
            return NOTHING
        return Q(**{f"{via}__in": list(scope.alliance_ids)})

    return named(rule, f"identity_reviewers({via!r})")


def issuer_admins_of_own_institution(scope: Scope) -> Q:
    """The site's issuer of patient IDs, for who configures it."""
    if scope.has_any_role(*PATIENT_ID_ISSUER_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def referrals(scope: Scope) -> Q:
    assert scope.institution is not None
    seen = Q(source=scope.institution) | Q(target=scope.institution)
    if scope.has_any_role(Role.ALLIANCE_ADMIN):
        seen |= Q(alliance__in=list(scope.alliance_ids))
    if scope.has_any_role(Role.COMMISSION_VIEWER) and not scope.has_any_role(
        Role.ALLIANCE_ADMIN, Role.HOSPITAL_ADMIN, *CLINICAL_ROLES
    ):
        return NOTHING  # the commission sees figures (analytics), not cases
    return seen


def registrations(scope: Scope) -> Q:
    """A site's exam registrations: its clinic staff see them all; its gateway only the
    ones still scheduled (what it serves as its Modality Worklist)."""
    if scope.is_gateway:
        return Q(institution=scope.institution, status=RegistrationStatus.SCHEDULED)
    if scope.has_any_role(*REGISTRATION_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def through_referral(scope: Scope) -> Q:
    """Rows that hang off a referral: seen with it."""
    return Q(referral__in=Referral.objects.filter(referrals(scope)).values("pk"))


RULES = {
    "referrals.patient": image_rule("patient"),
    "referrals.study": image_rule("pk"),
    "referrals.series": not_rejected(image_rule("study_id")),
    "referrals.instance": not_rejected(image_rule("study_id")),
    "referrals.correction": correctors_of_own_institution,
    "referrals.studygrant": admins_of_own_institution,
    "referrals.referral": referrals,
    "referrals.referralevent": through_referral,
    "referrals.referralstudy": through_referral,
    "referrals.examregistration": registrations,
    "referrals.heldinstance": archive_managers_of_own_institution,
    "referrals.patientlink": identity_reviewers("alliance_id"),
    "referrals.patientlinkevent": identity_reviewers("link__alliance_id"),
    "referrals.patientiddomain": issuer_admins_of_own_institution,
}


def register() -> None:
    register_rules(RULES)
