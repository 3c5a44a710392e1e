"""An MDT room client that behaves as the room page does (consultations/static/consultations/
room.js), for the restart bench and its test.

It applies room events in sequence order (holding those ahead of a gap, asking `sync` for a
gap that does not fill within a second), resumes with `?last_seq=` after a drop, and keeps
an outbox: every chat, hand or viewer message carries a client id (`cid`) and stays in the
outbox until the room's log shows it stored (its own event, live or replayed); after each
snapshot what is still there is sent again, marked `resent`. With `resend=False` it is the
page as it was before the outbox: a message typed while the socket is down is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from bench.mdt.loadclient import reconnect_delay

GAP_SECONDS = 1.0  # room.js: a gap still open after this is asked for with "sync"


@dataclass
class RoomClient:
    session_id: int
    user_id: int
    token: str
    resend: bool = True
    last_seq: int = 0  # every event up to here applied, without a gap
    first_seq: int | None = None  # the last_seq of the first snapshot: what came before
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    applied: Counter[int] = field(default_factory=Counter)  # seq -> times applied
    chats: dict[str, float] = field(default_factory=dict)  # cid -> when first applied
    chat_applied: Counter[str] = field(default_factory=Counter)  # cid -> times applied
    sent_at: dict[str, float] = field(default_factory=dict)  # own cid -> first attempt
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sent_on: dict[str, int] = field(default_factory=dict)  # cid -> the socket it went out on
    socket_no: int = 0
    syncing: bool = False
    dropped: int = 0  # chats not sent at all (no outbox, socket down)
    offline: int = 0  # chats said while the room was not in sync (socket down or resyncing)
    resent: int = 0
    snapshots: int = 0
    last_snapshot_at: float = 0.0
    refused: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    ws: ClientConnection | None = None
    ready: bool = False  # a snapshot came on the current socket
    counter: int = 0
    # (monotonic, what, detail): the sockets opened and the snapshots taken, for a report
    # that must say why an event was missed.
    history: list[tuple[float, str, str]] = field(default_factory=list)
    frames_on_socket: list[int] = field(default_factory=list)  # room seqs on this socket

    # --- What arrives ---------------------------------------------------------------------

    async def take(self, frame: dict[str, Any]) -> None:
        kind, payload = frame.get("event"), frame.get("payload") or {}
        if kind == "room":
            self.frames_on_socket.append(payload["seq"])
            self.received(payload)
        elif kind == "snapshot":
            got = self.frames_on_socket
            self.history.append(
                (
                    time.monotonic(),
                    "snapshot",
                    f"held {self.last_seq}, snapshot {payload['last_seq']}, "
                    f"pending {sorted(self.pending)[:3]}..{len(self.pending)}, "
                    f"{len(got)} room frames before it "
                    f"({min(got, default=0)}-{max(got, default=0)})",
                )
            )
            self.frames_on_socket = []
            self.syncing = False
            self.snapshots += 1
            self.last_snapshot_at = time.monotonic()
            self.pending = {s: f for s, f in self.pending.items() if s > payload["last_seq"]}
            self.last_seq = max(self.last_seq, payload["last_seq"])
            if self.first_seq is None:
                self.first_seq = payload["last_seq"]
            self.drain()
            self.ready = True
            if self.resend:
                # What did not go out on this socket goes again (room.js's resendOutbox).
                for message in list(self.outbox):
                    if self.sent_on.get(message["cid"]) == self.socket_no:
                        continue
                    self.sent_on[message["cid"]] = self.socket_no
                    self.resent += message["type"] == "chat"
                    await self.send_now({**message, "resent": True})
        elif kind == "error":
            self.errors.append(payload)
            if payload.get("cid"):  # refused: shown to the person, not sent again
                self.outbox = [m for m in self.outbox if m["cid"] != payload["cid"]]

    def received(self, frame: dict[str, Any]) -> None:
        if frame["seq"] <= self.last_seq:
            return  # seen already (replay and live)
        self.pending[frame["seq"]] = frame
        self.drain()

    def drain(self) -> None:
        while self.last_seq + 1 in self.pending:
            frame = self.pending.pop(self.last_seq + 1)
            self.last_seq = frame["seq"]
            self.apply(frame)

    def apply(self, frame: dict[str, Any]) -> None:
        self.applied[frame["seq"]] += 1
        cid = (frame.get("data") or {}).get("cid")
        if not cid:
            return
        if frame["type"] == "chat":
            self.chat_applied[cid] += 1
            self.chats.setdefault(cid, time.monotonic())
        self.outbox = [m for m in self.outbox if m["cid"] != cid]

    # --- What goes out --------------------------------------------------------------------

    async def send_now(self, message: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(message))
        except WebSocketException:
            return False
        return True

    async def say(self, text: str) -> str:
        """A chat message, typed now."""
        self.counter += 1
        cid = f"u{self.user_id}-{self.counter}"
        self.sent_at[cid] = time.monotonic()
        await self.post({"type": "chat", "text": text, "cid": cid})
        return cid

    async def show(self, slice_number: int) -> None:
        """The presenter's viewer state: only the latest one matters, so it replaces any
        state still in the outbox."""
        self.counter += 1
        message = {
            "type": "viewer",
            "cid": f"u{self.user_id}-{self.counter}",
            "state": {"series": "1.2.826.0.1.3680043.10.1", "slice": slice_number},
        }
        self.outbox = [m for m in self.outbox if m["type"] != "viewer"]
        await self.post(message)

    async def post(self, message: dict[str, Any]) -> None:
        chat = message["type"] == "chat"
        if not self.ready:
            self.offline += chat
        if not self.resend:
            if not self.ready or not await self.send_now(message):
                self.dropped += chat
            return
        self.outbox.append(message)
        if self.ready:
            self.sent_on[message["cid"]] = self.socket_no
            await self.send_now(message)

    # --- The socket -----------------------------------------------------------------------

    async def run(self, *, ws_base: str, origin: str, stop: asyncio.Event) -> None:
        """Stay in the room until `stop`: reconnect after every drop, resuming at last_seq."""
        headers = {"Authorization": f"Token {self.token}", "Origin": origin}
        attempt = 0
        gaps = asyncio.create_task(self.ask_for_gaps(stop))
        try:
            while not stop.is_set():
                query = f"?last_seq={self.last_seq}" if self.last_seq else ""
                self.history.append((time.monotonic(), "connect", query))
                self.frames_on_socket = []
                self.socket_no += 1
                try:
                    async with connect(
                        f"{ws_base}/ws/mdt/{self.session_id}/{query}",
                        additional_headers=headers,
                        open_timeout=10,
                        max_queue=None,
                        proxy=None,
                    ) as ws:
                        self.ws = ws
                        attempt = 0
                        async for raw in ws:
                            await self.take(json.loads(raw))
                except InvalidStatus as exc:
                    self.refused.append(exc.response.status_code)
                except (OSError, TimeoutError, WebSocketException):
                    pass
                self.ws, self.ready, self.syncing = None, False, False
                if not stop.is_set():
                    attempt = min(attempt + 1, 6)
                    await asyncio.sleep(reconnect_delay(attempt))
        finally:
            gaps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gaps

    async def ask_for_gaps(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(GAP_SECONDS)
            if self.pending and self.ready and not self.syncing:
                self.syncing = True  # one at a time, as room.js asks
                await self.send_now({"type": "sync", "last_seq": self.last_seq})

    async def leave(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
