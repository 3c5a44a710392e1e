"""The MDT room consumer through the real ASGI application and the Redis channel layer.

Same shape as tests/test_live.py: each test is sync (transactional database, so on_commit
fires) and runs one async scenario. Absence is proven by order: frames of one socket come
in order, so when a later frame is the next one, an earlier one that should not come did not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from alliance.asgi import application
from alliance.lifespan import lifespan
from consultations import services
from consultations.fanout import audit_join_soon, audits_written
from consultations.models import Invitation, MdtSession, RoomEvent, SessionCase, Vote
from referrals.models import Study, StudyGrant
from tenants import access
from tenants.models import AuditEvent

from .mdt_support import chair_scope, mdt_setup
from .test_live import SAME_ORIGIN, Header, run, session_cookie, token_header

pytestmark = pytest.mark.django_db(transaction=True)

VIEW = {
    "case": None,
    "series": "1.2.3",
    "slice": 39,
    "window": {"center": 40, "width": 400},
    "zoom": 2.0,
    "pan": {"x": 10, "y": -5},
    "annotations": [
        {"kind": "arrow", "points": [[1, 2], [30, 40]], "slice": 39},
        {"kind": "length", "points": [[5, 5], [25, 5]]},
        {"kind": "region", "points": [[0, 0], [10, 10]]},
    ],
}


def path(session: MdtSession, query: str = "") -> str:
    return f"/ws/mdt/{session.pk}/" + (f"?{query}" if query else "")


@asynccontextmanager
async def socket(url: str, *headers: Header) -> AsyncIterator[WebsocketCommunicator]:
    ws = WebsocketCommunicator(application, url, headers=list(headers))
    try:
        yield ws
    finally:
        await ws.disconnect(timeout=3)


async def frame(ws: WebsocketCommunicator) -> dict[str, Any]:
    return await ws.receive_json_from(timeout=10)  # type: ignore[no-any-return]


async def room_frame(ws: WebsocketCommunicator, type_: str) -> dict[str, Any]:
    """The next room event, which must be of `type_`."""
    got = await frame(ws)
    assert (got["event"], got["payload"].get("type")) == ("room", type_), got
    return got["payload"]  # type: ignore[no-any-return]


@asynccontextmanager
async def joined(
    url: str, *headers: Header
) -> AsyncIterator[tuple[WebsocketCommunicator, dict[str, Any]]]:
    """An admitted socket past its snapshot and its own join event."""
    async with socket(url, SAME_ORIGIN, *headers) as ws:
        accepted, detail = await ws.connect(timeout=10)
        assert accepted, f"refused with {detail}"
        snapshot = await frame(ws)
        assert snapshot["event"] == "snapshot", snapshot
        await room_frame(ws, "presence.join")
        yield ws, snapshot["payload"]


def test_join_presence_and_chat_with_its_case(world):
    mdt = mdt_setup(world)
    case = SessionCase.objects.get(session=mdt.session)
    rita, alice = token_header(world.rita), session_cookie(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), rita) as (rita_ws, snap):
            assert snap["you"] == {"id": world.rita.pk, "role": "chair"}
            people = {p["id"]: p for p in snap["participants"]}
            assert people[world.alice.pk]["presence"] == "absent"
            assert people[world.alice.pk]["institution_id"] == world.clinic.pk
            assert [c["id"] for c in snap["cases"]] == [case.pk]
            async with joined(path(mdt.session), alice) as (alice_ws, snap2):
                online = {p["id"]: p["presence"] for p in snap2["participants"]}
                assert online[world.rita.pk] == "online"
                join = await room_frame(rita_ws, "presence.join")
                assert join["actor"]["id"] == world.alice.pk
                assert join["actor"]["institution_id"] == world.clinic.pk
                await alice_ws.send_json_to({"type": "chat", "text": "见第40层", "case": case.pk})
                for ws in (rita_ws, alice_ws):
                    chat = await room_frame(ws, "chat")
                    assert chat["data"] == {"text": "见第40层", "case": case.pk}
                    # The room names people in the server thread's language, which need not
                    # be this thread's (an API call here switches it to the caller's).
                    assert chat["actor"]["name"] in {world.alice.name, world.alice.name_en}
            left = await room_frame(rita_ws, "presence.leave")
            assert left["actor"]["id"] == world.alice.pk

    run(scenario)
    seqs = list(RoomEvent.objects.filter(session=mdt.session).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


def test_the_presenters_viewer_state_reaches_everyone_and_no_one_else_drives_it(world):
    mdt = mdt_setup(world)
    rita, alice = token_header(world.rita), token_header(world.alice)

    async def scenario() -> None:
        async with (
            joined(path(mdt.session), rita) as (rita_ws, _),
            joined(path(mdt.session), alice) as (alice_ws, _),
        ):
            await room_frame(rita_ws, "presence.join")
            await rita_ws.send_json_to({"type": "viewer", "state": VIEW})
            for ws in (rita_ws, alice_ws):
                viewer = await room_frame(ws, "viewer")
                assert viewer["data"]["state"]["slice"] == 39
                assert viewer["data"]["state"]["window"] == {"center": 40.0, "width": 400.0}
                assert [a["kind"] for a in viewer["data"]["state"]["annotations"]] == [
                    "arrow",
                    "length",
                    "region",
                ]
            await alice_ws.send_json_to({"type": "viewer", "state": {**VIEW, "slice": 3}})
            error = await frame(alice_ws)
            assert error["event"] == "error"
            assert error["payload"]["code"] == "forbidden"
            # The chair hands over: now alice drives, and rita follows.
            await rita_ws.send_json_to({"type": "presenter", "user": world.alice.pk})
            assert (await room_frame(alice_ws, "presenter"))["data"] == {"user": world.alice.pk}
            await room_frame(rita_ws, "presenter")
            await alice_ws.send_json_to({"type": "viewer", "state": {**VIEW, "slice": 3}})
            assert (await room_frame(rita_ws, "viewer"))["data"]["state"]["slice"] == 3

    run(scenario)
    session = MdtSession.objects.get(pk=mdt.session.pk)
    assert session.viewer_state["slice"] == 3
    assert session.presenter_id == world.alice.pk


def test_a_reconnecting_client_gets_what_it_missed_then_the_viewer_snapshot(world):
    mdt = mdt_setup(world)
    rita, alice = token_header(world.rita), token_header(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), rita) as (rita_ws, _):
            async with joined(path(mdt.session), alice) as (_alice_ws, snap):
                last_seq = snap["last_seq"] + 1  # its own join
                await room_frame(rita_ws, "presence.join")
            await room_frame(rita_ws, "presence.leave")
            for text in ("one", "two", "three"):
                await rita_ws.send_json_to({"type": "chat", "text": text})
                await room_frame(rita_ws, "chat")
            await rita_ws.send_json_to({"type": "viewer", "state": VIEW})
            await room_frame(rita_ws, "viewer")
            async with socket(path(mdt.session, f"last_seq={last_seq}"), SAME_ORIGIN, alice) as ws:
                assert (await ws.connect(timeout=10))[0]
                missed = [
                    await room_frame(ws, t)
                    for t in ("presence.leave", "chat", "chat", "chat", "viewer")
                ]
                assert [m["seq"] for m in missed] == list(range(last_seq + 1, last_seq + 6))
                assert [m["data"].get("text") for m in missed[1:4]] == ["one", "two", "three"]
                snapshot = await frame(ws)
                assert snapshot["event"] == "snapshot"
                assert snapshot["payload"]["last_seq"] == missed[-1]["seq"]
                assert snapshot["payload"]["viewer"]["slice"] == 39
                assert snapshot["payload"]["viewer"]["seq"] == missed[-1]["seq"]
                await room_frame(ws, "presence.join")  # its own join, live
                # Asking again on the open socket replays the same way.
                await ws.send_json_to({"type": "sync", "last_seq": missed[-2]["seq"]})
                assert (await room_frame(ws, "viewer"))["seq"] == missed[-1]["seq"]
                await room_frame(ws, "presence.join")
                assert (await frame(ws))["event"] == "snapshot"

    run(scenario)


def _refused(url: str, *headers: Header) -> Any:
    async def attempt() -> tuple[bool, Any]:
        async with socket(url, *headers) as ws:
            return await ws.connect(timeout=10)  # type: ignore[no-any-return]

    return attempt


def test_unauthorised_joins_are_refused(world):
    mdt = mdt_setup(world)
    later = services.session_create(
        scope=chair_scope(world),
        title="later",
        starts_at=mdt.session.ends_at,
        ends_at=mdt.session.ends_at + timedelta(hours=1),
    )
    services.invitation_create(
        scope=chair_scope(world),
        session=later,
        user=world.alice,
        institution=world.clinic,
        role="participant",
    )
    services.invitation_revoke(scope=chair_scope(world), invitation=mdt.mia_invitation)
    url = path(mdt.session)
    cookie_alice = session_cookie(world.alice)
    tokens = {
        "oscar": token_header(world.oscar),
        "carl": token_header(world.carl),
        "mia": token_header(mdt.mia),
    }

    async def scenario() -> None:
        assert await _refused(url, SAME_ORIGIN)() == (False, 4401)
        assert await _refused(url, SAME_ORIGIN, tokens["oscar"])() == (False, 4403)
        assert await _refused(url, SAME_ORIGIN, tokens["carl"])() == (False, 4403)
        assert await _refused(url, SAME_ORIGIN, tokens["mia"])() == (False, 4403)
        assert await _refused(path(later), SAME_ORIGIN, cookie_alice)() == (False, 4403)
        accepted, _ = await _refused(url, (b"origin", b"https://evil.example"), cookie_alice)()
        assert accepted is False
        assert await _refused("/ws/mdt/999999/", SAME_ORIGIN, cookie_alice)() == (False, 4403)
        # The same cookie from the hub's origin, in the window, is admitted.
        async with joined(url, cookie_alice):
            pass

    run(scenario)


def test_revoking_an_invitation_closes_the_socket_and_ends_the_grants(world):
    mdt = mdt_setup(world)
    alice_scope = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    assert access.visible(alice_scope, Study).filter(pk=mdt.study.pk).exists()
    rita, alice = token_header(world.rita), token_header(world.alice)

    async def scenario() -> None:
        async with (
            joined(path(mdt.session), rita) as (rita_ws, _),
            joined(path(mdt.session), alice) as (alice_ws, _),
        ):
            await room_frame(rita_ws, "presence.join")
            await rita_ws.send_json_to({"type": "remove", "user": world.alice.pk})
            removed = await room_frame(alice_ws, "member.removed")
            assert removed["data"] == {"user": world.alice.pk}
            assert (await frame(alice_ws))["event"] == "revoked"
            assert (await alice_ws.receive_output(timeout=10))["type"] == "websocket.close"
            await alice_ws.disconnect(code=4403, timeout=3)  # what a server does after a close
            assert (await room_frame(rita_ws, "member.removed"))["data"]["user"] == world.alice.pk
            assert (await room_frame(rita_ws, "presence.leave"))["actor"]["id"] == world.alice.pk
        assert await _refused(path(mdt.session), SAME_ORIGIN, alice)() == (False, 4403)

    run(scenario)
    assert Invitation.objects.get(pk=mdt.alice_invitation.pk).revoked_at is not None
    grants = StudyGrant.objects.filter(source="mdt", source_id=mdt.session.pk, user=world.alice)
    assert grants.exists()
    assert not grants.filter(revoked_at__isnull=True).exists()
    assert not access.visible(alice_scope, Study).filter(pk=mdt.study.pk).exists()


def test_a_removal_the_channel_layer_lost_still_closes_the_socket(world):
    # The socket has no channel of its own: its removal reaches it as a room event, which
    # the room's log repair brings when the broadcast never arrived.
    mdt = mdt_setup(world)
    rita, alice = token_header(world.rita), token_header(world.alice)

    def removed_unannounced() -> None:
        Invitation.objects.filter(pk=mdt.alice_invitation.pk).update(revoked_at=timezone.now())
        assert (
            services.room_event_store(
                session_id=mdt.session.pk,
                type="member.removed",
                data={"user": world.alice.pk},
                actor=None,
            )
            is not None
        )

    async def scenario() -> None:
        async with (
            joined(path(mdt.session), rita) as (rita_ws, _),
            joined(path(mdt.session), alice) as (alice_ws, _),
        ):
            await room_frame(rita_ws, "presence.join")
            await sync_to_async(removed_unannounced)()
            assert (await room_frame(alice_ws, "member.removed"))["data"]["user"] == world.alice.pk
            assert (await frame(alice_ws))["event"] == "revoked"
            assert (await alice_ws.receive_output(timeout=10))["type"] == "websocket.close"
            await alice_ws.disconnect(code=4403, timeout=3)
            assert (await room_frame(rita_ws, "member.removed"))["data"]["user"] == world.alice.pk

    run(scenario)


def test_an_old_removal_in_the_replay_does_not_close_a_user_invited_again(world):
    mdt = mdt_setup(world)
    rita, alice = token_header(world.rita), token_header(world.alice)

    def removed_and_invited_again() -> None:
        services.invitation_revoke(scope=chair_scope(world), invitation=mdt.alice_invitation)
        services.invitation_create(
            scope=chair_scope(world),
            session=mdt.session,
            user=world.alice,
            institution=world.clinic,
            role="participant",
        )

    async def scenario() -> None:
        await sync_to_async(removed_and_invited_again)()
        async with socket(path(mdt.session, "last_seq=0"), SAME_ORIGIN, alice) as alice_ws:
            accepted, _ = await alice_ws.connect(timeout=10)
            assert accepted
            assert (await room_frame(alice_ws, "member.removed"))["data"]["user"] == world.alice.pk
            assert (await frame(alice_ws))["event"] == "snapshot"
            await room_frame(alice_ws, "presence.join")
            # Still in: her chat is stored and comes back to her.
            await alice_ws.send_json_to({"type": "chat", "text": "back again"})
            assert (await room_frame(alice_ws, "chat"))["data"]["text"] == "back again"
            async with joined(path(mdt.session), rita):
                assert (await room_frame(alice_ws, "presence.join"))["actor"]["id"] == world.rita.pk

    run(scenario)


def test_bad_messages_get_error_frames_and_the_room_goes_on(world):
    mdt = mdt_setup(world)
    alice = token_header(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), alice) as (ws, _):
            bad: list[tuple[dict[str, Any], str]] = [
                ({"text_data": "not json"}, "invalid"),
                ({"bytes_data": b"\x00\x01"}, "invalid"),
                ({"text_data": '["a list"]'}, "unknown_type"),
                ({"text_data": '{"type": "drop_table"}'}, "unknown_type"),
                ({"text_data": '{"type": "chat", "text": "' + "x" * 20000 + '"}'}, "too_large"),
                ({"text_data": '{"type": "chat", "text": ""}'}, "invalid"),
                ({"text_data": '{"type": "chat", "text": "a", "case": "1; --"}'}, "invalid"),
                ({"text_data": '{"type": "vote", "case": 1, "choice": "maybe"}'}, "invalid"),
                ({"text_data": '{"type": "hand", "raised": NaN}'}, "invalid"),
                ({"text_data": '{"type": "session.close"}'}, "forbidden"),
                ({"text_data": '{"type": "sync", "last_seq": -1}'}, "invalid"),
            ]
            for message, code in bad:
                await ws.send_to(**message)
                got = await frame(ws)
                assert (got["event"], got["payload"]["code"]) == ("error", code), (message, got)
            # Still in the room.
            await ws.send_json_to({"type": "hand", "raised": True})
            assert (await room_frame(ws, "hand"))["data"] == {"raised": True}
            # A flood is cut by the per-connection rate limit, with error frames.
            for n in range(200):
                await ws.send_json_to({"type": "ping", "id": n})
            codes = [(await frame(ws))["event"] for _ in range(200)]
            assert "error" in codes
            assert "pong" in codes

    run(scenario)


def test_chair_controls_votes_conclusion_and_closing(world):
    mdt = mdt_setup(world)
    case = SessionCase.objects.get(session=mdt.session)
    rita, alice, mia = token_header(world.rita), token_header(world.alice), token_header(mdt.mia)

    async def scenario() -> None:
        async with (
            joined(path(mdt.session), rita) as (rita_ws, _),
            joined(path(mdt.session), alice) as (alice_ws, _),
            joined(path(mdt.session), mia) as (mia_ws, _),
        ):
            await room_frame(rita_ws, "presence.join")
            await room_frame(rita_ws, "presence.join")
            await room_frame(alice_ws, "presence.join")
            await rita_ws.send_json_to({"type": "mute", "user": world.alice.pk, "muted": True})
            await room_frame(alice_ws, "mute")
            await alice_ws.send_json_to({"type": "chat", "text": "hello"})
            assert (await frame(alice_ws))["payload"]["code"] == "muted"
            await room_frame(mia_ws, "mute")
            await mia_ws.send_json_to({"type": "vote", "case": case.pk, "choice": "agree"})
            assert (await frame(mia_ws))["payload"]["code"] == "forbidden"  # an observer
            await rita_ws.send_json_to(
                {
                    "type": "conclusion",
                    "case": case.pk,
                    "conclusion": "考虑原发性肺癌",
                    "recommendations": "手术",
                }
            )
            await room_frame(alice_ws, "conclusion")
            await alice_ws.send_json_to({"type": "vote", "case": case.pk, "choice": "agree"})
            assert (await room_frame(alice_ws, "vote"))["data"]["choice"] == "agree"
            await rita_ws.send_json_to({"type": "case.close", "case": case.pk})
            await room_frame(alice_ws, "case.closed")
            await alice_ws.send_json_to({"type": "vote", "case": case.pk, "choice": "disagree"})
            assert (await frame(alice_ws))["payload"]["code"] == "invalid"  # closed case
            await rita_ws.send_json_to({"type": "session.close"})
            await room_frame(alice_ws, "session.closed")
            await alice_ws.send_json_to({"type": "hand", "raised": True})
            assert (await frame(alice_ws))["payload"]["code"] == "closed"
        await audits_written()  # the join rows are written beside the room, not in its way

    run(scenario)
    case.refresh_from_db()
    trail = AuditEvent.objects.filter(object_type="mdt_session", object_id=str(mdt.session.pk))
    assert sorted(set(trail.values_list("event", flat=True))) == [
        "mdt_case_closed",
        "mdt_conclusion",
        "mdt_room_joined",
        "mdt_session_closed",
        "mdt_vote",
    ]
    assert trail.filter(event="mdt_room_joined").count() == 3
    vote = trail.get(event="mdt_vote")
    assert (vote.user_id_value, vote.institution_id, vote.study_uid) == (
        world.alice.pk,
        world.clinic.pk,
        case.study.study_uid,
    )
    assert case.conclusion == "考虑原发性肺癌"
    assert case.closed_at is not None
    assert list(Vote.objects.filter(case=case).values_list("choice", flat=True)) == ["agree"]
    assert MdtSession.objects.get(pk=mdt.session.pk).status == "closed"


def test_the_end_of_the_window_closes_the_room_s_sockets(world):
    # The window closes a few seconds from now: the socket is admitted, then closed by the
    # server when the window ends, with an error frame saying why.
    mdt = mdt_setup(world, lasts=timedelta(minutes=5, seconds=6))
    alice = token_header(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), alice) as (ws, _):
            ended = await ws.receive_json_from(timeout=30)
            assert (ended["event"], ended["payload"]["code"]) == ("error", "ended"), ended
            closing = await ws.receive_output(timeout=10)
            assert closing == {"type": "websocket.close", "code": 4410}
            await ws.disconnect(code=4410, timeout=3)
        assert await _refused(path(mdt.session), SAME_ORIGIN, alice)() == (False, 4403)

    run(scenario)
    last = RoomEvent.objects.filter(session=mdt.session).order_by("-seq").first()
    assert last is not None
    assert (last.type, last.actor_id) == ("presence.leave", world.alice.pk)


def test_an_event_the_channel_layer_lost_still_reaches_every_socket(world):
    # A stored event whose broadcast never arrived (what django/channels#1683 does when a
    # closing socket cancels a read that had taken the message) comes from the log instead.
    mdt = mdt_setup(world)
    rita, alice = token_header(world.rita), token_header(world.alice)

    def lost_chat() -> dict[str, Any]:
        frame = services.room_event_store(
            session_id=mdt.session.pk,
            type="chat",
            data={"text": "lost on the way", "case": None},
            actor=None,
        )
        assert frame is not None
        return frame  # stored and committed, never sent

    async def scenario() -> None:
        async with (
            joined(path(mdt.session), rita) as (rita_ws, _),
            joined(path(mdt.session), alice) as (alice_ws, _),
        ):
            await room_frame(rita_ws, "presence.join")
            stored = await sync_to_async(lost_chat)()
            for ws in (rita_ws, alice_ws):
                chat = await room_frame(ws, "chat")
                assert (chat["seq"], chat["data"]["text"]) == (stored["seq"], "lost on the way")

    run(scenario)


def test_the_web_process_writes_queued_join_audits_before_it_stops(world):
    # Join audit rows are written in batches beside the room; the ASGI lifespan's shutdown
    # (after uvicorn has closed the sockets) waits for what is still queued.
    mdt = mdt_setup(world)
    actor = services.Actor(world.alice.pk, "alice", world.clinic.pk, "clinic")

    def written() -> int:
        return AuditEvent.objects.filter(
            event=services.AUDIT_JOINED, object_id=str(mdt.session.pk), user_id_value=world.alice.pk
        ).count()

    async def scenario() -> None:
        audit_join_soon(mdt.session.pk, actor, "participant")
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        inbox.put_nowait({"type": "lifespan.shutdown"})
        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await lifespan({"type": "lifespan"}, inbox.get, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert await sync_to_async(written)() == 1

    run(scenario)


def test_a_message_sent_again_is_stored_once_and_a_refusal_names_it(world):
    """room.js's outbox: each live message carries the page's id (cid); one sent again
    after a reconnect is stored once, and a refused one is named in its error frame."""
    mdt = mdt_setup(world)
    alice = token_header(world.alice)

    async def scenario() -> None:
        async with joined(path(mdt.session), alice) as (ws, _):
            await ws.send_json_to({"type": "chat", "text": "第一条", "cid": "pg-1"})
            assert (await room_frame(ws, "chat"))["data"]["cid"] == "pg-1"
            for copy in ({"resent": True}, {}):  # after a reconnect, or twice on one socket
                await ws.send_json_to({"type": "chat", "text": "第一条", "cid": "pg-1", **copy})
            # Frames of one socket come in order: the hand is next, no second chat.
            await ws.send_json_to({"type": "hand", "raised": True, "cid": "pg-2"})
            assert (await room_frame(ws, "hand"))["data"] == {"raised": True, "cid": "pg-2"}
            # alice does not present: the refusal names the message, so the page drops it.
            await ws.send_json_to({"type": "viewer", "state": VIEW, "cid": "pg-3"})
            refused = await frame(ws)
            assert refused["event"] == "error", refused
            assert (refused["payload"]["code"], refused["payload"]["cid"]) == ("forbidden", "pg-3")
            await ws.send_json_to({"type": "chat", "text": "x", "cid": "not an id!"})
            assert (await frame(ws))["payload"]["code"] == "invalid"

    run(scenario)
    chats = RoomEvent.objects.filter(session=mdt.session, type="chat")
    assert [e.payload["cid"] for e in chats] == ["pg-1"]


def test_a_room_entered_while_its_last_socket_here_leaves_subscribes_after_the_leave():
    """The pub/sub layer's group_discard (the last socket leaving) and group_add (a new one
    entering) must not interleave: the new subscription would be dropped by the old
    unsubscribe. The hub lets the leave finish first."""
    from consultations.fanout import Hub

    calls: list[str] = []

    class Layer:
        async def new_channel(self) -> str:
            return f"c{len(calls)}"

        async def group_add(self, group: str, channel: str) -> None:
            calls.append(f"add {channel}")

        async def group_discard(self, group: str, channel: str) -> None:
            await asyncio.sleep(0.05)  # the unsubscribe waits for the connection's lock
            calls.append(f"discard {channel}")

        async def receive(self, channel: str) -> dict[str, Any]:
            await asyncio.Event().wait()
            return {}

    class Member:
        async def deliver(self, frame: dict[str, Any], text: str) -> None: ...

    async def scenario() -> None:
        hub, layer, first, second = Hub(), Layer(), Member(), Member()
        with patch_last_seq():
            await hub.enter(first, 7, layer)
            leaving = asyncio.create_task(hub.leave(first, 7, layer))
            await asyncio.sleep(0)  # the leave has begun
            room = await hub.enter(second, 7, layer)
            await leaving
            assert calls == ["add c0", "discard c0", "add c2"]
            assert hub.rooms[7] is room
            assert room.members == {second}
            await hub.leave(second, 7, layer)

    asyncio.run(scenario())


@contextlib.contextmanager
def patch_last_seq():
    """The rooms' last sequence numbers without a database (the hub reads them on entry)."""
    from unittest import mock

    with mock.patch("consultations.fanout.db", return_value=_async_zeroes):
        yield


async def _async_zeroes(**kwargs: Any) -> dict[int, int]:
    return {}
