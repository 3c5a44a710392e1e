"""The WebSocket handshake's Origin check: a page opens the hub's sockets only from the hub's
own origin (cross-site WebSocket hijacking rides on the victim's session cookie).

Channels' AllowedHostsOriginValidator compares the Origin's host name with ALLOWED_HOSTS and
ignores its port, so a page served by anything on the same machine (`http://127.0.0.1:9999`)
passed. Here the Origin must name the very host and port the socket was opened to (its Host
header, itself one of ALLOWED_HOSTS), or be listed in CSRF_TRUSTED_ORIGINS, as Django's CSRF
check asks of a form post.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:  # Django's own default for a debug server
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def origin_allowed(*, origin: str | None, host: str | None, has_cookie: bool) -> bool:
    """May a socket with these handshake headers go on? (No Origin: not a browser; such a
    client authenticates with a token, so one that sends a session cookie is refused.)"""
    if origin is None:
        return not has_cookie
    if origin.rstrip("/") in {o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False
    try:
        origin_port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:  # a port that is not a number
        return False
    if host is None:
        # In-process clients (Channels' test communicator) send no Host: the Origin must be
        # an allowed host on its scheme's own port.
        return parts.port is None and validate_host(parts.hostname, _allowed_hosts())
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    host_port = int(port) if port else DEFAULT_PORTS[parts.scheme]
    return parts.hostname == domain.strip("[]") and origin_port == host_port


class SameOriginValidator:
    """ASGI middleware: refuses (HTTP 403 at the handshake) a socket from another origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        origin = host = None
        has_cookie = False
        for name, value in scope.get("headers", []):
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"cookie":
                has_cookie = True
        if origin_allowed(origin=origin, host=host, has_cookie=has_cookie):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
