"""Where HUB_VIEWER_WATERMARK is on, the staff viewer (study page, report editor, MDT room)
is overlaid with "<name> · <institution> · <time>" tiled over the image, on screen and in
print, not in the way of the mouse; off, nothing. The patient's share viewer never names
staff, and the frames served are the same either way."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from reporting import sharing
from tenants import access

from . import test_browser as shell
from .ingest_support import media  # noqa: F401
from .mdt_support import mdt_setup
from .share_support import signed_report
from .test_study_page import ct_study, wait_for_image

_orm_beside_playwright = shell._orm_beside_playwright
browser = shell.browser
new_page = shell.new_page
sign_in = shell.sign_in
__all__ = ["ct_study"]  # a fixture, used by name

LAYER = re.compile(r'<div class="viewer-watermark" id="viewer-watermark" data-watermark="([^"]*)"')


def _page(user, url: str) -> str:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    answer = client.get(url)
    assert answer.status_code == 200, url
    return answer.content.decode()


def _watermarks(html: str) -> list[str]:
    return LAYER.findall(html)


@pytest.mark.django_db
def test_the_report_editor_and_the_mdt_room_carry_it_when_on(
    world,
    settings,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    signed = signed_report(world, django_capture_on_commit_callbacks)
    chest = signed.desk.chest  # claimed by rita, no report yet
    mdt = mdt_setup(world)
    editor = reverse("report-edit", args=[chest.pk])
    room = reverse("mdt-room", args=[mdt.session.pk])

    settings.HUB_VIEWER_WATERMARK = False
    assert _watermarks(_page(world.rita, editor)) == []
    assert "watermark.js" not in _page(world.rita, room)

    settings.HUB_VIEWER_WATERMARK = True
    today = timezone.localtime().strftime("%Y-%m-%d")
    (text,) = _watermarks(_page(world.rita, editor))
    assert text.startswith("Rita · North Central Hospital · " + today)
    (text,) = _watermarks(_page(world.alice, room))
    assert text.startswith("Alice · Beishan Township Health Centre · " + today)
    assert "referrals/watermark.js" in _page(world.alice, room)


@pytest.mark.django_db
def test_the_patients_share_viewer_names_no_staff_even_for_a_signed_in_browser(
    world,
    settings,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    settings.HUB_VIEWER_WATERMARK = True
    signed = signed_report(world, django_capture_on_commit_callbacks)
    _link, token = sharing.share_link_create(
        scope=access.scope_for_user(world.rita, institution_id=world.reader.pk),
        report_id=signed.report.pk,
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.rita)  # a staff member opening the patient's link
    page = client.get(reverse("share-page", args=[token]))
    viewer_link = re.search(r'href="(/s/v/[^"]+)"', page.content.decode())
    assert viewer_link, "the share page links its images"
    html = client.get(viewer_link.group(1)).content.decode()
    assert 'id="viewer-canvas"' in html
    assert "viewer-watermark" not in html
    assert "Rita" not in html


@pytest.mark.browser
def test_the_study_viewer_shows_the_watermark_where_configured(
    world, live_server, new_page, ct_study, settings, tmp_path: Path
):
    settings.HUB_VIEWER_WATERMARK = True
    page = new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/studies/{ct_study.pk}/")
    wait_for_image(page)
    layer = page.locator(".viewer-stage .viewer-watermark")
    expect(layer).to_be_visible()
    text = layer.get_attribute("data-watermark") or ""
    assert text.startswith("Alice · Beishan Township Health Centre · ")
    tile = layer.evaluate("e => getComputedStyle(e).backgroundImage")
    assert tile.startswith('url("data:image/svg+xml,')
    assert quote("Alice") in tile
    assert "Beishan" in tile
    # It covers the image area and lets the mouse through to the image.
    box, stage = layer.bounding_box(), page.locator("#viewer-stage").bounding_box()
    assert box is not None
    assert stage is not None
    assert (box["width"], box["height"]) == (stage["width"], stage["height"])
    hit = page.evaluate(
        "() => { const r = document.getElementById('viewer-stage').getBoundingClientRect();"
        " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id; }"
    )
    assert hit == "viewer-canvas"
    assert layer.evaluate("e => getComputedStyle(e).userSelect") == "none"
    page.screenshot(path=str(tmp_path / "watermark.png"))
    # Printed too: the tile is kept (backgrounds are otherwise dropped in print).
    page.emulate_media(media="print")
    expect(layer).to_be_visible()
    assert layer.evaluate("e => getComputedStyle(e).printColorAdjust") == "exact"
    page.emulate_media(media="screen")

    # The frame the viewer fetched is the same picture with the setting on or off.
    frame_url = page.locator("#viewer").get_attribute("data-shown-url") or ""
    assert "/rendered" in frame_url
    frame_url = frame_url if "://" in frame_url else live_server.url + frame_url
    on = page.request.get(frame_url).body()
    settings.HUB_VIEWER_WATERMARK = False
    assert page.request.get(frame_url).body() == on

    # Off: no layer, no script.
    page.reload()
    wait_for_image(page)
    expect(page.locator(".viewer-watermark")).to_have_count(0)
    assert page.locator("script[src*='watermark.js']").count() == 0


@pytest.mark.django_db
def test_a_refused_viewer_shows_nothing_of_it(world, settings, ct_study):
    """An outsider gets the study page's 404, with no watermark of theirs or anyone's."""
    settings.HUB_VIEWER_WATERMARK = True
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.oscar)
    answer = client.get(f"/studies/{ct_study.pk}/")
    assert answer.status_code == 404
    assert b"viewer-watermark" not in answer.content
