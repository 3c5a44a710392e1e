"""The "study stable" event: no new instance for a quiet period, then the registered hooks run.

Beat runs `studies_mark_stable` every few seconds. Each study is claimed with a conditional
UPDATE (healthchecks' pattern), so two sweeps on two workers never both fire it. A study
that receives another instance is made unstable again by ingest (`stable_at = NULL`) and
fires again after the next quiet period; every firing carries its `stable_at` as a
*generation*, so a hook can tell a current event from one a newer instance superseded.

Hooks are Celery tasks taking `(study_id, generation)`, registered with `@study_stable_hook`
(later issues register routing here). Each runs as its own task, queued after commit.

Delivery heals itself. The claim writes every hook's name into `stable_hooks_pending`; a hook
task that returns (Celery's task_success) removes its name, for its own generation only. A
hook whose task was lost (a worker killed before it acknowledged, a broker restarted, a
process that died between commit and publish) stays pending, and the same beat sweep queues
it again once `HUB_STABLE_HOOK_RETRY_SECONDS` have passed since it was last queued, until
`HUB_STABLE_HOOK_RETRY_HOURS` after the event. Hooks tolerate repeats, so a slow hook that
is queued twice does its work once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from celery.signals import task_success
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Func, Q, Value
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
                ).update(
                    stable_at=now,
                    stable_hooks_pending=[hook.name for hook in hooks],
                    stable_hooks_sent_at=now,
                )
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


# --- Self-healing delivery ---------------------------------------------------------------------

_OWES_HOOKS = ~Q(stable_hooks_pending=[]) & Q(stable_at__isnull=False)  # the partial index


def study_stable_hook_done(study_id: int, generation: str, name: str) -> bool:
    """Record that hook `name` finished for the event `generation`; False if that event is
    no longer the study's current one (the newer event owes its own hooks)."""
    try:
        stable_at = dt.datetime.fromisoformat(generation)
    except ValueError:
        return False
    return (
        Study.objects.filter(pk=study_id, stable_at=stable_at).update(
            stable_hooks_pending=Func(
                F("stable_hooks_pending"), Value(name), function="array_remove"
            )
        )
        == 1
    )


def studies_hooks_redeliver(
    *,
    now: dt.datetime | None = None,
    grace: dt.timedelta | None = None,
    horizon: dt.timedelta | None = None,
    limit: int = SWEEP_BATCH,
) -> list[int]:
    """Queue again the hooks of stable studies that have not finished `grace` after they
    were last queued; return the studies concerned.

    Each study is claimed with a conditional UPDATE of `stable_hooks_sent_at`, like the
    stable claim: two sweeps never both re-queue it, and the next try waits `grace` again.
    Events older than `horizon` are given up on (a hook that fails every time would
    otherwise be queued forever); the log says so once per study.
    """
    now = now or timezone.now()
    if grace is None:
        grace = dt.timedelta(seconds=settings.HUB_STABLE_HOOK_RETRY_SECONDS)
    if horizon is None:
        horizon = dt.timedelta(hours=settings.HUB_STABLE_HOOK_RETRY_HOURS)
    hooks = {hook.name: hook for hook in study_stable_hooks()}
    due = _OWES_HOOKS & Q(stable_hooks_sent_at__lt=now - grace)
    given_up = Study.objects.filter(due, stable_at__lt=now - horizon)
    for study_id, pending in given_up.values_list("pk", "stable_hooks_pending")[:limit]:
        logger.error("Study %s: stable hooks %s never finished; given up", study_id, pending)
    given_up.update(stable_hooks_pending=[])
    candidates = list(
        Study.objects.filter(due)
        .order_by("stable_hooks_sent_at")
        .values_list("pk", "stable_at", "stable_hooks_sent_at")[:limit]
    )
    redelivered: list[int] = []
    for study_id, stable_at, sent_at in candidates:
        if stable_at is None:  # excluded by the filter; for the type checker
            continue
        with transaction.atomic():
            row = (
                Study.objects.select_for_update()
                .filter(due, pk=study_id, stable_at=stable_at, stable_hooks_sent_at=sent_at)
                .values_list("stable_hooks_pending", flat=True)
                .first()
            )
            if row is None:
                continue
            Study.objects.filter(pk=study_id).update(stable_hooks_sent_at=now)
            redelivered.append(study_id)
            for name in row:
                hook = hooks.get(name)
                if hook is not None:
                    transaction.on_commit(_enqueue(hook, study_id, generation_of(stable_at)))
            unknown = [name for name in row if name not in hooks]
            if unknown:  # a hook removed from the code since: nothing can run it
                Study.objects.filter(pk=study_id).update(
                    stable_hooks_pending=[name for name in row if name in hooks]
                )
    if redelivered:
        logger.warning(
            "%d stable studies had hooks that never finished: queued again", len(redelivered)
        )
    return redelivered


@task_success.connect(weak=False)
def _hook_succeeded(sender: Any = None, **_kwargs: Any) -> None:
    """A hook task returned: its study owes it no more (for that generation)."""
    name = getattr(sender, "name", None)
    if name not in _hooks:
        return
    args = tuple(getattr(sender.request, "args", None) or ())
    if len(args) != 2:
        return
    try:
        study_stable_hook_done(int(args[0]), str(args[1]), name)
    except DatabaseError:  # the sweep will queue the hook again; it tolerates the repeat
        logger.warning("Could not record hook %s done for study %s", name, args[0], exc_info=True)


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
