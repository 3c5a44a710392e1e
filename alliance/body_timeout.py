"""A request body that stops arriving is cut off with 408, not held open forever.

uvicorn has no body read timeout (only keep-alive's), and Django's ASGI handler reads the
whole body before the view runs: a client that sends headers and part of an upload, then
stalls, would hold a connection and a spooled file for as long as it likes. This wraps the
HTTP app's `receive`: if no body chunk arrives for HUB_REQUEST_BODY_TIMEOUT seconds, Django
is told the client went away (it drops the request), and the client gets a 408 with a
sentence. A slow upload that keeps sending is never cut: the clock restarts with each chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, trans_real

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


class RequestBodyTimeout:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stalled = False
        started = False
        body_done = False

        async def timed_receive() -> Message:
            nonlocal stalled, body_done
            if body_done:  # after the body, Django only listens for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                stalled = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, timed_receive, tracked_send)
        if stalled and not started:
            with translation.override(_language(scope)):
                body = self._refusal()
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

    def _refusal(self) -> bytes:
        return (
            gettext(
                "The request body stopped arriving for %(seconds)d seconds, so the hub "
                "stopped waiting. Check the connection and send it again."
            )
            % {"seconds": self.seconds}
        ).encode()


def _language(scope: Message) -> str:
    """The caller's language from Accept-Language (no request object exists here yet)."""
    headers = dict(scope.get("headers") or [])
    wanted = headers.get(b"accept-language", b"").decode("latin-1")
    for code, _quality in trans_real.parse_accept_lang_header(wanted):
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE
