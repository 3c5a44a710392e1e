"""Computed figure sets, kept until the next refresh.

The rollups change only when a refresh commits, so a figure set computed for a selection
stays right until then: it is cached under the refresh's time, the selection and the
language (institution names), and each refresh makes new keys. `workload` is not cached
whole (its open cases are live): only its rollup part is.
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


def _key(name: str, selection: Selection, refresh: list[Any]) -> str:
    wanted = json.dumps([name, refresh, translation.get_language(), selection.echo()],
                        sort_keys=True, default=str)
    return "analytics:v1:" + hashlib.sha256(wanted.encode()).hexdigest()


def figures_cached(name: str, selection: Selection,
                   compute: Callable[[], dict[Any, Any]]) -> dict[Any, Any]:
    """What `compute()` answers (a figure set, or part of one), from the cache while the
    rollups have not moved."""
    state = last_refresh()
    if name in LIVE or state is None or state.refreshed_at is None:
        return compute()
    # The refresh's time and its measured duration tell one refresh from another, even two
    # run under a frozen clock.
    key = _key(name, selection, [state.refreshed_at.isoformat(), state.seconds, state.days])
    answer: dict[Any, Any] | None = cache.get(key)
    if answer is None:
        answer = compute()
        cache.set(key, answer, timeout=2 * settings.HUB_ANALYTICS_REFRESH_SECONDS + 60)
    return answer
