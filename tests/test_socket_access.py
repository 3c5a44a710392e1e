"""Open sockets end with the access they were opened with (tenants/socket_access.py): signing
out, revoking the token, deactivating the account or changing roles closes them; nobody
else's socket is touched."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from knox.models import AuthToken

from alliance.asgi import application
from tenants.models import Role, User
from tenants.socket_access import CLOSE_ACCESS_CHANGED, CLOSE_SIGNED_OUT

from .conftest import api_client_for
from .mdt_support import mdt_setup
from .test_live import SAME_ORIGIN, Header, run, token_header
from .test_mdt_room import joined, path

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(user: User) -> tuple[Client, Header]:
    """A browser's client, signed in, and its session cookie for a socket."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    name = settings.SESSION_COOKIE_NAME
    return client, (b"cookie", f"{name}={client.cookies[name].value}".encode())


async def opened(url: str, *headers: Header) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, url, headers=[SAME_ORIGIN, *headers])
    accepted, detail = await ws.connect(timeout=10)
    assert accepted, f"refused with {detail}"
    await ws.receive_json_from(timeout=10)  # hello
    return ws


async def closed_with(ws: WebsocketCommunicator) -> int:
    """Wait (a bound, not a figure: the sweep runs every two seconds) for the server to
    close the socket, skipping the frames before it; its close code."""
    while True:
        message: dict[str, Any] = await ws.receive_output(timeout=15)
        if message["type"] == "websocket.close":
            return int(message["code"])


def test_signing_out_closes_the_users_open_sockets_and_no_one_elses(world):
    browser, cookie = signed_in(world.rita)
    other_tab = signed_in(world.rita)[1]  # another session of rita's stays signed in
    alice = token_header(world.alice)

    async def scenario() -> None:
        notifications = await opened("/ws/notifications/", cookie)
        referrals = await opened("/ws/referrals/", cookie)
        still_in = await opened("/ws/notifications/", other_tab)
        bystander = await opened("/ws/notifications/", alice)
        response = await sync_to_async(browser.post)("/accounts/logout/")
        assert response.status_code in (200, 302)
        assert await closed_with(notifications) == CLOSE_SIGNED_OUT
        assert await closed_with(referrals) == CLOSE_SIGNED_OUT
        # Still open: they answer a frame (a read-only socket says so).
        for ws in (still_in, bystander):
            await ws.send_to(text_data="{}")
            assert (await ws.receive_json_from(timeout=10))["event"] == "error"
            await ws.disconnect(timeout=3)

    run(scenario)


def test_revoking_a_token_closes_the_sockets_it_opened(world):
    instance, token = AuthToken.objects.create(user=world.rita)
    header = (b"authorization", f"Token {token}".encode())
    key = instance.token_key
    api = api_client_for(world.rita)

    async def scenario() -> None:
        ws = await opened("/ws/notifications/", header)
        answer = await sync_to_async(api.delete)(f"/api/v1/auth/tokens/{key}/")
        assert answer.status_code == 204
        assert await closed_with(ws) == CLOSE_SIGNED_OUT

    run(scenario)


def test_a_deactivated_account_loses_its_sockets(world):
    header = token_header(world.rita)

    async def scenario() -> None:
        ws = await opened("/ws/notifications/", header)
        await sync_to_async(User.objects.filter(pk=world.rita.pk).update)(is_active=False)
        assert await closed_with(ws) == CLOSE_SIGNED_OUT

    run(scenario)


def test_a_change_of_roles_closes_the_socket_so_the_page_reconnects_with_its_new_roles(world):
    from tenants.access import scope_for_user
    from tenants.models import Membership
    from tenants.services import membership_revoke

    header = token_header(world.alice)
    adam = scope_for_user(world.adam)

    async def scenario() -> None:
        ws = await opened("/ws/referrals/", header)
        held = await sync_to_async(Membership.objects.get)(
            user=world.alice, role=Role.CLINIC_TECHNICIAN
        )
        await sync_to_async(membership_revoke)(scope=adam, membership=held)
        assert await closed_with(ws) == CLOSE_ACCESS_CHANGED
        # Reconnecting is checked afresh: alice holds no role now, so she hears nothing of
        # the clinic (her socket is admitted to her own notifications only).
        again = await opened("/ws/referrals/", header)
        await again.disconnect(timeout=3)

    run(scenario)


def test_signing_out_closes_an_open_mdt_room(world):
    mdt = mdt_setup(world)
    browser, cookie = signed_in(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), cookie) as (ws, _snapshot):
            await sync_to_async(browser.post)("/accounts/logout/")
            assert await closed_with(ws) == CLOSE_SIGNED_OUT

    run(scenario)


def test_a_session_that_owes_its_second_factor_opens_no_socket(world):
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=world.rita, name="phone", confirmed=True)
    browser, cookie = signed_in(world.rita)  # password only: the code not entered yet

    async def refused() -> None:
        ws = WebsocketCommunicator(application, "/ws/notifications/", headers=[SAME_ORIGIN, cookie])
        accepted, _detail = await ws.connect(timeout=10)
        assert not accepted

    run(refused)

    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id  # what entering the code records
    session.save()

    async def accepted() -> None:
        ws = await opened("/ws/notifications/", cookie)
        await ws.disconnect(timeout=3)

    run(accepted)
