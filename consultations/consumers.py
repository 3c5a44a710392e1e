"""The live MDT room: one socket per participant on /ws/mdt/<session_id>/.

The handshake admits a signed-in user (session or token; the ASGI stack has already
checked the Origin) who holds an active invitation while the session's window is open.
A client that reconnects passes `?last_seq=N` (or sends {"type": "sync", "last_seq": N})
and gets every event after N, then a snapshot of the room (presence, cases, viewer).
A live message may carry the page's own id (`cid`): it is stored with the event, so the page
learns from the log which of its messages were stored and sends the rest again after the
snapshot of its next socket, with `"resent": true` (a chat or hand already stored is dropped,
not stored twice); an error frame answering such a message names its cid.
Frames out: {"event": "room" | "snapshot" | "error" | "pong" | "revoked", "payload": ...}.

Database work runs on a small pool of threads of its own, not on Channels' single
thread-sensitive one: a room's traffic from many sockets would queue behind one thread.
A room event is stored (and committed) first; then this consumer sends it to the room's group
on the rooms' channel layer (Redis pub/sub), which each process hears once and hands to its
own sockets (fanout.py). The socket has no channel of its own: everything it is told comes
through its room, including its own removal (a "member.removed" event naming this user makes
the consumer look up the invitation, and close the socket if it was taken back). The room's
log repair brings that event even when the layer drops it.
When the session's window ends, the socket is closed (a timer, and a check on each message).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs

from aiolimiter import AsyncLimiter
from asgiref.typing import WebSocketSendEvent
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants.socket_access import SocketAccess, socket_access_for, unwatch, watch

from . import selectors, services
from .fanout import (
    LocalRoom,
    SeqSet,
    audit_join_soon,
    db,
    hub,
    room_message,
    room_text,
    rooms_layer,
)
from .room import CONSUMER_TYPES, HANDLERS, MAX_FRAME_CHARS, RoomError, handle
from .selectors import Admission

# A presenter dragging the window sends about 20 updates a second (the page throttles to
# that); twice as many per second from one socket is abuse, not use. Each socket has its
# own leaky bucket (aiolimiter): a burst of RATE messages, then RATE a second.
RATE = 40

logger = logging.getLogger(__name__)

# An alias configured nowhere: Channels gives such a consumer no channel layer, so it listens
# to its socket alone (room events reach it through fanout.Hub, not through a channel).
NO_CHANNEL_LAYER = "none"

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_ADMITTED = 4403
CLOSE_SESSION_ENDED = 4410
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later (the page reconnects)


def _last_seq(query_string: bytes) -> int | None:
    values = parse_qs(query_string.decode("latin-1")).get("last_seq")
    if not values:
        return None
    try:
        seq = int(values[0])
    except ValueError:
        return None
    return seq if seq >= 0 else None


class RoomConsumer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER
    admission: Admission | None = None
    leaving = False
    closed = False
    window_timer: asyncio.Task[None] | None = None
    local_room: LocalRoom | None = None
    # Live events that come while a replay and snapshot are being sent wait here (the room's
    # other sockets must not wait for this one's database reads).
    held: list[dict[str, Any]] | None = None
    access: SocketAccess | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = SeqSet()  # the room events that went out on this socket
        self.limiter = AsyncLimiter(RATE, 1)
        self.checks: set[asyncio.Task[None]] = set()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its `aclose_old_connections()` before every message:
        that is a hop to the one thread-sensitive thread and back, per message, for
        connections this consumer never uses (its database work runs on the room's threads
        through `db()`, which closes stale connections around each call itself)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _send_room(self, frame: dict[str, Any], text: str | None = None) -> None:
        """One room event to this client (unless it went out already), in no fixed order."""
        seq = frame["seq"]
        if seq in self.sent:
            return
        # Straight to the server's send: the room's traffic is most of what a socket sends.
        # (Only "text": ASGI servers take a missing "bytes" as None; Channels' test client
        # insists on exactly one of the two keys.)
        await self.base_send(
            cast(WebSocketSendEvent, {"type": "websocket.send", "text": text or room_text(frame)})
        )
        self.sent.add(seq)
        if (
            frame["type"] == "member.removed"
            and self.admission is not None
            and frame["data"].get("user") == self.admission.user_id
        ):
            # Told live or replayed (a user removed earlier may have been invited again):
            # the invitation says which. Not awaited here: the room's other sockets wait
            # on this loop.
            task = asyncio.create_task(self._still_invited())
            self.checks.add(task)
            task.add_done_callback(self.checks.discard)

    async def _still_invited(self) -> None:
        admission = self.admission
        if admission is None or self.leaving:
            return
        try:
            if await db(selectors.invitation_is_active)(
                session_id=admission.session_id, user_id=admission.user_id
            ):
                return
        except Exception:  # the database is away: close; the reconnect is checked at the door
            logger.warning(
                "room %s: could not check user %s's invitation; closing the socket",
                admission.session_id,
                admission.user_id,
                exc_info=True,
            )
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        if self.admission is not None and not self.leaving:
            await self.send_json({"event": "revoked", "payload": {"session": admission.session_id}})
            self.leaving = True
            await self.close(code=CLOSE_NOT_ADMITTED)

    async def deliver(self, frame: dict[str, Any], text: str | None = None) -> None:
        """A room event this process heard (fanout.LocalRoom), with its encoded text."""
        if frame.get("type") == "session.closed":
            self.closed = True
        if self.held is not None:
            self.held.append(frame)
        else:
            await self._send_room(frame, text)

    async def connect(self) -> None:
        user: Any = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        admission = await db(selectors.room_admission)(session_id=session_id, user=user)
        if admission is None:
            await self.close(code=CLOSE_NOT_ADMITTED)
            return
        self.admission = admission
        await self.accept()
        self.access = socket_access_for(self.scope, self._access_ended)
        if self.access is not None:
            watch(self.access)
        self.held = []
        self.local_room = await hub().enter(self, session_id, rooms_layer())
        self.window_timer = asyncio.create_task(self._close_at(admission.ends_at))
        # Subscribed first, then replayed: an event committed in between comes both ways,
        # and goes out once.
        await self._resync(_last_seq(self.scope.get("query_string", b"")))
        await self._store_and_send(type="presence.join", data={"role": admission.role})
        audit_join_soon(session_id, admission.actor, admission.role)

    async def _store_and_send(self, **event: Any) -> None:
        assert self.admission is not None
        frame = await db(services.room_event_store)(
            session_id=self.admission.session_id, actor=self.admission.actor, **event
        )
        if frame is not None:
            await self._broadcast(frame)

    async def _broadcast(self, frame: dict[str, Any]) -> None:
        assert self.admission is not None
        async with hub().layer_calls:
            await rooms_layer().group_send(
                services.room_group(self.admission.session_id), room_message(frame)
            )

    async def _close_at(self, ends_at: datetime) -> None:
        await asyncio.sleep(max(0.0, (ends_at - timezone.now()).total_seconds()))
        await self._window_over()

    async def _window_over(self) -> None:
        await self.error("ended", _("The session's time window is over."))
        self.leaving = True
        await self.close(code=CLOSE_SESSION_ENDED)

    async def _resync(self, last_seq: int | None) -> None:
        assert self.admission is not None
        sid = self.admission.session_id
        if self.held is None:
            self.held = []
        try:
            events, snapshot = await db(selectors.room_resync)(session_id=sid, after=last_seq)
            if last_seq is not None:
                self.sent = SeqSet(last_seq)
                for frame in events:
                    await self._send_room(frame)
            snapshot["you"] = {"id": self.admission.user_id, "role": self.admission.role}
            await self.send_json({"event": "snapshot", "payload": snapshot})
            # The snapshot stands for everything up to its last_seq.
            self.sent.through(snapshot["last_seq"])
        finally:
            held, self.held = self.held, None
            for frame in held:
                await self._send_room(frame)

    async def _access_ended(self, code: int) -> None:
        """Signed out, token revoked or roles changed (tenants/socket_access.py)."""
        self.leaving = True
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        unwatch(self.access)
        if self.window_timer is not None and self.window_timer is not asyncio.current_task():
            self.window_timer.cancel()
        if self.admission is None:
            return
        await hub().leave(self, self.admission.session_id, rooms_layer())
        kind = "presence.leave" if self.leaving or code in (1000, 1001) else "presence.dropped"
        try:
            await self._store_and_send(type=kind, data={"code": code})
        finally:
            self.admission = None

    async def error(self, code: str, detail: str, cid: Any = None) -> None:
        payload: dict[str, Any] = {"code": code, "detail": detail}
        if isinstance(cid, str) and len(cid) <= 64:
            payload["cid"] = cid  # the page's message that was refused: it stops waiting
        await self.send_json({"event": "error", "payload": payload})

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.admission is None:
            return
        if text_data is None:
            await self.error("invalid", _("Send JSON text frames."))
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self.error("too_large", _("The message is too large."))
            return
        if not self.limiter.has_capacity():
            await self.error("rate_limited", _("Too many messages; slow down."))
            return
        await self.limiter.acquire()  # there is capacity: this returns at once
        if timezone.now() > self.admission.ends_at:
            await self._window_over()
            return
        try:
            msg = json.loads(text_data)
        except ValueError:
            await self.error("invalid", _("The message is not JSON."))
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in HANDLERS and kind not in CONSUMER_TYPES:
            await self.error("unknown_type", _("Unknown message type."))
            return
        await self._dispatch(str(kind), msg)

    async def _dispatch(self, kind: str, msg: dict[str, Any]) -> None:
        assert self.admission is not None
        if kind == "ping":
            await self.send_json({"event": "pong", "payload": {"id": msg.get("id")}})
            return
        if kind == "leave":
            self.leaving = True
            await self.close(code=1000)
            return
        if kind == "sync":
            seq = msg.get("last_seq")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                await self.error("invalid", _("Invalid or missing field: %s") % "last_seq")
                return
            await self._resync(seq)
            return
        if self.closed:
            await self.error("closed", _("The session is closed."), msg.get("cid"))
            return
        try:
            frame = await db(handle)(self.admission, msg)
        except RoomError as exc:
            await self.error(exc.code, exc.detail, msg.get("cid"))
            return
        if frame is not None:  # stored and committed: now the room hears of it
            await self._broadcast(frame)
