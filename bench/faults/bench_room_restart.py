"""manage.py bench_room_restart: restart the web process with MDT rooms open; count what the
rooms lost, repeated or delivered late.

Rooms of `--clients` participants each, on a real uvicorn (`--workers` processes, as
production runs several), joined by clients that behave as the room page does
(bench/faults/room_client.py: in-order apply, resume with `?last_seq=`, an outbox of what was
said until the log shows it stored). Every client says something every `--interval` seconds
and each room's presenter moves the shared viewer as often, without pause, from before the
first restart until after the last. The web process is stopped (SIGTERM: uvicorn's graceful
shutdown; SIGKILL: a crash) and started again on the same port, once per `--restarts` entry.
Then, within a generous bound, every client must hold every event of its room; the figures:

- chats said, stored, lost (said and not applied by every client of the room, the sayer
  included), duplicated (stored twice, or applied twice by one client);
- room events missed (stored after a client joined and never applied by it);
- the delay from saying a chat to each client applying it: all chats, and those said while
  every client was in sync (outside the restart windows), whose late tail is the symptom
  this bench was written for;
- each restart's steps: stopped, listening again, every client back in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from django.utils import timezone

from bench.faults.room_client import RoomClient
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
from bench.mdt.bench_mdt import Command as MdtCommand
from consultations.models import RoomEvent

LATE_SECONDS = 5.0  # a chat said while everyone was in sync and applied later than this is late
SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL}


@dataclass
class Restart:
    how: str
    began: float  # monotonic seconds
    stopped: float
    up: float  # /healthz answers again
    in_sync: float = 0.0  # every client had a snapshot from the new process
    drained: float = 0.0  # ... and every message said meanwhile was stored and heard


class Command(BenchCommand):
    help = (
        "Restart uvicorn (SIGTERM, then SIGKILL) while MDT rooms talk without pause; count "
        "chats and room events lost or duplicated, and the delays, with the room page's "
        "reconnect and outbox."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--rooms", type=int, default=3, help="MDT rooms open")
        parser.add_argument("--clients", type=int, default=2, help="participants per room")
        parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
        parser.add_argument(
            "--interval", type=float, default=0.5, help="seconds between two chats of a client"
        )
        parser.add_argument(
            "--restarts",
            default="term,kill",
            help="how the web process is stopped, in order (term: SIGTERM, kill: SIGKILL)",
        )
        parser.add_argument(
            "--between", type=float, default=3.0, help="seconds of talk before each restart"
        )
        parser.add_argument(
            "--after", type=float, default=3.0, help="seconds of talk after the last restart"
        )
        parser.add_argument(
            "--settle",
            type=float,
            default=120.0,
            help="at most this many seconds, after the talk, for every client to hold all",
        )
        parser.add_argument(
            "--no-resend",
            action="store_true",
            help="clients without the outbox (the room page before it): what was said while "
            "the socket was down is dropped",
        )

    # --- The run --------------------------------------------------------------------------

    def run(self, **options: Any) -> None:
        self.options = options
        hows = [h.strip() for h in options["restarts"].split(",") if h.strip()]
        if not hows or any(h not in SIGNALS for h in hows):
            raise BenchError("--restarts lists term and/or kill, e.g. term,kill")
        prefix = f"rr-{timezone.now():%m%d%H%M%S}-{secrets.token_hex(2)}"
        mdt = MdtCommand()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = child_env()
        self.web: Service | None = None
        try:
            spec = mdt.world(prefix, options["rooms"], options["clients"])
            self.web, _up = self.start_web()
            self.say(
                f"{options['rooms']} rooms x {options['clients']} clients, a chat every "
                f"{options['interval']:g} s per client (and a viewer state per presenter), "
                f"uvicorn x{options['workers']} on :{self.port}, restarts: {', '.join(hows)}, "
                f"outbox {'off' if options['no_resend'] else 'on'}"
            )
            clients = [
                RoomClient(
                    session_id=sid, user_id=uid, token=token, resend=not options["no_resend"]
                )
                for room in spec
                for sid, uid, token in room
            ]
            presenters = {room[0][1] for room in spec}
            restarts = asyncio.run(self.scenario(clients, presenters, hows))
            self.report(clients, restarts)
        finally:
            if self.web is not None:
                self.web.stop(timeout=20)
            if not options["keep_data"]:
                mdt.purge(prefix)

    async def scenario(
        self, clients: list[RoomClient], presenters: set[int], hows: list[str]
    ) -> list[Restart]:
        options = self.options
        stop, quiet = asyncio.Event(), asyncio.Event()
        ws_base = self.base.replace("http://", "ws://", 1)
        runs = [
            asyncio.create_task(c.run(ws_base=ws_base, origin=self.base, stop=stop))
            for c in clients
        ]
        restarts: list[Restart] = []
        try:
            await _until(lambda: all(c.snapshots for c in clients), 60, "every client to join")

            async def talk(client: RoomClient) -> None:
                n = 0
                while not quiet.is_set():
                    n += 1
                    await client.say(f"{client.user_id}#{n}")
                    if client.user_id in presenters:
                        await client.show(n)
                    await asyncio.sleep(options["interval"])

            talkers = [asyncio.create_task(talk(c)) for c in clients]
            for how in hows:
                await asyncio.sleep(options["between"])
                before = {id(c): c.snapshots for c in clients}
                restart = await asyncio.to_thread(self.restart, how)
                await _until(
                    lambda before=before: all(  # type: ignore[misc]
                        c.snapshots > before[id(c)] and c.ready for c in clients
                    ),
                    120,
                    "every client back in sync",
                )
                restart.in_sync = max(c.last_snapshot_at for c in clients)
                # What was said during the outage is sent when the room is back: the delay
                # of the chats said after it includes this catch-up.
                said = {cid for c in clients for cid in c.sent_at}
                if not options["no_resend"]:  # without the outbox some never arrive
                    await _until(
                        lambda said=said: all(  # type: ignore[misc]
                            said <= c.chats.keys() | _others(c, clients) for c in clients
                        ),
                        300,
                        "the outage's chats to reach every client",
                    )
                restart.drained = time.monotonic()
                restarts.append(restart)
                self.say(f"restart ({how}) began at +{restart.began - restarts[0].began:.2f} s")
                self.say(
                    f"restart ({how}): stopped in {restart.stopped - restart.began:.2f} s, "
                    f"listening {restart.up - restart.stopped:.2f} s later, every client in "
                    f"sync {restart.in_sync - restart.up:.2f} s after that"
                )
            await asyncio.sleep(options["after"])
            quiet.set()
            await asyncio.gather(*talkers)
            settle_began = time.monotonic()
            self.final_stored: dict[int, list[int]] = {}
            settled = await _until_async(
                lambda: self.all_held(clients), options["settle"], interval=0.5
            )
            self.settled = settled
            self.settle_seconds = time.monotonic() - settle_began
        finally:
            stop.set()
            for c in clients:
                await c.leave()
            await asyncio.gather(*runs, return_exceptions=True)
        return restarts

    async def all_held(self, clients: list[RoomClient]) -> bool:
        """Every client holds all its room stored, nothing waits in an outbox, and nothing
        was stored since the previous look (a message still on its way would come later)."""
        stored = await asyncio.to_thread(self.stored_seqs, {c.session_id for c in clients})
        previous, self.final_stored = self.final_stored, stored
        return stored == previous and all(
            not c.outbox
            and c.last_seq >= max(stored.get(c.session_id, [0]), default=0)
            and not c.pending
            for c in clients
        )

    @staticmethod
    def stored_seqs(session_ids: set[int]) -> dict[int, list[int]]:
        seqs: dict[int, list[int]] = {}
        for sid, seq in RoomEvent.objects.filter(session_id__in=session_ids).values_list(
            "session_id", "seq"
        ):
            seqs.setdefault(sid, []).append(seq)
        return seqs

    # --- The web process ------------------------------------------------------------------

    def start_web(self) -> tuple[Service, float]:
        """uvicorn, started; with when it first answered (a worker up: clients come back
        then) once every worker answers."""
        web = start(
            f"web-{time.monotonic_ns()}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "alliance.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.options["workers"]),
                "--lifespan",
                "on",
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "5",
                "--ws-per-message-deflate",
                "false",
            ],
            env=self.env,
            log_dir=self.log_dir,
        )
        session = http()
        wait_until(
            lambda: session.get(f"{self.base}/healthz", timeout=5).ok,
            timeout=180,
            what="uvicorn to answer /healthz",
            watch=[web],
            interval=0.05,
        )
        up = time.monotonic()
        workers = self.options["workers"]
        wait_until(
            lambda: workers < 2 or len(web.processes()) >= workers + 1,
            timeout=180,
            what="every uvicorn worker to start",
            watch=[web],
        )
        return web, up

    def restart(self, how: str) -> Restart:
        web = self.web
        assert web is not None
        processes = web.processes()
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(web.pid, SIGNALS[how])
        try:
            web.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            web.stop(timeout=1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(web.pid, signal.SIGKILL)  # workers a crash left behind
        # Every worker gone (they hold the listening socket): then the port is free again.
        psutil.wait_procs(processes, timeout=30)
        stopped = time.monotonic()
        self.web, up = self.start_web()
        return Restart(how=how, began=began, stopped=stopped, up=up)

    # --- Figures --------------------------------------------------------------------------

    def report(self, clients: list[RoomClient], restarts: list[Restart]) -> None:
        rooms: dict[int, list[RoomClient]] = {}
        for c in clients:
            rooms.setdefault(c.session_id, []).append(c)
        stored_chats: Counter[str] = Counter()
        chat_seqs: dict[str, int] = {}
        for seq, cid in RoomEvent.objects.filter(
            session_id__in=rooms, type="chat", payload__has_key="cid"
        ).values_list("seq", "payload__cid"):
            stored_chats[cid] += 1
            chat_seqs[cid] = seq
        # What the rooms held when the clients had settled (their goodbyes come after).
        stored = self.final_stored

        said = {cid: (c, at) for c in clients for cid, at in c.sent_at.items()}
        lost_chats: set[str] = set()
        delays: list[float] = []
        steady: list[float] = []
        windows = [(r.began, r.drained) for r in restarts]
        first_restart = restarts[0].began if restarts else float("inf")
        before: list[float] = []
        for cid, (sayer, at) in said.items():
            for receiver in rooms[sayer.session_id]:
                arrived = receiver.chats.get(cid)
                if arrived is None:
                    lost_chats.add(cid)
                    continue
                delays.append(arrived - at)
                if at < first_restart:
                    before.append(arrived - at)
                if not any(start <= at <= end for start, end in windows):
                    steady.append(arrived - at)
        missed = 0
        for c in clients:
            wanted = {s for s in stored.get(c.session_id, []) if s > (c.first_seq or 0)}
            gone = sorted(wanted - set(c.applied))
            missed += len(gone)
            if gone:
                self.say(
                    f"  user {c.user_id} (room {c.session_id}) never applied {len(gone)} events: "
                    f"{_ranges(gone)}; its sockets and snapshots:"
                )
                began = restarts[0].began if restarts else 0.0
                for at, what, detail in c.history:
                    self.say(f"    {at - began:+8.2f} s {what} {detail}")
        figure = self.out.figure
        figure("chats_said", len(said), "")
        figure("chats_said_out_of_sync", sum(c.offline for c in clients), "", "socket down")
        figure("chats_stored", len(stored_chats), "")
        figure(
            "chats_resent", sum(c.resent for c in clients), "messages", "outbox, after a snapshot"
        )
        figure("chats_dropped", sum(c.dropped for c in clients), "", "never sent (no outbox)")
        figure("chats_lost", len(lost_chats), "", "said, not applied by every client")
        figure(
            "chats_duplicated",
            sum(n - 1 for n in stored_chats.values())
            + sum(n - 1 for c in clients for n in c.chat_applied.values()),
            "",
            "stored twice, or applied twice by a client",
        )
        figure("room_events_stored", sum(len(v) for v in stored.values()), "")
        figure("room_events_missed", missed, "", "stored after a client joined, never applied")
        figure(
            "room_events_applied_twice",
            sum(n - 1 for c in clients for n in c.applied.values()),
            "",
        )
        if delays:
            figure("delay_max_seconds", max(delays), "s", "said -> applied, every chat")
            figure("delay_p50_seconds", percentile(delays, 50), "s")
            figure("delay_p99_seconds", percentile(delays, 99), "s")
        if before:
            figure("before_restart_delay_p50_seconds", percentile(before, 50), "s")
            figure("before_restart_delay_p99_seconds", percentile(before, 99), "s")
            figure("before_restart_delay_max_seconds", max(before), "s")
        if steady:
            figure(
                "steady_delay_max_seconds",
                max(steady),
                "s",
                "chats said outside the restarts and their catch-up",
            )
            figure("steady_delay_p99_seconds", percentile(steady, 99), "s")
        figure(
            "late_chats",
            sum(d > LATE_SECONDS for d in steady),
            "",
            f"said in sync, applied more than {LATE_SECONDS:g} s later",
        )
        for n, r in enumerate(restarts, 1):
            figure(f"restart{n}_{r.how}_stopped_seconds", r.stopped - r.began, "s")
            figure(f"restart{n}_{r.how}_listening_seconds", r.up - r.stopped, "s")
            figure(f"restart{n}_{r.how}_in_sync_after_up_seconds", r.in_sync - r.up, "s")
            figure(f"restart{n}_{r.how}_outage_seconds", r.in_sync - r.began, "s")
            figure(
                f"restart{n}_{r.how}_caught_up_seconds",
                r.drained - r.began,
                "s",
                "until every chat said so far had reached every client",
            )
        figure(
            "settled",
            int(self.settled),
            "",
            f"every client held all, {self.settle_seconds:.1f} s after the talk",
        )
        for cid in sorted(lost_chats)[:10]:
            sayer = said[cid][0]
            self.say(
                f"  lost {cid} (room {sayer.session_id}, stored {stored_chats.get(cid, 0)}x"
                f" at seq {chat_seqs.get(cid)}); missing at users "
                f"{[r.user_id for r in rooms[sayer.session_id] if cid not in r.chats]}"
            )


def _others(client: RoomClient, clients: list[RoomClient]) -> set[str]:
    """The chats `client` is not expected to hear: those said in other rooms."""
    return {cid for c in clients if c.session_id != client.session_id for cid in c.sent_at}


def _ranges(seqs: list[int]) -> str:
    out: list[str] = []
    for seq in seqs:
        if out and int(out[-1].split("-")[-1]) == seq - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{seq}"
        else:
            out.append(str(seq))
    return ", ".join(out[:12]) + (" ..." if len(out) > 12 else "")


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _until_async(check: Callable[[], Any], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
