"""The MDT room page across a restart of the web process, in two Chromium pages.

uvicorn is stopped while rita and alice are in the room; alice types a chat while her page
is reconnecting; uvicorn starts again on the same port. The page's outbox (room.js) sends the
chat when the room is back: both pages show it, and the room stored it once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from consultations.models import RoomEvent

from .mdt_support import mdt_setup
from .processes import VENV_BIN, Proc, base_env, free_port, start, wait_for_http
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worker_integration import database_url

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BACK_MS = 180_000  # a bound for uvicorn to start again on a loaded machine, not a figure


class Web:
    """One uvicorn on a fixed port that the test stops and starts again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        env = base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            HUB_ENV="test",
            HUB_DATA_DIR=str(settings.DATA_DIR),
        )
        self.proc = start(
            f"web-{self.starts}",
            [
                VENV_BIN / "python",
                "-m",
                "uvicorn",
                "alliance.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "on",
            ],
            env=env,
            log_dir=self.log_dir,
        )
        wait_for_http(f"{self.base}/healthz", timeout=BACK_MS / 1000, watch=[self.proc])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=30)
            self.proc = None


@pytest.fixture
def web(world, tmp_path: Path) -> Iterator[Web]:
    server = Web(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_chat_typed_while_the_server_restarts_reaches_the_room_once(world, web, new_page):  # noqa: F811 - the fixture
    from playwright.sync_api import expect

    from .test_browser import sign_in

    mdt = mdt_setup(world)
    pages = {}
    for user in (world.rita, world.alice):
        page = new_page(locale="en-US", viewport={"width": 1400, "height": 900})
        sign_in(page, web.base, user)
        page.goto(f"{web.base}/mdt/{mdt.session.pk}/")
        pages[user.username] = page
    rita, alice = pages[world.rita.username], pages[world.alice.username]
    for page in (rita, alice):
        expect(page.locator("#room")).to_have_attribute("data-last-seq", "2")  # both joined
    alice.locator("#chat-text").fill("before the restart")
    alice.locator("#chat-text").press("Enter")
    expect(rita.locator("#chat-log")).to_contain_text("before the restart")

    web.stop()
    expect(alice.locator("#room-status")).to_have_text(
        "Connection lost; reconnecting…", timeout=BACK_MS
    )
    alice.locator("#chat-text").fill("typed while away")
    alice.locator("#chat-text").press("Enter")
    expect(alice.locator("#room")).to_have_attribute("data-outbox", "1")

    web.start()
    for page in (rita, alice):
        expect(page.locator("#chat-log")).to_contain_text("typed while away", timeout=BACK_MS)
    expect(alice.locator("#room")).to_have_attribute("data-outbox", "0")
    texts = [e.payload["text"] for e in RoomEvent.objects.filter(session=mdt.session, type="chat")]
    assert texts == ["before the restart", "typed while away"]
    # Each page shows it once (its replay and the live copy are one event).
    assert alice.locator("#chat-log li", has_text="typed while away").count() == 1
    assert rita.locator("#chat-log li", has_text="typed while away").count() == 1
