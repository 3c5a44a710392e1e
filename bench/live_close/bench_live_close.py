"""manage.py bench_live_close: how long an open socket outlives the access that opened it.

One user holds N sockets on a real uvicorn (half in an MDT room, half on their notification
channel, as a browser with a room and other tabs open). For each trigger, each round: the
sockets open (and are admitted: each has its first frame), the trigger is sent over HTTP as
a person would send it, and each socket's close is timed from the moment the trigger's HTTP
response arrived. The triggers:

- logout: the sockets ride the browser's session cookie; POST /accounts/logout/;
- token_revoked: the sockets ride an API token; another token of the user DELETEs it;
- membership_removed: an administrator DELETEs the user's role (/api/v1/memberships/<id>/);
- role_changed: an administrator grants the user another role (POST /api/v1/memberships/).

The close comes from the web process's access sweep (tenants/socket_access.py), so a delay
is the sweep's wait plus its queries. The goal: every socket closed within 5 s, with the
close code that tells the page what happened (4401 signed out, 4409 access changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import statistics
import time
from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from knox.models import AuthToken
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, Service, http, start_uvicorn
from bench.harness.timing import percentile
from bench.mdt.bench_mdt import Command as MdtCommand
from tenants.models import Membership, Role, User
from tenants.socket_access import CLOSE_ACCESS_CHANGED, CLOSE_SIGNED_OUT, SWEEP_SECONDS

GOAL_SECONDS = 5.0
TRIGGERS = ("logout", "token_revoked", "membership_removed", "role_changed")
EXPECTED_CODE = {
    "logout": CLOSE_SIGNED_OUT,
    "token_revoked": CLOSE_SIGNED_OUT,
    "membership_removed": CLOSE_ACCESS_CHANGED,
    "role_changed": CLOSE_ACCESS_CHANGED,
}
WAIT_SECONDS = 30.0  # how long a round waits for its sockets to close (then counts them open)
PASSWORD = secrets.token_urlsafe(18)


@dataclass
class Trigger:
    """One round's trigger: the sockets' credentials, and the HTTP call that ends them."""

    headers: dict[str, str]
    fire: Callable[[], None]
    after: Callable[[], None] = lambda: None  # puts the user's access back for the next round


@dataclass
class Close:
    seconds: float  # from the trigger's HTTP response to the close frame (inf: never)
    code: int | None


class Command(BenchCommand):
    help = (
        "Open N sockets (MDT room + notifications) for one user on a real uvicorn; for each "
        "of logout, token revocation, membership removal and role change, time each socket's "
        "close from the trigger's HTTP response. PASS if every one closes within 5 s."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--sockets", type=int, default=20, help="sockets per round (half in the MDT room)"
        )
        parser.add_argument("--rounds", type=int, default=5, help="rounds per trigger")
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    # --- The run --------------------------------------------------------------------------

    def run(self, **options: Any) -> None:
        if options["sockets"] < 2 or options["rounds"] < 1:
            raise BenchError("--sockets must be at least 2 and --rounds at least 1")
        prefix = f"close-{timezone.now():%m%d%H%M%S}-{secrets.token_hex(2)}"
        mdt = MdtCommand()
        server: Service | None = None
        try:
            self.world(mdt, prefix)
            server = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
            self.base = server.base_url
            self.say(
                f"{options['sockets']} sockets per round ({options['sockets'] // 2} in the MDT "
                f"room), {options['rounds']} rounds per trigger, uvicorn x{options['workers']}"
            )
            results: dict[str, list[Close]] = {}
            for trigger in TRIGGERS:
                results[trigger] = []
                for _ in range(options["rounds"]):
                    results[trigger] += self.round(trigger, options["sockets"])
            self.report(results)
        finally:
            if server is not None:
                server.stop()
            if not options["keep_data"]:
                mdt.purge(prefix)

    def world(self, mdt: MdtCommand, prefix: str) -> None:
        """An MDT room of two sites; the user measured is its participant, and an
        administrator of the participant's site (API token) revokes and grants."""
        [room] = mdt.world(prefix, 1, 2)
        self.session_id, user_id, _token = room[1]
        self.user = User.objects.get(pk=user_id)
        self.user.set_password(PASSWORD)
        self.user.save(update_fields=["password"])
        held = Membership.objects.active().get(user=self.user)
        self.site = held.institution
        admin = User.objects.create(username=f"{prefix}-admin", name="基准管理员")
        Membership.objects.create(user=admin, institution=self.site, role=Role.HOSPITAL_ADMIN)
        self.admin_headers = {
            "Authorization": f"Token {AuthToken.objects.create(user=admin)[1]}",
            "X-Institution": str(self.site.pk),
        }
        # The user's own second token: what revokes the token the sockets ride.
        self.own_headers = {"Authorization": f"Token {AuthToken.objects.create(user=self.user)[1]}"}

    # --- One round ------------------------------------------------------------------------

    def round(self, trigger: str, count: int) -> list[Close]:
        setup = getattr(self, f"trigger_{trigger}")()
        try:
            return asyncio.run(self.measure(setup, count))
        finally:
            setup.after()

    def urls(self, count: int) -> list[str]:
        ws = self.base.replace("http://", "ws://", 1)
        room = f"{ws}/ws/mdt/{self.session_id}/"
        lang = f"{ws}/ws/notifications/?lang=en"
        return [room if n % 2 == 0 else lang for n in range(count)]

    async def measure(self, trigger: Trigger, count: int) -> list[Close]:
        headers = {**trigger.headers, "Origin": self.base}
        sockets: list[ClientConnection] = []
        try:
            for url in self.urls(count):
                ws = await connect(url, additional_headers=headers, proxy=None, open_timeout=20)
                sockets.append(ws)
                # The first frame (hello, or the room's snapshot) comes after the server
                # admitted the socket and began checking its access.
                await asyncio.wait_for(ws.recv(), timeout=20)
            closed_at: list[float | None] = [None] * count

            async def until_closed(index: int, ws: ClientConnection) -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for _frame in ws:  # the room's presence traffic, read and dropped
                        pass
                closed_at[index] = time.monotonic()

            waits = [asyncio.create_task(until_closed(i, ws)) for i, ws in enumerate(sockets)]
            # The sweep runs every SWEEP_SECONDS from the first socket on; a person's click
            # falls anywhere in that cycle, so each round fires at a random point of it.
            await asyncio.sleep(random.uniform(0, SWEEP_SECONDS))  # noqa: S311 - spreading
            answered = await asyncio.to_thread(self.fired, trigger)
            await asyncio.wait(waits, timeout=WAIT_SECONDS)
            closes = [
                Close(
                    seconds=(at - answered) if at is not None else float("inf"),
                    code=ws.close_code if at is not None else None,
                )
                for at, ws in zip(closed_at, sockets, strict=True)
            ]
            for wait in waits:
                wait.cancel()
            return closes
        finally:
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()

    @staticmethod
    def fired(trigger: Trigger) -> float:
        trigger.fire()
        return time.monotonic()

    def api(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = http().request(
            method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs
        )
        if response.status_code >= 300:
            raise BenchError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    # --- The triggers ---------------------------------------------------------------------

    def trigger_logout(self) -> Trigger:
        browser = http()
        browser.get(f"{self.base}/accounts/login/", timeout=30)
        answer = browser.post(
            f"{self.base}/accounts/login/",
            data={
                "username": self.user.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": browser.cookies.get(settings.CSRF_COOKIE_NAME, ""),
            },
            headers={"Referer": f"{self.base}/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
        session = browser.cookies.get(settings.SESSION_COOKIE_NAME)
        if answer.status_code != 302 or not session:
            raise BenchError(f"signing in failed: {answer.status_code} {answer.text[:300]}")
        cookie = f"{settings.SESSION_COOKIE_NAME}={session}"

        def fire() -> None:
            answer = browser.post(
                f"{self.base}/accounts/logout/",
                data={"csrfmiddlewaretoken": browser.cookies.get(settings.CSRF_COOKIE_NAME, "")},
                headers={"Referer": f"{self.base}/"},
                allow_redirects=False,
                timeout=30,
            )
            if answer.status_code not in (200, 302):
                raise BenchError(f"logout answered {answer.status_code}")

        return Trigger(headers={"Cookie": cookie}, fire=fire)

    def token_headers(self) -> tuple[AuthToken, dict[str, str]]:
        instance, token = AuthToken.objects.create(user=self.user)
        return instance, {"Authorization": f"Token {token}"}

    def trigger_token_revoked(self) -> Trigger:
        instance, headers = self.token_headers()
        return Trigger(
            headers=headers,
            fire=lambda: self.api(
                "DELETE", f"/api/v1/auth/tokens/{instance.token_key}/", self.own_headers
            ),
        )

    def trigger_membership_removed(self) -> Trigger:
        held = Membership.objects.active().get(user=self.user, institution=self.site)
        _instance, headers = self.token_headers()

        def grant_again() -> None:
            self.api(
                "POST",
                "/api/v1/memberships/",
                self.admin_headers,
                json={"username": self.user.username, "role": held.role},
            )

        return Trigger(
            headers=headers,
            fire=lambda: self.api("DELETE", f"/api/v1/memberships/{held.pk}/", self.admin_headers),
            after=grant_again,
        )

    def trigger_role_changed(self) -> Trigger:
        _instance, headers = self.token_headers()
        granted: dict[str, int] = {}

        def fire() -> None:
            made = self.api(
                "POST",
                "/api/v1/memberships/",
                self.admin_headers,
                json={"username": self.user.username, "role": Role.REFERRING_PHYSICIAN},
            )
            granted["id"] = made["id"]

        def take_back() -> None:
            if "id" in granted:
                self.api("DELETE", f"/api/v1/memberships/{granted['id']}/", self.admin_headers)

        return Trigger(headers=headers, fire=fire, after=take_back)

    # --- Figures --------------------------------------------------------------------------

    def report(self, results: dict[str, list[Close]]) -> None:
        worst, every_passed = 0.0, True
        for trigger, closes in results.items():
            seconds = [c.seconds for c in closes if c.seconds != float("inf")]
            open_left = len(closes) - len(seconds)
            wrong = sum(c.code != EXPECTED_CODE[trigger] for c in closes if c.code is not None)
            top = max(seconds, default=float("inf")) if not open_left else float("inf")
            worst = max(worst, top)
            passed = not open_left and not wrong and top <= GOAL_SECONDS
            every_passed = every_passed and passed
            self.say(
                f"{trigger}: n={len(closes)} min={min(seconds, default=float('nan')):.2f} s "
                f"median={statistics.median(seconds) if seconds else float('nan'):.2f} s "
                f"p95={percentile(seconds, 95):.2f} s max={top:.2f} s; still open {open_left}, "
                f"wrong close code {wrong} (expected {EXPECTED_CODE[trigger]}): "
                f"{'PASS' if passed else 'FAIL'}"
            )
            self.out.figure(f"{trigger}_closes", len(closes), "sockets")
            if seconds:
                self.out.figure(f"{trigger}_min_seconds", min(seconds), "s")
                self.out.figure(f"{trigger}_median_seconds", statistics.median(seconds), "s")
                self.out.figure(f"{trigger}_p95_seconds", percentile(seconds, 95), "s")
            self.out.figure(f"{trigger}_max_seconds", top, "s")
            self.out.figure(f"{trigger}_still_open", open_left, "sockets")
            self.out.figure(f"{trigger}_wrong_code", wrong, "sockets")
            self.out.goal(
                f"{trigger} closes every socket within {GOAL_SECONDS:g} s",
                passed,
                f"max {top:.2f} s",
            )
        self.say(
            f"RESULT: {'PASS' if every_passed else 'FAIL'} "
            f"(slowest close {worst:.2f} s, goal {GOAL_SECONDS:g} s)"
        )
