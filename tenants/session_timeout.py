"""A browser session ends after HUB_SESSION_IDLE_MINUTES without a request, and at the
latest SESSION_COOKIE_AGE after sign-in (one shift), whatever the activity.

The session's expiry is moved forward as the user works (at most once a minute, so a busy
page does not write its session on every request), never past the absolute limit. The
session row itself expires, so the live sockets it opened close too (socket_access.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

SIGNED_IN_AT = "hub_signed_in_at"
REFRESHED_AT = "hub_expiry_refreshed_at"
REFRESH_EVERY = 60.0


def session_expiry(*, now: float, signed_in_at: float) -> int:
    """Seconds the session may still live: the idle limit, capped by the absolute one."""
    idle = settings.HUB_SESSION_IDLE_MINUTES * 60
    left = settings.SESSION_COOKIE_AGE - (now - signed_in_at)
    return max(0, int(min(idle, left)))


class SessionTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is not None and user is not None and user.is_authenticated:
            now = time.time()
            signed_in_at = session.setdefault(SIGNED_IN_AT, now)
            expiry = session_expiry(now=now, signed_in_at=signed_in_at)
            if expiry <= 0:
                logout(request)  # the shift is over: sign in again
            elif now - session.get(REFRESHED_AT, 0) > REFRESH_EVERY:
                session[REFRESHED_AT] = now
                session.set_expiry(expiry)
        return self.get_response(request)
