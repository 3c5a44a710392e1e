"""A real Celery worker and a real ASGI server on the test database: the production path.

The worker and uvicorn run as subprocesses pointed at pytest-django's test database and
the suite's Redis. Each test gets a Celery queue of its own, so a message left behind by
an earlier, aborted run can never be taken by this run's worker.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from knox.models import AuthToken
from websockets.sync.client import ClientConnection

from tenants.models import Membership, Notification, Role, User
from tenants.tasks import membership_notice_send

from .processes import (
    VENV_BIN,
    Proc,
    base_env,
    free_port,
    http,
    open_socket,
    start,
    wait_for_http,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A message a killed worker held comes back once it is older than this (see the kill test).
VISIBILITY_TIMEOUT = 2


def database_url() -> str:
    """The test database (created by pytest-django) as a URL another process can use."""
    s = connection.settings_dict
    credentials = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        credentials += ":" + quote(s["PASSWORD"], safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{credentials}@{s.get('HOST') or ''}{port}/{quote(s['NAME'], safe='')}"


@dataclass
class Hub:
    """The processes of one test: an ASGI server and Celery workers on one queue."""

    log_dir: Path
    queue: str = field(default_factory=lambda: f"itest-{uuid.uuid4().hex[:12]}")
    port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    workers_started: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            HUB_ENV="test",
            HUB_DATA_DIR=str(self.log_dir),
            CELERY_DEFAULT_QUEUE=self.queue,
            CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        )

    def start_web(self) -> Proc:
        web = start(
            "web",
            [
                VENV_BIN / "python",
                "-m",
                "uvicorn",
                "alliance.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env(),
            log_dir=self.log_dir,
        )
        self.procs.append(web)
        wait_for_http(f"{self.base}/healthz", timeout=30, watch=[web])
        return web

    def start_worker(self) -> Proc:
        self.workers_started += 1
        worker = start(
            f"worker-{self.workers_started}",
            [
                VENV_BIN / "celery",
                "-A",
                "alliance",
                "worker",
                "--pool",
                "solo",
                "-Q",
                self.queue,
                "--hostname",
                f"{self.queue}-{self.workers_started}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            env=self.env(),
            log_dir=self.log_dir,
        )
        self.procs.append(worker)
        wait_until(
            lambda: " ready." in worker.log(),
            timeout=30,
            what="the worker to be ready",
            watch=[worker],
        )
        return worker

    @contextmanager
    def socket_for(self, user: User) -> Iterator[ClientConnection]:
        """The user's notification socket on the real server, past its hello frame."""
        _instance, token = AuthToken.objects.create(user=user)
        with open_socket(
            f"ws://127.0.0.1:{self.port}/ws/notifications/",
            {"Authorization": f"Token {token}", "Origin": self.base},
        ) as ws:
            assert json.loads(ws.recv(timeout=10))["event"] == "hello"
            yield ws


@pytest.fixture
def hub(world, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(log_dir=tmp_path)
    try:
        yield hub
    finally:
        # Before pytest-django empties the database: no process may hold it open.
        for proc in reversed(hub.procs):
            proc.stop(signal.SIGTERM, timeout=15)
        broker = redis.Redis.from_url(settings.REDIS_URL)
        broker.delete(broker_key(hub.queue))
        broker.close()


def broker_key(name: str) -> str:
    """The Redis key of a queue (or of the transport's own bookkeeping) under our prefix."""
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] + name


def task_succeeded(worker: Proc, task_id: str) -> bool:
    return any(f"[{task_id}] succeeded" in line for line in worker.log().splitlines())


def next_event(ws: ClientConnection, timeout: float = 20) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def notifications_of(user: User, membership_id: int) -> list[Notification]:
    return list(Notification.objects.filter(user=user, dedup_key=f"membership:{membership_id}"))


def test_a_grant_through_the_api_reaches_the_grantee_from_the_worker_once(world, hub):
    hub.start_web()
    worker = hub.start_worker()
    _instance, adam_token = AuthToken.objects.create(user=world.adam)
    api = http()
    api.headers["Authorization"] = f"Token {adam_token}"

    with hub.socket_for(world.rita) as rita_ws:
        response = api.post(
            f"{hub.base}/api/v1/memberships/",
            json={"username": "rita", "role": Role.RADIOLOGIST},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        membership_id = response.json()["id"]

        event = next_event(rita_ws)
        [notification] = notifications_of(world.rita, membership_id)
        assert event["event"] == "notification"
        assert event["payload"]["id"] == notification.pk
        assert event["payload"]["kind"] == "membership_granted"
        assert world.clinic.name in event["payload"]["title"]  # rita reads Chinese
        # The web process only queued the task; the worker ran it and published the event.
        assert "tenants.tasks.membership_notice_send" in worker.log()

        again = [
            membership_notice_send.apply_async(args=[membership_id], queue=hub.queue)
            for _ in range(2)
        ]
        wait_until(
            lambda: all(task_succeeded(worker, r.id) for r in again),
            timeout=20,
            what="both repeated tasks to run",
            watch=[worker],
        )
        assert notifications_of(world.rita, membership_id) == [notification]

        # The repeats published nothing either: their events would come before this one.
        response = api.post(
            f"{hub.base}/api/v1/memberships/",
            json={"username": "rita", "role": Role.MDT_MEMBER},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        event = next_event(rita_ws)
        [second] = notifications_of(world.rita, response.json()["id"])
        assert event["payload"]["id"] == second.pk


def worker_waits_on_a_lock() -> bool:
    """Whether some session of the test database waits to insert a notification."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            ['INSERT INTO "tenants_notification"%'],
        )
        return cursor.fetchone()[0] == 1


def test_a_task_held_by_a_killed_worker_runs_exactly_once_after_a_restart(world, hub):
    hub.start_web()
    membership = Membership.objects.create(
        user=world.rita, institution=world.clinic, role=Role.RADIOLOGIST, granted_by=world.adam
    )
    first = hub.start_worker()

    with hub.socket_for(world.rita) as rita_ws:
        # Hold the worker inside the task: an uncommitted row with the same dedup key makes
        # its INSERT wait on the unique index, so the message is taken but not acknowledged.
        blocker = psycopg.connect(database_url(), connect_timeout=10)
        try:
            blocker.execute(
                "INSERT INTO tenants_notification (user_id, kind, title, body, link, dedup_key,"
                " created_at) VALUES (%s, 'blocker', 'blocker', '', '', %s, now())",
                [world.rita.pk, f"membership:{membership.pk}"],
            )
            sent_at = time.monotonic()
            task = membership_notice_send.apply_async(args=[membership.pk], queue=hub.queue)
            wait_until(
                worker_waits_on_a_lock,
                timeout=20,
                what="the worker to wait inside the task",
                watch=[first],
            )
            first.signal_group(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            blocker.rollback()
            blocker.close()

        # The killed worker's transaction died with it: nothing was stored, nothing sent.
        wait_until(
            lambda: not worker_waits_on_a_lock(), timeout=10, what="the dead worker's query to end"
        )
        assert notifications_of(world.rita, membership.pk) == []
        assert f"[{task.id}] received" in first.log()
        assert not task_succeeded(first, task.id)

        # Redis hands out an unacknowledged message again once it is older than the
        # visibility timeout; a starting worker restores such messages.
        time.sleep(max(0.0, sent_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
        second = hub.start_worker()
        wait_until(
            lambda: task_succeeded(second, task.id),
            timeout=30,
            what="the restarted worker to run the task",
            watch=[second],
        )

        [notification] = notifications_of(world.rita, membership.pk)
        event = next_event(rita_ws)
        assert event["event"] == "notification"
        assert event["payload"]["id"] == notification.pk

    # Acknowledged now: the broker holds no copy that could make it run a second time.
    broker = redis.Redis.from_url(settings.REDIS_URL)
    try:
        wait_until(
            lambda: not any(task.id.encode() in raw for raw in broker.hvals(broker_key("unacked"))),
            timeout=10,
            what="the message to be acknowledged",
        )
        assert broker.llen(broker_key(hub.queue)) == 0
    finally:
        broker.close()
    assert notifications_of(world.rita, membership.pk) == [notification]
