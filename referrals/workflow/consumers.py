"""Live referral events: worklist and clinic pages listen here and re-fetch what changed.

A socket joins the groups `referrals/notify.broadcast` sends to, for the institution the
user acts for (the session's active institution, or `X-Institution` for API clients):
that institution's group (the clinic's pages), the pools the user reads for there, and the
user's own group. It only listens.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from referrals.worklists.selectors import reader_pool_ids
from tenants import access
from tenants.live import institution_group, pool_group, user_group
from tenants.socket_access import SocketAccess, socket_access_for, unwatch, watch


def _wanted_institution(scope: Any) -> Any:
    headers = dict(scope.get("headers") or [])
    named = headers.get(b"x-institution")
    if named:
        return named.decode("latin-1")
    session = scope.get("session")
    return session.get(access.SESSION_KEY) if session is not None else None


def live_groups(user: Any, institution_id: Any) -> list[str]:
    """The groups a socket of `user` acting for `institution_id` listens on."""
    scope = access.scope_for_user(user, institution_id=institution_id)
    if scope.user is None:
        return []
    groups = [user_group(scope.user.pk)]
    if scope.institution is None:
        return groups
    groups.append(institution_group(scope.institution.pk))
    groups += [pool_group(pk) for pk in reader_pool_ids(scope).values_list("pool_id", flat=True)]
    return groups


class ReferralLiveConsumer(AsyncJsonWebsocketConsumer):
    access: SocketAccess | None = None

    async def connect(self) -> None:
        self.joined: list[str] = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        groups = await database_sync_to_async(live_groups)(user, _wanted_institution(self.scope))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        # Its groups follow from the user's roles: a change of roles closes it (4409) and
        # the page reconnects to the groups of its new roles.
        self.access = socket_access_for(self.scope, self.close)
        if self.access is not None:
            watch(self.access)
        # The hello tells the page it is subscribed: anything that changed before it must be
        # fetched, anything after it will be heard.
        await self.send_json({"event": "hello", "payload": {}})

    async def disconnect(self, code: int) -> None:
        unwatch(self.access)
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Read-only, like the notification socket: any frame gets an error frame, and the
        # socket stays open (a frame that is not JSON must not drop it).
        await self.send_json({"event": "error", "payload": {"detail": "read-only socket"}})

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": message["event"], "payload": message["payload"]})
