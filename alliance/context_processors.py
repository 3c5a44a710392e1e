"""Template context: the active scope and the navigation it earns."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.access import NOBODY, memberships_of

from .navigation import navigation_for


def active_scope(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"scope": NOBODY, "nav_items": [], "switchable_institutions": []}
    scope = request.hub_scope  # type: ignore[attr-defined]
    institutions = {m.institution_id: m.institution for m in memberships_of(user)}
    return {
        "scope": scope,
        "nav_items": navigation_for(scope, current_path=request.path),
        "switchable_institutions": list(institutions.values()),
    }
