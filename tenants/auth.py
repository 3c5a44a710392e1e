"""How callers prove who they are: API tokens, per-site gateway credentials, WebSockets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Any

from channels.auth import AuthMiddleware
from channels.db import DatabaseSyncToAsync
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django.utils.translation import gettext
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .models import GatewayCredential

GATEWAY_KEY_PREFIX = "gw_"


class HubTokenAuthentication(TokenAuthentication):
    """Knox tokens: many per user, stored only as digests, each revocable and expiring."""


def gateway_secret_digest(secret: str) -> str:
    # The secret is 256 random bits, so a plain SHA-256 is enough (and cheap per request);
    # a slow password hash would only add latency to every upload.
    return hashlib.sha256(secret.encode()).hexdigest()


def gateway_credential_new_secret() -> tuple[str, str, str]:
    """A fresh (key_id, secret, digest) triple; the secret is shown once and never stored."""
    key_id = GATEWAY_KEY_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, gateway_secret_digest(secret)


class GatewayPrincipal(AnonymousUser):
    """The `request.user` of a gateway call: authenticated as a site, not as a person."""

    def __init__(self, credential: GatewayCredential) -> None:
        super().__init__()
        self.credential = credential

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"gateway {self.credential.key_id}"


class GatewayCredentialAuthentication(BaseAuthentication):
    """HTTP Basic with a gateway key id (gw_...) as user name and its secret as password."""

    www_authenticate_realm = "hub-gateway"

    def authenticate(self, request: Request) -> tuple[GatewayPrincipal, GatewayCredential] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"basic" or len(header) != 2:
            return None
        try:
            key_id, _, secret = base64.b64decode(header[1]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not key_id.startswith(GATEWAY_KEY_PREFIX):
            return None  # an ordinary Basic header: not ours to judge
        credential = (
            GatewayCredential.objects.select_related("institution")
            .filter(key_id=key_id, revoked_at__isnull=True, institution__is_active=True)
            .first()
        )
        if credential is None or not hmac.compare_digest(
            credential.secret_hash, gateway_secret_digest(secret)
        ):
            raise exceptions.AuthenticationFailed(gettext("Unknown or revoked gateway credential."))
        now = timezone.now()
        if credential.last_used_at is None or (now - credential.last_used_at).total_seconds() > 60:
            GatewayCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
        return GatewayPrincipal(credential), credential

    def authenticate_header(self, request: Request) -> str:
        return f'Basic realm="{self.www_authenticate_realm}"'


class _TokenWebSocketAuth:
    """After the session check, accept `Authorization: Token ...` from non-browser clients."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            headers = dict(scope.get("headers", []))
            raw = headers.get(b"authorization", b"").decode("latin-1").split()
            if len(raw) == 2 and raw[0].lower() == "token":
                user, digest = await _user_for_token(raw[1])
                # The token's digest: tenants/socket_access.py closes the socket when the
                # token is revoked.
                scope = dict(scope, user=user, auth_token_digest=digest)
        return await self.inner(scope, receive, send)


def _user_for_token_sync(token: str) -> tuple[Any, str | None]:
    try:
        user, auth = HubTokenAuthentication().authenticate_credentials(token.encode())
    except exceptions.AuthenticationFailed:
        return AnonymousUser(), None
    return user, auth.digest


# Not on the one thread-sensitive thread: hundreds of sockets joining a room at once would
# queue their token checks behind each other (docs/benchmarks.md, MDT rooms).
_user_for_token = DatabaseSyncToAsync(_user_for_token_sync, thread_sensitive=False)


class _SecondFactorWebSocketCheck:
    """A browser session that still owes its second factor opens no socket: the pages send
    it to the code page (tenants/two_factor/middleware.py), and a socket must not let it read
    live events past that page."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if (
            user is not None
            and user.is_authenticated
            and "session" in scope
            and await _owes_second_factor(user, scope["session"])
        ):
            scope = dict(scope, user=AnonymousUser())
        return await self.inner(scope, receive, send)


def _owes_second_factor_sync(user: Any, session: Any) -> bool:
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    from .two_factor import services as two_factor

    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    if persistent_id:
        device = Device.from_persistent_id(persistent_id)
        if device is not None and device.user_id == user.pk and device.confirmed:
            return False
    return two_factor.two_factor_enrolled(user=user) or two_factor.two_factor_required(user=user)


_owes_second_factor = DatabaseSyncToAsync(_owes_second_factor_sync, thread_sensitive=False)


class _WebSocketSessionMiddleware(SessionMiddleware):
    """Channels' session middleware, handing the inner app the server's own `send`.

    Channels wraps `send` to save a changed session on "http.response.start", a message a
    websocket never sends; wrapped, every frame of every socket paid for that check (a
    room event goes to hundreds of sockets)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        inner: Any = self.inner
        return await inner(wrapper.scope, receive, send)


def WebSocketAuthMiddleware(inner: Any) -> Any:  # noqa: N802 - reads like the Channels stacks
    """Channels' AuthMiddlewareStack (cookie, session, user), the second factor a session
    may owe, then API tokens."""
    return CookieMiddleware(
        _WebSocketSessionMiddleware(
            AuthMiddleware(_SecondFactorWebSocketCheck(_TokenWebSocketAuth(inner)))
        )
    )
