"""The routing console in a real browser: the alliance administrator makes a pool, adds a
reader, puts them on a weekly night shift, sees it in the roster's week, writes a rule and
tries it on a real referral; on a phone the roster's days stack without sideways scrolling."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from alliance.models import PoolMember, ReaderPool, RosterShift, RoutingRule
from referrals.models import Referral
from referrals.workflow import services
from tenants import access
from tenants.models import Role

from .conftest import _person
from .referral_support import reading_setup, study_at
from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
    sign_in,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def console(world):
    """The north's reading setup, its alliance administrator, and one CT chest referral
    sent and routed the real way."""
    reading = reading_setup(world)
    alma = _person("alma", "阿尔玛", "Alma", world.reader, Role.ALLIANCE_ADMIN)
    referral, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk),
        study=study_at(world.clinic, modality="CT", body_part="CHEST"),
    )
    services.referral_route(referral.pk)
    referral.refresh_from_db()
    return reading, alma, referral


def test_the_alliance_administrator_builds_a_night_pool_and_tests_a_rule(
    world,
    console,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    reading, alma, referral = console
    routed = (referral.status, referral.pool_id, referral.assigned_to_id)
    base = live_server.url
    page = new_page(locale="en-US")
    sign_in(page, base, alma)

    # A new pool at the reader hospital.
    page.goto(f"{base}/console/pools/")
    page.click("#pool-create")
    page.select_option("#id_institution", str(world.reader.pk))
    page.fill("#id_name", "夜班")
    page.fill("#id_name_en", "Night reading")
    page.fill("#id_cap", "20")
    page.click("#pool-form button[type=submit]")
    pool = ReaderPool.objects.get(name_en="Night reading")
    page.wait_for_url(f"{base}/console/pools/{pool.pk}/")
    expect(page.locator("main h1")).to_have_text("Night reading")
    expect(page.locator("#pool-members-empty")).to_be_visible()

    # The picker offers the alliance's radiologists only; Rob joins.
    offered = page.locator("#id_user option").all_inner_texts()
    assert {"Rita", "Rob", "Sam"} <= set(offered)
    assert not {"Alice", "Adam", "Alma", "Oscar"} & set(offered)
    page.select_option("#id_user", label="Rob")
    page.fill("#id_capacity", "5")
    page.click("#member-add button[type=submit]")
    expect(page.locator(".member-list li[data-member=rob]")).to_contain_text("Rob")
    assert PoolMember.objects.get(pool=pool, user=reading.rob).capacity == 5
    page.screenshot(path=str(tmp_path / "pool.png"), full_page=True)

    # A weekly night shift, Monday and Wednesday, for two weeks from next Monday.
    monday = timezone.localdate() - dt.timedelta(days=timezone.localdate().weekday())
    next_monday = monday + dt.timedelta(days=7)
    page.click("#pool-roster")
    page.select_option("#id_user", label="Rob")
    page.fill("#id_first_day", next_monday.isoformat())
    page.fill("#id_starts", "20:00")
    page.fill("#id_ends", "08:00")
    page.check("#id_weekdays_0")
    page.check("#id_weekdays_2")
    page.fill("#id_weeks", "2")
    page.click("#shift-form button[type=submit]")
    expect(page.locator("main .message.success")).to_contain_text("4 shifts added.")
    assert RosterShift.objects.filter(pool=pool, user=reading.rob).count() == 4
    week = page.locator("#roster-week")
    expect(page.locator("#roster-range")).to_contain_text(next_monday.isoformat())
    monday_shift = week.locator(f"[data-day='{next_monday.isoformat()}'] .shift")
    expect(monday_shift).to_contain_text("20:00\u201308:00")
    expect(monday_shift).to_contain_text("Rob")
    expect(week.locator(".shift")).to_have_count(2)
    page.click("#week-next")
    expect(week.locator(".shift")).to_have_count(2)
    page.click("#week-previous")
    page.click("#week-previous")
    expect(week.locator(".shift")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "roster.png"), full_page=True)

    # A rule: CT to the night pool, written with real choices, then tried on the referral.
    page.goto(f"{base}/console/rules/")
    page.click("#rule-create")
    page.fill("#id_name", "CT at night")
    page.select_option("#id_modality", "CT")
    page.select_option("#id_kind", "remote_read")
    page.select_option("#id_pool", str(pool.pk))
    page.click("#rule-form button[type=submit]")
    rule = RoutingRule.objects.get(name="CT at night")
    page.wait_for_url(f"{base}/console/rules/{rule.pk}/test/")
    card = page.locator(f".dry-run-case[data-referral='{referral.pk}']")
    expect(card).to_have_attribute("data-matches", "yes")
    # Placed last, it is shadowed by the chest rule that comes first.
    expect(card.locator(".verdict")).to_contain_text("comes first")
    expect(card.locator(".decision-pool")).to_have_text("North thoracic")

    # Moved to the top, it decides: the night pool, and Rob (no roster required).
    page.goto(f"{base}/console/rules/")
    row = page.locator(f"#rule-list li[data-rule='{rule.pk}']")
    row.locator("button[value=up]").click()
    row = page.locator(f"#rule-list li[data-rule='{rule.pk}']")
    row.locator("button[value=up]").click()
    expect(page.locator("#rule-list li").first).to_have_attribute("data-rule", str(rule.pk))
    page.screenshot(path=str(tmp_path / "rules.png"), full_page=True)
    page.locator(f"#rule-list li[data-rule='{rule.pk}'] a.button").click()
    card = page.locator(f".dry-run-case[data-referral='{referral.pk}']")
    expect(card.locator(".verdict")).to_have_text("This rule matches.")
    expect(card.locator(".decision-pool")).to_have_text("Night reading")
    expect(card.locator(".decision-reader")).to_have_text("Rob")
    expect(card.locator(".decision-why")).to_contain_text("CT at night")

    # A rule's failure names its condition.
    mr = reading.mr_rule
    page.goto(f"{base}/console/rules/{mr.pk}/test/")
    card = page.locator(f".dry-run-case[data-referral='{referral.pk}']")
    expect(card).to_have_attribute("data-matches", "no")
    expect(card.locator(".tag.failed")).to_have_text(["modality"])
    page.screenshot(path=str(tmp_path / "dry-run.png"), full_page=True)

    # The dry run routed nothing.
    referral.refresh_from_db()
    assert (referral.status, referral.pool_id, referral.assigned_to_id) == routed
    assert Referral.objects.count() == 1


def test_the_roster_stacks_its_days_on_a_phone(
    world,
    console,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    reading, alma, _referral = console
    today = timezone.localdate()
    start = timezone.make_aware(dt.datetime.combine(today, dt.time(8)))
    RosterShift.objects.create(
        pool=reading.general,
        user=world.rita,
        starts_at=start,
        ends_at=start + dt.timedelta(hours=9),
    )
    page = new_page(**PHONE)
    sign_in(page, live_server.url, alma, tap=True)
    for path in (
        f"/console/roster/?pool={reading.general.pk}",
        "/console/pools/",
        f"/console/pools/{reading.general.pk}/",
        "/console/rules/",
        f"/console/rules/{reading.chest_rule.pk}/",
        f"/console/rules/{reading.chest_rule.pk}/test/",
    ):
        page.goto(f"{live_server.url}{path}")
        assert no_horizontal_overflow(page), path
    page.goto(f"{live_server.url}/console/roster/?pool={reading.general.pk}")
    days = page.locator("#roster-week .roster-day")
    expect(days).to_have_count(7)
    boxes = [days.nth(i).bounding_box() for i in range(7)]
    assert all(box is not None for box in boxes)
    lefts = {round(box["x"]) for box in boxes if box}
    tops = [box["y"] for box in boxes if box]
    assert len(lefts) == 1
    assert tops == sorted(tops)
    expect(page.locator(f"#roster-week [data-day='{today.isoformat()}'] .shift")).to_contain_text(
        "08:00\u201317:00"
    )
    page.screenshot(path=str(tmp_path / "roster-phone.png"), full_page=True)
