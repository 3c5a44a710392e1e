"""The notification socket through the real ASGI application and the Redis channel layer.

Each test is a sync test (pytest-django's transactional database, so `on_commit` fires)
that runs one async scenario with asgiref's `async_to_sync`; database work inside the
scenario goes through `sync_to_async`, which runs it back on the test's own thread.
Absence is proven by order, not by waiting: a channel delivers in order, so when a later
event is the next frame, an earlier one that should not arrive did not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from alliance.asgi import application
from tenants.models import Notification, User
from tenants.services import notification_send

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/notifications/"
SAME_ORIGIN = (b"origin", b"http://testserver")
Header = tuple[bytes, bytes]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on a new event loop, with a channel layer of its own."""

    async def on_its_own_layer() -> None:
        # channels_redis keeps asyncio locks and connection pools in the layer object; one
        # layer used from two event loops fails ("bound to a different event loop").
        channel_layers.backends.clear()
        # redis-py loses a cancellation that lands while it opens a connection, and the
        # consumer's receive then polls Redis for ever (a socket refused at once is closed
        # in exactly that window). Open the pool's connections before any consumer starts.
        layer = get_channel_layer()
        await asyncio.gather(*(layer.connection(0).ping() for _ in range(4)))
        try:
            await scenario()
        finally:
            await layer.close_pools()
            channel_layers.backends.clear()

    async_to_sync(on_its_own_layer)()


def session_cookie(user: User) -> Header:
    """The cookie a browser holds after signing in, taken from a real test-client session."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    name = settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


def token_header(user: User) -> Header:
    _instance, token = AuthToken.objects.create(user=user)
    return (b"authorization", f"Token {token}".encode())


@asynccontextmanager
async def socket(*headers: Header) -> AsyncIterator[WebsocketCommunicator]:
    """A socket whose consumer always ends (leaves its group) before the scenario does."""
    ws = WebsocketCommunicator(application, PATH, headers=list(headers))
    try:
        yield ws
    finally:
        await ws.disconnect(timeout=3)


@asynccontextmanager
async def connected(*headers: Header) -> AsyncIterator[tuple[WebsocketCommunicator, dict]]:
    """An accepted socket and its first frame."""
    async with socket(*headers) as ws:
        accepted, detail = await ws.connect(timeout=10)
        assert accepted, f"refused with {detail}"
        yield ws, await ws.receive_json_from(timeout=10)


def notify(user: User, title: str, *, commit: bool = True) -> Notification:
    """notification_send inside a transaction that commits (or rolls back)."""
    with transaction.atomic():
        notification = notification_send(user=user, kind="test", title=title)
        transaction.set_rollback(not commit)
    return notification


def as_event(notification: Notification) -> dict[str, Any]:
    return {
        "event": "notification",
        "payload": {
            "id": notification.pk,
            "kind": notification.kind,
            "code": notification.code,
            "params": notification.params,
            "title": notification.title,
            "body": "",
            "link": "",
            "created_at": notification.created_at.isoformat(),
        },
    }


def test_an_anonymous_socket_is_refused_with_4401(world):
    async def scenario() -> None:
        async with socket(SAME_ORIGIN) as ws:
            assert await ws.connect(timeout=10) == (False, 4401)

    run(scenario)


def test_a_signed_in_browser_is_greeted_with_its_unread_count(world):
    Notification.objects.create(user=world.rita, kind="test", title="one")
    Notification.objects.create(user=world.rita, kind="test", title="two")
    Notification.objects.create(user=world.rita, kind="test", title="read", read_at=timezone.now())
    Notification.objects.create(user=world.alice, kind="test", title="not rita's")
    cookie = session_cookie(world.rita)

    async def scenario() -> None:
        async with connected(SAME_ORIGIN, cookie) as (_ws, hello):
            assert hello == {"event": "hello", "payload": {"unread": 2}}

    run(scenario)


def test_a_client_with_an_api_token_connects_and_hears_its_events(world):
    header = token_header(world.alice)

    async def scenario() -> None:
        async with connected(SAME_ORIGIN, header) as (ws, hello):
            assert hello == {"event": "hello", "payload": {"unread": 0}}
            sent = await sync_to_async(notify)(world.alice, "for alice")
            assert await ws.receive_json_from(timeout=10) == as_event(sent)

    run(scenario)


def test_a_wrong_token_is_anonymous(world):
    async def scenario() -> None:
        async with socket(SAME_ORIGIN, (b"authorization", b"Token not-a-real-token")) as ws:
            assert await ws.connect(timeout=10) == (False, 4401)

    run(scenario)


def test_a_page_from_another_origin_is_refused_even_with_a_valid_session(world):
    cookie = session_cookie(world.rita)

    async def scenario() -> None:
        async with socket((b"origin", b"https://evil.example"), cookie) as ws:
            accepted, _code = await ws.connect(timeout=10)
            assert accepted is False
        # The same cookie from the hub's own origin is accepted: only the origin differed.
        async with connected(SAME_ORIGIN, cookie) as (_ws, hello):
            assert hello["event"] == "hello"

    run(scenario)


@pytest.mark.parametrize(
    "origin",
    [
        b"http://127.0.0.1:9999",
        b"http://testserver:8080",
        b"null",
        b"http://testserver.evil.example",
    ],
)
def test_a_page_on_another_port_or_host_of_the_machine_is_refused(world, origin):
    """The Origin names another web server on an allowed host name (cross-site WebSocket
    hijacking from a page served next to the hub): refused at the handshake."""
    cookie = session_cookie(world.rita)

    async def scenario() -> None:
        for host in (None, b"127.0.0.1:8000", b"testserver"):
            headers = [(b"origin", origin), cookie]
            if host is not None:
                headers.append((b"host", host))
            async with socket(*headers) as ws:
                accepted, _code = await ws.connect(timeout=10)
                assert accepted is False, (origin, host)

    run(scenario)


def test_the_origin_must_match_the_host_and_port_the_socket_was_opened_to(world):
    cookie = session_cookie(world.rita)

    async def scenario() -> None:
        same = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), cookie]
        async with connected(*same) as (_ws, hello):
            assert hello["event"] == "hello"
        # A session cookie without any Origin is no API client: refused.
        async with socket(cookie) as ws:
            assert (await ws.connect(timeout=10))[0] is False

    run(scenario)


def test_the_origin_rule():
    from tenants.websocket_origin import origin_allowed

    def ok(origin, host, cookie=True):
        return origin_allowed(origin=origin, host=host, has_cookie=cookie)

    assert ok("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert ok("https://localhost", "localhost")
    assert ok("http://[::1]:8000", "[::1]:8000")
    assert not ok("http://127.0.0.1:9999", "127.0.0.1:8000")
    assert not ok("https://evil.example", "evil.example")  # not an allowed host
    assert not ok("http://127.0.0.1:abc", "127.0.0.1:8000")
    assert not ok("ftp://127.0.0.1:8000", "127.0.0.1:8000")
    assert not ok(None, "127.0.0.1:8000")  # a cookie and no Origin
    assert ok(None, "127.0.0.1:8000", cookie=False)  # a token client


def test_a_committed_notification_reaches_its_user_and_no_one_else(world):
    rita, alice = token_header(world.rita), token_header(world.alice)

    async def scenario() -> None:
        async with (
            connected(SAME_ORIGIN, rita) as (rita_ws, _),
            connected(SAME_ORIGIN, alice) as (alice_ws, _),
        ):
            for_rita = await sync_to_async(notify)(world.rita, "for rita")
            assert await rita_ws.receive_json_from(timeout=10) == as_event(for_rita)
            # Had rita's event reached alice's channel, it would be queued before this one.
            for_alice = await sync_to_async(notify)(world.alice, "for alice")
            assert await alice_ws.receive_json_from(timeout=10) == as_event(for_alice)

    run(scenario)


def test_an_event_of_a_rolled_back_transaction_is_never_delivered(world):
    header = token_header(world.rita)

    async def scenario() -> None:
        async with connected(SAME_ORIGIN, header) as (ws, _):
            undone = await sync_to_async(notify)(world.rita, "taken back", commit=False)
            kept = await sync_to_async(notify)(world.rita, "kept")
            # Had the rolled-back event gone out, it would be the first frame, before this.
            assert await ws.receive_json_from(timeout=10) == as_event(kept)
            assert not await Notification.objects.filter(pk=undone.pk).aexists()

    run(scenario)


def test_a_frame_from_the_client_gets_an_error_and_the_socket_stays_open(world):
    header = token_header(world.rita)
    error = {"event": "error", "payload": {"detail": "read-only socket"}}

    async def scenario() -> None:
        async with connected(SAME_ORIGIN, header) as (ws, _):
            await ws.send_json_to({"event": "mark_read", "id": 1})
            assert await ws.receive_json_from(timeout=10) == error
            await ws.send_to(text_data="this is not JSON")
            assert await ws.receive_json_from(timeout=10) == error
            await ws.send_to(bytes_data=b"\x00\x01")
            assert await ws.receive_json_from(timeout=10) == error
            # Still subscribed: a new event arrives on the same socket.
            sent = await sync_to_async(notify)(world.rita, "still listening")
            assert await ws.receive_json_from(timeout=10) == as_event(sent)

    run(scenario)


def test_the_layer_waits_for_redis_longer_than_its_blocking_pop_lasts():
    # redis-py 8 gives up reading after 5 s unless told otherwise, and the layer's BZPOPMIN
    # waits 5 s for a message: every idle socket then died (django/channels_redis#422).
    layer = get_channel_layer()
    timeout = layer.create_pool(0).connection_kwargs.get("socket_timeout")
    assert timeout is None or timeout > layer.brpop_timeout
