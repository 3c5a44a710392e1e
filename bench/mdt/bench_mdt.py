"""manage.py bench_mdt: MDT rooms over a real uvicorn and the Redis channel layer.

One room of 30 participants, then 20 such rooms at once: viewer-state fan-out latency
(p50/p99, presenter send to participant receipt), events lost, and the same across a restart
of the ASGI server (clients reconnect with last_seq and resync; time until all did).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import time
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from alliance.models import Alliance, AllianceMember, Tier
from bench.harness.command import BenchCommand
from bench.harness.processes import (
    BenchError,
    Service,
    child_env,
    free_port,
    http,
    start,
    wait_until,
)
from bench.harness.timing import percentile
from bench.mdt.loadclient import Participant, RoomsResult, rooms_run
from consultations import services
from consultations.models import Invitation, MdtSession, RoomEvent
from tenants import access
from tenants.models import AuditEvent, Institution, InstitutionKind, Membership, Role, User

P99_GOAL_MS = 100.0
RESYNC_GOAL_S = 5.0


class Command(BenchCommand):
    help = (
        "MDT rooms: viewer-state fan-out p50/p99, events lost, and resync across an ASGI "
        "server restart (20 rooms x 30 participants by default)."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--rooms", type=int, default=20)
        parser.add_argument(
            "--participants",
            type=int,
            default=30,
            help="per room, the presenter included (one site each)",
        )
        parser.add_argument(
            "--messages",
            type=int,
            default=60,
            help="viewer states each presenter sends per measurement",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.1,
            help="seconds between a presenter's viewer states",
        )
        parser.add_argument("--workers", type=int, default=2, help="uvicorn processes")
        parser.add_argument(
            "--deflate",
            action="store_true",
            help="let uvicorn compress websocket frames (off by default)",
        )
        parser.add_argument(
            "--ws",
            default="auto",
            choices=["auto", "websockets", "websockets-sansio", "wsproto"],
            help="uvicorn's websocket implementation",
        )

    def run(self, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise BenchError("bench_mdt measures the Redis channel layer: set REDIS_URL")
        self.deflate = bool(options["deflate"])
        self.ws_impl = options["ws"]
        prefix = f"mdtb-{timezone.now():%m%d%H%M%S}-{secrets.token_hex(2)}"
        self.say(
            f"building {options['rooms']} rooms x {options['participants']} participants "
            f"({options['participants']} sites) ..."
        )
        rooms_spec = self.world(prefix, options["rooms"], options["participants"])
        port = free_port()
        self.server: Service | None = None
        try:
            self.server = self.start_server(port, options["workers"])
            ws_base, origin = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
            one = self.measure(rooms_spec[:1], ws_base, origin, options, restart=False)
            self.report("one room", "mdt_1room", one, options)
            many = self.measure(rooms_spec, ws_base, origin, options, restart=False)
            self.report(f"{len(rooms_spec)} rooms", "mdt_rooms", many, options)

            async def restart() -> float:
                """Stop uvicorn, start it again; returns when it listens again (the
                moment a client can reconnect), after reporting each step's time."""
                assert self.server is not None
                began = time.monotonic()
                await asyncio.to_thread(self.server.stop)
                stopped = time.monotonic()
                self.server = await asyncio.to_thread(self.launch, port, options["workers"])
                await asyncio.to_thread(self.wait_listening, port)
                listening = time.monotonic()
                await asyncio.to_thread(self.wait_answering, self.server)
                self.say(
                    f"restart: uvicorn stopped after {stopped - began:.2f} s, listened "
                    f"again {listening - stopped:.2f} s later, answered /healthz "
                    f"{time.monotonic() - listening:.2f} s after that"
                )
                return listening

            if len(rooms_spec) > 1:
                across_one = self.measure(rooms_spec[:1], ws_base, origin, options, restart=restart)
                self.report("one room across a restart", "mdt_1room_restart", across_one, options)
            across = self.measure(rooms_spec, ws_base, origin, options, restart=restart)
            self.report(f"{len(rooms_spec)} rooms across a restart", "mdt_restart", across, options)
        finally:
            if self.server is not None:
                self.server.stop()
            if not options["keep_data"]:
                self.purge(prefix)

    # --- The world ------------------------------------------------------------------------

    @transaction.atomic
    def world(self, prefix: str, rooms: int, per_room: int) -> list[list[tuple[int, int, str]]]:
        """`per_room` sites in one alliance; per room one user at each site (the first
        chairs and presents). Returns (session id, user id, token) per participant."""
        sites = [
            Institution.objects.create(
                code=f"{prefix}-{n}",
                name=f"基准医院{n}",
                name_en=f"Bench hospital {n}",
                kind=InstitutionKind.CENTRAL_HOSPITAL
                if n == 0
                else InstitutionKind.COUNTY_HOSPITAL,
                region_code="421000",
            )
            for n in range(per_room)
        ]
        commission = Institution.objects.create(
            code=f"{prefix}-hc",
            name="基准卫健委",
            name_en="Bench commission",
            kind=InstitutionKind.HEALTH_COMMISSION,
            region_code="421000",
        )
        alliance = Alliance.objects.create(
            code=prefix,
            name=f"基准医联体 {prefix}",
            name_en=f"Bench {prefix}",
            region_code="421000",
            lead_hospital=sites[0],
            commission=commission,
        )
        AllianceMember.objects.bulk_create(
            [
                AllianceMember(
                    alliance=alliance,
                    institution=site,
                    tier=Tier.CENTRAL if n == 0 else Tier.COUNTY,
                )
                for n, site in enumerate(sites)
            ]
        )
        now = timezone.now()
        out = []
        for r in range(rooms):
            people = []
            for n, site in enumerate(sites):
                user = User.objects.create(username=f"{prefix}-r{r}-u{n}", name=f"医生{r}-{n}")
                Membership.objects.create(user=user, institution=site, role=Role.MDT_MEMBER)
                people.append(user)
            chair = access.scope_for_user(people[0], institution_id=sites[0].pk)
            session = services.session_create(
                scope=chair,
                title=f"基准 MDT {r}",
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(hours=2),
                alliance=alliance,
            )
            Invitation.objects.bulk_create(
                [
                    Invitation(
                        session=session,
                        user=user,
                        institution=site,
                        role="participant",
                        invited_by=people[0],
                    )
                    for user, site in zip(people[1:], sites[1:], strict=True)
                ]
            )
            out.append(
                [(session.pk, user.pk, AuthToken.objects.create(user=user)[1]) for user in people]
            )
        return out

    def purge(self, prefix: str) -> None:
        sessions = MdtSession.objects.filter(alliance__code=prefix)
        RoomEvent.objects.filter(session__in=sessions).delete()
        sessions.delete()
        users = User.objects.filter(username__startswith=f"{prefix}-")
        AuthToken.objects.filter(user__in=users).delete()
        Membership.objects.filter(user__in=users).delete()
        users.delete()
        Alliance.objects.filter(code=prefix).delete()
        # The audit trail is append-only and names the institutions of the room joins:
        # those sites stay (empty), the rest goes.
        audited = AuditEvent.objects.filter(institution__code__startswith=f"{prefix}-")
        Institution.objects.filter(code__startswith=f"{prefix}-").exclude(
            pk__in=audited.values("institution_id")
        ).delete()

    # --- Running --------------------------------------------------------------------------

    def start_server(self, port: int, workers: int) -> Service:
        server = self.launch(port, workers)
        self.wait_answering(server)
        return server

    def launch(self, port: int, workers: int) -> Service:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "alliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "on",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            str(workers),
            "--timeout-graceful-shutdown",
            "3",
            "--ws",
            self.ws_impl,
            # Room frames are small and go to many sockets: compressing each one for
            # each socket costs more CPU than it saves bytes (see docs/benchmarks.md).
            *([] if self.deflate else ["--ws-per-message-deflate", "false"]),
        ]
        server = start(
            f"uvicorn-{port}-{time.monotonic_ns()}", argv, env=child_env(), log_dir=self.log_dir
        )
        server.base_url = f"http://127.0.0.1:{port}"
        return server

    def wait_listening(self, port: int) -> None:
        """Until the port accepts a TCP connection (uvicorn binds it before its workers
        have imported the app; the connection then waits in the listen queue)."""

        def accepts() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1),
            ):
                return True
            return False

        wait_until(accepts, timeout=120, what="uvicorn to listen", interval=0.02)

    def wait_answering(self, server: Service) -> None:
        session = http()
        wait_until(
            lambda: session.get(f"{server.base_url}/healthz", timeout=5).status_code == 200,
            timeout=120,
            what="uvicorn to answer /healthz",
            watch=[server],
        )

    def measure(
        self,
        spec: list[list[tuple[int, int, str]]],
        ws_base: str,
        origin: str,
        options: dict[str, Any],
        *,
        restart: Any,
    ) -> RoomsResult:
        ids = [room[0][0] for room in spec]

        def stored() -> dict[int, list[int]]:
            seqs: dict[int, list[int]] = {i: [] for i in ids}
            for sid, seq in RoomEvent.objects.filter(session_id__in=ids).values_list(
                "session_id", "seq"
            ):
                seqs[sid].append(seq)
            return seqs

        async def scenario() -> RoomsResult:
            rooms = [
                [
                    Participant(session_id=sid, user_id=uid, token=token, presenter=n == 0)
                    for n, (sid, uid, token) in enumerate(room)
                ]
                for room in spec
            ]
            return await rooms_run(
                rooms,
                ws_base=ws_base,
                origin=origin,
                messages=options["messages"],
                interval=options["interval"],
                stored_seqs=stored,
                restart=restart or None,
            )

        previous = signal.getsignal(signal.SIGINT)
        try:
            return asyncio.run(scenario())
        finally:
            signal.signal(signal.SIGINT, previous)

    def report(self, label: str, key: str, result: RoomsResult, options: dict[str, Any]) -> None:
        lat = result.latencies_ms
        self.say(
            f"{label}: {result.participants} clients, {len(lat)} viewer deliveries"
            f"{'' if result.settled else ' (NOT all caught up within 15 s)'}"
            f", {result.errors} error frames"
        )
        if result.slowest:
            self.say(
                "slowest viewer states (room, state number of "
                f"{options['messages']}, ms until the whole room had it): "
                + ", ".join(f"{room}/{number} {ms:.0f}" for room, number, ms in result.slowest)
            )
        if lat:
            self.out.figure(f"{key}_fanout_p50", percentile(lat, 50), "ms")
            self.out.figure(f"{key}_fanout_p99", percentile(lat, 99), "ms")
        self.out.figure(f"{key}_lost", result.lost, "events")
        if result.joined_seconds is not None:
            self.out.figure(
                f"{key}_joined",
                result.joined_seconds,
                "s",
                f"all {result.participants} clients connected at once, until each had its snapshot",
            )
            self.out.figure(
                f"{key}_settled",
                result.settled_seconds or 0.0,
                "s",
                "until every join was stored and heard by everyone (the presenters start then)",
            )
        if result.resync_seconds is not None:
            self.out.figure(
                f"{key}_all_resynced",
                result.resync_seconds,
                "s",
                "from the restart's start (stop + start of uvicorn)",
            )
            self.out.figure(
                f"{key}_resynced_after_up",
                result.resync_after_up_seconds or 0.0,
                "s",
                "from the new server listening again",
            )
            self.out.figure(
                f"{key}_settled_after_up",
                result.settled_after_up_seconds or 0.0,
                "s",
                "from the new server listening again until every client held "
                "everything its room stored",
            )
            self.out.goal(
                "mdt_resync_5s",
                result.resync_seconds <= RESYNC_GOAL_S,
                f"{result.resync_seconds:.2f} s",
            )
        if lat:
            p99 = percentile(lat, 99)
            self.out.goal(f"{key}_p99_under_100ms", p99 < P99_GOAL_MS, f"{p99:.1f} ms")
        self.out.goal(f"{key}_zero_lost", result.lost == 0, f"{result.lost} lost")
