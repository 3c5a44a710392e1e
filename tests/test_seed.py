"""The demo alliance: its shape, one user per role, and that seeding twice adds nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.management import call_command

from alliance.demo import DEMO_PASSWORD
from alliance.models import Alliance, AllianceMember
from tenants.models import Institution, Membership, Role, User

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_the_alliance_and_one_user_per_role(capsys):
    call_command("seed_demo", "--if-empty")
    alliance = Alliance.objects.get()
    tiers = Counter(AllianceMember.objects.values_list("tier", flat=True))
    assert tiers == {"central": 1, "county": 2, "grassroots": 5}
    assert alliance.commission.kind == "health_commission"
    assert Counter(Membership.objects.values_list("role", flat=True)) == dict.fromkeys(
        Role.values, 1
    )
    for user in User.objects.all():
        assert user.name, user.username
        assert user.name_en, user.username
        assert user.check_password(DEMO_PASSWORD)
    assert "tech" in capsys.readouterr().out


def test_seeding_again_adds_nothing():
    call_command("seed_demo")
    counts = (Institution.objects.count(), User.objects.count(), Membership.objects.count())
    call_command("seed_demo")
    call_command("seed_demo", "--if-empty")
    assert (Institution.objects.count(), User.objects.count(), Membership.objects.count()) == counts


def test_the_demo_has_ct_studies_to_read():
    from referrals.models import Instance, Study

    call_command("seed_demo")
    assert Study.objects.count() == 3
    assert set(Study.objects.values_list("institution__code", flat=True)) == {
        "qingshan-thc",
        "donghu-chc",
    }
    assert Instance.objects.count() == 3 * 24
    assert all(s.modalities == "CT" and s.num_instances == 24 for s in Study.objects.all())
