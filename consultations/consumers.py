"""The live MDT room: one socket per participant on /ws/mdt/<session_id>/.

The handshake admits a signed-in user (session or token; the ASGI stack has already
checked the Origin) who holds an active invitation while the session's window is open.
A client that reconnects passes `?last_seq=N` (or sends {"type": "sync", "last_seq": N})
and gets every event after N, then a snapshot of the room (presence, cases, viewer).
Frames out: {"event": "room" | "snapshot" | "error" | "pong" | "revoked", "payload": ...}.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils.translation import gettext as _
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from . import selectors, services
from .room import CONSUMER_TYPES, HANDLERS, MAX_FRAME_CHARS, RoomError, handle
from .selectors import Admission

# A presenter dragging the window sends about 20 updates a second (the page throttles to
# that); twice as many per second from one socket is abuse, not use.
RATE = parse_rate("40/second")
_limiter = MovingWindowRateLimiter(MemoryStorage())

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_ADMITTED = 4403


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
    admission: Admission | None = None
    leaving = False
    closed = False

    async def connect(self) -> None:
        user: Any = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        admission = await database_sync_to_async(selectors.room_admission)(
            session_id=session_id, user=user)
        if admission is None:
            await self.close(code=CLOSE_NOT_ADMITTED)
            return
        self.admission = admission
        self.groups_joined = [services.room_group(session_id),
                              services.room_user_group(session_id, admission.user_id)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # Subscribed first, then replayed: an event committed in between comes both ways,
        # and the client keeps one of each sequence number.
        await self._resync(_last_seq(self.scope.get("query_string", b"")))
        await database_sync_to_async(services.room_event_append)(
            session_id=session_id, type="presence.join", actor=admission.actor,
            data={"role": admission.role})

    async def _resync(self, last_seq: int | None) -> None:
        assert self.admission is not None
        sid = self.admission.session_id
        if last_seq is not None:
            for frame in await database_sync_to_async(selectors.events_after)(
                    session_id=sid, after=last_seq):
                await self.send_json({"event": "room", "payload": frame})
        snapshot = await database_sync_to_async(selectors.room_snapshot)(session_id=sid)
        snapshot["you"] = {"id": self.admission.user_id, "role": self.admission.role}
        await self.send_json({"event": "snapshot", "payload": snapshot})

    async def disconnect(self, code: int) -> None:
        if self.admission is None:
            return
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        kind = "presence.leave" if self.leaving or code in (1000, 1001) else "presence.dropped"
        try:
            await database_sync_to_async(services.room_event_append)(
                session_id=self.admission.session_id, type=kind, actor=self.admission.actor,
                data={"code": code})
        finally:
            self.admission = None

    async def error(self, code: str, detail: str) -> None:
        await self.send_json({"event": "error", "payload": {"code": code, "detail": detail}})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None,
                      **kwargs: Any) -> None:
        if self.admission is None:
            return
        if text_data is None:
            await self.error("invalid", _("Send JSON text frames."))
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self.error("too_large", _("The message is too large."))
            return
        if not _limiter.hit(RATE, "mdt", self.channel_name):
            await self.error("rate_limited", _("Too many messages; slow down."))
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
            await self.error("closed", _("The session is closed."))
            return
        try:
            await database_sync_to_async(handle)(self.admission, msg)
        except RoomError as exc:
            await self.error(exc.code, exc.detail)

    async def live_event(self, message: dict[str, Any]) -> None:
        if message["event"] == "revoked":
            await self.send_json({"event": "revoked", "payload": message["payload"]})
            self.leaving = True
            await self.close(code=CLOSE_NOT_ADMITTED)
            return
        payload = message["payload"]
        if payload.get("type") == "session.closed":
            self.closed = True
        await self.send_json({"event": message["event"], "payload": payload})
