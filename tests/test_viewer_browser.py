"""The one viewer's windows (presets by modality, number keys, invert, reset), the drafting
page's layout, the patient's viewer on a phone, and forms that cannot be sent twice.

Chromium through Playwright against the live server. Windows are checked where they act:
the `window` parameter of the frame the viewer asked the server for, and the canvas pixels.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import translation
from playwright.sync_api import Page, expect

from referrals.archive.viewer import CT_PRESETS, series_presets
from reporting import share_manage_views, sharing
from reporting.models import Addendum, ShareLink

from . import test_browser as shell
from .share_support import signed_report
from .test_study_page import ct_study, wait_for_image, window_param

_orm_beside_playwright = shell._orm_beside_playwright
browser = shell.browser
new_page = shell.new_page
PHONE = shell.PHONE
no_horizontal_overflow = shell.no_horizontal_overflow
sign_in = shell.sign_in
__all__ = ["ct_study"]  # a fixture, used by name

# What sticks out past the right edge, for the failure message.
WIDEST = """() => Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' '
                      + Math.round(e.getBoundingClientRect().right))"""

CENTRE_PIXEL = """() => {
    const c = document.getElementById('viewer-canvas');
    return Array.from(c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data);
}"""


def shown_window(page: Page) -> str | None:
    wait_for_image(page)
    return window_param(page.locator("#viewer").get_attribute("data-shown-url") or "")


def pressed_preset(page: Page) -> str:
    return page.locator("#presets button[aria-pressed=true]").inner_text()


# --- The presets a series offers (no browser) ----------------------------------------------


def test_ct_series_get_the_hu_presets_and_others_the_header_windows_and_full_range():
    ct = series_presets("CT", [[40.0, 400.0]], [], [0.0, 4096.0])
    assert [p["key"] for p in ct] == [key for key, _c, _w in CT_PRESETS]
    assert [p["key"] for p in ct][:3] == ["brain", "subdural", "stroke"]
    assert {"lung", "mediastinum", "abdomen", "liver", "bone"} <= {p["key"] for p in ct}

    with translation.override("en"):
        mr = series_presets("MR", [[300.0, 600.0], [500.0, 1000.0]], ["T1", ""], [2047.5, 4096.0])
    assert [(p["key"], p["label"], p["center"], p["width"]) for p in mr] == [
        ("header-1", "T1", 300.0, 600.0),
        ("header-2", "Header window 2", 500.0, 1000.0),
        ("full", "Full range", 2047.5, 4096.0),
    ]
    assert series_presets("US", [], [], None) == []


def test_the_full_range_spans_the_stored_values_after_rescale():
    from referrals.archive.viewer import _full_range

    def element(value: Any) -> dict[str, Any]:
        return {"Value": [value]}

    # 12 bits signed, slope 1, intercept -1024: -3072 .. 1023 HU.
    sample = {"00280103": element(1), "00281052": element(-1024), "00281053": element(1)}
    assert _full_range(sample, 12) == [-1024.5, 4096.0]
    # The header's smallest/largest pixel values win over the bit depth.
    sample = {"00280106": element(10), "00280107": element(209)}
    assert _full_range(sample, 16) == [109.5, 200.0]


# --- The study page: CT presets, keys, invert, reset --------------------------------------


@pytest.mark.browser
def test_a_reader_picks_ct_windows_by_button_and_key_and_inverts(
    world, live_server, new_page, ct_study, tmp_path: Path
):
    page = new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/studies/{ct_study.pk}/")
    presets = page.locator("#presets button")
    expect(presets).to_have_text(
        [
            "Default",
            "Brain",
            "Subdural",
            "Stroke",
            "Lung",
            "Soft tissue",
            "Abdomen",
            "Liver",
            "Bone",
        ]
    )
    assert shown_window(page) is None
    default_pixel = page.evaluate(CENTRE_PIXEL)

    # A button asks the server for the same frame in the preset's window; the picture changes.
    presets.filter(has_text="Brain").click()
    assert shown_window(page) == "40,80,linear"
    assert pressed_preset(page) == "Brain"
    brain_pixel = page.evaluate(CENTRE_PIXEL)
    expect(page.locator("#window-info")).to_have_text("W 80 L 40")

    # Number keys choose the nth button, with the image (not a text field) in focus.
    page.locator("#viewer-stage").focus()
    page.keyboard.press("5")
    assert shown_window(page) == "-600,1500,linear"
    assert pressed_preset(page) == "Lung"
    lung_pixel = page.evaluate(CENTRE_PIXEL)
    assert lung_pixel != brain_pixel or brain_pixel != default_pixel
    page.keyboard.press("9")
    assert shown_window(page) == "400,1800,linear"
    assert presets.nth(8).get_attribute("aria-keyshortcuts") == "9"
    page.keyboard.press("1")
    assert shown_window(page) is None
    assert pressed_preset(page) == "Default"

    # Invert draws the negative of the same picture (no new request); I toggles it back.
    presets.filter(has_text="Brain").click()
    assert shown_window(page) == "40,80,linear"
    before = page.evaluate(CENTRE_PIXEL)
    page.locator("#viewer-invert").click()
    expect(page.locator("#viewer-invert")).to_have_attribute("aria-pressed", "true")
    after = page.evaluate(CENTRE_PIXEL)
    assert after[:3] == [255 - v for v in before[:3]]
    page.locator("#viewer-stage").focus()
    page.keyboard.press("i")
    expect(page.locator("#viewer")).to_have_attribute("data-inverted", "false")
    assert page.evaluate(CENTRE_PIXEL) == before
    page.keyboard.press("i")
    expect(page.locator("#viewer")).to_have_attribute("data-inverted", "true")

    # Reset: the image's own window, not inverted.
    page.keyboard.press("r")
    expect(page.locator("#viewer")).to_have_attribute("data-inverted", "false")
    assert shown_window(page) is None
    assert pressed_preset(page) == "Default"
    # Full screen is offered where the browser has the Fullscreen API.
    expect(page.locator("#viewer-fullscreen")).to_be_visible()
    page.screenshot(path=str(tmp_path / "viewer-presets.png"))


@pytest.mark.browser
def test_other_modalities_offer_the_header_windows_and_the_full_range(
    world, live_server, new_page, tmp_path: Path
):
    from referrals.archive.ingest import instance_store
    from referrals.archive.synthetic import SyntheticPatient, ct_series
    from referrals.models import Study

    for ds in ct_series(patient=SyntheticPatient("MR-1", "Li^Na"), count=3, size=64):
        ds.Modality = "MR"
        ds.WindowCenterWidthExplanation = ["T2", ""]
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert instance_store(institution=world.clinic, path=path, via="test").status == "stored"
    study = Study.objects.get(institution=world.clinic, patient__patient_id="MR-1")
    page = new_page(locale="en-US")
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    presets = page.locator("#presets button")
    # The header's two windows (the first named by its explanation), then the full range of
    # 16-bit signed values.
    expect(presets).to_have_text(["Default", "T2", "Header window 2", "Full range"])
    assert shown_window(page) is None
    page.locator("#viewer-stage").focus()
    page.keyboard.press("2")
    assert shown_window(page) == "40,400,linear"
    page.keyboard.press("3")
    assert shown_window(page) == "-600,1500,linear"
    page.keyboard.press("4")
    assert shown_window(page) == "-0.5,65536,linear"
    assert pressed_preset(page) == "Full range"


# --- The drafting page's layout -----------------------------------------------------------


@pytest.mark.browser
def test_the_drafting_page_gives_the_images_the_width_on_a_desktop_and_stacks_on_a_phone(
    world, live_server, new_page, django_capture_on_commit_callbacks, tmp_path: Path
):
    signed = signed_report(world, django_capture_on_commit_callbacks)
    url = f"{live_server.url}/reports/{signed.report.referral_id}/edit/"

    page = new_page(locale="en-US", viewport={"width": 1440, "height": 900})
    sign_in(page, live_server.url, world.rita)
    page.goto(url)
    wait_for_image(page)
    stage = page.locator("#viewer-stage").bounding_box()
    pane = page.locator(".report-pane").bounding_box()
    assert stage is not None
    assert pane is not None
    page.screenshot(path=str(tmp_path / "report-desktop.png"))
    # Side by side, the images taking most of the width and most of the height.
    assert pane["x"] > stage["x"] + stage["width"]
    assert stage["width"] > 0.5 * 1440
    assert stage["height"] > 0.5 * 900
    assert no_horizontal_overflow(page), page.evaluate(WIDEST)

    # The split moves with the arrow keys on the separator, and the choice is kept.
    split = page.locator("#report-split")
    expect(split).to_be_visible()
    split.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(split).to_have_attribute("aria-valuenow", "77")
    wider = page.locator("#viewer-stage").bounding_box()
    assert wider is not None
    assert wider["width"] > stage["width"] + 100
    page.reload()
    expect(page.locator("#report-split")).to_have_attribute("aria-valuenow", "77")
    split = page.locator("#report-split")
    split.focus()
    page.keyboard.press("Home")
    expect(split).to_have_attribute("aria-valuenow", "35")
    pane = page.locator(".report-pane").bounding_box()
    assert pane is not None
    assert pane["width"] > 0.5 * 1440

    # On a phone: the images first, the full width, then the report below; nothing overflows.
    phone = new_page(locale="en-US", **PHONE)
    sign_in(phone, live_server.url, world.rita, tap=True)
    phone.goto(url)
    wait_for_image(phone)
    stage = phone.locator("#viewer-stage").bounding_box()
    pane = phone.locator(".report-pane").bounding_box()
    assert stage is not None
    assert pane is not None
    assert stage["width"] > 0.85 * phone.evaluate("window.innerWidth")
    assert pane["y"] >= stage["y"] + stage["height"]
    expect(phone.locator("#report-split")).to_be_hidden()
    phone.screenshot(path=str(tmp_path / "report-phone.png"), full_page=True)
    assert no_horizontal_overflow(phone), phone.evaluate(WIDEST)


# --- Sent once ------------------------------------------------------------------------------


def answer_posts_with_no_content(route: Any, held: list[Any]) -> None:
    if route.request.method == "POST":
        held.append(route.request.url)
        route.fulfill(status=204)
    else:
        route.continue_()


@pytest.mark.browser
def test_a_double_click_sends_a_form_once_and_shows_it_is_working(
    world, live_server, new_page, django_capture_on_commit_callbacks, monkeypatch
):
    signed = signed_report(world, django_capture_on_commit_callbacks)
    page = new_page(locale="en-US")
    sign_in(page, live_server.url, world.rita)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    # A page form, clicked again while the hub is still working on the first click (the
    # hub's answer waits at a gate until the test opens it): the second click sends nothing.
    share = f"{live_server.url}{reverse('report-share', args=[signed.report.pk])}"
    page.goto(share)
    arrived, gate = threading.Event(), threading.Event()
    create = sharing.share_link_create

    def slow_create(**kwargs: Any) -> Any:
        arrived.set()
        gate.wait(timeout=30)
        return create(**kwargs)

    monkeypatch.setattr(share_manage_views.sharing, "share_link_create", slow_create)
    box = page.locator("#share-create").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert arrived.wait(timeout=30)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Enter")
    gate.set()
    expect(page.locator("#share-qr")).to_be_visible()
    assert posts.count(share) == 1
    assert ShareLink.objects.filter(report=signed.report).count() == 1

    # Back to the page from the browser's cache: the form can be sent again.
    page.go_back()
    expect(page.locator("#share-create")).to_be_enabled()

    # While the answer is on its way the pressed button says so. (An answer of 204 leaves
    # the page in place, so that the test can read it.)
    held: list[Any] = []
    page.route(share, lambda route: answer_posts_with_no_content(route, held))
    page.locator("#share-create").click()
    expect(page.locator("#share-create")).to_be_disabled()
    expect(page.locator("#share-create")).to_have_text("Working…")
    expect(page.locator("main form:has(#share-create)")).to_have_attribute("aria-busy", "true")
    page.keyboard.press("Enter")  # and Enter does not send it again
    page.unroute(share)
    assert len(held) == 1

    # A form sent by fetch (the addendum): disabled while in flight, one addendum.
    page.goto(f"{live_server.url}/reports/{signed.report.referral_id}/edit/")
    page.fill("#addendum-text", "补充: 左肺下叶另见 3 mm 结节。")
    api = f"{live_server.url}{reverse('api:report-addenda', args=[signed.report.pk])}"
    button = page.locator("#addendum-form button[type=submit]")
    waiting: list[Any] = []
    page.route(api, lambda route: waiting.append(route))
    button.click()
    expect(button).to_be_disabled()
    expect(button).to_have_text("Working…")
    assert len(waiting) == 1
    waiting[0].abort()  # the network fails: a sentence, and the button is back
    page.unroute(api)
    expect(page.locator("#action-error")).to_contain_text("The hub could not be reached")
    expect(button).to_be_enabled()
    expect(button).to_have_text("Sign the addendum")
    posts.clear()
    button.dblclick()
    expect(page.locator("#addenda")).to_contain_text("左肺下叶另见 3 mm 结节")
    assert posts.count(api) == 1
    assert Addendum.objects.filter(report=signed.report).count() == 1


@pytest.mark.browser
def test_the_language_buttons_still_send_their_choice(world, live_server, new_page):
    page = new_page(locale="en-US")
    sign_in(page, live_server.url, world.alice)
    page.locator("#language-switch button[value='zh-hans']").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.locator("#language-switch button[value='en']").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


@pytest.mark.browser
def test_a_refused_fetch_action_says_why_in_a_sentence(
    world, live_server, new_page, django_capture_on_commit_callbacks
):
    signed = signed_report(world, django_capture_on_commit_callbacks)
    page = new_page(locale="en-US")
    sign_in(page, live_server.url, world.rita)
    page.goto(f"{live_server.url}/reports/{signed.report.referral_id}/edit/")
    api = f"**{reverse('api:report-addenda', args=[signed.report.pk])}"
    page.route(api, lambda route: route.fulfill(status=502, body="<html>Bad gateway</html>"))
    page.fill("#addendum-text", "补充。")
    page.locator("#addendum-form button[type=submit]").click()
    expect(page.locator("#action-error")).to_have_text(
        "The hub did not accept this (error 502). Reload the page and try again."
    )
    expect(page.locator("#addendum-form button[type=submit]")).to_be_enabled()
    page.unroute(api)
    page.route(api, lambda route: route.abort())
    page.locator("#addendum-form button[type=submit]").click()
    expect(page.locator("#action-error")).to_have_text(
        "The hub could not be reached: nothing was changed. Check the connection and try again."
    )
    assert not Addendum.objects.filter(report=signed.report).exists()


# --- The patient's viewer -------------------------------------------------------------------


def _luminance(rgb: list[float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: list[float], b: list[float]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


COLOURS = """e => {
    const s = getComputedStyle(e);
    const rgb = v => v.match(/[\\d.]+/g).map(Number);
    return { fg: rgb(s.color), bg: rgb(s.backgroundColor), w: e.offsetWidth, h: e.offsetHeight };
}"""


@pytest.mark.browser
def test_the_patients_viewer_reads_and_taps_well_on_a_phone(
    world, live_server, new_page, django_capture_on_commit_callbacks, tmp_path: Path
):
    from .reporting_support import scope

    signed = signed_report(world, django_capture_on_commit_callbacks)
    _link, token = sharing.share_link_create(
        scope=scope(world.rita, world.reader), report_id=signed.report.pk
    )
    phone = new_page(locale="en-US", **PHONE)
    phone.goto(f"{live_server.url}{reverse('share-page', args=[token])}")
    phone.get_by_role("link", name="View all images").tap()
    wait_for_image(phone)
    assert no_horizontal_overflow(phone)

    # Every button of the toolbar and the series is a 44 px target at least.
    for button in phone.locator(".viewer-toolbar button:visible, .series-item").all():
        box = button.evaluate(COLOURS)
        assert min(box["h"], box["w"]) >= 44, (button.inner_text(), box)

    # The pressed buttons (tool, window, series) and the others read at 4.5:1 or better.
    phone.locator("#presets button", has_text="Lung").tap()
    assert shown_window(phone) == "-600,1500,linear"
    pressed = phone.locator(
        ".viewer-toolbar button[aria-pressed=true], .series-item[aria-pressed=true]"
    )
    expect(pressed).to_have_count(3)
    for button in pressed.all() + phone.locator(".viewer-toolbar button[aria-pressed=false]").all():
        colours = button.evaluate(COLOURS)
        assert colours["bg"][3:] in ([], [1]), colours  # an opaque background
        assert contrast(colours["fg"], colours["bg"]) >= 4.5, (button.inner_text(), colours)
    on = pressed.first.evaluate(COLOURS)
    off = phone.locator(".viewer-toolbar button[aria-pressed=false]").first.evaluate(COLOURS)
    assert on["bg"] != off["bg"]  # the pressed state is seen, not only announced
    phone.screenshot(path=str(tmp_path / "patient-viewer.png"), full_page=True)
