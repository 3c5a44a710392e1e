"""Periodic housekeeping of the hub."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "hub:heartbeat:worker"


@shared_task(ignore_result=True)
def heartbeat() -> str:
    """Beat sends this every 30 s; /healthz reads when a worker last ran it."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    return now
