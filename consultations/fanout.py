"""One subscription per room and process: room events reach a process once, then its sockets.

With the Redis channel layer, a group of 30 sockets costs 30 Redis messages per event, and
each process takes its messages off Redis one blocking pop at a time: 20 rooms of 30 at ten
viewer states a second is 6,000 pops a second. Here each process joins a room's group with
one channel of its own and hands every event to its local sockets in memory: one message
per process per event.

The layer delivers at most once (a message can be lost, e.g. when a closing socket cancels a
blocking read that had taken another channel's message off Redis: django/channels#1683,
channels_redis#366). So once a second each process compares, in one query, the last
sequence number of each of its rooms with what it has delivered; a room still behind after
a whole tick gets the missing events from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from channels.db import DatabaseSyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from . import selectors, services

logger = logging.getLogger(__name__)

# Each call checks a connection out of the process's pool and gives it back (Django's
# close_old_connections around every call, as Channels does); keep this below the pool size.
# Four, not more: the threads share the GIL with the event loop, and under bench_mdt's
# 600-socket rejoin 8 threads per worker were slower than 4 (joins 5.1-6.5 s against
# 4.6-5.3 s); 2 were too few (the first viewer states after a restart waited 330-480 ms).
DB_THREADS = 4
_db_threads = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="mdt-db")
R = TypeVar("R")
REPAIR_EVERY = 1.0  # seconds between two looks at the logs of this process's rooms
# redis-py 8 caps a pool at 100 connections and fails at once beyond it; hundreds of sockets
# joining together would each hold one. At most this many layer calls at once per loop.
LAYER_CALLS = 48
LEAVE_WAIT = 5.0  # seconds a socket entering a room waits for the room's last leave here


def rooms_layer() -> Any:
    """The channel layer the rooms' events travel on (settings.ROOMS_CHANNEL_LAYER)."""
    return get_channel_layer(settings.ROOMS_CHANNEL_LAYER)


def db(func: Callable[..., R]) -> Callable[..., Any]:
    """`func` on the room's database threads (not Channels' single thread), awaitable."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_db_threads)


# Audit writes take the trail's one chain lock in turn: on a thread of their own they queue
# there, not in front of the room's events. A room's joins are written together: after a
# server restart the whole room rejoins at once, and 600 joins written one by one were 600
# lock-and-insert transactions (with a user and an institution read for each).
_audit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdt-audit")
AUDIT_BATCH = 200


def audit_join_soon(session_id: int, actor: services.Actor, role: str) -> None:
    """Queue a join's audit row (written within moments, with the joins beside it); the
    caller does not wait for it."""
    hub().audit_join(services.Join(session_id, actor, role, timezone.now()))


async def audits_written() -> None:
    """Wait for the audit rows queued so far (a server shutting down, or a test)."""
    await hub().audits_written()


def room_message(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "live.event", "event": "room", "payload": frame}


class SeqSet:
    """Sequence numbers of a room's log already taken care of: every one up to `upto`, and
    some beyond it (events can arrive out of order: the layer, the log's repair, a replay)."""

    __slots__ = ("ahead", "upto")

    def __init__(self, upto: int = 0) -> None:
        self.upto = upto
        self.ahead: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq <= self.upto or seq in self.ahead

    def add(self, seq: int) -> None:
        if seq == self.upto + 1 and not self.ahead:
            self.upto = seq  # in order, nothing ahead: the usual case
        elif seq > self.upto:
            self.ahead.add(seq)
            self._collapse()

    def through(self, seq: int) -> None:
        """Every number up to `seq` as well."""
        self.upto = max(self.upto, seq)
        self._collapse()

    def _collapse(self) -> None:
        self.ahead = {s for s in self.ahead if s > self.upto}
        while self.upto + 1 in self.ahead:
            self.upto += 1
            self.ahead.discard(self.upto)


class Member(Protocol):
    async def deliver(self, frame: dict[str, Any], text: str) -> None: ...


def room_text(frame: dict[str, Any]) -> str:
    """The room frame as sent, encoded once for all the sockets it goes to."""
    return json.dumps({"event": "room", "payload": frame}, ensure_ascii=False)


class LocalRoom:
    """The sockets of one room in this process, and what has reached them."""

    def __init__(self, hub: Hub, session_id: int) -> None:
        self.hub, self.session_id = hub, session_id
        self.members: set[Member] = set()
        self.channel = ""
        self.ready = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.delivered = SeqSet()
        self.stuck_at = -1

    async def deliver(self, frame: dict[str, Any]) -> None:
        seq = frame["seq"]
        if seq in self.delivered:
            return
        self.delivered.add(seq)
        text = room_text(frame)
        for member in list(self.members):
            try:
                await member.deliver(frame, text)
            except Exception:  # that socket is closing; the others still get the event
                logger.debug("room %s: a socket missed #%s", self.session_id, seq, exc_info=True)

    async def start(self, layer: Any) -> None:
        """Subscribe, then take the room's last sequence number as delivered: whatever was
        stored before is owed to no one here, since every member resyncs from the log after
        this (the consumer enters the room before its replay and snapshot)."""
        try:
            self.channel = await layer.new_channel()
            async with self.hub.layer_calls:
                await layer.group_add(services.room_group(self.session_id), self.channel)
            self.reader = asyncio.create_task(self._read(layer))
            last = await db(selectors.rooms_last_seq)(session_ids=[self.session_id])
            self.delivered.through(last.get(self.session_id, 0))
        finally:
            self.ready.set()

    async def _read(self, layer: Any) -> None:
        try:
            while True:
                message = await layer.receive(self.channel)
                if message.get("event") == "room":
                    await self.deliver(message["payload"])
        except asyncio.CancelledError:
            raise
        except BaseException:
            logger.exception("room %s: stopped reading the channel layer", self.session_id)
            raise

    async def stop(self, layer: Any) -> None:
        if self.reader is not None:
            self.reader.cancel()
        with contextlib.suppress(Exception):
            async with self.hub.layer_calls:
                await layer.group_discard(services.room_group(self.session_id), self.channel)

    async def repair(self, last_seq: int) -> None:
        """Deliver from the log what the layer lost: events up to `last_seq` still missing
        since the previous tick (one committed just now is on its way and gets its chance)."""
        upto = self.delivered.upto
        if upto >= last_seq or upto != self.stuck_at:
            self.stuck_at = upto
            return
        missing = 0
        for frame in await db(selectors.events_after)(session_id=self.session_id, after=upto):
            if frame["seq"] <= last_seq:
                missing += frame["seq"] not in self.delivered
                await self.deliver(frame)
        if missing:
            logger.info(
                "room %s: %d events the channel layer had not delivered after %s s, "
                "sent from the log",
                self.session_id,
                missing,
                REPAIR_EVERY,
            )
        self.stuck_at = self.delivered.upto


class Hub:
    """This event loop's rooms (a process has one loop; each test has its own)."""

    def __init__(self) -> None:
        self.rooms: dict[int, LocalRoom] = {}
        self.layer_calls = asyncio.Semaphore(LAYER_CALLS)
        self.watch: asyncio.Task[None] | None = None
        self.joins: list[services.Join] = []
        self.writer: asyncio.Task[None] | None = None
        # Rooms whose last socket here left, still leaving the layer's group. A socket that
        # enters such a room waits for that: the pub/sub layer would otherwise take the new
        # subscription for the old one and then drop it (group_add finds the group still
        # subscribed, the old group_discard unsubscribes it after), and the room would hear
        # nothing but the log repair's once-a-second catch-up: events late by a second or
        # more, for as long as the room stays open here.
        self.leaving: dict[int, asyncio.Task[None]] = {}

    def audit_join(self, join: services.Join) -> None:
        self.joins.append(join)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write_joins())

    async def _write_joins(self) -> None:
        write = DatabaseSyncToAsync(
            services.room_audit_joins, thread_sensitive=False, executor=_audit_thread
        )
        while self.joins:
            batch = self.joins[:AUDIT_BATCH]
            del self.joins[:AUDIT_BATCH]
            try:
                await write(batch)
            except Exception:
                logger.exception("MDT audit rows of %d joins not written: %s", len(batch), batch)

    async def audits_written(self) -> None:
        while self.writer is not None and not self.writer.done():
            await asyncio.wait([self.writer])

    async def enter(self, member: Member, session_id: int, layer: Any) -> LocalRoom:
        """Add `member` to its room here; when this returns the room hears every event."""
        stopping = self.leaving.get(session_id)
        if stopping is not None and session_id not in self.rooms:
            # Bounded: a layer that hangs (Redis away) must not keep the socket out for good.
            await asyncio.wait([stopping], timeout=LEAVE_WAIT)
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = LocalRoom(self, session_id)
            room.members.add(member)
            await room.start(layer)
        else:
            room.members.add(member)
            await room.ready.wait()
        if self.watch is None or self.watch.done():
            self.watch = asyncio.create_task(self._watch())
        return room

    async def leave(self, member: Member, session_id: int, layer: Any) -> None:
        room = self.rooms.get(session_id)
        if room is None:
            return
        room.members.discard(member)
        if not room.members:
            del self.rooms[session_id]
            if not self.rooms and self.watch is not None:
                self.watch.cancel()
            stopping = asyncio.ensure_future(room.stop(layer))
            self.leaving[session_id] = stopping

            def left(task: asyncio.Future[None]) -> None:
                if self.leaving.get(session_id) is task:
                    del self.leaving[session_id]

            stopping.add_done_callback(left)
            await asyncio.shield(stopping)

    async def _watch(self) -> None:
        while self.rooms:
            await asyncio.sleep(REPAIR_EVERY)
            try:
                last = await db(selectors.rooms_last_seq)(session_ids=list(self.rooms))
            except Exception:  # the database is away: look again next tick
                logger.warning("MDT rooms: could not read their logs", exc_info=True)
                continue
            for session_id, room in list(self.rooms.items()):
                try:
                    await room.repair(last.get(session_id, 0))
                except Exception:
                    logger.warning("room %s: repair failed", session_id, exc_info=True)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
