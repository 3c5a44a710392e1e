"""The clinic's home page: critical results to acknowledge, referrals waiting for a report,
results back — only the institution's own, each in its section, gone once acknowledged."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import cast

import pytest
from django.urls import reverse
from django.utils import timezone

from alliance.models import Tier
from referrals.models import PRIORITY_RANK, Priority, Referral, ReferralStatus, ReferralStudy
from referrals.workflow.selectors import clinic_home_referrals
from reporting.models import CriticalFinding
from reporting.selectors import clinic_open_criticals
from tenants import access
from tenants.models import Institution, InstitutionKind, Role

from .conftest import _person
from .factories import InstitutionFactory, join
from .referral_support import study_at
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
S = ReferralStatus


def _scope(user, institution):
    return access.scope_for_user(user, institution_id=institution.pk)


_numbers = itertools.count(1)


def _referral(world, status, *, source=None, minutes=120, age=0, reported=None):
    n = next(_numbers)
    source = source or world.clinic
    now = timezone.now() - dt.timedelta(minutes=age)
    study = study_at(
        source,
        patient_id=f"P-{n}",
        patient_key=f"key-{n}",
        patient_name=f"Wang^Patient{n}",
    )
    referral = Referral.objects.create(
        alliance=world.north,
        kind="remote_read",
        study=study,
        source=source,
        target=world.reader,
        priority=Priority.ROUTINE,
        priority_rank=PRIORITY_RANK[Priority.ROUTINE],
        status=status,
        requested_by=world.alice,
        requested_at=now,
        deadline_at=now + dt.timedelta(minutes=minutes),
        warn_at=now + dt.timedelta(minutes=minutes // 2),
        reported_at=reported,
    )
    ReferralStudy.objects.create(referral=referral, study=study)
    return referral


def _critical(world, referral, *, text="张力性气胸", acknowledged=False):
    now = timezone.now()
    return CriticalFinding.objects.create(
        referral=referral,
        text=text,
        flagged_by=world.rita,
        ack_minutes=30,
        due_at=now + dt.timedelta(minutes=30),
        acknowledged_at=now if acknowledged else None,
        acknowledged_by=world.alice if acknowledged else None,
    )


@pytest.fixture
def neighbour(world) -> Institution:
    """Another clinic of the same alliance: same reader, never on our home page."""
    other = cast(
        Institution,
        InstitutionFactory(
            code="north-other", name_en="Other Clinic", kind=InstitutionKind.TOWNSHIP_CENTRE
        ),
    )
    join(world.north, other, Tier.GRASSROOTS)
    return other


def test_statuses_land_in_their_section_and_only_our_own(world, neighbour):
    waiting = {s: _referral(world, s) for s in (S.REQUESTED, S.ROUTED, S.CLAIMED, S.REPORTING)}
    now = timezone.now()
    reported = _referral(world, S.REPORTED, reported=now - dt.timedelta(hours=2))
    delivered = _referral(world, S.DELIVERED, reported=now - dt.timedelta(hours=1))
    for status in (S.ACKNOWLEDGED, S.CANCELLED, S.RETURNED):
        _referral(world, status)
    theirs = [_referral(world, s, source=neighbour) for s in (S.REQUESTED, S.REPORTED)]

    home = clinic_home_referrals(scope=_scope(world.alice, world.clinic))

    assert {row.referral.pk for row in home.waiting} == {r.pk for r in waiting.values()}
    assert home.waiting_count == 4
    # Newest report first.
    assert [row.referral.pk for row in home.results] == [delivered.pk, reported.pk]
    assert home.results_count == 2
    shown = {row.referral.pk for row in home.waiting + home.results}
    assert not shown & {r.pk for r in theirs}


def test_waiting_newest_first_and_bounded(world):
    made = [_referral(world, S.REQUESTED, age=60 - i) for i in range(5)]
    home = clinic_home_referrals(scope=_scope(world.alice, world.clinic), limit=3)
    assert [row.referral.pk for row in home.waiting] == [r.pk for r in made[::-1][:3]]
    assert home.waiting_count == 5


def test_overdue_is_flagged(world):
    late = _referral(world, S.ROUTED, minutes=30, age=60)
    home = clinic_home_referrals(scope=_scope(world.alice, world.clinic))
    (row,) = home.waiting
    assert row.referral.pk == late.pk
    assert row.overdue
    assert row.breached


def test_acknowledged_results_drop_out(world):
    referral = _referral(world, S.DELIVERED, reported=timezone.now())
    scope = _scope(world.alice, world.clinic)
    assert clinic_home_referrals(scope=scope).results_count == 1
    Referral.objects.filter(pk=referral.pk).update(
        status=S.ACKNOWLEDGED, acknowledged_at=timezone.now()
    )
    assert clinic_home_referrals(scope=scope).results_count == 0


def test_open_criticals_only_ours_and_unacknowledged(world, neighbour):
    ours = _critical(world, _referral(world, S.REPORTED, reported=timezone.now()))
    _critical(world, _referral(world, S.DELIVERED), acknowledged=True)
    _critical(world, _referral(world, S.REPORTED, source=neighbour))

    criticals = clinic_open_criticals(scope=_scope(world.alice, world.clinic))

    assert [f.pk for f in criticals.findings] == [ours.pk]
    assert criticals.count == 1
    ours.acknowledged_at = timezone.now()
    ours.save()
    assert clinic_open_criticals(scope=_scope(world.alice, world.clinic)).count == 0


def test_the_reader_does_not_see_the_clinics_criticals_as_its_own(world):
    _critical(world, _referral(world, S.REPORTED))
    # The reading hospital sees the finding (it flagged it) but did not send the request.
    assert clinic_open_criticals(scope=_scope(world.rita, world.reader)).count == 0


def test_home_page_for_the_clinic_technician(world, client):
    waiting = _referral(world, S.CLAIMED)
    back = _referral(world, S.DELIVERED, reported=timezone.now())
    finding = _critical(world, back, text="Tension pneumothorax")
    client.force_login(world.alice)
    html = client.get("/").content.decode()
    assert html.index('id="home-critical"') < html.index('id="home-waiting"')
    assert html.index('id="home-waiting"') < html.index('id="home-results"')
    assert f'href="{reverse("referral-detail", args=[waiting.pk])}"' in html
    assert f"{reverse('referral-detail', args=[back.pk])}#critical-{finding.pk}" in html
    assert f"{reverse('referral-detail', args=[back.pk])}#referral-report" in html
    assert "Tension pneumothorax" in html
    assert "has-critical" in html
    assert "hub/clinic_home.css" in html
    assert "home-waiting-empty" not in html
    assert "home-results-empty" not in html


def test_home_page_for_a_referring_physician_with_nothing_yet(world, client):
    doctor = _person("dina", "迪娜", "Dina", world.clinic, Role.REFERRING_PHYSICIAN)
    client.force_login(doctor)
    html = client.get("/").content.decode()
    for empty in ("home-critical-empty", "home-waiting-empty", "home-results-empty"):
        assert f'id="{empty}"' in html
    assert "has-critical" not in html


def test_more_than_a_page_links_to_the_full_list(world, client):
    for _ in range(12):
        _referral(world, S.REQUESTED)
    client.force_login(world.alice)
    html = client.get("/").content.decode()
    assert html.count('<li data-referral-id="') == 10
    assert 'id="home-waiting-all"' in html
    assert "12" in html


@pytest.mark.parametrize("who", ["rita", "adam"])
def test_no_clinic_sections_without_a_clinic_role(world, client, who):
    _critical(world, _referral(world, S.REPORTED))
    client.force_login(getattr(world, who))
    html = client.get("/").content.decode()
    assert 'id="home-waiting"' not in html
    assert 'id="home-critical"' not in html
    assert 'id="home-results"' not in html


def test_the_home_page_queries_are_bounded(world, client, django_assert_max_num_queries):
    for i in range(15):
        _referral(world, S.ROUTED)
        _critical(world, _referral(world, S.DELIVERED, reported=timezone.now()), text=f"c{i}")
    client.force_login(world.alice)
    client.get("/")  # warm the session and caches
    with django_assert_max_num_queries(QUERY_BOUND):
        response = client.get("/")
    assert response.status_code == 200
    assert response.content.decode().count("data-critical-id=") == 10


QUERY_BOUND = 16
"""Counted: session, user, scope, nav, alliances, members, notifications and the clinic's six
(two per referral section, two for critical findings), whatever the number of rows."""


def test_browser_clinic_home_at_phone_width_in_chinese(world, live_server, new_page):  # noqa: F811
    from playwright.sync_api import expect

    from .test_browser import no_horizontal_overflow, sign_in

    waiting = _referral(world, S.ROUTED)
    back = _referral(world, S.DELIVERED, reported=timezone.now())
    finding = _critical(world, back)

    page = new_page(viewport={"width": 375, "height": 812})
    sign_in(page, live_server.url, world.alice)
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    waiting_row = page.locator(f'#home-waiting-list li[data-referral-id="{waiting.pk}"]')
    expect(waiting_row).to_be_visible()
    expect(waiting_row.locator("[data-status]")).to_have_text("已分派")
    critical = page.locator(f'#home-critical-list li[data-critical-id="{finding.pk}"]')
    expect(critical).to_contain_text("张力性气胸")
    assert no_horizontal_overflow(page)
    critical.locator("a").click()
    page.wait_for_url(f"**/referrals/{back.pk}/*")
    expect(page.locator(f"#critical-{finding.pk}")).to_be_visible()
