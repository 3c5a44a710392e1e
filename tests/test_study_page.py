"""The study list and the study page's viewer in a real browser: paging, windows, measuring, phones.

Drives Debian's Chromium through Playwright against the live server, with a synthetic CT
series of 20 slices of 128x128 (PixelSpacing 500/128 mm).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient, ct_series
from referrals.models import Instance, Study

from . import test_browser as shell

# The web shell's browser fixtures, shared rather than copied (Playwright's sync API beside
# the ORM, Debian's Chromium, a fresh context per page).
_orm_beside_playwright = shell._orm_beside_playwright
browser = shell.browser
new_page = shell.new_page
PHONE = shell.PHONE
no_horizontal_overflow = shell.no_horizontal_overflow
sign_in = shell.sign_in

pytestmark = pytest.mark.browser

SLICES = 20
SIZE = 128
SPACING_MM = 500 / SIZE
# No "=" in the name: in a DICOM PN it would start the ideographic group.
EVIL = SyntheticPatient("EVIL-1", "<script>alert(1)</script>^<b>Bold</b>")


def store_series(
    world, tmp_path: Path, patient: SyntheticPatient, count: int = SLICES, **kwargs
) -> Study:
    for ds in ct_series(patient=patient, count=count, size=SIZE, **kwargs):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        outcome = instance_store(institution=world.clinic, path=path, via="test")
        assert outcome.status == "stored", outcome.message
    return Study.objects.get(institution=world.clinic, patient__patient_id=patient.patient_id)


@pytest.fixture
def ct_study(world, tmp_path: Path) -> Study:
    return store_series(
        world,
        tmp_path,
        SyntheticPatient("CT-0001", "Zhang^Wei=张^伟"),
        accession="ACC42",
        description="CT CHEST",
    )


def rendered_requests(page: Page) -> list[str]:
    urls: list[str] = []
    page.on(
        "request", lambda request: urls.append(request.url) if "/rendered" in request.url else None
    )
    return urls


def wait_for_image(page: Page) -> None:
    """The image the viewer asked for last is the one on the canvas."""
    page.wait_for_function(
        "() => { const v = document.getElementById('viewer');"
        " return v.dataset.shownUrl && v.dataset.shownUrl === v.dataset.imageUrl; }"
    )


def canvas_has_picture(page: Page) -> bool:
    return page.evaluate(
        """() => {
            const c = document.getElementById('viewer-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let bright = 0;
            for (let i = 0; i < d.length; i += 4 * 97) { if (d[i] > 60) bright++; }
            return bright > 50;
        }"""
    )


def sop_of_slice(study: Study, number: int) -> str:
    return Instance.objects.get(study=study, instance_number=number).sop_uid


def window_param(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("window")
    return values[0] if values else None


def test_a_clinic_user_pages_through_a_ct_study(
    world, live_server, new_page, ct_study, tmp_path: Path
):
    page = new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    requested = rendered_requests(page)
    sign_in(page, live_server.url, world.alice)

    page.get_by_role("link", name="Studies", exact=True).click()
    page.wait_for_url(f"{live_server.url}/studies/")
    expect(page.locator("#study-list")).to_contain_text("Zhang Wei (张伟)")
    expect(page.locator("#study-list")).to_contain_text("20 images")
    page.fill("#study-q", "ACC42")
    page.locator("form.study-search button").click()
    expect(page.locator("#study-list li")).to_have_count(1)
    page.locator("#study-list a.study-link").click()
    page.wait_for_url(f"{live_server.url}/studies/{ct_study.pk}/")

    expect(page.locator("#patient-name")).to_have_text("Zhang Wei (张伟)")
    expect(page.locator(".series-item[aria-pressed=true]")).to_have_count(1)
    wait_for_image(page)
    assert canvas_has_picture(page)
    expect(page.locator("#slice-index")).to_have_text(f"Image 1 of {SLICES}")
    thumbnail = page.locator(".series-item img")
    expect(thumbnail).to_have_js_property("complete", True)
    assert thumbnail.evaluate("img => img.naturalWidth") == 256
    page.screenshot(path=str(tmp_path / "study-desktop-first.png"))

    # The mouse wheel pages forward, one image a notch; a new frame is asked for.
    stage = page.locator("#viewer-stage")
    stage.hover()
    for _ in range(5):
        page.mouse.wheel(0, 100)
    expect(page.locator("#slice-index")).to_have_text(f"Image 6 of {SLICES}")
    wait_for_image(page)
    assert any(sop_of_slice(ct_study, 6) in url for url in requested)
    assert sop_of_slice(ct_study, 6) in page.locator("#viewer").get_attribute("data-shown-url")

    # Arrow keys and the slider move too.
    page.keyboard.press("ArrowDown")
    expect(page.locator("#slice-index")).to_have_text(f"Image 7 of {SLICES}")
    page.locator("#slice-slider").fill("15")
    expect(page.locator("#slice-index")).to_have_text(f"Image 15 of {SLICES}")
    wait_for_image(page)
    assert any(sop_of_slice(ct_study, 15) in url for url in requested)
    # Neighbours are fetched before they are needed.
    page.wait_for_function(
        "sop => performance.getEntriesByType('resource').some(e => e.name.includes(sop))",
        arg=sop_of_slice(ct_study, 16),
    )

    # A preset asks the server for the same slice in another window.
    assert window_param(page.locator("#viewer").get_attribute("data-image-url")) is None
    page.locator("#presets button", has_text="Lung").click()
    wait_for_image(page)
    shown = page.locator("#viewer").get_attribute("data-shown-url")
    assert window_param(shown) == "-600,1500,linear"
    assert sop_of_slice(ct_study, 15) in shown
    assert any(window_param(url) == "-600,1500,linear" for url in requested)
    expect(page.locator("#window-info")).to_have_text("W 1500 L -600")
    page.locator("#presets button", has_text="Bone").click()
    wait_for_image(page)
    assert (
        window_param(page.locator("#viewer").get_attribute("data-shown-url")) == "400,1800,linear"
    )

    # Dragging with the window tool changes the window the server is asked for.
    page.locator("#tools button", has_text="Window").click()
    box = stage.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 30, steps=4)
    page.mouse.up()
    wait_for_image(page)
    dragged = window_param(page.locator("#viewer").get_attribute("data-shown-url"))
    assert dragged is not None
    center, width, _function = dragged.split(",")
    assert float(width) > 1800
    assert float(center) < 400
    expect(page.locator("#presets button[aria-pressed=true]")).to_have_count(0)

    # A length measured across the image reads in millimetres from PixelSpacing.
    page.locator("#tools button", has_text="Measure").click()
    fit = min(box["width"], box["height"]) / SIZE  # CSS pixels per image pixel at zoom 100%
    page.mouse.move(cx - 100, cy)
    page.mouse.down()
    page.mouse.move(cx + 100, cy, steps=5)
    page.mouse.up()
    text = page.locator("#measurement").inner_text()
    assert text.endswith(" mm"), text
    assert float(text.split()[0]) == pytest.approx(200 / fit * SPACING_MM, rel=0.02)

    # Ctrl+wheel zooms around the pointer; Reset brings back the whole image.
    page.mouse.move(cx, cy)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    assert int(page.locator("#zoom-info").inner_text().split()[1].rstrip("%")) > 150
    page.screenshot(path=str(tmp_path / "study-desktop-measured.png"))
    page.locator("#viewer-reset").click()
    expect(page.locator("#zoom-info")).to_have_text("Zoom 100%")
    wait_for_image(page)
    assert window_param(page.locator("#viewer").get_attribute("data-shown-url")) is None


def swipe(page: Page, x: float, y0: float, y1: float, steps: int = 12) -> None:
    """A one-finger swipe as a phone sends it (touch events through the DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y0}]})
    for i in range(1, steps + 1):
        y = y0 + (y1 - y0) * i / steps
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_the_viewer_on_a_phone(world, live_server, new_page, ct_study, tmp_path: Path):
    page = new_page(locale="en-US", **PHONE)
    sign_in(page, live_server.url, world.alice, tap=True)
    page.goto(f"{live_server.url}/studies/")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(tmp_path / "phone-study-list.png"), full_page=True)

    page.goto(f"{live_server.url}/studies/{ct_study.pk}/")
    wait_for_image(page)
    assert canvas_has_picture(page)
    assert no_horizontal_overflow(page), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    stage = page.locator("#viewer-stage").bounding_box()
    assert stage is not None
    assert stage["x"] >= 0
    assert stage["x"] + stage["width"] <= PHONE["viewport"]["width"]
    assert stage["height"] >= 250
    page.screenshot(path=str(tmp_path / "phone-study.png"))

    # A preset is one tap; then a swipe up on the image pages forward (8 CSS pixels an
    # image) and keeps the window. (Chrome drops a tap that follows a swipe within ~100 ms,
    # faster than any finger, hence this order.)
    page.locator("#presets button", has_text="Lung").tap()
    wait_for_image(page)
    assert (
        window_param(page.locator("#viewer").get_attribute("data-shown-url")) == "-600,1500,linear"
    )
    x = stage["x"] + stage["width"] / 2
    swipe(page, x, stage["y"] + 220, stage["y"] + 140)
    expect(page.locator("#viewer")).to_have_attribute("data-slice-index", "11")
    wait_for_image(page)
    shown = page.locator("#viewer").get_attribute("data-shown-url")
    assert sop_of_slice(ct_study, 11) in shown
    assert window_param(shown) == "-600,1500,linear"
    page.screenshot(path=str(tmp_path / "phone-study-lung.png"), full_page=True)
    assert no_horizontal_overflow(page)


def test_dicom_text_is_shown_as_text_never_run(world, live_server, new_page, tmp_path: Path):
    study = store_series(
        world, tmp_path, EVIL, count=2, description="<img src=x onerror=window.__pwned=2>"
    )
    page = new_page(locale="en-US")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/studies/")
    link = page.locator("#study-list a.study-link")
    expect(link).to_have_text("<script>alert(1)</script> <b>Bold</b>")
    expect(page.locator("#study-list")).to_contain_text("<img src=x onerror=window.__pwned=2>")
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    wait_for_image(page)
    expect(page.locator("#patient-name")).to_have_text("<script>alert(1)</script> <b>Bold</b>")
    page.locator(".study-facts summary").click()
    expect(page.locator("#study-facts")).to_contain_text("<img src=x onerror=window.__pwned=2>")
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert page.locator("#patient-name script, #patient-name b, main img[src=x]").count() == 0
    expect(page.locator("#viewer")).to_have_attribute("data-slice-index", "1")
