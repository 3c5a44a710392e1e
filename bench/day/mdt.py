"""MDT rooms for the day: a session made over the API, and chatter over the room's socket.

Every chat message carries a unique text. Its sender's own copy of the room frame (the room
echoes to everyone, after the message is stored) says it was stored; every other member
must then hold it too, live or replayed after a reconnect (`?last_seq=`): one that never
arrives is a lost live event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from .client import Client
from .figures import Figures


def own_user_id(client: Client) -> int:
    """A user's id as the API shows it: the chair of a session they make (a short huddle)."""
    if "id" not in client.me:
        now = dt.datetime.now(dt.UTC)
        session = client.request(
            "POST",
            "/api/v1/mdt-sessions/",
            "api: MDT session create",
            json={
                "title": f"{client.username}: huddle",
                "starts_at": now.isoformat(),
                "ends_at": (now + dt.timedelta(minutes=5)).isoformat(),
            },
            ok=(201,),
        ).json()
        client.me["id"] = session["chair"]
    return int(client.me["id"])


def mdt_session_create(chair: Client, invitees: list[Client], *, title: str, hours: float) -> int:
    now = dt.datetime.now(dt.UTC)
    session = chair.request(
        "POST",
        "/api/v1/mdt-sessions/",
        "api: MDT session create",
        json={
            "title": title,
            "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
            "ends_at": (now + dt.timedelta(hours=hours)).isoformat(),
        },
        ok=(201,),
    ).json()
    for invitee in invitees:
        chair.request(
            "POST",
            f"/api/v1/mdt-sessions/{session['id']}/invitations/",
            "api: MDT invite",
            json={
                "user": own_user_id(invitee),
                "institution": invitee.institution_id,
                "role": "participant",
            },
            ok=(201,),
        )
    return int(session["id"])


@dataclass
class Member:
    client: Client
    ws: ClientConnection | None = None
    last_seq: int = 0
    heard: dict[str, float] = field(default_factory=dict)  # chat text -> arrival (monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    reconnects: int = 0

    def take(self, frame: dict[str, Any]) -> None:
        kind, payload = frame.get("event"), frame.get("payload") or {}
        if kind == "snapshot":
            self.last_seq = max(self.last_seq, int(payload.get("last_seq") or 0))
            self.connected.set()
        elif kind == "room":
            self.last_seq = max(self.last_seq, int(payload["seq"]))
            if payload.get("type") == "chat":
                self.heard.setdefault(payload["data"]["text"], time.monotonic())


async def member_run(
    m: Member, *, ws_base: str, session: int, stop: asyncio.Event, figures: Figures
) -> None:
    """Stay in the room until `stop`, reconnecting (with what it has) after a drop."""
    headers = {"Authorization": f"Token {m.client.token}", "Origin": m.client.base}
    while not stop.is_set():
        query = f"?last_seq={m.last_seq}" if m.last_seq else ""
        try:
            async with connect(
                f"{ws_base}/ws/mdt/{session}/{query}",
                additional_headers=headers,
                open_timeout=15,
                max_queue=None,
                proxy=None,
            ) as ws:
                m.ws = ws
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("event") == "error":
                        figures.failure(f"{m.client.username} room error: {frame.get('payload')}")
                    m.take(frame)
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code >= 500:
                figures.server_error(f"{m.client.username} room socket refused: {code}")
            else:
                figures.failure(f"{m.client.username} room socket refused: {code}")
        except (OSError, TimeoutError, WebSocketException):
            pass
        m.ws = None
        m.connected.clear()
        if not stop.is_set():
            m.reconnects += 1
            await asyncio.sleep(0.25 + random.random())  # noqa: S311 - spreading, not secrets


async def chatter_run(
    members: list[Member],
    *,
    ws_base: str,
    session: int,
    seconds: float,
    interval: float,
    figures: Figures,
) -> dict[str, int]:
    """Each member says something every `interval` s (jittered) for `seconds`."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            member_run(m, ws_base=ws_base, session=session, stop=stop, figures=figures)
        )
        for m in members
    ]
    sent: dict[str, tuple[Member, float]] = {}

    async def talk(m: Member) -> None:
        n = 0
        deadline = time.monotonic() + seconds
        await asyncio.sleep(random.random() * interval)  # noqa: S311
        while time.monotonic() < deadline:
            await m.connected.wait()
            ws = m.ws
            if ws is None:
                await asyncio.sleep(0.1)
                continue
            n += 1
            text = f"soak {m.client.username} {n}: 结节随访 {random.randint(0, 99999)}"  # noqa: S311
            try:
                sent[text] = (m, time.monotonic())
                start = time.perf_counter()
                await ws.send(json.dumps({"type": "chat", "text": text}))
                while text not in m.heard and time.perf_counter() - start < 15:
                    await asyncio.sleep(0.01)
                figures.action("mdt: chat message (own echo)", time.perf_counter() - start)
            except WebSocketException:
                sent.pop(text, None)  # never reached the server: a real client sends again
            await asyncio.sleep(interval * (0.5 + random.random()))  # noqa: S311

    try:
        joined = time.monotonic()
        while not all(m.connected.is_set() for m in members):
            if time.monotonic() - joined > 60:
                raise RuntimeError("not every MDT member joined the room within 60 s")
            await asyncio.sleep(0.05)
        await asyncio.gather(*(talk(m) for m in members))
        # Stored = echoed to its sender; then every other member must hold it.
        stored = {t: (m, at) for t, (m, at) in sent.items() if t in m.heard}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(
            t in other.heard for t, (m, _) in stored.items() for other in members if other is not m
        ):
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        for m in members:
            if m.ws is not None:
                with contextlib.suppress(Exception):
                    await m.ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    expected = 0
    lost = []
    for text, (sender, at) in stored.items():
        for other in members:
            if other is sender:
                continue
            expected += 1
            if text in other.heard:
                figures.live_delay("chat -> other member (MDT socket)", other.heard[text] - at)
            else:
                lost.append(f"chat {text!r} to {other.client.username}")
    figures.live_result(expected, lost)
    return {
        "messages": len(sent),
        "stored": len(stored),
        "reconnects": sum(m.reconnects for m in members),
    }
