"""Faults, measured: lost hook tasks come back, no countdown outlives the broker's visibility
timeout, and `manage.py bench_faults` (workers killed, Redis restarted, the object store
frozen, the web process restarted with MDT rooms open) loses and repeats nothing.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re

import pytest
from celery import shared_task
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from bench.faults import countdowns
from referrals.archive.stability import (
    studies_hooks_redeliver,
    studies_mark_stable,
    study_stable_hook,
    study_stable_hook_remove,
    study_stable_hooks,
)
from referrals.models import Study

from .ingest_support import media  # noqa: F401 - fixture
from .test_stability import age, store_study

VISIBILITY = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]

# --- Lost hook tasks come back ------------------------------------------------------------------

RUNS: list[tuple[int, str]] = []
LOSE_NEXT = {"count": 0}  # how many of the next hook messages are "lost" before they run


@shared_task(name="tests.test_faults.flaky_hook")
def flaky_hook(study_id: int, generation: str) -> None:
    RUNS.append((study_id, generation))


class _Losing:
    """The hook as the sweep sees it: publishing drops the message while LOSE_NEXT says so,
    as a worker killed before it acknowledged (or a broker that lost its queue) would."""

    name = flaky_hook.name

    def apply_async(self, args=(), **options):
        if LOSE_NEXT["count"] > 0:
            LOSE_NEXT["count"] -= 1
            return None
        return flaky_hook.apply_async(args=args, **options)


@pytest.fixture
def losing_hook():
    RUNS.clear()
    LOSE_NEXT["count"] = 0
    study_stable_hook(_Losing())
    yield RUNS
    study_stable_hook_remove(flaky_hook.name)


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_a_lost_hook_task_is_queued_again_after_the_grace_period_and_only_then(
    world, tmp_path, losing_hook, django_capture_on_commit_callbacks
):
    study = store_study(world, tmp_path, count=1)
    age(study, 3600)
    LOSE_NEXT["count"] = 1
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_mark_stable() == [study.pk]
    study.refresh_from_db()
    generation = study.stable_at.isoformat()
    assert losing_hook == []  # the flaky hook's message was lost
    assert flaky_hook.name in study.stable_hooks_pending
    # The real hooks ran (eagerly) and are recorded done: only the lost one is owed.
    assert study.stable_hooks_pending == [flaky_hook.name]

    grace = dt.timedelta(seconds=settings.HUB_STABLE_HOOK_RETRY_SECONDS)
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_hooks_redeliver(now=study.stable_hooks_sent_at + grace / 2) == []
    assert losing_hook == []

    later = study.stable_hooks_sent_at + grace + dt.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_hooks_redeliver(now=later) == [study.pk]
    # Done now: a second sweep, even much later, has nothing to queue.
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_hooks_redeliver(now=later + 3 * grace) == []
    assert losing_hook == [(study.pk, generation)]
    study.refresh_from_db()
    assert study.stable_hooks_pending == []


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_a_hook_lost_again_is_retried_each_grace_period_then_given_up(
    world, tmp_path, losing_hook, django_capture_on_commit_callbacks
):
    study = store_study(world, tmp_path, count=1)
    age(study, 3600)
    LOSE_NEXT["count"] = 3  # the first send and two re-sends are lost
    with django_capture_on_commit_callbacks(execute=True):
        studies_mark_stable()
    study.refresh_from_db()
    grace = dt.timedelta(seconds=settings.HUB_STABLE_HOOK_RETRY_SECONDS)
    t = study.stable_hooks_sent_at
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            t += grace + dt.timedelta(seconds=1)
            assert studies_hooks_redeliver(now=t) == [study.pk]
    assert losing_hook == []
    horizon = dt.timedelta(hours=settings.HUB_STABLE_HOOK_RETRY_HOURS)
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_hooks_redeliver(now=study.stable_at + horizon + grace * 2) == []
    study.refresh_from_db()
    assert study.stable_hooks_pending == []  # given up, logged; not queued forever
    assert losing_hook == []


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_a_study_that_received_more_owes_nothing_until_it_is_stable_again(
    world, tmp_path, losing_hook, django_capture_on_commit_callbacks
):
    study = store_study(world, tmp_path, count=1)
    age(study, 3600)
    LOSE_NEXT["count"] = 1
    with django_capture_on_commit_callbacks(execute=True):
        studies_mark_stable()
    Study.objects.filter(pk=study.pk).update(stable_at=None)  # what ingest does on a straggler
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_hooks_redeliver(now=timezone.now() + dt.timedelta(hours=1)) == []
    assert losing_hook == []


def test_every_registered_hook_is_recorded_by_name():
    names = [hook.name for hook in study_stable_hooks()]
    assert len(names) == len(set(names))
    assert all(
        len(name) <= Study._meta.get_field("stable_hooks_pending").base_field.max_length
        for name in names
    )


# --- No countdown outlives the visibility timeout (static) ---------------------------------------


def test_the_static_walker_finds_countdowns_and_etas():
    sample = (
        "task.apply_async(args=[1], countdown=4000)\n"
        "self.retry(exc=e, countdown=delay)\n"
        "task.signature((1,), eta=when)\n"
        "task.apply_async(args=[1], countdown=True)\n"
    )
    found = countdowns.call_site_delays(sample, "sample.py")
    assert [(d.where, d.what, d.seconds) for d in found] == [
        ("sample.py:1", "countdown", 4000.0),
        ("sample.py:2", "countdown", math.inf),
        ("sample.py:3", "eta", math.inf),
        ("sample.py:4", "countdown", math.inf),
    ]


def test_the_retry_delays_of_a_task_are_computed_as_celery_does():
    @shared_task(name="tests.test_faults.backing_off", retry_backoff=True, max_retries=5)
    def backing_off() -> None: ...

    @shared_task(name="tests.test_faults.patient", retry_backoff=True, max_retries=None)
    def patient() -> None: ...

    @shared_task(name="tests.test_faults.slow_retry", default_retry_delay=7200)
    def slow_retry() -> None: ...

    def longest(task) -> float:
        return max(d.seconds for d in countdowns.task_retry_delays(task))

    assert longest(backing_off) == 180  # default_retry_delay outweighs 2 ** 5
    assert longest(patient) == 600  # unbounded retries: Celery's retry_backoff_max
    assert longest(slow_retry) == 7200


def test_no_countdown_eta_or_retry_delay_reaches_the_visibility_timeout():
    """Every call site's countdown/eta (a computed one cannot be proved bounded, so it
    counts as infinite), every registered task's retry delays and beat's options."""
    sources = countdowns.project_sources()
    assert any(p.name == "tasks.py" for p in sources)  # the walk sees the task modules
    tasks = countdowns.registered_tasks()
    assert {"referrals.tasks.referral_route_task", "tenants.tasks.membership_notice_send"} <= set(
        tasks
    )
    delays = countdowns.every_delay()
    assert delays  # not vacuous: each task at least has its default_retry_delay
    too_long = [d for d in delays if d.seconds >= VISIBILITY]
    assert too_long == [], f"delays not below the visibility timeout {VISIBILITY} s"


def test_the_visibility_timeout_brings_lost_work_back_within_minutes():
    assert countdowns.visibility_timeout() == VISIBILITY
    assert VISIBILITY <= 600  # it was an hour
    # The stable sweep re-queues lost hooks before the broker would.
    assert settings.HUB_STABLE_HOOK_RETRY_SECONDS < VISIBILITY


# --- The faults, for real (bench/faults at a CI size) --------------------------------------------


FIGURE = re.compile(r"^FIGURE (\S+) = (\S+)", re.M)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(420)
def test_workers_killed_redis_restarted_store_frozen_web_restarted_lose_nothing(tmp_path):
    out = io.StringIO()
    call_command(
        "bench_faults",
        studies=60,
        kill_every=5.0,
        store_outage=5.0,
        rate=4.0,
        hook_retry_seconds=5.0,
        rooms=2,
        room_clients=3,
        log_dir=str(tmp_path / "logs"),
        stdout=out,
    )
    text = out.getvalue()
    figures = {name: float(value) for name, value in FIGURE.findall(text)}
    assert figures["workers_killed"] >= 1, text
    assert figures["redis_restarts"] == 1, text
    assert figures["web_restarts"] == 1, text
    for name in (
        "instances_lost",
        "instances_duplicated",
        "referrals_lost",
        "referrals_duplicated",
        "room_events_lost",
        "room_events_duplicated",
        "orphans",
        "hooks_pending",
    ):
        assert figures[name] == 0, f"{name}:\n{text}"
    assert figures["instances_stored"] == figures["instances_sent"] > 0, text
    assert figures["referrals_routed"] == 60, text
    assert figures["max_countdown_seconds"] < figures["visibility_timeout_seconds"], text


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_restarting_the_web_process_with_rooms_open_loses_and_repeats_no_room_event(tmp_path):
    """A real uvicorn is stopped (SIGTERM, then SIGKILL) and started again while two rooms
    talk without pause; the clients behave as room.js (resume at last_seq, outbox of what
    was said until the log shows it). The bench waits, within a generous bound, until every
    client holds everything; then nothing said may be missing or stored twice."""
    out = io.StringIO()
    call_command(
        "bench_room_restart",
        rooms=2,
        clients=2,
        workers=1,
        interval=0.3,
        between=2.0,
        after=2.0,
        restarts="term,kill",
        log_dir=str(tmp_path / "logs"),
        stdout=out,
    )
    text = out.getvalue()
    figures = {name: float(value) for name, value in FIGURE.findall(text)}
    assert figures["settled"] == 1, text
    # Said while the server was down: only the outbox brings these (not vacuous).
    assert figures["chats_said_out_of_sync"] > 0, text
    assert figures["chats_resent"] > 0, text
    assert figures["chats_stored"] == figures["chats_said"] > 0, text
    for name in (
        "chats_lost",
        "chats_duplicated",
        "room_events_missed",
        "room_events_applied_twice",
    ):
        assert figures[name] == 0, f"{name}:\n{text}"
