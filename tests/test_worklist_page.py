"""The reading worklist page, the case page, the live socket, and the live page in Chromium."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from alliance.asgi import application
from referrals.models import Referral, ReferralStatus
from referrals.workflow import services
from tenants import access
from tenants.models import Role

from .conftest import _person
from .referral_support import reading_setup, study_at
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_live import SAME_ORIGIN, run, session_cookie, token_header

PATH = "/ws/referrals/"


@pytest.fixture
def reading(world):
    return reading_setup(world)


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def refer(world, *, modality="MR", body_part="BRAIN", priority="routine", question="", **study):
    """alice sends a study; routing runs at once (as the worker would after commit)."""
    made = study_at(world.clinic, modality=modality, body_part=body_part, **study)
    referral, _created = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk),
        study=made,
        priority=priority,
        clinical_question=question,
    )
    services.referral_route(referral.pk)
    referral.refresh_from_db()
    return referral


# --- The pages ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_worklist_shows_mine_and_my_pool_sorted_and_coloured(world, reading):
    routine = refer(
        world, priority="routine", patient_name="Li^Lei", patient_id="P-2", patient_key="k2"
    )
    stat = refer(
        world,
        priority="stat",
        body_part="HEAD",
        patient_name="Han^Meimei",
        patient_id="P-3",
        patient_key="k3",
    )
    late = refer(
        world,
        priority="routine",
        body_part="KNEE",
        patient_name="Zhao^Yun",
        patient_id="P-4",
        patient_key="k4",
    )
    Referral.objects.filter(pk=late.pk).update(
        deadline_at=timezone.now() - dt.timedelta(minutes=3), assigned_to=None
    )
    Referral.objects.filter(pk__in=[routine.pk, stat.pk]).update(assigned_to=None)
    page = web(reading.rob).get("/worklist/")
    assert page.status_code == 200
    html = page.content.decode()
    pool = html[html.index('id="worklist-pool"') :]
    # STAT first; then among routine cases the one with less time left (here: overdue).
    assert (
        pool.index(f'data-referral-id="{stat.pk}"')
        < pool.index(f'data-referral-id="{late.pk}"')
        < pool.index(f'data-referral-id="{routine.pk}"')
    )
    assert f'data-referral-id="{late.pk}" data-band="breached"' in pool
    assert "overdue by 3 min" in pool
    assert f'data-referral-id="{stat.pk}" data-band="ok"' in pool
    assert "Han Meimei" in pool
    assert 'id="next-case"' in html
    assert 'src="/static/referrals/worklist.js"' in html
    # Filters: modality, priority, site, status.
    assert (
        f'data-referral-id="{stat.pk}"'
        not in web(reading.rob).get("/worklist/?priority=routine").content.decode()
    )
    assert "data-referral-id" not in web(reading.rob).get("/worklist/?modality=CT").content.decode()
    assert (
        "data-referral-id"
        not in web(reading.rob).get(f"/worklist/?site={world.reader.pk}").content.decode()
    )
    bad = web(reading.rob).get("/worklist/?priority=whenever")
    assert bad.status_code == 200
    assert "Unknown priority." in bad.content.decode()


@pytest.mark.django_db
def test_only_radiologists_have_a_worklist(world, reading):
    assert web(world.alice).get("/worklist/").status_code == 403
    assert web(world.adam).get("/worklist/rows/").status_code == 403
    assert web(world.carl).post("/worklist/next/").status_code == 403
    nav = web(world.rita).get("/").content.decode()
    assert 'href="/worklist/"' in nav
    assert 'href="/worklist/"' not in web(world.alice).get("/").content.decode()


@pytest.mark.django_db
def test_claim_from_the_list_and_a_second_reader_is_told_who_holds_it(world, reading):
    referral = refer(world)
    claimed = web(world.rita).post(f"/worklist/{referral.pk}/claim/", {"query": "priority=routine"})
    assert claimed.status_code == 302
    assert claimed["Location"] == "/worklist/?priority=routine"
    referral.refresh_from_db()
    assert referral.claimed_by == world.rita
    rows = web(world.rita).get("/worklist/rows/").content.decode()
    mine = rows[: rows.index('id="worklist-pool"')]
    assert f'data-referral-id="{referral.pk}"' in mine
    rob = web(reading.rob)
    answer = rob.post(f"/worklist/{referral.pk}/claim/", follow=True)
    assert "Already taken by Rita" in answer.content.decode()
    assert rob.post("/worklist/999999/claim/").status_code == 404


@pytest.mark.django_db
def test_next_case_opens_the_most_urgent_case(world, reading):
    refer(world, priority="routine")
    stat = refer(world, priority="stat", body_part="HEAD")
    Referral.objects.update(assigned_to=None)
    response = web(reading.rob).post("/worklist/next/")
    assert response["Location"] == f"/worklist/{stat.pk}/"
    web(reading.rob).post("/worklist/next/")
    empty = web(reading.rob).post("/worklist/next/", follow=True)
    assert "No case is waiting in your pools." in empty.content.decode()


@pytest.mark.django_db
def test_the_case_page_opens_the_claim_and_shows_question_routing_images_and_priors(
    world, reading, settings
):
    settings.LANGUAGE_CODE = "en"  # the hub writes routing explanations in its language
    # A prior of the same patient held by another alliance site (the reader hospital).
    prior = study_at(
        world.reader,
        modality="CT",
        patient_id="H-77",
        patient_key="key-p1",
        study_date="2024-05-01",
    )
    referral = refer(world, question="Headache for 3 weeks; exclude a mass.")
    services.referral_claim(scope=access.scope_for_user(world.rita), referral_id=referral.pk)
    page = web(world.rita).get(f"/worklist/{referral.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    referral.refresh_from_db()
    assert referral.opened_at is None, "a GET changed the case"
    assert "data-auto-open" in html  # the page posts the opening itself
    opened = web(world.rita).post(f"/worklist/{referral.pk}/open/", HTTP_ACCEPT="application/json")
    assert opened.status_code == 204
    referral.refresh_from_db()
    assert referral.opened_at is not None
    assert "data-auto-open" not in web(world.rita).get(f"/worklist/{referral.pk}/").content.decode()
    # Someone else's claim is not theirs to open.
    assert (
        web(reading.rob)
        .post(f"/worklist/{referral.pk}/open/", HTTP_ACCEPT="application/json")
        .status_code
        == 409
    )
    assert "Headache for 3 weeks; exclude a mass." in html
    assert "rule 20" in html
    assert f'href="/studies/{referral.study_id}/"' in html
    assert f'href="/studies/{prior.pk}/"' in html
    assert "North Central Hospital" in html[html.index('id="case-priors"') :]
    assert 'id="case-release"' in html
    assert 'id="case-return"' in html
    # The images the page links to open for the reader (through the referral's grant).
    assert web(world.rita).get(f"/studies/{referral.study_id}/").status_code == 200


@pytest.mark.django_db
def test_release_and_return_from_the_case_page(world, reading):
    referral = refer(world)
    rita = web(world.rita)
    rita.post(f"/worklist/{referral.pk}/claim/")
    released = rita.post(f"/worklist/{referral.pk}/release/", {"reason": "going home"})
    assert released["Location"] == "/worklist/"
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED
    assert referral.claimed_by is None
    refused = rita.post(f"/worklist/{referral.pk}/return/", {"reason": "blurry"}, follow=True)
    assert "Choose a reason from the list." in refused.content.decode()
    rita.post(
        f"/worklist/{referral.pk}/return/",
        {"reason": "incomplete_coverage", "comment": "apex cut off"},
    )
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.RETURNED
    assert referral.return_reason == "incomplete_coverage"
    # The returned case leaves the worklists and its images leave the reader.
    assert f'data-referral-id="{referral.pk}"' not in rita.get("/worklist/").content.decode()
    assert rita.get(f"/studies/{referral.study_id}/").status_code == 404


# --- The live socket (real ASGI application, real Redis channel layer) -------------------


def _sent(world):
    """refer() in a committed transaction, so its events go out."""
    with transaction.atomic():
        return refer(world)


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_anonymous_and_is_read_only(world):
    async def scenario() -> None:
        anonymous = WebsocketCommunicator(application, PATH, headers=[SAME_ORIGIN])
        assert await anonymous.connect(timeout=10) == (False, 4401)
        await anonymous.disconnect(timeout=3)
        ws = WebsocketCommunicator(
            application, PATH, headers=[SAME_ORIGIN, await sync_to_async(token_header)(world.rita)]
        )
        try:
            assert (await ws.connect(timeout=10))[0]
            assert await ws.receive_json_from(timeout=10) == {"event": "hello", "payload": {}}
            await ws.send_to(text_data="not json")
            assert (await ws.receive_json_from(timeout=10))["event"] == "error"
            await ws.send_to(bytes_data=b"\x00")
            assert (await ws.receive_json_from(timeout=10))["event"] == "error"
        finally:
            await ws.disconnect(timeout=3)

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_pool_readers_and_the_clinic_hear_a_case_and_outsiders_do_not(world):
    reading = reading_setup(world)
    olga = _person("olga", "奥尔加", "Olga", world.outsider, Role.RADIOLOGIST)
    headers = {
        "rob": token_header(reading.rob),  # general pool (where MR goes)
        "alice": session_cookie(world.alice),  # the sending clinic, by its session
        "olga": token_header(olga),  # a radiologist of the other alliance
    }

    async def scenario() -> None:
        sockets = {}
        try:
            for name, header in headers.items():
                ws = WebsocketCommunicator(application, PATH, headers=[SAME_ORIGIN, header])
                assert (await ws.connect(timeout=10))[0]
                assert (await ws.receive_json_from(timeout=10))["event"] == "hello"
                sockets[name] = ws
            referral = await sync_to_async(_sent)(world)
            # The clinic hears the request and the routing; the pool hears the routed case.
            frames = [await sockets["alice"].receive_json_from(timeout=10) for _ in range(2)]
            assert [f["payload"]["status"] for f in frames] == ["requested", "routed"]
            assert all(f["event"] == "referral" for f in frames)
            routed = await sockets["rob"].receive_json_from(timeout=10)
            assert routed["event"] == "referral"
            assert routed["payload"]["id"] == referral.pk
            assert routed["payload"]["pool"] == reading.general.pk
            # Had the outsider's socket heard the case, it would come before this event.
            await sync_to_async(_notify)(olga, "for olga")
            assert (await sockets["olga"].receive_json_from(timeout=10))["event"] == "notification"
        finally:
            for ws in sockets.values():
                await ws.disconnect(timeout=3)

    run(scenario)


def _notify(user, title: str) -> None:
    from tenants.services import notification_send

    with transaction.atomic():
        notification_send(user=user, kind="test", title=title)


# --- The live page in Chromium, served by uvicorn ----------------------------------------


@pytest.fixture
def asgi_server(world, tmp_path: Path) -> Iterator[str]:
    """uvicorn serving the hub (pages and sockets) on the test database and Redis."""
    from django.conf import settings

    from .processes import VENV_BIN, base_env, free_port, start, wait_for_http
    from .test_worker_integration import database_url

    port = free_port()
    env = base_env(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        HUB_ENV="test",
        HUB_DATA_DIR=str(tmp_path),
    )
    web_proc = start(
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
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, watch=[web_proc])
        yield f"http://127.0.0.1:{port}"
    finally:
        web_proc.stop(signal.SIGTERM, timeout=15)


def beside_playwright(fn, *args):
    """Run `fn` on a thread of its own: Playwright's loop on the test thread would stop the
    live events (async_to_sync refuses to run inside a running event loop)."""

    def call():
        try:
            return fn(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=60)


def _claim(user, referral_id: int) -> None:
    with transaction.atomic():
        services.referral_claim(scope=access.scope_for_user(user), referral_id=referral_id)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_case_sent_while_the_page_is_open_appears_live_and_claim_works(
    world,
    asgi_server,
    new_page,  # noqa: F811 - the fixture
):
    from playwright.sync_api import expect

    from .test_browser import PHONE, no_horizontal_overflow, sign_in

    reading = reading_setup(world)
    page = new_page(locale="en-US")
    sign_in(page, asgi_server, world.rita)
    page.goto(f"{asgi_server}/worklist/")
    expect(page.locator("body")).to_have_attribute("data-worklist-live", "open")
    expect(page.locator("#worklist-pool .worklist-row")).to_have_count(0)

    referral = beside_playwright(_sent, world)  # while the page is open: no reload follows
    row = page.locator(f'#worklist-pool [data-referral-id="{referral.pk}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Wang Xiaoming")
    expect(row).to_have_attribute("data-band", "ok")

    row.locator(".wl-claim button").click()
    expect(page.locator(f'#worklist-mine [data-referral-id="{referral.pk}"]')).to_be_visible()
    expect(page.locator(f'#worklist-pool [data-referral-id="{referral.pk}"]')).to_have_count(0)
    referral.refresh_from_db()
    assert referral.claimed_by == world.rita

    # Another reader's claim also reaches the page live: the claim comes off the pool list.
    second = beside_playwright(_sent, world)
    expect(page.locator(f'#worklist-pool [data-referral-id="{second.pk}"]')).to_be_visible()
    beside_playwright(_claim, reading.rob, second.pk)
    expect(page.locator(f'#worklist-rows [data-referral-id="{second.pk}"]')).to_have_count(0)

    phone = new_page(locale="en-US", **PHONE)
    sign_in(phone, asgi_server, world.rita)
    phone.goto(f"{asgi_server}/worklist/")
    expect(phone.locator(f'#worklist-mine [data-referral-id="{referral.pk}"]')).to_be_visible()
    assert no_horizontal_overflow(phone)
