"""The soak: simulated clinic uploads, reads and MDT chatter for a given time.

Threads, each one demo user as a client would be:
  uploader   the clinic technician stores a new small CT chest over STOW-RS, finds it on the
             studies page and sends it for reading (API); the worker routes it
  radiologist  claims the next case (API), starts the report, fills it, signs preliminary
  senior     second-reads and co-signs what the radiologist signed, else reads cases itself
  clinic     the referring physician reads its pages and acknowledges delivered reports
  commission opens the figures page now and then
and one asyncio loop holding the live sockets: the clinic's and both readers' referral sockets
(/ws/referrals/) and an MDT room where the MDT member and both readers chat.

Every committed step whose broadcast a socket should hear is an expectation (the referral's
id and new status, on that socket); at the end, one not heard is a lost live event.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from bench.harness.names import person_name

from .client import (
    Client,
    UnexpectedAnswerError,
    multipart_related,
    study_id_by_patient,
    synthetic_study,
)
from .figures import Figures
from .mdt import Member, chatter_run, mdt_session_create

SETTLE_SECONDS = 20.0


def ref_id(value: Any) -> int:
    """The id of a related object as the API gives it: a number, or {"id": ..., "name": ...}."""
    if isinstance(value, dict):
        value = value.get("id")
    return int(value or 0)


@dataclass
class Watcher:
    """One user's referral socket: when each (referral, status) event arrived."""

    client: Client
    heard: dict[tuple[int, str], float] = field(default_factory=dict)
    reconnects: int = 0
    ready: threading.Event = field(default_factory=threading.Event)


@dataclass
class Expectation:
    watcher: Watcher
    key: tuple[int, str]
    since: float  # monotonic time the committing request was answered
    label: str


class Live:
    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.expected: list[Expectation] = []
        self.lock = threading.Lock()

    def expect(self, watcher: Watcher, referral: int, status: str, label: str) -> None:
        with self.lock:
            self.expected.append(Expectation(watcher, (referral, status), time.monotonic(), label))

    def settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
            e.key in e.watcher.heard for e in self.expected
        ):
            time.sleep(0.1)
        lost = []
        for e in self.expected:
            arrived = e.watcher.heard.get(e.key)
            if arrived is None:
                lost.append(
                    f"{e.key[1]} of referral {e.key[0]} on {e.watcher.client.username}'s socket"
                )
            else:
                self.figures.live_delay(e.label, max(0.0, arrived - e.since))
        self.figures.live_result(len(self.expected), lost)


async def watcher_run(w: Watcher, *, ws_base: str, stop: asyncio.Event, figures: Figures) -> None:
    headers = {"Authorization": f"Token {w.client.token}", "Origin": w.client.base}
    while not stop.is_set():
        try:
            async with connect(
                f"{ws_base}/ws/referrals/",
                additional_headers=headers,
                open_timeout=15,
                max_queue=None,
                proxy=None,
            ) as ws:
                stopping = asyncio.create_task(stop.wait())
                while not stop.is_set():
                    receiving = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait(
                        {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if receiving not in done:
                        receiving.cancel()
                        break
                    frame = json.loads(receiving.result())
                    payload = frame.get("payload") or {}
                    if frame.get("event") == "hello":
                        w.ready.set()
                    elif "id" in payload and "status" in payload:
                        w.heard.setdefault(
                            (int(payload["id"]), payload["status"]), time.monotonic()
                        )
                stopping.cancel()
        except InvalidStatus as exc:
            code = exc.response.status_code
            target = figures.server_error if code >= 500 else figures.failure
            target(f"{w.client.username} referral socket refused: {code}")
        except (OSError, TimeoutError, WebSocketException):
            pass
        if not stop.is_set():
            w.reconnects += 1
            await asyncio.sleep(0.5)


@dataclass
class Soak:
    base: str
    seconds: float
    figures: Figures
    uploaders: int = 1
    upload_interval: float = 4.0
    slices: int = 6
    chat_interval: float = 2.0
    stop: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)
    second_reads: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    delivered: queue.Queue[int] = field(default_factory=queue.Queue)

    def count(self, name: str) -> None:
        with self.figures.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    # --- Setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        f, b = self.figures, self.base
        self.tech = Client(b, "tech", f).token_login()
        self.clinic = Client(b, "referrer", f).token_login()
        self.clinic_pages = Client(b, "referrer", f).page_login()
        self.radiologist = Client(b, "radiologist", f).token_login()
        self.senior = Client(b, "senior", f).token_login()
        self.mdt = Client(b, "mdt", f).token_login()
        self.commission = Client(b, "commission", f).page_login()
        # The studies page is the clinic's: the technician's own cookie session searches it.
        self.tech_pages = Client(b, "tech", f).page_login()
        self.live = Live(f)
        self.watchers = {
            c.username: Watcher(c) for c in (self.clinic, self.radiologist, self.senior)
        }
        self.by_user_id: dict[int, Watcher] = {}
        templates = self.radiologist.get_json("/api/v1/report-templates/", "api: templates")
        rows = templates["results"] if isinstance(templates, dict) else templates
        self.template = next(t["id"] for t in rows if t["code"] == "ct-chest")
        self.session = mdt_session_create(
            self.mdt,
            [self.radiologist, self.senior],
            title="Soak MDT",
            hours=self.seconds / 3600 + 1,
        )
        self.by_user_id[int(self.radiologist.me["id"])] = self.watchers["radiologist"]
        self.by_user_id[int(self.senior.me["id"])] = self.watchers["senior"]

    # --- The clients ------------------------------------------------------------------------

    def loop(self, name: str, once: Callable[[], float]) -> None:
        """Run `once` until the end, sleeping what it returns; an error is noted, not fatal."""
        while not self.stop.is_set():
            try:
                pause = once()
            except UnexpectedAnswerError:
                pause = 1.0  # noted by the client already
            except Exception as exc:
                self.figures.failure(f"{name}: {exc!r}"[:500])
                pause = 1.0
            self.stop.wait(pause)

    def upload_once(self) -> float:
        rng = random.Random()  # noqa: S311 - names, not secrets
        patient_id = f"SOAK{time.time_ns() // 1000 % 10**12:012d}{rng.randint(0, 9)}"
        name, _, _ = person_name(rng)
        body, content_type = multipart_related(
            synthetic_study(patient_id, name, slices=self.slices, size=128)
        )
        self.tech.request(
            "POST",
            "/dicomweb/studies",
            f"stow: store a {self.slices}-image study",
            data=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
        self.count("studies stored")
        study = study_id_by_patient(self.tech_pages, patient_id)
        if study is None:
            self.figures.failure(f"stored study {patient_id} not on the studies page")
            return self.upload_interval
        referral = self.tech.request(
            "POST",
            "/api/v1/referrals/",
            "api: send for reading",
            json={"study": study, "priority": rng.choice(["routine", "urgent"])},
            ok=(201,),
        ).json()
        self.count("referrals sent")
        rid = int(referral["id"])
        clinic = self.watchers["referrer"]
        self.live.expect(clinic, rid, "requested", "sent -> clinic socket")
        for reader in ("radiologist", "senior"):
            self.live.expect(
                self.watchers[reader], rid, "routed", "sent -> routed -> reader socket"
            )
        self.live.expect(clinic, rid, "routed", "sent -> routed -> clinic socket")
        return self.upload_interval * (0.5 + rng.random())

    def _claimed(self, reader: Client, referral: dict[str, Any]) -> None:
        rid = int(referral["id"])
        self.count(f"claimed by {reader.username}")
        if ref_id(referral["source"]) == self.clinic.institution_id:
            self.live.expect(self.watchers["referrer"], rid, "claimed", "claim -> clinic socket")

    def _report(self, reader: Client, referral: dict[str, Any]) -> dict[str, Any]:
        rid = int(referral["id"])
        report = reader.request(
            "POST",
            "/api/v1/reports/",
            "api: start the report",
            json={"referral": rid, "template": self.template},
            ok=(201,),
        ).json()
        if ref_id(referral["source"]) == self.clinic.institution_id:
            self.live.expect(
                self.watchers["referrer"], rid, "reporting", "report started -> clinic socket"
            )
        return reader.request(
            "PATCH",
            f"/api/v1/reports/{report['id']}/",
            "api: autosave the report",
            json={
                "version": report["version"],
                "content": {
                    "findings": "双肺纹理清晰, 右上肺见 5 mm 磨玻璃结节。",
                    "lung_rads": "2",
                    "impression": "右上肺小结节, 建议年度随访。",
                },
            },
        ).json()

    def _delivered(self, referral_id: int, source: int) -> None:
        self.count("reports delivered")
        if source == self.clinic.institution_id:
            self.live.expect(
                self.watchers["referrer"], referral_id, "delivered", "signed final -> clinic socket"
            )
            self.delivered.put(referral_id)

    def radiologist_once(self) -> float:
        answer = self.radiologist.request(
            "POST", "/api/v1/worklist/next/", "api: claim the next case", ok=(200, 204)
        )
        if answer.status_code == 204:
            self.radiologist.request("GET", "/api/v1/worklist/", "api: worklist")
            return 1.0
        referral = answer.json()
        self._claimed(self.radiologist, referral)
        report = self._report(self.radiologist, referral)
        signed = self.radiologist.request(
            "POST",
            f"/api/v1/reports/{report['id']}/sign/",
            "api: sign preliminary",
            json={"kind": "preliminary", "version": report["version"]},
        ).json()
        self.second_reads.put({**signed, "source": ref_id(referral["source"])})
        return random.uniform(0.5, 1.5)  # noqa: S311

    def senior_once(self) -> float:
        try:
            report = self.second_reads.get_nowait()
        except queue.Empty:
            report = None
        if report is not None:
            self.senior.request(
                "POST",
                f"/api/v1/reports/{report['id']}/second-read/",
                "api: second read, agree (co-sign)",
                json={"outcome": "agree", "version": report["version"]},
            )
            self._delivered(ref_id(report["referral"]), report["source"])
            return random.uniform(0.5, 1.5)  # noqa: S311
        if random.random() < 0.5:  # noqa: S311 - sometimes read a case of its own
            answer = self.senior.request(
                "POST", "/api/v1/worklist/next/", "api: claim the next case", ok=(200, 204)
            )
            if answer.status_code == 200:
                referral = answer.json()
                self._claimed(self.senior, referral)
                report = self._report(self.senior, referral)
                self.senior.request(
                    "POST",
                    f"/api/v1/reports/{report['id']}/sign/",
                    "api: sign final",
                    json={"kind": "final", "version": report["version"]},
                )
                self._delivered(int(referral["id"]), ref_id(referral["source"]))
                return random.uniform(0.5, 1.5)  # noqa: S311
        return 1.0

    def clinic_once(self) -> float:
        try:
            rid = self.delivered.get_nowait()
        except queue.Empty:
            rid = None
        if rid is not None:
            self.clinic_pages.request("GET", f"/referrals/{rid}/", "page: referral (clinic)")
            done = self.clinic.request(
                "POST", f"/api/v1/referrals/{rid}/acknowledge/", "api: acknowledge the report"
            ).json()
            self.count("reports acknowledged")
            claimer = self.by_user_id.get(ref_id(done.get("claimed_by")))
            if claimer is not None:
                self.live.expect(claimer, rid, "acknowledged", "acknowledged -> reader socket")
            return 0.5
        self.clinic_pages.request("GET", "/referrals/", "page: referrals (clinic)")
        self.clinic.request("GET", "/api/v1/referrals/", "api: referrals (clinic)")
        return random.uniform(1.0, 2.0)  # noqa: S311

    def commission_once(self) -> float:
        self.commission.request("GET", "/analytics/", "page: figures (commission)")
        return 10.0

    # --- The run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.setup()
        ws_base = self.base.replace("http://", "ws://").replace("https://", "wss://")
        loop = asyncio.new_event_loop()
        stop_async = asyncio.Event()
        chatter: dict[str, Any] = {}

        async def sockets() -> None:
            tasks = [
                asyncio.create_task(
                    watcher_run(w, ws_base=ws_base, stop=stop_async, figures=self.figures)
                )
                for w in self.watchers.values()
            ]
            members = [Member(c) for c in (self.mdt, self.radiologist, self.senior)]
            try:
                chatter.update(
                    await chatter_run(
                        members,
                        ws_base=ws_base,
                        session=self.session,
                        seconds=self.seconds,
                        interval=self.chat_interval,
                        figures=self.figures,
                    )
                )
                await stop_async.wait()
            finally:
                stop_async.set()
                await asyncio.gather(*tasks, return_exceptions=True)

        def run_loop() -> None:
            try:
                loop.run_until_complete(sockets())
            except Exception as exc:
                self.figures.failure(f"sockets: {exc!r}")

        socket_thread = threading.Thread(target=run_loop, name="sockets", daemon=True)
        socket_thread.start()
        for w in self.watchers.values():
            if not w.ready.wait(30):
                self.figures.failure(f"{w.client.username}'s referral socket did not open")
        clients = [("radiologist", self.radiologist_once), ("senior", self.senior_once)]
        clients += [("clinic", self.clinic_once), ("commission", self.commission_once)]
        clients += [(f"uploader {n + 1}", self.upload_once) for n in range(self.uploaders)]
        threads = [
            threading.Thread(target=self.loop, args=(name, once), name=name, daemon=True)
            for name, once in clients
        ]
        for t in threads:
            t.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads:
            t.join(120)
        # Every committed step's event had time to arrive (a worker still routing the last
        # referrals included).
        self.live.settle(SETTLE_SECONDS)
        loop.call_soon_threadsafe(stop_async.set)
        socket_thread.join(60)
        return {
            **self.counts,
            "chat messages": chatter.get("messages", 0),
            "chat messages stored": chatter.get("stored", 0),
            "socket reconnects": chatter.get("reconnects", 0)
            + sum(w.reconnects for w in self.watchers.values()),
        }
