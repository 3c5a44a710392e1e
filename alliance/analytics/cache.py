"""Computed figure sets, kept until the next refresh.

The rollups change only when a refresh commits, so a figure set computed for a selection
stays right until then: it is cached under the refresh's time, the selection and the
language (institution names), and a refresh makes new keys. `workload` is never cached
(its open cases are live).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import translation

from .refresh import last_refresh
from .selection import Selection

LIVE = {"workload"}


def _key(name: str, selection: Selection, refreshed: str) -> str:
    wanted = json.dumps([name, refreshed, translation.get_language(), selection.echo()],
                        sort_keys=True, default=str)
    return "analytics:v1:" + hashlib.sha256(wanted.encode()).hexdigest()


def figures_cached(name: str, selection: Selection,
                   compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The figure set `compute()` answers, from the cache while the rollups have not moved."""
    state = last_refresh()
    if name in LIVE or state is None or state.refreshed_at is None:
        return compute()
    key = _key(name, selection, state.refreshed_at.isoformat())
    answer: dict[str, Any] | None = cache.get(key)
    if answer is None:
        answer = compute()
        cache.set(key, answer, timeout=2 * settings.HUB_ANALYTICS_REFRESH_SECONDS + 60)
    return answer
