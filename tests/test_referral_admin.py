"""The Django admin of routing, the read-only referral admin, and the demo's routing data."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from alliance.models import (
    AlliancePolicy,
    PoolMember,
    ReaderPool,
    RoutingRule,
    SiteSettings,
)
from referrals.models import Referral, ReferralEvent, ReferralStatus
from referrals.workflow import services
from tenants import access
from tenants.models import Role

from .conftest import _person
from .factories import UserFactory
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def root() -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def staff(user) -> Client:
    user.is_staff = True
    user.save()
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def referral(world, reading):
    study = study_at(world.clinic, modality="MR", body_part="BRAIN")
    made, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk),
        study=study,
        clinical_question="headache",
    )
    return services.referral_route(made.pk)


@pytest.fixture
def south_rule(world):
    south_lead = world.south.lead_hospital
    pool = ReaderPool.objects.create(
        alliance=world.south, institution=south_lead, name="南区", name_en="South pool"
    )
    return RoutingRule.objects.create(
        alliance=world.south, order=5, name="south everything", pool=pool
    )


def test_every_routing_page_opens_for_a_superuser(root, reading):
    for url in [
        "/admin/alliance/alliancepolicy/",
        "/admin/alliance/sitesettings/",
        "/admin/alliance/readerpool/",
        "/admin/alliance/rostershift/",
        "/admin/alliance/routingrule/",
        "/admin/referrals/referral/",
        "/admin/alliance/alliancepolicy/add/",
        "/admin/alliance/routingrule/add/",
        f"/admin/alliance/readerpool/{reading.general.pk}/change/",
        f"/admin/alliance/alliancepolicy/{reading.policy.pk}/change/",
    ]:
        assert root.get(url).status_code == 200, url
    pool_page = root.get(f"/admin/alliance/readerpool/{reading.general.pk}/change/")
    assert b"members-TOTAL_FORMS" in pool_page.content  # pool members edited inline
    assert b"shifts-TOTAL_FORMS" in pool_page.content


def test_rules_are_listed_in_order_and_reordered_from_the_list(root, world, reading):
    page = root.get("/admin/alliance/routingrule/").content.decode()
    assert page.index("CT chest") < page.index(">MR<")
    rules = [reading.chest_rule, reading.mr_rule]
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for n, (rule, order) in enumerate(zip(rules, [30, 5], strict=True)):
        data |= {
            f"form-{n}-id": str(rule.pk),
            f"form-{n}-order": str(order),
            f"form-{n}-is_active": "on",
        }
    # The changelist lists rules in their order; the formset rows follow it.
    assert root.post("/admin/alliance/routingrule/", data).status_code == 302
    assert list(
        RoutingRule.objects.filter(alliance=world.north).values_list("name", flat=True)
    ) == ["MR", "CT chest"]
    page = root.get("/admin/alliance/routingrule/").content.decode()
    assert page.index(">MR<") < page.index("CT chest")


def test_the_referral_admin_shows_the_timeline_and_changes_nothing(root, referral):
    url = f"/admin/referrals/referral/{referral.pk}/change/"
    page = root.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "events-0-DELETE" not in html  # no deleting events
    assert 'name="_save"' not in html  # view only: no save button
    assert re.search(r">\s*route\s*<", html)  # the events are there
    assert "headache" in html
    # Posting a change (status or anything else) is refused; the state machine is the only way.
    refused = root.post(url, {"status": ReferralStatus.CANCELLED, "priority": "stat"})
    assert refused.status_code == 403
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED
    assert referral.priority == "routine"
    assert root.get("/admin/referrals/referral/add/").status_code == 403
    assert (
        root.post(f"/admin/referrals/referral/{referral.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert Referral.objects.filter(pk=referral.pk).exists()
    # Events have no admin of their own (no edit, no delete).
    assert root.get("/admin/referrals/referralevent/").status_code == 404
    assert ReferralEvent.objects.filter(referral=referral).count() == 2


def test_the_event_inline_has_no_add_or_delete(root, referral):
    from django.contrib import admin as django_admin

    from referrals.admin import ReferralAdmin, ReferralEventInline

    model_admin = ReferralAdmin(Referral, django_admin.site)
    inline = ReferralEventInline(Referral, django_admin.site)
    request = root.get("/").wsgi_request
    assert not model_admin.has_change_permission(request, referral)
    assert not inline.has_add_permission(request, referral)
    assert not inline.has_change_permission(request, referral)
    assert not inline.has_delete_permission(request, referral)
    assert "status" in model_admin.get_readonly_fields(request, referral)


def test_an_alliance_admin_manages_only_their_alliances_routing(
    world, reading, south_rule, referral
):
    alex = _person("alex", "亚历克斯", "Alex", world.reader, Role.ALLIANCE_ADMIN)
    client = staff(alex)
    listed = client.get("/admin/alliance/routingrule/")
    assert listed.status_code == 200
    assert "CT chest" in listed.content.decode()
    assert "south everything" not in listed.content.decode()
    # Another alliance's rule: not found (the admin redirects with "doesn't exist").
    theirs = client.get(f"/admin/alliance/routingrule/{south_rule.pk}/change/")
    assert theirs.status_code == 302
    # Their own rule: edited; a pool of another alliance is not a valid choice.
    url = f"/admin/alliance/routingrule/{reading.mr_rule.pk}/change/"
    form = {
        "alliance": world.north.pk,
        "order": 25,
        "name": "MR",
        "is_active": "on",
        "modality": "MR",
        "pool": reading.general.pk,
    }
    assert client.post(url, form).status_code == 302
    reading.mr_rule.refresh_from_db()
    assert reading.mr_rule.order == 25
    bad = client.post(url, form | {"pool": south_rule.pool_id})
    assert bad.status_code == 200
    assert "Select a valid choice" in bad.content.decode()
    assert client.post(url, form | {"alliance": world.south.pk}).status_code == 200
    reading.mr_rule.refresh_from_db()
    assert reading.mr_rule.pool == reading.general
    assert reading.mr_rule.alliance == world.north
    # The referral admin shows their alliance's referrals, read-only.
    assert client.get(f"/admin/referrals/referral/{referral.pk}/change/").status_code == 200
    assert client.get("/admin/alliance/readerpool/").status_code == 200


def test_an_alliance_admins_filter_sidebars_name_only_their_alliance(
    world, reading, south_rule, referral
):
    world.south.name_en = "Southern Secret Alliance"
    world.south.save()
    south_pool = south_rule.pool
    client = staff(_person("alex", "亚历克斯", "Alex", world.reader, Role.ALLIANCE_ADMIN))
    for url in [
        "/admin/alliance/routingrule/",
        "/admin/alliance/readerpool/",
        "/admin/alliance/rostershift/",
        "/admin/alliance/sitesettings/",
        "/admin/referrals/referral/",
    ]:
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert "Southern Secret Alliance" not in html, url
        assert f"__id__exact={world.south.pk}" not in html, url
        assert "South pool" not in html, url
    assert (
        f"pool__id__exact={south_pool.pk}"
        not in client.get("/admin/alliance/rostershift/").content.decode()
    )


def test_staff_without_the_alliance_role_get_no_routing_admin(world, reading):
    client = staff(world.adam)  # a clinic's hospital admin, staff but no model permissions
    assert client.get("/admin/alliance/routingrule/").status_code == 403
    assert (
        client.get(f"/admin/alliance/routingrule/{reading.mr_rule.pk}/change/").status_code == 403
    )
    assert client.get("/admin/referrals/referral/").status_code == 403


# --- The demo ----------------------------------------------------------------------------


def test_the_demos_alliance_admin_is_no_superuser_and_sees_their_alliance_only(world):
    from tenants.models import User

    call_command("seed_demo")
    admin_user = User.objects.get(username="allianceadmin")
    assert admin_user.is_staff
    assert not admin_user.is_superuser
    # A demo seeded before this rule is put right on the next seed.
    User.objects.filter(pk=admin_user.pk).update(is_superuser=True)
    call_command("seed_demo")
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    assert not User.objects.filter(is_superuser=True).exists()
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(admin_user)
    page = client.get("/admin/alliance/routingrule/").content.decode()
    assert world.north.name_en not in page
    assert world.south.name_en not in page
    assert client.get("/admin/tenants/user/").status_code == 403


def test_the_demo_routes_a_clinic_study_to_the_demo_radiologists(
    django_capture_on_commit_callbacks,
):
    from tenants.models import Institution, User

    call_command("seed_demo")
    counts = (
        ReaderPool.objects.count(),
        PoolMember.objects.count(),
        RoutingRule.objects.count(),
        AlliancePolicy.objects.count(),
        SiteSettings.objects.count(),
    )
    call_command("seed_demo")
    assert (
        (
            ReaderPool.objects.count(),
            PoolMember.objects.count(),
            RoutingRule.objects.count(),
            AlliancePolicy.objects.count(),
            SiteSettings.objects.count(),
        )
        == counts
        == (2, 4, 3, 1, 1)
    )
    policy = AlliancePolicy.objects.get()
    assert policy.fallback_pool is not None
    readers = set(PoolMember.objects.values_list("user__username", flat=True))
    assert readers == {"radiologist", "senior"}
    clinic = Institution.objects.get(code="qingshan-thc")
    assert SiteSettings.objects.get(member__institution=clinic).auto_remote_read
    # A study completed at the demo clinic asks for its read by itself and lands on a pool.
    study = study_at(clinic)
    with django_capture_on_commit_callbacks(execute=True):
        referral = services.referral_request_automatic(study.pk)
    assert referral is not None
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED
    assert referral.pool is not None
    assert referral.pool.subspecialty == "thoracic"
    assert referral.assigned_to in set(User.objects.filter(username__in=["radiologist", "senior"]))
