"""The one place that decides what a caller may see.

Every query for a tenant-owned row goes through `visible()` (or a helper built on it, or
`ScopedViewSet` in tenants/api.py). A caller is a `Scope`: the user, the institution they
are acting for right now, and their roles there. The rule for each model is registered here
by the app that owns the model (its access_rules.py); a model without a rule cannot be
queried through this module at all (fail closed).

"Not yours" and "does not exist" answer the same 404, so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from .models import ConnectedSystem, GatewayCredential, Institution, Membership, User
from .roles import (
    CONNECTED_SYSTEM_ADMIN_ROLES,
    CONNECTED_SYSTEM_ROLE,
    CONNECTED_SYSTEM_STORE_ROLE,
    GATEWAY_ROLE,
    INSTITUTION_ADMIN_ROLES,
)

SESSION_KEY = "active_institution_id"
INSTITUTION_HEADER = "HTTP_X_INSTITUTION"

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Scope:
    """Who is asking: a user (or a site's gateway, or a connected system) acting for one
    institution."""

    user: User | None
    institution: Institution | None
    roles: frozenset[str] = field(default_factory=frozenset)
    gateway_credential: GatewayCredential | None = None
    connected_system: ConnectedSystem | None = None

    def has_any_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_gateway(self) -> bool:
        return self.gateway_credential is not None

    @property
    def is_connected_system(self) -> bool:
        return self.connected_system is not None

    @cached_property
    def alliance_ids(self) -> frozenset[int]:
        """Alliances this institution belongs to, leads or (as a commission) oversees."""
        if self.institution is None or _alliance_lookup is None:
            return frozenset()
        return frozenset(_alliance_lookup(self.institution))


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


def scope_for_connected_system(system: ConnectedSystem) -> Scope:
    """A hospital system reading its institution's images: what a member who may only look
    at images sees (the institution's own studies and those granted to it), nothing else."""
    roles = {CONNECTED_SYSTEM_ROLE}
    if system.may_store:
        roles.add(CONNECTED_SYSTEM_STORE_ROLE)
    return Scope(
        user=None,
        institution=system.institution,
        roles=frozenset(roles),
        connected_system=system,
    )


def scope_for_request(request: Any) -> Scope:
    """Build the scope once per request (web session, API token, gateway credential or
    connected system)."""
    cached = getattr(request, "_hub_scope", None)
    if cached is not None and cached[0] is request.user:
        return cached[1]
    auth = getattr(request, "auth", None)
    if isinstance(auth, GatewayCredential):
        scope = scope_for_gateway(auth)
    elif isinstance(auth, ConnectedSystem):
        scope = scope_for_connected_system(auth)
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
# Each app registers the rules of its own models when it is ready (its access_rules.py), so
# this module imports nothing above it; it still decides alone, and fails closed: a model
# without a rule cannot be queried here. `manage.py access_rules` prints the whole table.

NOTHING = Q(pk__in=[])
Rule = Callable[["Scope"], Q]
_RULES: dict[str, Rule] = {}
_alliance_lookup: Callable[[Institution], Iterable[int]] | None = None


def register_rules(rules: Mapping[str, Rule]) -> None:
    """Add the rules of an app's models ("app_label.model_name" → rule); once each."""
    for label, rule in rules.items():
        if _RULES.get(label, rule) is not rule:
            raise ImproperlyConfigured(f"two access rules for {label}")
        _RULES[label] = rule


def register_alliance_lookup(lookup: Callable[[Institution], Iterable[int]]) -> None:
    """How to find the alliances an institution belongs to, leads or oversees (the alliance
    app knows; until it says, an institution belongs to none)."""
    global _alliance_lookup
    _alliance_lookup = lookup


def access_rules() -> dict[str, Rule]:
    """The whole table, for the listing command and the tests."""
    return dict(_RULES)


def connected_system_admins(scope: Scope) -> Q:
    assert scope.institution is not None
    if scope.has_any_role(*CONNECTED_SYSTEM_ADMIN_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def admins_of_own_institution(scope: Scope) -> Q:
    assert scope.institution is not None
    if scope.has_any_role(*INSTITUTION_ADMIN_ROLES):
        return Q(institution=scope.institution)
    return NOTHING


def named(rule: Rule, name: str) -> Rule:
    """A rule made by a factory, named for the listing (`manage.py access_rules`)."""
    rule.__qualname__ = name
    return rule


def in_alliance(field: str) -> Rule:
    """Rows of the caller's alliances, reached through `field`."""
    return named(lambda s: Q(**{f"{field}__in": list(s.alliance_ids)}), f"in_alliance({field!r})")


def own_institution(scope: Scope) -> Q:
    return Q(institution=scope.institution)


def own_user(scope: Scope) -> Q:
    if scope.user is None:
        return NOTHING
    return Q(user=scope.user)


def operators_only(scope: Scope) -> Q:
    """Rows about the installation itself (the audit shipper's cursor): no tenant's user."""
    return NOTHING


register_rules(
    {
        "tenants.auditshipment": operators_only,
        "tenants.membership": own_institution,
        "tenants.gatewaycredential": admins_of_own_institution,
        "tenants.connectedsystem": connected_system_admins,
        "tenants.auditevent": admins_of_own_institution,
        "tenants.notification": own_user,
        "tenants.oidcidentity": own_user,
        "knox.authtoken": own_user,
    }
)


def _rule_for(model: type[Model]) -> Callable[[Scope], Q]:
    try:
        return _RULES[model._meta.label_lower]
    except KeyError:
        raise LookupError(
            f"{model._meta.label} has no access rule; register one in its app's access_rules.py"
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


def connected_system_for_user(scope: Scope, pk: Any) -> ConnectedSystem:
    return get_visible_or_404(scope, ConnectedSystem, pk=pk)
