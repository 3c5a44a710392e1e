"""Many MDT room clients in one asyncio loop, against a real ASGI server (bench and tests).

Each participant keeps one socket, reconnects on its own with `?last_seq=` after a drop,
and records every sequence number it got (live or replayed). The presenter of each room
sends viewer states whose slice number names the message, so a receiver's arrival time
minus the presenter's send time is the fan-out latency. Which events a client should have
is decided afterwards from the database, not from what was sent: lost means stored and
never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

RETRY_SECONDS = 0.1  # a presenter's send that failed, tried again


def reconnect_delay(attempt: int) -> float:
    """room.js's backoff (its reconnectDelay): the window doubles from 0.25 s up to 2 s;
    the wait is half the window plus a random part of the other half."""
    window = min(2.0, 0.25 * 2 ** (attempt - 1))
    return window / 2 + random.random() * window / 2  # noqa: S311 - spreading, not secrets


@dataclass
class Participant:
    session_id: int
    user_id: int
    token: str
    presenter: bool = False
    seqs: set[int] = field(default_factory=set)
    contiguous: int = 0
    first_seq: int | None = None
    snapshots: int = 0
    last_snapshot_at: float = 0.0
    arrivals: dict[int, float] = field(default_factory=dict)  # viewer slice -> arrival time
    echoes: set[int] = field(default_factory=set)  # the presenter's own states, stored
    refused: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    ws: ClientConnection | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, frame: dict[str, Any]) -> None:
        now = time.monotonic()
        kind, payload = frame.get("event"), frame.get("payload") or {}
        if kind == "snapshot":
            self.snapshots += 1
            self.last_snapshot_at = now
            if self.first_seq is None:
                self.first_seq = payload["last_seq"]
            # The replay before it brought everything up to its last_seq.
            self.contiguous = max(self.contiguous, payload["last_seq"])
            self.connected.set()
        elif kind == "room":
            self.seqs.add(payload["seq"])
            while self.contiguous + 1 in self.seqs:
                self.contiguous += 1
            if payload["type"] == "viewer":
                number = payload["data"]["state"]["slice"]
                if self.presenter:
                    self.echoes.add(number)
                else:
                    self.arrivals.setdefault(number, now)
        elif kind == "error":
            self.errors.append(payload)


async def participant_run(
    p: Participant, *, ws_base: str, origin: str, stop: asyncio.Event
) -> None:
    """Stay in the room until `stop`: reconnect after every drop, resuming at last_seq."""
    headers = {"Authorization": f"Token {p.token}", "Origin": origin}
    attempt = 0
    while not stop.is_set():
        query = f"?last_seq={p.contiguous}" if p.contiguous else ""
        try:
            async with connect(
                f"{ws_base}/ws/mdt/{p.session_id}/{query}",
                additional_headers=headers,
                open_timeout=10,
                max_queue=None,
                proxy=None,
            ) as ws:
                p.ws = ws
                attempt = 0
                async for raw in ws:
                    p.take(json.loads(raw))
        except InvalidStatus as exc:
            p.refused.append(exc.response.status_code)
        except (OSError, TimeoutError, WebSocketException):
            pass
        p.ws = None
        p.connected.clear()
        if not stop.is_set():
            attempt = min(attempt + 1, 6)
            await asyncio.sleep(reconnect_delay(attempt))


def viewer_message(slice_number: int) -> str:
    return json.dumps(
        {
            "type": "viewer",
            "state": {
                "series": "1.2.826.0.1.3680043.10.1",
                "slice": slice_number,
                "window": {"center": 40 + slice_number % 7, "width": 400},
                "zoom": 1.5,
                "pan": {"x": 3, "y": -2},
                "annotations": [{"kind": "arrow", "points": [[10, 10], [40, 50]]}],
            },
        }
    )


async def presenter_send(
    p: Participant, numbers: Iterable[int], *, interval: float, sent: dict[int, float]
) -> None:
    """Send one viewer state per number; a send that fails waits for the reconnect and is
    sent again (it never reached the server, so it was never stored)."""
    for number in numbers:
        while True:
            await p.connected.wait()
            ws = p.ws
            if ws is None:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                sent[number] = time.monotonic()
                await ws.send(viewer_message(number))
                break
            except WebSocketException:
                await asyncio.sleep(RETRY_SECONDS)
        await asyncio.sleep(interval)


async def until(check: Any, *, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(interval)
    return bool(check())


async def close_all(participants: Iterable[Participant]) -> None:
    for p in participants:
        if p.ws is not None:
            with contextlib.suppress(Exception):
                await p.ws.close()


def lost_events(participants: Iterable[Participant], stored: dict[int, list[int]]) -> int:
    """Events stored for a room after a participant's first snapshot that it never got.

    `stored` maps a session id to the sequence numbers in its log at the end of the run.
    """
    lost = 0
    for p in participants:
        start = p.first_seq or 0
        wanted = {s for s in stored.get(p.session_id, []) if s > start}
        lost += len(wanted - p.seqs)
    return lost


def latencies_ms(
    participants: Iterable[Participant], sent: dict[int, dict[int, float]]
) -> list[float]:
    out = []
    for p in participants:
        for number, arrived in p.arrivals.items():
            at = sent.get(p.session_id, {}).get(number)
            if at is not None:
                out.append((arrived - at) * 1000)
    return out


def slowest_states(
    participants: Iterable[Participant], sent: dict[int, dict[int, float]], count: int = 3
) -> list[tuple[int, int, float]]:
    """The `count` viewer states that took longest to reach their whole room: (room, state
    number, ms until its last receiver had it). A p99 over a room's deliveries is set by
    one or two such states, so the bench names them."""
    worst: dict[tuple[int, int], float] = {}
    for p in participants:
        for number, arrived in p.arrivals.items():
            at = sent.get(p.session_id, {}).get(number)
            if at is not None:
                key = (p.session_id, number)
                worst[key] = max(worst.get(key, 0.0), (arrived - at) * 1000)
    ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:count]
    return [(room, number, ms) for (room, number), ms in ranked]


@dataclass
class RoomsResult:
    latencies_ms: list[float]
    lost: int
    participants: int
    slowest: list[tuple[int, int, float]] = field(default_factory=list)
    resync_seconds: float | None = None  # restart begun -> every client resynced
    resync_after_up_seconds: float | None = None  # server listening -> every client resynced
    settled: bool = True
    errors: int = 0
    joined_seconds: float | None = None  # first connect -> every client had its snapshot
    settled_seconds: float | None = None  # ... -> every join stored and heard by all
    settled_after_up_seconds: float | None = None  # server listening -> all caught up


async def rooms_run(
    rooms: list[list[Participant]],
    *,
    ws_base: str,
    origin: str,
    messages: int,
    interval: float,
    stored_seqs: Callable[[], dict[int, list[int]]],
    restart: Callable[[], Awaitable[float]] | None = None,
) -> RoomsResult:
    """Everyone joins; each room's presenter sends `messages` viewer states; with `restart`,
    the server is restarted halfway (restart() returns when it listens again, giving the
    monotonic time it did) and the rest is sent after the clients have come back."""
    everyone = [p for room in rooms for p in room]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(participant_run(p, ws_base=ws_base, origin=origin, stop=stop))
        for p in everyone
    ]
    sent: dict[int, dict[int, float]] = {room[0].session_id: {} for room in rooms}
    result = RoomsResult(latencies_ms=[], lost=0, participants=len(everyone))
    stored: dict[int, list[int]] = {}

    async def caught_up() -> bool:
        nonlocal stored
        stored = await asyncio.to_thread(stored_seqs)
        return all(p.contiguous >= max(stored.get(p.session_id, [0]), default=0) for p in everyone)

    async def settle(timeout: float) -> bool:
        """Until every client holds, without a gap, everything its room has stored."""
        deadline = time.monotonic() + timeout
        while not await caught_up() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return await caught_up()

    try:
        began = time.monotonic()
        if not await until(lambda: all(p.snapshots for p in everyone), timeout=60):
            raise RuntimeError(
                f"only {sum(bool(p.snapshots) for p in everyone)} of {len(everyone)} clients joined"
            )
        result.joined_seconds = time.monotonic() - began
        # The presenters start once the room has settled: every join stored and heard by
        # everyone (the joins' own traffic is measured as joined/settled, not as fan-out).
        joins = len(everyone)
        while time.monotonic() - began < 120:
            if await caught_up() and sum(len(v) for v in stored.values()) >= joins:
                break
            await asyncio.sleep(0.2)
        result.settled_seconds = time.monotonic() - began
        first = range(messages // 2 if restart else messages)
        await asyncio.gather(
            *(
                presenter_send(room[0], first, interval=interval, sent=sent[room[0].session_id])
                for room in rooms
            )
        )
        if restart is not None:
            # A message still queued in the server when it stops was never stored; the
            # presenter knows what was by its echo (a real client resends the latest state).
            await until(lambda: all(set(first) <= room[0].echoes for room in rooms), timeout=30)
            before = {id(p): p.snapshots for p in everyone}
            began = time.monotonic()
            up_at = await restart()
            await until(lambda: all(p.snapshots > before[id(p)] for p in everyone), timeout=60)
            done = max(p.last_snapshot_at for p in everyone)
            result.resync_seconds = done - began
            result.resync_after_up_seconds = done - up_at
            await settle(60)
            result.settled_after_up_seconds = time.monotonic() - up_at
            rest = range(messages // 2, messages)
            await asyncio.gather(
                *(
                    presenter_send(room[0], rest, interval=interval, sent=sent[room[0].session_id])
                    for room in rooms
                )
            )
        # Settle: every client holds, without a gap, everything its room has stored.
        result.settled = await settle(15)
        result.lost = lost_events(everyone, stored)
        result.latencies_ms = latencies_ms(everyone, sent)
        result.slowest = slowest_states(everyone, sent)
        result.errors = sum(len(p.errors) for p in everyone)
    finally:
        stop.set()
        await close_all(everyone)
        await asyncio.gather(*tasks, return_exceptions=True)
    return result
