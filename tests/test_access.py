"""The access layer: scopes, visibility rules, 404 alike for missing and not-yours."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.utils import timezone

from alliance.models import Alliance
from tenants import access
from tenants.models import Institution, Membership, Role
from tenants.viewsets import ScopedGenericViewSet

from .factories import InstitutionFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def codes(queryset) -> set[str]:
    return set(queryset.values_list("code", flat=True))


def test_scope_defaults_to_the_first_institution_and_its_roles(world):
    scope = access.scope_for_user(world.adam)
    assert scope.institution == world.clinic
    assert scope.roles == {Role.HOSPITAL_ADMIN}


def test_scope_for_an_institution_the_user_is_not_in_sees_nothing(world):
    scope = access.scope_for_user(world.alice, institution_id=world.outsider.pk)
    assert scope.institution is None
    assert not access.visible(scope, Institution).exists()


def test_scope_accepts_the_institution_code_too(world):
    MembershipFactory(user=world.alice, institution=world.reader, role=Role.RADIOLOGIST)
    scope = access.scope_for_user(world.alice, institution_id="north-central")
    assert scope.institution == world.reader
    assert scope.roles == {Role.RADIOLOGIST}


def test_a_revoked_membership_gives_no_scope(world):
    Membership.objects.filter(user=world.alice).update(revoked_at=timezone.now())
    scope = access.scope_for_user(world.alice)
    assert scope.institution is None
    assert not access.visible(scope, Alliance).exists()


def test_an_inactive_institution_gives_no_scope(world):
    Institution.objects.filter(pk=world.clinic.pk).update(is_active=False)
    assert access.scope_for_user(world.alice).institution is None


def test_members_see_their_alliance_and_nothing_of_another(world):
    alice = access.scope_for_user(world.alice)
    oscar = access.scope_for_user(world.oscar)
    assert codes(access.visible(alice, Institution)) == {
        "north-clinic",
        "north-central",
        "north-hc",
    }
    assert codes(access.visible(oscar, Institution)) == {
        "south-clinic",
        "south-central",
        world.south.commission.code,
    }
    assert codes(access.visible(alice, Alliance)) == {"north"}
    assert codes(access.visible(oscar, Alliance)) == {"south"}


def test_the_commission_sees_the_alliances_it_oversees(world):
    carl = access.scope_for_user(world.carl)
    assert codes(access.visible(carl, Alliance)) == {"north"}
    assert "north-clinic" in codes(access.visible(carl, Institution))
    assert "south-clinic" not in codes(access.visible(carl, Institution))


def test_an_institution_in_no_alliance_sees_only_itself(db):
    lonely = InstitutionFactory(code="lonely")
    user = UserFactory()
    MembershipFactory(user=user, institution=lonely)
    assert codes(access.visible(access.scope_for_user(user), Institution)) == {"lonely"}


@pytest.mark.parametrize("pk", ["other", "missing", "garbage"])
def test_not_yours_missing_and_malformed_all_answer_404(world, pk):
    scope = access.scope_for_user(world.oscar)
    ids = {"other": world.clinic.pk, "missing": 10**9, "garbage": "1;drop"}
    with pytest.raises(Http404):
        access.institution_for_user(scope, ids[pk])


def test_memberships_are_visible_within_the_institution_only(world):
    adam = access.scope_for_user(world.adam)
    names = set(access.visible(adam, Membership).values_list("user__username", flat=True))
    assert names == {"alice", "adam"}


def test_gateway_credentials_and_audit_need_a_hospital_admin(world):
    from tenants.models import AuditEvent, GatewayCredential

    GatewayCredential.objects.create(
        institution=world.clinic, label="x", key_id="gw_x", secret_hash="0" * 64
    )
    alice = access.scope_for_user(world.alice)
    adam = access.scope_for_user(world.adam)
    assert not access.visible(alice, GatewayCredential).exists()
    assert access.visible(adam, GatewayCredential).count() == 1
    assert not access.visible(alice, AuditEvent).exists()


def test_a_model_without_a_rule_cannot_be_queried(world):
    from django.contrib.contenttypes.models import ContentType

    with pytest.raises(LookupError, match="no access rule"):
        access.visible(access.scope_for_user(world.alice), ContentType)


def test_a_viewset_may_not_take_over_scoping():
    with pytest.raises(TypeError, match="overrides get_queryset"):
        type("Sneaky", (ScopedGenericViewSet,), {"get_queryset": lambda self: None})
    with pytest.raises(TypeError, match="overrides get_object"):
        type("Sneaky", (ScopedGenericViewSet,), {"get_object": lambda self: None})
