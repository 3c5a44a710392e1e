"""Live notifications: each signed-in page listens on its user's group."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .live import user_group
from .selectors import notification_unread_count
from .socket_access import SocketAccess, socket_access_for, unwatch, watch


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []
    access: SocketAccess | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
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
        await self.send_json({"event": message["event"], "payload": message["payload"]})
