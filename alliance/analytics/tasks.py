"""Beat keeps the rollups current: an incremental refresh every HUB_ANALYTICS_REFRESH_SECONDS."""

from __future__ import annotations

from celery import shared_task

from .cache import warm_recent
from .refresh import analytics_refresh


@shared_task(ignore_result=True)
def analytics_refresh_task() -> dict[str, object]:
    """Idempotent: recomputes whole days; a refresh already running makes this one skip.
    After a refresh that changed the rollups, the recently asked views are computed ahead."""
    result = analytics_refresh(wait=False)
    warmed = warm_recent() if result.changed else 0
    return {
        "skipped": result.skipped,
        "days": result.reading_days + result.study_days,
        "seconds": round(result.seconds, 3),
        "warmed": warmed,
    }
