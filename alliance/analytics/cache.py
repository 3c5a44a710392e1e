"""Computed figure sets, kept until the rollups change, and computed again ahead of asking.

The rollups change only when a refresh recomputes days, so a figure set computed for a
selection stays right until then: it is cached under the rollups' version (the time of the
last refresh that changed something), the selection and the language (institution names).
A refresh that finds nothing to do keeps every cached answer; one that recomputes days
makes new keys. `workload` is not cached whole (its open cases are live): only its rollup
part is.

Refresh-ahead: each figure set a viewer asks for is remembered (who, for which institution,
in which language, with which filters). After a refresh that changed the rollups, beat's
task computes the most recently asked ones again under the new version, so a dashboard
opened after a refresh is answered from the cache, not computed while its viewer waits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone, translation

from tenants.roles import REGION_VIEWER_ROLES

from .models import RefreshState
from .refresh import last_refresh
from .selection import AnalyticsQuerySerializer, Selection

logger = logging.getLogger(__name__)

LIVE = {"workload"}
ASKED_KEY = "analytics:v1:asked"
ASKED_TOUCH_SECONDS = 600  # a view asked again is re-stamped at most this often


def rollups_version(state: RefreshState | None) -> list[Any] | None:
    """What tells one state of the rollups from another (None: never refreshed)."""
    if state is None or state.refreshed_at is None:
        return None
    changed = state.changed_at or state.refreshed_at
    return [changed.isoformat(), state.full_at.isoformat() if state.full_at else None]


def _key(name: str, selection: Selection, version: list[Any]) -> str:
    wanted = json.dumps(
        [name, version, translation.get_language(), selection.echo()], sort_keys=True, default=str
    )
    return "analytics:v1:" + hashlib.sha256(wanted.encode()).hexdigest()


def figures_cached(
    name: str,
    selection: Selection,
    compute: Callable[[], dict[Any, Any]],
    state: RefreshState | None = None,
) -> dict[Any, Any]:
    """What `compute()` answers (a figure set, or part of one), from the cache while the
    rollups have not moved (`state`: the refresh state, when the caller has read it)."""
    version = rollups_version(state or last_refresh())
    if name in LIVE or version is None:
        return compute()
    key = _key(name, selection, version)
    answer: dict[Any, Any] | None = cache.get(key)
    if answer is None:
        answer = compute()
        cache.set(key, answer, timeout=settings.HUB_ANALYTICS_CACHE_SECONDS)
    return answer


# --- Refresh-ahead -----------------------------------------------------------------------------


def _asked() -> dict[str, dict[str, Any]]:
    asked = cache.get(ASKED_KEY)
    return asked if isinstance(asked, dict) else {}


def remember_asked(
    name: str, *, user_id: int, institution_id: int | None, params: Mapping[str, Any]
) -> None:
    """Note that this view was asked for (at most one write per view per 10 minutes)."""
    if settings.HUB_ANALYTICS_WARM_LIMIT <= 0:
        return
    language = translation.get_language() or settings.LANGUAGE_CODE
    fields = set(AnalyticsQuerySerializer().fields) - {"table"}
    filters = {k: str(v) for k, v in sorted(params.items()) if k in fields}
    wanted = json.dumps([name, user_id, institution_id, language, filters], sort_keys=True)
    ident = hashlib.sha256(wanted.encode()).hexdigest()[:24]
    asked = _asked()
    now = timezone.now()
    seen = asked.get(ident)
    if seen and (now - dt.datetime.fromisoformat(seen["at"])).total_seconds() < ASKED_TOUCH_SECONDS:
        return
    asked[ident] = {
        "name": name,
        "user": user_id,
        "institution": institution_id,
        "language": language,
        "filters": filters,
        "at": now.isoformat(),
    }
    keep = sorted(asked.items(), key=lambda item: item[1]["at"], reverse=True)
    cache.set(ASKED_KEY, dict(keep[: 4 * settings.HUB_ANALYTICS_WARM_LIMIT]), timeout=None)


def _computed(compute: Callable[[Selection], Any], selection: Selection) -> dict[Any, Any]:
    answer: dict[Any, Any] = compute(selection).as_dict(selection)
    return answer


def warm_recent() -> int:
    """Compute again, under the rollups' current version, the views asked for within
    HUB_ANALYTICS_WARM_HOURS (the most recent first, at most HUB_ANALYTICS_WARM_LIMIT).
    Each is computed as its viewer would be answered now: a viewer who lost the role or the
    institution is skipped. Returns how many were computed."""
    from django.contrib.auth import get_user_model
    from rest_framework.exceptions import APIException

    from tenants import access

    from . import selectors
    from .selection import selection_parse

    limit = settings.HUB_ANALYTICS_WARM_LIMIT
    state = last_refresh()
    if limit <= 0 or rollups_version(state) is None:
        return 0
    oldest = timezone.now() - dt.timedelta(hours=settings.HUB_ANALYTICS_WARM_HOURS)
    recent = sorted(
        (entry for entry in _asked().values() if dt.datetime.fromisoformat(entry["at"]) >= oldest),
        key=lambda entry: entry["at"],
        reverse=True,
    )[:limit]
    users = get_user_model().objects.in_bulk({entry["user"] for entry in recent})
    computed = 0
    for entry in recent:
        user = users.get(entry["user"])
        compute = selectors.FIGURE_SETS.get(entry["name"])
        if user is None or compute is None:
            continue
        scope = access.scope_for_user(user, institution_id=entry["institution"])
        if scope.institution is None or not scope.has_any_role(*REGION_VIEWER_ROLES):
            continue
        with translation.override(entry["language"]):
            try:
                selection = selection_parse(scope, entry["filters"])
                figures_cached(
                    entry["name"], selection, partial(_computed, compute, selection), state
                )
            except APIException:  # filters no longer valid for this viewer
                continue
            except Exception:
                logger.exception("analytics view not computed ahead: %s", entry["name"])
                continue
        computed += 1
    return computed
