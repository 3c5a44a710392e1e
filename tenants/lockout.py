"""Sign-in lockout: per account, whatever the address, with a delay that grows.

django-axes counts failed sign-ins per user name (not per user name and address: 40
failures from 10 addresses, then the right password from an 11th, must not get in). After
AXES_FAILURE_LIMIT failures the account waits; each further round of failures doubles the
wait, up to HUB_LOCKOUT_MAX_MINUTES. A lockout is written to the audit trail as a security
alert under the account's institution (tenants/signals.py), so that its administrators see
the attack.
"""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def attempted_username(request: HttpRequest | None) -> str:
    """The user name a sign-in tried, as django-axes saw it (form, API or credentials)."""
    if request is None:
        return ""
    credentials = getattr(request, "axes_credentials", None) or {}
    name = credentials.get("username") if isinstance(credentials, dict) else None
    if not name and request.method == "POST":
        name = request.POST.get("username")
    return str(name or "")[:150]


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """How long an account waits after reaching the failure limit: the base wait, doubled
    for each further full round of failures (AXES_COOLOFF_TIME's callable)."""
    base = timedelta(minutes=settings.HUB_LOCKOUT_BASE_MINUTES)
    ceiling = timedelta(minutes=settings.HUB_LOCKOUT_MAX_MINUTES)
    username = attempted_username(request)
    if not username:
        return base
    failures = (
        AccessAttempt.objects.filter(username=username).aggregate(n=Sum("failures_since_start"))[
            "n"
        ]
        or 0
    )
    rounds = max(0, failures // settings.AXES_FAILURE_LIMIT - 1)
    return min(base * (2 ** min(rounds, 16)), ceiling)
