"""Live notifications: each signed-in page listens on its user's group."""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils.translation import check_for_language, get_supported_language_variant

from .live import user_group
from .selectors import notification_unread_count
from .services import notification_payload_in
from .socket_access import SocketAccess, socket_access_for, unwatch, watch


def _supported(code: str) -> str | None:
    try:
        return get_supported_language_variant(code) if check_for_language(code) else None
    except LookupError:
        return None


def socket_language(scope: Mapping[str, Any], user: Any) -> str:
    """The language of the page a socket serves: the one it names (`?lang=`, from the
    page's <html lang>), else the page's language cookie, else the user's own language."""
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    headers = dict(scope.get("headers") or [])
    cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
    morsel = cookie.get(settings.LANGUAGE_COOKIE_NAME)
    for wanted in (query.get("lang", [""])[0], morsel.value if morsel else ""):
        found = _supported(wanted) if wanted else None
        if found:
            return found
    return getattr(user, "language", "") or settings.LANGUAGE_CODE


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []
    access: SocketAccess | None = None
    language: str = settings.LANGUAGE_CODE

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
        self.language = socket_language(self.scope, user)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.access = socket_access_for(self.scope, self.close)
        if self.access is not None:
            watch(self.access)
        unread = await database_sync_to_async(notification_unread_count)(user=user.pk)
        await self.send_json({"event": "hello", "payload": {"unread": unread}})

    async def disconnect(self, code: int) -> None:
        unwatch(self.access)
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # This socket only listens; any frame sent to it (JSON, text or binary) gets a clear
        # error frame. Not decoding it first: a frame that is not JSON must not drop the socket.
        await self.send_json({"event": "error", "payload": {"detail": "read-only socket"}})

    async def live_event(self, message: dict[str, Any]) -> None:
        payload = message["payload"]
        if message["event"] == "notification":
            # Said in this page's language (the push carries the code and its parameters).
            payload = notification_payload_in(payload, self.language)
        await self.send_json({"event": message["event"], "payload": payload})
