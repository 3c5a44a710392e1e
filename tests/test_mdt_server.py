"""A real uvicorn on the test database and the suite's Redis: one MDT room of 30 sites,
every client a real websocket; the presenter's viewer states reach all of them, and after
the server is restarted every client reconnects with last_seq, resyncs and loses nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from knox.models import AuthToken

from alliance.models import Tier
from bench.mdt.loadclient import Participant, rooms_run
from consultations import services
from consultations.models import RoomEvent
from tenants import access
from tenants.models import InstitutionKind, Role

from .conftest import _person
from .factories import InstitutionFactory, join
from .processes import VENV_BIN, Proc, base_env, free_port, start, wait_for_http
from .test_worker_integration import database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SITES = 30


def uvicorn(port: int, log_dir: Path, settings) -> Proc:
    web = start(
        f"web-{time.monotonic_ns()}",
        [
            VENV_BIN / "python",
            "-m",
            "uvicorn",
            "alliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "3",
        ],
        env=base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            HUB_ENV="test",
            HUB_DATA_DIR=str(log_dir),
        ),
        log_dir=log_dir,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, watch=[web])
    return web


def test_thirty_sites_in_one_room_survive_a_server_restart(world, tmp_path: Path, settings):
    # Thirty sites of the north alliance, one MDT member at each; rita's hospital chairs.
    people = [world.rita]
    for n in range(SITES - 1):
        site = InstitutionFactory(code=f"mdt-site-{n}", kind=InstitutionKind.COUNTY_HOSPITAL)
        join(world.north, site, Tier.COUNTY)
        people.append(_person(f"mdt{n}", f"医生{n}", f"Doctor {n}", site, Role.MDT_MEMBER))
    now = timezone.now()
    session = services.session_create(
        scope=access.scope_for_user(world.rita, institution_id=world.reader.pk),
        title="三十家医院联合会诊",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )
    for user in people[1:]:
        services.invitation_create(
            scope=access.scope_for_user(world.rita),
            session=session,
            user=user,
            institution=user.memberships.get().institution,
            role="participant",
        )
    tokens = [AuthToken.objects.create(user=user)[1] for user in people]
    port = free_port()
    procs = [uvicorn(port, tmp_path, settings)]

    def stored() -> dict[int, list[int]]:
        return {
            session.pk: list(
                RoomEvent.objects.filter(session=session).values_list("seq", flat=True)
            )
        }

    async def restart() -> float:
        await asyncio.to_thread(procs[-1].stop, signal.SIGTERM, 15)
        procs.append(await asyncio.to_thread(uvicorn, port, tmp_path, settings))
        return time.monotonic()

    async def scenario():
        room = [
            Participant(session_id=session.pk, user_id=user.pk, token=token, presenter=n == 0)
            for n, (user, token) in enumerate(zip(people, tokens, strict=True))
        ]
        return await rooms_run(
            [room],
            ws_base=f"ws://127.0.0.1:{port}",
            origin=f"http://127.0.0.1:{port}",
            messages=20,
            interval=0.02,
            stored_seqs=stored,
            restart=restart,
        ), room

    try:
        result, room = asyncio.run(scenario())
    finally:
        for proc in procs:
            proc.stop(signal.SIGTERM, timeout=15)
    assert result.settled, "some client never caught up with the room's log"
    assert result.lost == 0
    assert result.errors == 0
    # Every follower got every one of the presenter's 20 viewer states.
    assert [len(p.arrivals) for p in room[1:]] == [20] * (SITES - 1)
    # Each client resynced on a new connection after the restart (a snapshot each time).
    assert all(p.snapshots >= 2 for p in room)
    assert all(not p.refused for p in room)
    viewer = RoomEvent.objects.filter(session=session, type="viewer").count()
    assert viewer == 20
