"""The "study stable" event: no new instance for a quiet period, then the registered hooks run.

Beat runs `studies_mark_stable` every few seconds. Each study is claimed with a conditional
UPDATE (healthchecks' pattern), so two sweeps on two workers never both fire it. A study
that receives another instance is made unstable again by ingest (`stable_at = NULL`) and
fires again after the next quiet period; every firing carries its `stable_at` as a
*generation*, so a hook can tell a current event from one a newer instance superseded.

Hooks are Celery tasks taking `(study_id, generation)`, registered with `@study_stable_hook`
(later issues register routing here). Each runs as its own task, queued after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from referrals.models import Study

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500  # studies claimed per sweep at most; the next beat takes the rest


class StableHook(Protocol):
    """A Celery task called as `hook.apply_async(args=(study_id, generation))`."""

    name: str

    def apply_async(self, args: tuple[Any, ...] = ..., **options: Any) -> Any: ...


_hooks: dict[str, StableHook] = {}


def study_stable_hook(task: Any) -> Any:
    """Register a Celery task to run once per stable event of every study.

    The task must be idempotent and must tolerate repeats: it receives `(study_id,
    generation)` and should do nothing when `study_still_stable` says the event is stale.
    """
    _hooks[task.name] = task
    return task


def study_stable_hook_remove(name: str) -> None:
    _hooks.pop(name, None)


def study_stable_hooks() -> list[StableHook]:
    """Every registered hook, after importing each app's tasks (where hooks are declared).

    Django's own autodiscovery, not Celery's `import_default_modules`: that one re-runs
    django.setup() inside a worker, whose logging then swallows every later line.
    """
    autodiscover_modules("tasks")
    return list(_hooks.values())


def generation_of(stable_at: dt.datetime) -> str:
    return stable_at.isoformat()


def _quiet_study_ids(cutoff: dt.datetime, limit: int) -> list[int]:
    return list(
        Study.objects.filter(stable_at__isnull=True, last_received_at__lt=cutoff)
        .order_by("last_received_at")
        .values_list("pk", flat=True)[:limit]
    )


def studies_mark_stable(
    *, now: dt.datetime | None = None, quiet: dt.timedelta | None = None, limit: int = SWEEP_BATCH
) -> list[int]:
    """Claim every study quiet for `quiet` and queue its hooks; return the claimed ids.

    The UPDATE repeats the conditions, so a study that a concurrent sweep claimed, or that
    received an instance since it was listed, is left alone.
    """
    now = now or timezone.now()
    quiet = quiet if quiet is not None else dt.timedelta(seconds=settings.HUB_STUDY_QUIET_SECONDS)
    cutoff = now - quiet
    hooks = study_stable_hooks()
    claimed: list[int] = []
    for study_id in _quiet_study_ids(cutoff, limit):
        with transaction.atomic():
            won = (
                Study.objects.filter(
                    pk=study_id,
                    stable_at__isnull=True,
                    last_received_at__lt=cutoff,
                ).update(stable_at=now)
                == 1
            )
            if not won:
                continue
            claimed.append(study_id)
            for hook in hooks:
                transaction.on_commit(_enqueue(hook, study_id, generation_of(now)))
    if claimed:
        logger.info("%d studies became stable", len(claimed))
    return claimed


def _enqueue(hook: StableHook, study_id: int, generation: str) -> Callable[[], Any]:
    return partial(hook.apply_async, args=(study_id, generation))


def study_still_stable(study_id: int, generation: str) -> Study | None:
    """The study if its stable event `generation` is still the current one, else None.

    None means a newer instance arrived since (the study will fire again when it is quiet)
    or the study is gone: the hook has nothing to do.
    """
    try:
        wanted = dt.datetime.fromisoformat(generation)
    except ValueError:
        return None
    study = Study.objects.filter(pk=study_id).first()
    if study is None or study.stable_at != wanted:
        return None
    return study
