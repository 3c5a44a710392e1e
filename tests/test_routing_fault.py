"""A worker killed with SIGKILL in the middle of routing 500 referrals loses and repeats nothing.

The 500 routing tasks go to a real Redis queue; a real worker starts on them and is killed
(SIGKILL to its process group) while it holds one unacknowledged. Tasks are `acks_late`
with reject-on-worker-lost: the held message goes back to the queue after the visibility
timeout, and a restarted worker finishes the rest. Every referral is routed once: one
'route' event, one grant, one "new case" notification each.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections import Counter

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from alliance.models import PoolMember, ReaderPool
from referrals.models import (
    Patient,
    Referral,
    ReferralEvent,
    ReferralStatus,
    ReferralStudy,
    Study,
    StudyGrant,
)
from referrals.tasks import referral_route_task
from tenants.models import Notification

from .processes import VENV_BIN, Proc, start, wait_until
from .referral_support import reading_setup
from .test_worker_integration import VISIBILITY_TIMEOUT, Hub, broker_key, hub  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

N = 500


def requested_referrals(world, n: int) -> list[int]:
    """`n` CT chest studies of n patients at the clinic, each with a requested referral."""
    now = timezone.now()
    patients = Patient.objects.bulk_create(
        Patient(institution=world.clinic, patient_id=f"F-{i}", patient_key=f"fault-{i}")
        for i in range(n)
    )
    studies = Study.objects.bulk_create(
        Study(
            institution=world.clinic,
            patient=p,
            study_uid=f"1.2.826.0.1.3680043.10.9.{i}",
            modalities="CT",
            body_parts="CHEST",
            patient_key=p.patient_key,
            pid=p.patient_id,
        )
        for i, p in enumerate(patients)
    )
    referrals = Referral.objects.bulk_create(
        Referral(
            alliance=world.north,
            kind="remote_read",
            study=s,
            source=world.clinic,
            priority="routine",
            priority_rank=2,
            requested_at=now,
            deadline_at=now + dt.timedelta(days=1),
            warn_at=now + dt.timedelta(hours=18),
        )
        for s in studies
    )
    ReferralStudy.objects.bulk_create(ReferralStudy(referral=r, study=r.study) for r in referrals)
    return [r.pk for r in referrals]


def threads_worker(hub: Hub) -> Proc:  # noqa: F811
    """A worker as deploy/local/Procfile runs it: a thread pool, several tasks in hand."""
    hub.workers_started += 1
    worker = start(
        f"worker-{hub.workers_started}",
        [
            VENV_BIN / "celery",
            "-A",
            "alliance",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "-Q",
            hub.queue,
            "--hostname",
            f"{hub.queue}-{hub.workers_started}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ],
        env=hub.env(),
        log_dir=hub.log_dir,
    )
    hub.procs.append(worker)
    wait_until(
        lambda: " ready." in worker.log(), timeout=30, what="the worker to be ready", watch=[worker]
    )
    return worker


def routed(ids: list[int]) -> int:
    """How many of this test's referrals are routed (only these: rows another test's
    processes may still write do not count)."""
    return Referral.objects.filter(pk__in=ids, status=ReferralStatus.ROUTED).count()


def held_by_broker(queue: str) -> int:
    """Messages of `queue` taken by a worker and not acknowledged."""
    broker = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return sum(f'"{queue}"'.encode() in raw for raw in broker.hvals(broker_key("unacked")))
    finally:
        broker.close()


@pytest.mark.timeout(900)  # 500 routings twice over a restart: minutes on a busy 2-core machine
def test_a_worker_killed_while_routing_500_referrals_loses_and_repeats_nothing(world, hub: Hub):  # noqa: F811
    reading = reading_setup(world)
    ReaderPool.objects.filter(alliance=world.north).update(cap=10_000)
    PoolMember.objects.update(capacity=10_000)
    ids = requested_referrals(world, N)
    for pk in ids:
        referral_route_task.apply_async(args=[pk], queue=hub.queue)

    first = threads_worker(hub)
    wait_until(
        lambda: routed(ids) >= N // 5, timeout=60, what="routing to be under way", watch=[first]
    )
    first.signal_group(signal.SIGKILL)
    killed_at = time.monotonic()
    assert first.wait(10) == -signal.SIGKILL
    done_before = routed(ids)
    assert done_before < N, "the worker finished before it was killed: nothing was tested"
    # The killed worker held messages it had not acknowledged.
    held = held_by_broker(hub.queue)
    assert held >= 1

    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    second = threads_worker(hub)
    wait_until(
        lambda: routed(ids) == N,
        timeout=300,
        what=f"all {N} referrals to be routed",
        interval=0.5,
        watch=[second],
    )
    wait_until(
        lambda: held_by_broker(hub.queue) == 0,
        timeout=30,
        what="every message to be acknowledged",
        watch=[second],
    )

    routes = Counter(
        ReferralEvent.objects.filter(action="route", referral_id__in=ids).values_list(
            "referral_id", flat=True
        )
    )
    assert len(routes) == N
    assert set(routes.values()) == {1}
    assert not ReferralEvent.objects.filter(referral_id__in=ids).exclude(action="route").exists()
    assert set(Referral.objects.filter(pk__in=ids).values_list("pool", flat=True)) == {
        reading.thoracic.pk
    }
    grants = Counter(
        StudyGrant.objects.filter(source="referral", source_id__in=ids).values_list(
            "source_id", flat=True
        )
    )
    assert len(grants) == N
    assert set(grants.values()) == {1}
    assigned = Counter(
        Notification.objects.filter(kind="referral.assigned").values_list("link", flat=True)
    )
    assert len(assigned) == N
    assert set(assigned.values()) == {1}
    print(
        f"\nrouted {done_before} before the kill ({held} messages held), "
        f"{N - done_before} after the restart"
    )
