"""Deadlines, unopened claims and stuck routing: the referral sweep.

Unit tests drive `referrals_sweep` under freezegun. The integration test runs the real
thing: a Celery worker and beat on Redis, the beat schedule sending "referrals-sweep", and
the clock of both processes moved forward with libfaketime (freezegun cannot reach another
process). The test writes the offset to a file libfaketime reads, so time moves while the
processes run: first past the warning, then past the deadline.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from freezegun import freeze_time

from alliance.models import AlliancePolicy, BreachAction, PoolMember, ReaderPool
from referrals.models import Referral, ReferralStatus
from referrals.workflow import services
from tenants.models import Notification

from .processes import VENV_BIN, Proc, start, wait_until
from .referral_flow_support import referral_row, scope
from .referral_support import reading_setup, study_at
from .test_worker_integration import Hub, hub  # noqa: F401  (the fixture)

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    def sweep(at: dt.datetime) -> dict[str, int]:
        with freeze_time(at), django_capture_on_commit_callbacks(execute=True):
            return services.referrals_sweep()

    return sweep


@pytest.fixture
def routed(world, reading, django_capture_on_commit_callbacks):
    """A referral requested at T0 and routed (urgent: 120 minutes, warned at 90)."""

    def routed(*, modality: str = "MR", body_part: str = "BRAIN") -> Referral:
        with freeze_time(T0), django_capture_on_commit_callbacks(execute=True):
            referral, _ = services.referral_request(
                scope=scope(world.alice, world.clinic),
                priority="urgent",
                study=study_at(world.clinic, modality=modality, body_part=body_part),
            )
        referral.refresh_from_db()
        assert referral.status == ReferralStatus.ROUTED
        return referral

    return routed


def actions(referral: Referral) -> list[str]:
    return list(referral.events.values_list("action", flat=True))


def notes(kind: str) -> list[tuple[str, str]]:
    return list(
        Notification.objects.filter(kind=kind)
        .order_by("pk")
        .values_list("user__username", "dedup_key")
    )


def test_the_deadline_comes_from_the_policy(world, reading, routed):
    referral = routed()
    assert referral.deadline_at == T0 + dt.timedelta(minutes=120)
    assert referral.warn_at == T0 + dt.timedelta(minutes=90)  # warn_fraction 0.75


def test_a_warning_at_its_time_once(world, reading, routed, sweep):
    referral = routed()  # MR: the general pool, proposed to rita
    assert sweep(T0 + dt.timedelta(minutes=89))["warned"] == 0
    assert sweep(T0 + dt.timedelta(minutes=91))["warned"] == 1
    assert sweep(T0 + dt.timedelta(minutes=92))["warned"] == 0
    referral.refresh_from_db()
    assert referral.warned_at == T0 + dt.timedelta(minutes=91)
    assert actions(referral).count("warn") == 1
    assert notes("referral.warning") == [("rita", f"warn:{referral.pk}")]


@pytest.mark.parametrize("action", BreachAction.values)
def test_a_breach_escalates_as_the_policy_says_once(
    world, reading, routed, sweep, action, mailoutbox
):
    AlliancePolicy.objects.filter(pk=reading.policy.pk).update(breach_action=action)
    reading.sam.email = "sam@example.org"
    reading.sam.save()
    ReaderPool.objects.filter(pk=reading.thoracic.pk).update(lead=reading.sam)
    referral = routed(modality="CT", body_part="CHEST")  # thoracic → overflows to general
    rita = scope(world.rita, world.reader)
    with freeze_time(T0 + dt.timedelta(minutes=1)):
        services.referral_claim(scope=rita, referral_id=referral.pk)
        services.referral_open(scope=rita, referral_id=referral.pk)

    late = T0 + dt.timedelta(minutes=121)
    assert sweep(late) == {"warned": 1, "breached": 1, "released": 0, "rerouted": 0}
    assert sweep(late + dt.timedelta(minutes=1)) == {
        "warned": 0,
        "breached": 0,
        "released": 0,
        "rerouted": 0,
    }
    referral.refresh_from_db()
    assert referral.breached_at == late
    assert referral.escalation_level == 1
    steps = actions(referral)
    assert steps.count("warn") == steps.count("breach") == steps.count("escalate") == 1
    assert steps.index("warn") < steps.index("breach") < steps.index("escalate")
    assert notes("referral.breach") == [("sam", f"breach:{referral.pk}")]
    assert [m.to for m in mailoutbox] == [["sam@example.org"]]
    escalate = referral.events.get(action="escalate")
    assert escalate.data == {"action": action}

    if action == BreachAction.NOTIFY_LEAD:
        assert (referral.status, referral.claimed_by, referral.pool) == (
            ReferralStatus.CLAIMED,
            world.rita,
            reading.thoracic,
        )
    elif action == BreachAction.RETURN_TO_POOL:
        # rita let it pass; the pool's only other reader is none: nobody is proposed.
        assert (referral.status, referral.claimed_by, referral.pool) == (
            ReferralStatus.ROUTED,
            None,
            reading.thoracic,
        )
        assert referral.assigned_to is None
        assert steps[-2:] == ["release", "escalate"]
    else:
        assert (referral.status, referral.claimed_by, referral.pool) == (
            ReferralStatus.ROUTED,
            None,
            reading.general,
        )
        assert referral.assigned_to in (world.rita, reading.rob)
        assert steps[-2:] == ["reroute", "escalate"]
        with translation.override(settings.LANGUAGE_CODE):
            assert escalate.reason_text == str(_("moved to %(pool)s") % {"pool": "北城综合"})


def test_a_breached_case_returned_to_the_pool_goes_to_another_reader(world, reading, routed, sweep):
    AlliancePolicy.objects.filter(pk=reading.policy.pk).update(
        breach_action=BreachAction.RETURN_TO_POOL
    )
    referral = routed()  # MR → general, proposed to rita, never claimed
    assert referral.assigned_to == world.rita
    sweep(T0 + dt.timedelta(minutes=121))
    referral.refresh_from_db()
    assert (referral.status, referral.assigned_to) == (ReferralStatus.ROUTED, reading.rob)
    assert actions(referral)[-2:] == ["reroute", "escalate"]


def test_a_closed_case_is_neither_warned_nor_breached(world, reading, routed, sweep):
    referral = routed()
    services.referral_cancel(scope=scope(world.alice, world.clinic), referral_id=referral.pk)
    assert sweep(T0 + dt.timedelta(days=2)) == {
        "warned": 0,
        "breached": 0,
        "released": 0,
        "rerouted": 0,
    }


def test_a_claim_not_opened_in_time_goes_back_to_the_pool_once(world, reading, routed, sweep):
    referral = routed()  # proposed to rita
    with freeze_time(T0 + dt.timedelta(minutes=1)):
        services.referral_claim(scope=scope(world.rita, world.reader), referral_id=referral.pk)
    assert sweep(T0 + dt.timedelta(minutes=15))["released"] == 0  # 14 minutes: not yet
    assert sweep(T0 + dt.timedelta(minutes=17))["released"] == 1
    assert sweep(T0 + dt.timedelta(minutes=18))["released"] == 0
    referral.refresh_from_db()
    assert (referral.status, referral.claimed_by, referral.assigned_to) == (
        ReferralStatus.ROUTED,
        None,
        reading.rob,
    )
    release = referral.events.get(action="release")
    with translation.override(settings.LANGUAGE_CODE):  # the record is in the hub's language
        assert release.reason_text == _("claim not opened in time")
    assert release.actor is None


def test_an_opened_claim_is_kept(world, reading, routed, sweep):
    referral = routed()
    rita = scope(world.rita, world.reader)
    with freeze_time(T0 + dt.timedelta(minutes=1)):
        services.referral_claim(scope=rita, referral_id=referral.pk)
        services.referral_open(scope=rita, referral_id=referral.pk)
    assert sweep(T0 + dt.timedelta(minutes=60))["released"] == 0
    referral.refresh_from_db()
    assert referral.claimed_by == world.rita


def test_a_referral_stuck_in_requested_is_routed_again_by_the_sweep(world, reading, sweep):
    referral = referral_row(world, now=T0)  # its routing task was lost
    assert sweep(T0 + dt.timedelta(seconds=10))["rerouted"] == 0
    assert sweep(T0 + dt.timedelta(seconds=31))["rerouted"] == 1
    assert sweep(T0 + dt.timedelta(seconds=32))["rerouted"] == 0
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED
    assert actions(referral) == ["route"]


# --- End to end: beat, a worker and Redis, with the clock moved by libfaketime ---------------

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


class Clock:
    """The processes' clock: `now + offset`, the offset read from a file libfaketime watches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(dt.timedelta(0))

    def set(self, offset: dt.timedelta) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{int(offset.total_seconds()):+d}\n")
        tmp.replace(self.path)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
        }


@pytest.fixture
def faked(hub: Hub, tmp_path: Path) -> Iterator[tuple[Clock, Proc, Proc]]:  # noqa: F811
    """A worker and beat on the test's queue, both on the movable clock, sweeping each second."""
    missing = "libfaketime is missing: deploy/local/ensure-services.sh installs it (faketime)"
    assert shutil.which("faketime"), missing
    assert LIBFAKETIME.exists(), missing
    clock = Clock(tmp_path / "faketime")
    base = hub.env
    hub.env = lambda: {
        **base(),
        **clock.env(),  # type: ignore[method-assign]
        "HUB_REFERRAL_SWEEP_SECONDS": "1",
        # The escalation mail is counted in the worker's log: written there, not to files.
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }
    worker = hub.start_worker()
    beat = start(
        "beat",
        [
            VENV_BIN / "celery",
            "-A",
            "alliance",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        env=hub.env(),
        log_dir=tmp_path,
    )
    hub.procs.append(beat)
    yield clock, worker, beat
    beat.stop(signal.SIGTERM)


def sweeps_done(worker: Proc) -> int:
    return len(re.findall(r"referrals\.tasks\.referrals_sweep\[[^\]]+\] succeeded", worker.log()))


def breach_mails(worker: Proc, to: str) -> int:
    return worker.log().count(f"To: {to}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", BreachAction.values)
def test_beat_warns_then_breaches_then_escalates_through_a_real_worker(world, faked, action):
    clock, worker, beat = faked
    reading = reading_setup(world)
    AlliancePolicy.objects.filter(pk=reading.policy.pk).update(breach_action=action)
    reading.sam.email = "sam@example.org"
    reading.sam.save()
    ReaderPool.objects.filter(pk=reading.thoracic.pk).update(lead=reading.sam)
    PoolMember.objects.create(pool=reading.thoracic, user=reading.rob, capacity=10)
    study = study_at(world.clinic)  # CT chest: thoracic (rita, rob) → overflows to general
    # Made and routed here, not through the request service: its routing task would go
    # to this process's default queue, which no worker of this test reads.
    referral = referral_row(world, study=study, priority="urgent", minutes=120, warn_minutes=90)
    services.referral_route(referral.pk)
    services.referral_claim(scope=scope(world.rita, world.reader), referral_id=referral.pk)
    services.referral_open(scope=scope(world.rita, world.reader), referral_id=referral.pk)
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.CLAIMED
    assert referral.warned_at is None

    def state() -> Referral:
        return Referral.objects.get(pk=referral.pk)

    # Beat sweeps every second on the real clock: nothing is due.
    wait_until(
        lambda: sweeps_done(worker) >= 2, timeout=30, what="two sweeps", watch=[worker, beat]
    )
    assert actions(state()) == ["route", "claim", "open"]

    # 91 minutes later (urgent: 120 minutes, warned at 90): the warning, once.
    clock.set(dt.timedelta(minutes=91))
    wait_until(
        lambda: state().warned_at is not None, timeout=30, what="the warning", watch=[worker, beat]
    )
    seen = sweeps_done(worker)
    wait_until(
        lambda: sweeps_done(worker) >= seen + 2,
        timeout=30,
        what="two more sweeps",
        watch=[worker, beat],
    )
    warned = state()
    assert warned.warned_at is not None
    assert warned.breached_at is None
    assert warned.warned_at - referral.requested_at >= dt.timedelta(minutes=90)
    assert actions(warned).count("warn") == 1
    assert notes("referral.warning") == [("rita", f"warn:{referral.pk}")]

    # Past the deadline: the breach and the policy's escalation, once.
    clock.set(dt.timedelta(minutes=125))
    wait_until(
        lambda: state().events.filter(action="escalate").exists(),
        timeout=30,
        what="the escalation",
        watch=[worker, beat],
    )
    seen = sweeps_done(worker)
    wait_until(
        lambda: sweeps_done(worker) >= seen + 3,
        timeout=30,
        what="three more sweeps",
        watch=[worker, beat],
    )
    breached = state()
    assert breached.breached_at is not None
    steps = actions(breached)
    assert steps.count("warn") == steps.count("breach") == steps.count("escalate") == 1
    assert steps.index("warn") < steps.index("breach") < steps.index("escalate")
    assert breached.deadline_at < breached.breached_at
    assert breached.breached_at - referral.requested_at < dt.timedelta(minutes=130)
    assert notes("referral.breach") == [("sam", f"breach:{referral.pk}")]
    assert breach_mails(worker, "sam@example.org") == 1
    assert breached.events.get(action="escalate").data == {"action": action}
    if action == BreachAction.NOTIFY_LEAD:
        assert (breached.status, breached.claimed_by, breached.pool) == (
            ReferralStatus.CLAIMED,
            world.rita,
            reading.thoracic,
        )
    elif action == BreachAction.RETURN_TO_POOL:
        assert (breached.status, breached.claimed_by, breached.assigned_to, breached.pool) == (
            ReferralStatus.ROUTED,
            None,
            reading.rob,
            reading.thoracic,
        )
        assert steps[-2:] == ["release", "escalate"]
    else:
        assert (breached.status, breached.claimed_by, breached.pool) == (
            ReferralStatus.ROUTED,
            None,
            reading.general,
        )
        assert steps[-2:] == ["reroute", "escalate"]
    # The warning and breach ran in the worker, on the moved clock; this process's is real.
    assert timezone.now() < breached.breached_at
