"""The worklist table in Chromium, served by uvicorn with its live socket: a reader sorts
by clicking (and by keyboard), searches a patient, keeps both while new cases arrive live,
then does the same on a 375 px phone where the rows are cards."""

from __future__ import annotations

import pytest
from django.db import transaction

from referrals.models import Referral

from .referral_support import reading_setup
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worklist_page import asgi_server, beside_playwright, refer  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

PHONE_375 = {
    "viewport": {"width": 375, "height": 812},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def _case_for(world, user, name: str, pid: str) -> Referral:
    """A case proposed to `user`, committed (so its live event goes out)."""
    with transaction.atomic():
        referral = refer(world, patient_name=name, patient_id=pid, patient_key=f"key-{pid}")
        Referral.objects.filter(pk=referral.pk).update(assigned_to=user)
    return referral


def ends(path: str):
    """A URL test for wait_for_url: the address ends with `path`, query string and all."""
    return lambda url: url.endswith(path)


def _order(page, section: str) -> list[int]:
    ids = page.locator(f"#worklist-{section} tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.referralId))"
    )
    return list(ids)


@pytest.mark.django_db(transaction=True)
def test_a_reader_sorts_and_filters_at_the_desk_and_on_a_phone(
    world,
    asgi_server,  # noqa: F811 - the fixture
    new_page,  # noqa: F811 - the fixture
):
    from playwright.sync_api import expect

    from .test_browser import no_horizontal_overflow, sign_in

    reading_setup(world)
    bai = _case_for(world, world.rita, "Bai^Lu", "P-X")
    chen = _case_for(world, world.rita, "Chen^Wei", "P-Y")
    an = _case_for(world, world.rita, "An^Ping", "P-Z")

    desk = new_page(locale="en-US", viewport={"width": 1440, "height": 900})
    sign_in(desk, asgi_server, world.rita)
    desk.goto(f"{asgi_server}/worklist/")
    expect(desk.locator("body")).to_have_attribute("data-worklist-live", "open")
    patient_header = desk.locator("#worklist-mine th.wl-col-patient")
    expect(patient_header).not_to_have_attribute("aria-sort", "ascending")
    expect(desk.locator("#worklist-mine th.wl-col-priority")).to_have_attribute(
        "aria-sort", "ascending"
    )

    # A click on "Patient" sorts by name; Enter on the same header turns the order round.
    patient_header.locator("a").click()
    desk.wait_for_url(ends("/worklist/?sort=patient"))
    expect(desk.locator("#worklist-mine th.wl-col-patient")).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert _order(desk, "mine") == [an.pk, bai.pk, chen.pk]
    desk.locator("#worklist-mine th.wl-col-patient a").focus()
    desk.keyboard.press("Enter")
    desk.wait_for_url(ends("/worklist/?sort=-patient"))
    expect(desk.locator("#worklist-mine th.wl-col-patient")).to_have_attribute(
        "aria-sort", "descending"
    )
    assert _order(desk, "mine") == [chen.pk, bai.pk, an.pk]
    # The table is the dense one: headers shown, one line of cells per case.
    expect(desk.locator("#worklist-mine thead")).to_be_visible()
    expect(
        desk.locator(f'#worklist-mine tr[data-referral-id="{chen.pk}"] .wl-agesex')
    ).to_be_visible()

    # Search a patient: the address keeps the search and the sort, and nothing empty.
    desk.fill("#wl-patient", "chen")
    desk.click("#wl-filter")
    desk.wait_for_url(ends("/worklist/?patient=chen&sort=-patient"))
    assert _order(desk, "mine") == [chen.pk]
    expect(desk.locator("#wl-clear")).to_be_visible()

    # Cases arrive while the page is open: the live rows keep the search and the sort.
    expect(desk.locator("body")).to_have_attribute("data-worklist-live", "open")
    desk.locator("#worklist-mine th.wl-col-patient a").focus()
    other = beside_playwright(_case_for, world, world.rita, "Zhou^Ming", "P-O")
    match = beside_playwright(_case_for, world, world.rita, "Chen^Yu", "P-M")
    expect(desk.locator(f'#worklist-mine [data-referral-id="{match.pk}"]')).to_be_visible()
    assert _order(desk, "mine") == [match.pk, chen.pk]  # Chen^Yu, then Chen^Wei
    expect(desk.locator(f'[data-referral-id="{other.pk}"]')).to_have_count(0)
    expect(desk.locator("#worklist-mine th.wl-col-patient")).to_have_attribute(
        "aria-sort", "descending"
    )
    # The redrawn header keeps the keyboard's place.
    expect(desk.locator("#worklist-mine th.wl-col-patient a")).to_be_focused()

    # Nothing matching says so in a sentence.
    desk.fill("#wl-patient", "nobody")
    desk.click("#wl-filter")
    expect(desk.locator("#worklist-mine .wl-none")).to_contain_text("No cases match these filters.")

    # A phone: cards, no sideways scrolling; the sort and the search through the form.
    phone = new_page(locale="en-US", **PHONE_375)
    sign_in(phone, asgi_server, world.rita)
    phone.goto(f"{asgi_server}/worklist/")
    card = phone.locator(f'#worklist-mine [data-referral-id="{bai.pk}"]')
    expect(card).to_be_visible()
    expect(card.locator(".wl-patient")).to_have_text("Bai Lu")
    assert card.evaluate("row => getComputedStyle(row).display") == "grid"
    header = phone.locator("#worklist-mine thead").bounding_box()
    assert header is not None
    assert header["height"] <= 1  # kept for screen readers, out of sight
    assert no_horizontal_overflow(phone)
    phone.select_option("#wl-sort", "-patient")  # submits on change
    phone.wait_for_url(ends("/worklist/?sort=-patient"))
    assert _order(phone, "mine")[:2] == [other.pk, match.pk]  # Zhou, then Chen^Yu
    phone.fill("#wl-patient", "P-X")
    phone.locator("#wl-filter").tap()
    phone.wait_for_url(ends("/worklist/?patient=P-X&sort=-patient"))
    assert _order(phone, "mine") == [bai.pk]
    expect(card).to_be_visible()
    # The other filters are folded away on a phone until asked for.
    expect(phone.locator("select[name=priority]")).not_to_be_visible()
    phone.locator(".wl-more-label").tap()
    phone.select_option("select[name=priority]", "stat")
    assert no_horizontal_overflow(phone)
    phone.locator("#wl-filter").tap()
    phone.wait_for_url(ends("/worklist/?patient=P-X&priority=stat&sort=-patient"))
    expect(phone.locator("#worklist-mine .wl-none")).to_contain_text("No cases match")
    expect(phone.locator("select[name=priority]")).to_be_visible()  # unfolded: one is in force
    phone.go_back()
    expect(card).to_be_visible()
    box = card.bounding_box()
    assert box is not None
    assert 0 <= box["x"] <= box["x"] + box["width"] <= 375
    assert no_horizontal_overflow(phone)
