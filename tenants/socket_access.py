"""Open sockets end with the access they were opened with.

A socket is admitted once, at its handshake; what admitted it can end while it stays open:
the user signs out (the session is deleted), an API token is revoked or expires, the account
is deactivated, or a role is granted or taken back (which changes what the socket may hear).
Each process keeps the sockets it holds here and checks them all every `SWEEP_SECONDS` in a
few queries, whatever process or worker made the change; a socket whose access ended is
closed: 4401 when the sign-in is gone (the page does not get back in), 4409 when the
account's roles changed (the page reconnects and is admitted, or not, afresh).

A check of the database rather than a broadcast: a broadcast lost on the way (a channel layer
restarting) would leave a signed-out user's socket running for good.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import Q
from django.utils import timezone
from knox.models import AuthToken

from .models import Membership, User

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
CLOSE_SIGNED_OUT = 4401
CLOSE_ACCESS_CHANGED = 4409
DB_SESSIONS = "django.contrib.sessions.backends.db"


@dataclass(eq=False)
class SocketAccess:
    """What admitted one open socket, and how to close it."""

    user_id: int
    session_key: str | None
    token_digest: str | None
    close: Callable[[int], Awaitable[Any]]
    opened_at: dt.datetime = field(default_factory=timezone.now)


def socket_access_for(
    scope: Mapping[str, Any], close: Callable[[int], Awaitable[Any]]
) -> SocketAccess | None:
    """The access of a socket whose handshake admitted `scope["user"]` (None if nobody)."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        return None
    digest = scope.get("auth_token_digest")
    session = scope.get("session")
    session_key = None if digest else getattr(session, "session_key", None)
    return SocketAccess(user_id=user.pk, session_key=session_key, token_digest=digest, close=close)


def ended_accesses(accesses: list[SocketAccess]) -> dict[SocketAccess, int]:
    """Which of these sockets must close now, with the close code for each."""
    if not accesses:
        return {}
    now = timezone.now()
    user_ids = {a.user_id for a in accesses}
    active = set(User.objects.filter(pk__in=user_ids, is_active=True).values_list("pk", flat=True))
    keys = {a.session_key for a in accesses if a.session_key is not None}
    live_sessions = _live_sessions(keys, now) if keys else set()
    digests = {a.token_digest for a in accesses if a.token_digest}
    live_tokens = (
        set(
            AuthToken.objects.filter(
                Q(expiry__isnull=True) | Q(expiry__gt=now), digest__in=digests
            ).values_list("digest", flat=True)
        )
        if digests
        else set()
    )
    since = min(a.opened_at for a in accesses)
    changed_at: dict[int, dt.datetime] = {}
    for user_id, created, revoked in Membership.objects.filter(
        Q(created_at__gt=since) | Q(revoked_at__gt=since),
        user_id__in=user_ids,
    ).values_list("user_id", "created_at", "revoked_at"):
        latest = max(t for t in (created, revoked) if t is not None)
        changed_at[user_id] = max(changed_at.get(user_id, latest), latest)
    ended: dict[SocketAccess, int] = {}
    for access in accesses:
        signed_in = access.user_id in active and (
            access.session_key in live_sessions
            if access.session_key
            else access.token_digest in live_tokens
            if access.token_digest
            else True
        )
        if not signed_in:
            ended[access] = CLOSE_SIGNED_OUT
        elif changed_at.get(access.user_id, access.opened_at) > access.opened_at:
            ended[access] = CLOSE_ACCESS_CHANGED
    return ended


def _live_sessions(keys: set[str], now: dt.datetime) -> set[str]:
    if settings.SESSION_ENGINE == DB_SESSIONS:
        return set(
            Session.objects.filter(session_key__in=keys, expire_date__gt=now).values_list(
                "session_key", flat=True
            )
        )
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore
    return {key for key in keys if store().exists(key)}


_ended_accesses = DatabaseSyncToAsync(ended_accesses, thread_sensitive=False)


class _Watch:
    """The sockets of one event loop, and the task that checks them."""

    def __init__(self) -> None:
        self.accesses: set[SocketAccess] = set()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.accesses:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                ended = await _ended_accesses(list(self.accesses))
            except Exception:  # the database is away: the next sweep tries again
                logger.warning("socket access check failed", exc_info=True)
                continue
            for access, code in ended.items():
                if access in self.accesses:
                    self.accesses.discard(access)
                    try:
                        await access.close(code)
                    except Exception:  # already gone
                        logger.debug("closing an ended socket failed", exc_info=True)


_watches: dict[asyncio.AbstractEventLoop, _Watch] = {}


def watch(access: SocketAccess) -> None:
    """Check this socket's access from now on, until `unwatch`."""
    loop = asyncio.get_running_loop()
    current = _watches.setdefault(loop, _Watch())
    current.accesses.add(access)
    if current.task is None or current.task.done():
        current.task = loop.create_task(current.run())


def unwatch(access: SocketAccess | None) -> None:
    if access is None:
        return
    loop = asyncio.get_running_loop()
    current = _watches.get(loop)
    if current is None:
        return
    current.accesses.discard(access)
    if not current.accesses:
        if current.task is not None and current.task is not asyncio.current_task():
            current.task.cancel()
        del _watches[loop]
