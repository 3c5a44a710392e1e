"""The MDT room in two Chromium pages of two institutions, served by a real uvicorn.

rita (north reader hospital) chairs and presents a CT of 40 slices; alice (north clinic)
follows. The presenter scrolls to slice 40 and picks the lung window; alice's page shows
the same slice and window within a second of the presenter's page showing it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from .mdt_support import mdt_setup, stored_ct
from .processes import VENV_BIN, base_env, free_port, start, wait_for_http
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worker_integration import database_url

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SLICES = 40
ONE_SECOND_MS = 1000


@pytest.fixture
def room_server(world, tmp_path: Path) -> Iterator[str]:
    """uvicorn on the test database and Redis, reading the objects this process stores."""
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        HUB_ENV="test",
        HUB_DATA_DIR=str(settings.DATA_DIR),
    )
    web = start(
        "web",
        [
            VENV_BIN / "python",
            "-m",
            "uvicorn",
            "alliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_dir=tmp_path,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, watch=[web])
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop(signal.SIGTERM, timeout=15)


def test_the_presenters_slice_and_window_reach_the_other_institution_within_a_second(
    world,
    room_server,
    new_page,  # noqa: F811 - the fixture
):
    from playwright.sync_api import expect

    from .test_browser import sign_in

    mdt = mdt_setup(world, study=stored_ct(world.reader, SLICES))
    pages = {}
    for user in (world.rita, world.alice):
        page = new_page(locale="en-US", viewport={"width": 1400, "height": 900})
        sign_in(page, room_server, user)
        page.goto(f"{room_server}/mdt/{mdt.session.pk}/")
        pages[user.username] = page
    presenter, follower = pages[world.rita.username], pages[world.alice.username]
    expect(presenter.locator("#viewer")).to_have_attribute("data-role", "chair")
    expect(follower.locator("#viewer")).to_have_attribute("data-role", "participant")
    for page in (presenter, follower):
        expect(page.locator("#viewer")).to_have_attribute("data-slice-index", "1")
    # Both show each other online: the presence came through the room.
    expect(presenter.locator(f'#participants [data-user="{world.alice.pk}"]')).to_have_attribute(
        "data-presence", "online"
    )

    # The presenter scrolls with the keyboard to slice 40, then picks the lung window.
    presenter.locator("#viewer-stage").focus()
    for _ in range(3):
        presenter.keyboard.press("PageDown")
    for _ in range(SLICES - 31):
        presenter.keyboard.press("ArrowDown")
    presenter.locator('#presets [data-preset="lung"]').click()
    viewer = presenter.locator("#viewer")
    expect(viewer).to_have_attribute("data-slice-index", str(SLICES))
    expect(viewer).to_have_attribute("data-window-center", "-600")
    expect(viewer).to_have_attribute("data-window-width", "1500")

    shown = follower.locator("#viewer")
    expect(shown).to_have_attribute("data-slice-index", str(SLICES), timeout=ONE_SECOND_MS)
    expect(shown).to_have_attribute("data-window-center", "-600", timeout=ONE_SECOND_MS)
    expect(shown).to_have_attribute("data-window-width", "1500", timeout=ONE_SECOND_MS)
    expect(follower.locator("#slice-index")).to_have_text(f"Image {SLICES} of {SLICES}")
    # The image is the hub's rendering of that slice in that window, and it loaded.
    expect(shown).to_have_attribute(
        "data-shown-url", follower.locator("#viewer").get_attribute("data-image-url") or "-"
    )
    assert "window=-600%2C1500" in (shown.get_attribute("data-image-url") or "")

    # Closing the session asks first: dismissed, nothing is closed; accepted, every page
    # hears that the session is closed.
    from consultations.models import MdtSession

    presenter.once("dialog", lambda dialog: dialog.dismiss())
    presenter.locator("#close-session").click()
    # A chat line sent after the dismissed click reaches the other page: the room handled
    # everything the presenter sent before it, and the session is still open.
    presenter.locator("#chat-text").fill("still open")
    presenter.locator("#chat-text").press("Enter")
    expect(follower.locator("#chat-log")).to_contain_text("still open")
    assert MdtSession.objects.get(pk=mdt.session.pk).closed_at is None
    presenter.once("dialog", lambda dialog: dialog.accept())
    presenter.locator("#close-session").click()
    expect(follower.locator("#room-status")).to_have_text(
        "The session is closed.", timeout=ONE_SECOND_MS * 5
    )
    assert MdtSession.objects.get(pk=mdt.session.pk).closed_at is not None
