"""Celery tasks of the reporting side: the critical-finding ladder's timer."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def critical_findings_sweep() -> dict[str, int]:
    """Beat sends this every HUB_CRITICAL_SWEEP_SECONDS: escalate unacknowledged findings."""
    from .critical import critical_findings_sweep as sweep

    return sweep()
