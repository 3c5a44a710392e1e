"""The one place that decides what a caller may see.

Every query for a tenant-owned row goes through `visible()` (or a helper built on it, or
`ScopedViewSet` in tenants/api.py). A caller is a `Scope`: the user, the institution they
are acting for right now, and their roles there. The rule for each model lives in `_RULES`
below; a model without a rule cannot be queried through this module at all (fail closed).

"Not yours" and "does not exist" answer the same 404, so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from .models import GatewayCredential, Institution, Membership, Role, User

GATEWAY_ROLE = "gateway"
SESSION_KEY = "active_institution_id"
INSTITUTION_HEADER = "HTTP_X_INSTITUTION"

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Scope:
    """Who is asking: a user (or a site's gateway) acting for one institution."""

    user: User | None
    institution: Institution | None
    roles: frozenset[str] = field(default_factory=frozenset)
    gateway_credential: GatewayCredential | None = None

    def has_any_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_gateway(self) -> bool:
        return self.gateway_credential is not None

    @cached_property
    def alliance_ids(self) -> frozenset[int]:
        """Alliances this institution belongs to, leads or (as a commission) oversees."""
        from alliance.models import Alliance

        if self.institution is None:
            return frozenset()
        inst = self.institution
        ids = Alliance.objects.filter(
            Q(members__institution=inst) | Q(lead_hospital=inst) | Q(commission=inst)
        ).values_list("pk", flat=True)
        return frozenset(ids)


NOBODY = Scope(user=None, institution=None)


def memberships_of(user: User) -> QuerySet[Membership]:
    return Membership.objects.active().filter(user=user).select_related("institution")


def scope_for_user(user: User, *, institution_id: int | str | None = None) -> Scope:
    """The scope of `user` acting for `institution_id` (or their first institution).

    An institution the user holds no active membership at yields a scope that sees
    nothing, never a fallback to another institution.
    """
    if not user.is_authenticated or not user.is_active:
        return NOBODY
    memberships = list(memberships_of(user))
    if not memberships:
        return Scope(user=user, institution=None)
    institution: Institution | None
    if institution_id in (None, ""):
        institution = memberships[0].institution
    else:
        wanted = str(institution_id)
        institution = next(
            (
                m.institution
                for m in memberships
                if str(m.institution_id) == wanted or m.institution.code == wanted
            ),
            None,
        )
        if institution is None:
            return Scope(user=user, institution=None)
    roles = frozenset(m.role for m in memberships if m.institution_id == institution.pk)
    return Scope(user=user, institution=institution, roles=roles)


def scope_for_gateway(credential: GatewayCredential) -> Scope:
    return Scope(
        user=None,
        institution=credential.institution,
        roles=frozenset({GATEWAY_ROLE}),
        gateway_credential=credential,
    )


def scope_for_request(request: Any) -> Scope:
    """Build the scope once per request (web session, API token or gateway credential)."""
    cached = getattr(request, "_hub_scope", None)
    if cached is not None and cached[0] is request.user:
        return cached[1]
    auth = getattr(request, "auth", None)
    if isinstance(auth, GatewayCredential):
        scope = scope_for_gateway(auth)
    elif not request.user.is_authenticated:
        scope = NOBODY
    else:
        # API clients name their institution per request; browsers keep it in the session.
        wanted = request.META.get(INSTITUTION_HEADER)
        if wanted is None and hasattr(request, "session"):
            wanted = request.session.get(SESSION_KEY)
        scope = scope_for_user(request.user, institution_id=wanted)
    request._hub_scope = (request.user, scope)
    return scope


# --- The rules ---------------------------------------------------------------------------

NOTHING = Q(pk__in=[])
_CLINICAL_ROLES = (Role.CLINIC_TECHNICIAN, Role.REFERRING_PHYSICIAN, Role.RADIOLOGIST,
                   Role.SENIOR_RADIOLOGIST)


def _institutions(scope: Scope) -> Q:
    from alliance.models import Alliance, AllianceMember

    assert scope.institution is not None
    alliances = list(scope.alliance_ids)
    return (
        Q(pk=scope.institution.pk)
        | Q(pk__in=AllianceMember.objects.filter(alliance__in=alliances).values("institution"))
        | Q(pk__in=Alliance.objects.filter(pk__in=alliances).values("lead_hospital"))
        | Q(pk__in=Alliance.objects.filter(pk__in=alliances).values("commission"))
    )


def _admins_of_own_institution(scope: Scope) -> Q:
    assert scope.institution is not None
    if scope.has_any_role(Role.HOSPITAL_ADMIN):
        return Q(institution=scope.institution)
    return NOTHING


def _granted_studies(scope: Scope) -> Any:
    """Ids of the studies grants give `scope` now (a subquery), or None when there are none.

    Most institutions hold no grant; they keep the plain per-site filter that the imaging
    indexes serve best.
    """
    from referrals.models import StudyGrant

    grants = StudyGrant.objects.active().filter(
        Q(user__isnull=True) | Q(user=scope.user), institution=scope.institution,
    )
    if not grants.exists():
        return None
    return grants.values("study_id")


def _image_rule(via: str) -> Callable[[Scope], Q]:
    """Imaging rows: the institution's own, and the studies a grant gives it.

    `via` is the path from the row to its study ("pk" for a study itself). Grants come
    from a referral (the reader institution) or an MDT invitation (one user, in a window).
    """

    def rule(scope: Scope) -> Q:
        from referrals.dicomweb.base import IMAGE_READ_ROLES

        if not scope.has_any_role(*IMAGE_READ_ROLES):
            return NOTHING
        own = Q(institution=scope.institution)
        granted = _granted_studies(scope)
        if granted is None:
            return own
        if via == "patient":
            from referrals.models import Study

            return own | Q(pk__in=Study.objects.filter(pk__in=granted).values("patient_id"))
        return own | Q(**{f"{via}__in": granted})

    return rule


def _referrals(scope: Scope) -> Q:
    """A referral is seen by the site that sent it and the institution reading it.

    An alliance administrator sees every referral of their alliance.
    """
    assert scope.institution is not None
    seen = Q(source=scope.institution) | Q(target=scope.institution)
    if scope.has_any_role(Role.ALLIANCE_ADMIN):
        seen |= Q(alliance__in=list(scope.alliance_ids))
    if scope.has_any_role(Role.COMMISSION_VIEWER) and not scope.has_any_role(
            Role.ALLIANCE_ADMIN, Role.HOSPITAL_ADMIN, *_CLINICAL_ROLES):
        return NOTHING  # the commission sees figures (analytics), not cases
    return seen


def _through_referral(scope: Scope) -> Q:
    from referrals.models import Referral

    return Q(referral__in=Referral.objects.filter(_referrals(scope)).values("pk"))


# --- Reporting (issue 5) ---
def _reports(scope: Scope) -> Q:
    """Whoever sees the referral sees its report, except that a draft stays at the reader."""
    assert scope.institution is not None
    return _through_referral(scope) & (~Q(status="draft") | Q(institution=scope.institution))


def _through_report(scope: Scope) -> Q:
    from reporting.models import Report

    return Q(report__in=Report.objects.filter(_reports(scope)).values("pk"))


def _second_reads(scope: Scope) -> Q:
    """Second reads are the reading institution's own quality record."""
    return _through_report(scope) & Q(report__institution=scope.institution)


def _critical_events(scope: Scope) -> Q:
    from reporting.models import CriticalFinding

    return Q(finding__in=CriticalFinding.objects.filter(_through_referral(scope)).values("pk"))
# --- end reporting ---


# --- Commission analytics (issue 7) ---
def analytics_alliance_ids(scope: Scope) -> frozenset[int]:
    """Alliances whose figures `scope` may see: a commission viewer, those its commission
    oversees; an alliance administrator, their own alliance. Nobody else sees any."""
    from alliance.models import Alliance

    if scope.institution is None:
        return frozenset()
    ids: set[int] = set()
    if scope.has_any_role(Role.COMMISSION_VIEWER):
        ids |= set(Alliance.objects.filter(commission=scope.institution)
                   .values_list("pk", flat=True))
    if scope.has_any_role(Role.ALLIANCE_ADMIN):
        ids |= set(scope.alliance_ids)
    return frozenset(ids)


def _analytics(scope: Scope) -> Q:
    return Q(alliance__in=list(analytics_alliance_ids(scope)))
# --- end analytics ---


def _in_alliance(field: str) -> Callable[[Scope], Q]:
    return lambda s: Q(**{f"{field}__in": list(s.alliance_ids)})


def _own_user(scope: Scope) -> Q:
    if scope.user is None:
        return NOTHING
    return Q(user=scope.user)


def _mdt_sessions(scope: Scope) -> Q:
    """MDT sessions (issue 6): those the user is invited to (acting for the invitation's
    institution), and every session their institution organises for its administrators."""
    from consultations.models import Invitation

    if scope.user is None:
        return NOTHING
    invited = Q(pk__in=Invitation.objects.active().filter(
        user=scope.user, institution=scope.institution).values("session_id"))
    if scope.has_any_role(Role.HOSPITAL_ADMIN):
        return invited | Q(institution=scope.institution)
    return invited


def _through_mdt_session(via: str) -> Callable[[Scope], Q]:
    from consultations.models import MdtSession

    return lambda s: Q(**{f"{via}__in": MdtSession.objects.filter(_mdt_sessions(s)).values("pk")})


_RULES: dict[str, Callable[[Scope], Q]] = {
    "tenants.institution": _institutions,
    "tenants.membership": lambda s: Q(institution=s.institution),
    "tenants.gatewaycredential": _admins_of_own_institution,
    "tenants.auditevent": _admins_of_own_institution,
    "tenants.notification": _own_user,
    "knox.authtoken": _own_user,
    "referrals.patient": _image_rule("patient"),
    "referrals.study": _image_rule("pk"),
    "referrals.series": _image_rule("study_id"),
    "referrals.instance": _image_rule("study_id"),
    "referrals.studygrant": _admins_of_own_institution,
    "referrals.referral": _referrals,
    "referrals.referralevent": _through_referral,
    "referrals.referralstudy": _through_referral,
    "alliance.alliancepolicy": _in_alliance("alliance"),
    "alliance.sitesettings": _in_alliance("member__alliance"),
    "alliance.readerpool": _in_alliance("alliance"),
    "alliance.poolmember": _in_alliance("pool__alliance"),
    "alliance.rostershift": _in_alliance("pool__alliance"),
    "alliance.routingrule": _in_alliance("alliance"),
    "alliance.alliance": lambda s: Q(pk__in=list(s.alliance_ids)),
    "alliance.alliancemember": lambda s: Q(alliance__in=list(s.alliance_ids)),
    # Reporting (issue 5)
    "reporting.reporttemplate": _in_alliance("alliance"),
    "reporting.report": _reports,
    "reporting.addendum": _through_report,
    "reporting.secondread": _second_reads,
    # Critical findings and key images (issue 5): with the referral, with the report.
    "reporting.criticalfinding": _through_referral,
    "reporting.criticalevent": _critical_events,
    "reporting.keyimage": _through_report,
    # Commission analytics (issue 7): figures only, per alliance.
    "alliance.readingrollup": _analytics,
    "alliance.studyrollup": _analytics,
    # MDT consultations (issue 6)
    "consultations.mdtsession": _mdt_sessions,
    "consultations.sessioncase": _through_mdt_session("session"),
    "consultations.invitation": _through_mdt_session("session"),
    "consultations.roomevent": _through_mdt_session("session"),
    "consultations.vote": _through_mdt_session("case__session"),
}


def _rule_for(model: type[Model]) -> Callable[[Scope], Q]:
    try:
        return _RULES[model._meta.label_lower]
    except KeyError:
        raise LookupError(
            f"{model._meta.label} has no access rule in tenants/access.py; add one there"
        ) from None


def visible(scope: Scope, queryset: QuerySet[M] | type[M]) -> QuerySet[M]:
    """The rows of `queryset` that `scope` may see."""
    qs: QuerySet[M] = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    rule = _rule_for(qs.model)
    if scope.institution is None:
        return qs.none()
    return qs.filter(rule(scope))


def get_visible_or_404(scope: Scope, queryset: QuerySet[M] | type[M], **lookup: Any) -> M:
    """One object `scope` may see, or Http404 alike for missing and not-yours."""
    try:
        return visible(scope, queryset).get(**lookup)
    # A malformed id is just another unknown id.
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404 from exc


# One helper per tenant-owned model, for plain Django views.
def institution_for_user(scope: Scope, pk: Any) -> Institution:
    return get_visible_or_404(scope, Institution, pk=pk)


def membership_for_user(scope: Scope, pk: Any) -> Membership:
    return get_visible_or_404(scope, Membership, pk=pk)


def gateway_credential_for_user(scope: Scope, pk: Any) -> GatewayCredential:
    return get_visible_or_404(scope, GatewayCredential, pk=pk)


def alliance_for_user(scope: Scope, pk: Any) -> Any:
    from alliance.models import Alliance

    return get_visible_or_404(scope, Alliance, pk=pk)
