"""Roles are granted only within the granter's authority (tenants/roles.py): no one grants
themselves anything, a hospital administrator grants no alliance-wide role, and nobody pulls
another alliance's staff into their institution."""

from __future__ import annotations

import pytest

from tenants.audit import AuditCode
from tenants.models import AuditEvent, Membership, Role

from .conftest import api_client_for
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/memberships/"


def _grant(user, username, role, institution=None):
    return api_client_for(user, institution).post(URL, {"username": username, "role": role})


def test_a_hospital_admin_cannot_grant_themself_the_alliance_admin_role(world):
    response = _grant(world.adam, "adam", Role.ALLIANCE_ADMIN)
    assert response.status_code == 403, response.content
    assert "yourself" in response.json()["detail"]
    assert not Membership.objects.filter(user=world.adam, role=Role.ALLIANCE_ADMIN).exists()
    alert = AuditEvent.objects.get(event=AuditCode.SECURITY_ALERT)
    assert alert.username == "adam"
    assert alert.institution_code == world.clinic.code
    assert alert.outcome == AuditEvent.Outcome.SERIOUS_FAILURE
    assert alert.detail["reason"] == "self_grant"


def test_nobody_grants_themself_even_a_role_they_may_grant_others(world):
    assert _grant(world.adam, "adam", Role.REFERRING_PHYSICIAN).status_code == 403
    assert not Membership.objects.filter(user=world.adam, role=Role.REFERRING_PHYSICIAN).exists()
    assert AuditEvent.objects.filter(event=AuditCode.SECURITY_ALERT).count() == 1


@pytest.mark.parametrize("role", [Role.ALLIANCE_ADMIN, Role.COMMISSION_VIEWER])
def test_a_hospital_admin_grants_no_alliance_wide_role(world, role):
    UserFactory(username="nina")
    response = _grant(world.adam, "nina", role)
    assert response.status_code == 403, response.content
    assert not Membership.objects.filter(user__username="nina").exists()
    refused = AuditEvent.objects.get(event=AuditCode.PERMISSION_CHANGE)
    assert refused.detail["change"] == "refused"
    assert refused.detail["reason"] == "beyond_authority"


def test_another_alliances_user_is_answered_like_an_unknown_name(world):
    outsider = _grant(world.adam, "oscar", Role.CLINIC_TECHNICIAN)
    ghost = _grant(world.adam, "ghost", Role.CLINIC_TECHNICIAN)
    assert outsider.status_code == ghost.status_code == 400
    assert outsider.json() == ghost.json()
    assert not Membership.objects.filter(user=world.oscar, institution=world.clinic).exists()
    refused = AuditEvent.objects.get(event=AuditCode.PERMISSION_CHANGE)
    assert refused.detail["reason"] == "outside_alliance"


def test_a_hospital_admin_grants_staff_roles_to_people_of_the_alliance(world):
    # rita reads at the north central hospital, in adam's alliance: she may work at his
    # clinic too; and a new account with no institution yet may be taken on.
    UserFactory(username="nina")
    assert _grant(world.adam, "rita", Role.REFERRING_PHYSICIAN).status_code == 201
    assert _grant(world.adam, "nina", Role.HOSPITAL_ADMIN).status_code == 201
    assert Membership.objects.filter(
        user__username="nina", institution=world.clinic, role=Role.HOSPITAL_ADMIN
    ).exists()


def test_an_alliance_admin_grants_alliance_roles_where_they_may_be_held(world):
    alan = UserFactory(username="alan")
    MembershipFactory(user=alan, institution=world.reader, role=Role.ALLIANCE_ADMIN)
    UserFactory(username="nina")
    assert _grant(alan, "nina", Role.ALLIANCE_ADMIN).status_code == 201
    # A commission role is held at a commission, not at a hospital.
    wrong_place = _grant(alan, "nina", Role.COMMISSION_VIEWER)
    assert wrong_place.status_code == 400
    assert "cannot be held" in wrong_place.json()["fields"]["role"][0]
    assert wrong_place.json()["detail"] == wrong_place.json()["fields"]["role"][0]


def test_a_hospital_admin_cannot_revoke_an_alliance_admins_role(world):
    alan = UserFactory(username="alan")
    held = MembershipFactory(user=alan, institution=world.clinic, role=Role.ALLIANCE_ADMIN)
    response = api_client_for(world.adam).delete(f"{URL}{held.pk}/")
    assert response.status_code == 403
    held.refresh_from_db()
    assert held.revoked_at is None
