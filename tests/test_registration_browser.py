"""Registering an exam on a phone: the form and the day's list fit a 375 px screen."""

from __future__ import annotations

import urllib.request

import pytest

from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


# --- On a phone --------------------------------------------------------------------------------


def test_browser_register_at_phone_width(world, live_server, new_page):  # noqa: F811
    from playwright.sync_api import expect

    from .test_browser import no_horizontal_overflow, sign_in

    # The server's first request imports every page's code: under load it can outlast
    # the browser's navigation timeout, so it is made here, without one.
    with urllib.request.urlopen(f"{live_server.url}/healthz", timeout=120) as warm:
        assert warm.status == 200
    page = new_page(viewport={"width": 375, "height": 812}, has_touch=True)
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/registrations/new/")
    assert no_horizontal_overflow(page)
    page.fill("#id_patient_id", "MZ-PHONE")
    page.fill("#id_family_name", "王")
    page.fill("#id_given_name", "建国")
    page.select_option("#id_modality", "CT")
    page.fill("#id_procedure_description", "胸部CT平扫")
    page.fill("#id_scheduled_at", "2031-05-06T09:30")
    page.locator("#registration-form button[type=submit]").tap()
    page.wait_for_url(f"{live_server.url}/registrations/?day=2031-05-06")
    card = page.locator("#registration-list li").first
    expect(card).to_contain_text("王建国")
    expect(card).to_contain_text("MZ-PHONE")
    assert no_horizontal_overflow(page)
    page.locator("#registration-list .registration-cancel button").tap()
    expect(page.locator('#registration-list li[data-status="cancelled"]')).to_have_count(1)
