"""The "study stable" event: quiet studies fire their hooks once per generation, a racing
sweep never fires twice, a late instance re-arms the event, and a real worker with beat
does it on its own.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from celery import shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone

from referrals.archive import stability
from referrals.archive.ingest import instance_store
from referrals.archive.stability import (
    studies_mark_stable,
    study_stable_hook,
    study_stable_hook_remove,
    study_stable_hooks,
    study_still_stable,
)
from referrals.models import Series, Study
from referrals.tasks import series_thumbnails_build, studies_stable_sweep

from .dicom_support import ct_files
from .ingest_support import media  # noqa: F401 - fixture
from .processes import VENV_BIN, Proc, base_env, start, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

PROBE_CALLS: list[tuple[int, str, bool]] = []  # (study, generation, still current)


@shared_task(name="tests.test_stability.probe_hook")
def probe_hook(study_id: int, generation: str) -> None:
    PROBE_CALLS.append((study_id, generation, study_still_stable(study_id, generation) is not None))


@pytest.fixture
def probe():
    PROBE_CALLS.clear()
    study_stable_hook(probe_hook)
    yield PROBE_CALLS
    study_stable_hook_remove(probe_hook.name)


def store_study(world, tmp_path: Path, count: int = 2, **kwargs) -> Study:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(ct_files(count, size=32, **kwargs)):
        path = tmp_path / f"slice-{index}.dcm"
        path.write_bytes(data)
        outcome = instance_store(institution=world.clinic, path=path, via="test")
        assert outcome.status == "stored", outcome.message
    return Study.objects.get(pk=outcome.instance.study_id)


def age(study: Study, seconds: float) -> None:
    """Pretend the study's last instance arrived `seconds` ago."""
    Study.objects.filter(pk=study.pk).update(
        last_received_at=timezone.now() - dt.timedelta(seconds=seconds)
    )


def test_the_real_registry_holds_the_thumbnail_hook():
    assert series_thumbnails_build in study_stable_hooks()
    assert series_thumbnails_build.acks_late is True


def test_the_sweep_runs_on_beat_at_the_configured_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["studies-stable-sweep"]
    assert entry["task"] == studies_stable_sweep.name
    assert entry["schedule"] == settings.HUB_STABLE_SWEEP_SECONDS


def test_a_quiet_study_becomes_stable_and_its_thumbnails_are_built(
    world, tmp_path, probe, settings, django_capture_on_commit_callbacks
):
    settings.HUB_STUDY_QUIET_SECONDS = 90
    study = store_study(world, tmp_path)
    age(study, 91)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert studies_stable_sweep.delay().get() == 1
    study.refresh_from_db()
    assert study.stable_at is not None
    # One task per hook, each queued only once the claim committed.
    assert len(queued) == len(study_stable_hooks())
    assert probe == [(study.pk, study.stable_at.isoformat(), True)]
    series = Series.objects.get(study=study)
    assert series.thumbnail_key.startswith("thumbnails/")


def test_a_study_still_receiving_is_not_stable(
    world, tmp_path, probe, settings, django_capture_on_commit_callbacks
):
    settings.HUB_STUDY_QUIET_SECONDS = 90
    study = store_study(world, tmp_path)
    age(study, 60)
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_mark_stable() == []
    study.refresh_from_db()
    assert study.stable_at is None
    assert probe == []


def test_sweeping_again_fires_nothing_more(
    world, tmp_path, probe, django_capture_on_commit_callbacks
):
    study = store_study(world, tmp_path)
    age(study, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        assert studies_mark_stable() == [study.pk]
        assert studies_mark_stable() == []
        assert studies_mark_stable(now=timezone.now() + dt.timedelta(hours=1)) == []
    assert len(probe) == 1


def test_a_late_instance_rearms_the_event_and_stales_the_old_generation(
    world, tmp_path, probe, django_capture_on_commit_callbacks
):
    study = store_study(world, tmp_path, count=1)
    age(study, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        studies_mark_stable()
    [(_, first_generation, _)] = probe

    # A straggler of the same study arrives: ingest makes the study unstable again.
    more = ct_files(1, size=32, study_uid=study.study_uid)
    path = tmp_path / "late.dcm"
    path.write_bytes(more[0])
    assert instance_store(institution=world.clinic, path=path, via="test").status == "stored"
    study.refresh_from_db()
    assert study.stable_at is None
    # A hook of the first event that runs only now finds it stale and does nothing.
    assert study_still_stable(study.pk, first_generation) is None

    age(study, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        studies_mark_stable()
    study.refresh_from_db()
    assert [call[1] for call in probe] == [first_generation, study.stable_at.isoformat()]
    assert probe[1][2] is True
    assert Series.objects.filter(study=study).exclude(thumbnail_key="").count() == 2


def test_a_malformed_or_foreign_generation_is_stale(world, tmp_path):
    study = store_study(world, tmp_path, count=1)
    assert study_still_stable(study.pk, "not a date") is None
    assert study_still_stable(study.pk, timezone.now().isoformat()) is None
    assert study_still_stable(-1, timezone.now().isoformat()) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_two_sweeps_racing_claim_each_study_once(world, tmp_path, probe, monkeypatch):
    studies = [store_study(world, tmp_path / str(n), count=1) for n in range(5)]
    for study in studies:
        age(study, 3600)
    # Both sweeps list the same quiet studies before either claims one.
    door = threading.Barrier(2, timeout=30)
    listed = stability._quiet_study_ids

    def list_then_wait(*args, **kwargs):
        found = listed(*args, **kwargs)
        door.wait()
        return found

    monkeypatch.setattr(stability, "_quiet_study_ids", list_then_wait)
    claimed: list[list[int]] = []
    errors: list[Exception] = []

    def sweep() -> None:
        try:
            claimed.append(studies_mark_stable())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    everything = sorted(pk for batch in claimed for pk in batch)
    assert everything == sorted(s.pk for s in studies)  # each study once, by one sweep
    assert sorted(call[0] for call in probe) == everything
    assert all(call[2] for call in probe)


# --- A real worker and beat -------------------------------------------------------------


def _database_url() -> str:
    s = connection.settings_dict
    credentials = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        credentials += ":" + quote(s["PASSWORD"], safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{credentials}@{s.get('HOST') or ''}{port}/{quote(s['NAME'], safe='')}"


def _hook_runs(worker: Proc) -> int:
    return sum(
        1
        for line in worker.log().splitlines()
        if "referrals.tasks.series_thumbnails_build[" in line and "succeeded" in line
    )


def _sweeps_run(worker: Proc) -> int:
    return sum(
        1
        for line in worker.log().splitlines()
        if "referrals.tasks.studies_stable_sweep[" in line and "succeeded" in line
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_worker_and_beat_make_a_stored_study_stable_and_run_the_hook_once(
    world, tmp_path, settings
):
    queue = f"itest-stable-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    # The worker's storage is this test's storage: the thumbnail needs the stored pixels.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": data_dir / "media"},
        },
    }
    env = base_env(
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        HUB_ENV="test",
        HUB_DATA_DIR=str(data_dir),
        CELERY_DEFAULT_QUEUE=queue,
        HUB_STUDY_QUIET_SECONDS="1",
        HUB_STABLE_SWEEP_SECONDS="0.5",
        HUB_HEARTBEAT_SECONDS="3600",
    )
    procs: list[Proc] = []
    try:
        worker = start(
            "worker",
            [
                VENV_BIN / "celery",
                "-A",
                "alliance",
                "worker",
                "--pool",
                "solo",
                "-Q",
                queue,
                "--hostname",
                f"{queue}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            log_dir=tmp_path,
        )
        procs.append(worker)
        wait_until(lambda: " ready." in worker.log(), timeout=30, what="the worker", watch=[worker])
        beat = start(
            "beat",
            [
                VENV_BIN / "celery",
                "-A",
                "alliance",
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(data_dir / "beat-schedule"),
            ],
            env=env,
            log_dir=tmp_path,
        )
        procs.append(beat)

        study = store_study(world, tmp_path, count=3)
        series = Series.objects.get(study=study)
        wait_until(
            lambda: Study.objects.get(pk=study.pk).stable_at is not None,
            timeout=30,
            what="the study to become stable",
            watch=procs,
        )
        wait_until(
            lambda: Series.objects.get(pk=series.pk).thumbnail_key,
            timeout=30,
            what="the thumbnail",
            watch=procs,
        )
        # Many more sweeps run on the worker; none fires the hook again.
        done = _sweeps_run(worker)
        wait_until(
            lambda: _sweeps_run(worker) >= done + 6, timeout=30, what="six more sweeps", watch=procs
        )
        assert _hook_runs(worker) == 1, worker.tail()
        assert (data_dir / "media" / Series.objects.get(pk=series.pk).thumbnail_key).exists()
    finally:
        for proc in reversed(procs):
            proc.stop(signal.SIGTERM, timeout=15)
        broker = redis.Redis.from_url(settings.REDIS_URL)
        broker.delete(settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] + queue)
        broker.close()
