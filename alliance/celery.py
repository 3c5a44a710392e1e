"""The Celery application: every task that waits or retries runs here."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alliance.settings")

app = Celery("alliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
@worker_process_init.connect
def _warm_up(**_kwargs: Any) -> None:
    """Load the URL map before the first task: tasks build links (notifications, e-mail),
    and loading every view module inside the first task made it seconds slower."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the attribute access loads every urls module
