"""manage.py bench_worklist: the reading worklist API's p50/p95 per filter shape through
uvicorn, several readers of the seeded scale world (1,000,000 studies), and the worklist
page's first paint in Chromium."""

from __future__ import annotations

import logging
import os
from argparse import ArgumentParser
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.test import Client

from alliance.models import Alliance
from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, Service, http, start_uvicorn
from bench.harness.timing import Timings
from bench.scale.run import add_world_arguments, token_for, world_ensure
from bench.scale.world import PREFIX
from referrals.models import Referral
from referrals.worklists.selectors import WorklistFilters, worklist
from tenants.access import Scope, scope_for_user
from tenants.models import User

GOAL_MS = 50.0
FIRST_PAINT_GOAL_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
PAINT_JS = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const paint = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
    return {firstPaint: paint('first-paint'), firstContentfulPaint:
            paint('first-contentful-paint'), responseEnd: nav ? nav.responseEnd : null,
            domContentLoaded: nav ? nav.domContentLoadedEventEnd : null};
}"""


@dataclass
class Reader:
    user: User
    token: str
    site_id: int | None  # a site whose cases reach the reader's institution

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def readers_pick(count: int) -> list[Reader]:
    """Readers spread over the alliances: central readers of every subspecialty, and one
    county reader per alliance."""
    alliances = list(
        Alliance.objects.filter(code__startswith=f"{PREFIX}a")
        .order_by("code")
        .values_list("code", flat=True)
    )
    names: list[str] = []
    for number in (0, 20, 35, 45, 5):
        names += [f"{code}-reader{number:02d}" for code in alliances]
        names += [f"{code}-county00-reader{number % 6}" for code in alliances]
    users = User.objects.in_bulk(names, field_name="username")
    picked = [users[n] for n in names if n in users][:count]
    if not picked:
        raise BenchError("the scale world has no readers: run manage.py seed_scale")
    out = []
    for user in picked:
        scope = scope_for_user(user)
        site = (
            Referral.objects.filter(
                target=scope.institution, status__in=["routed", "claimed", "reporting"]
            )
            .values_list("source_id", flat=True)
            .first()
        )
        out.append(Reader(user=user, token=token_for(user), site_id=site))
    return out


def shapes(reader: Reader) -> dict[str, dict[str, str]]:
    site = {"site": str(reader.site_id)} if reader.site_id else {}
    return {
        "mine": {},
        "pool": {"view": "pool"},
        "pool, modality=CT": {"view": "pool", "modality": "CT"},
        "pool, priority=urgent": {"view": "pool", "priority": "urgent"},
        "pool, site": {"view": "pool", **site},
        "pool, status=claimed": {"view": "pool", "status": "claimed"},
        "mine, status=reporting": {"view": "mine", "status": "reporting"},
        "pool, limit=200": {"view": "pool", "limit": "200"},
    }


def _rows_of(scope: Scope, filters: WorklistFilters) -> list[Referral]:
    return list(worklist(scope=scope, filters=filters))


class Command(BenchCommand):
    help = (
        "Time the reading worklist API (/api/v1/worklist/) per filter shape through "
        "uvicorn as several readers of the scale world, and the worklist page's first "
        "paint in Chromium."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        add_world_arguments(parser)
        parser.add_argument("--readers", type=int, default=8)
        parser.add_argument("--repeat", type=int, default=200, help="requests per shape")
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument(
            "--explain",
            action="store_true",
            help="print PostgreSQL's plan (EXPLAIN ANALYZE) of each shape",
        )
        parser.add_argument(
            "--paint-runs", type=int, default=5, help="page loads in Chromium (0: skip the browser)"
        )

    def run(self, **options: Any) -> None:
        studies = world_ensure(options, self.say)
        readers = readers_pick(options["readers"])
        open_cases = Referral.objects.filter(status__in=["routed", "claimed", "reporting"])
        self.say(
            f"world: {studies} studies, {Referral.objects.count()} referrals "
            f"({open_cases.count()} open); {len(readers)} readers: "
            + ", ".join(r.user.username for r in readers)
        )
        if options["explain"]:
            self.explain(readers[0])
        self.query_times(readers, options["repeat"])
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        try:
            everything = self.measure(uvicorn, readers, options["repeat"])
            if options["paint_runs"] > 0:
                self.first_paint(uvicorn, readers[0].user, options["paint_runs"])
        finally:
            uvicorn.stop()
        self.out.figure("worklist.all.p50_ms", everything.p(50), "ms")
        self.out.figure(
            "worklist.all.p95_ms",
            everything.p(95),
            "ms",
            f"{len(everything.seconds)} requests, every shape and reader",
        )
        self.out.goal(
            f"worklist API p95 < {GOAL_MS:.0f} ms at {studies} studies",
            everything.p(95) < GOAL_MS and not everything.failures,
            f"p95 {everything.p(95):.1f} ms over all shapes, {everything.failures} failures",
        )

    def measure(self, uvicorn: Service, readers: list[Reader], repeat: int) -> Timings:
        session = http()
        url = f"{uvicorn.base_url}/api/v1/worklist/"
        for reader in readers:  # warm: each worker's connection, each reader's first query
            for _ in range(3):
                session.get(url, headers=reader.headers, timeout=30)
        floor = Timings("/healthz")
        for _ in range(repeat):
            floor.measure(lambda: session.get(f"{uvicorn.base_url}/healthz", timeout=30))
        self.say(f"  floor, /healthz on the same server: {floor.summary()}")
        self.out.figure(
            "worklist.floor_healthz.p95_ms",
            floor.p(95),
            "ms",
            f"p50 {floor.p(50):.1f} ms: the server's own cost, nothing read",
        )
        everything = Timings("all")
        names = list(shapes(readers[0]))
        for name in names:
            timings = Timings(name)
            rows = 0
            for index in range(repeat):
                reader = readers[index % len(readers)]
                params = shapes(reader)[name]
                response = timings.measure(
                    partial(session.get, url, params=params, headers=reader.headers, timeout=60)
                )
                everything.seconds.append(timings.seconds[-1])
                if response.status_code != 200:
                    timings.failures += 1
                    everything.failures += 1
                    if timings.failures == 1:
                        self.say(f"  {name}: {response.status_code} {response.text[:200]}")
                    continue
                rows += len(response.json()["results"])
            self.say(f"  {name}: {timings.summary()}, {rows / max(repeat, 1):.1f} rows")
            self.out.figure(
                f"worklist.p95_ms[{name}]", timings.p(95), "ms", f"p50 {timings.p(50):.1f} ms"
            )
        return everything

    def query_times(self, readers: list[Reader], repeat: int) -> None:
        """The worklist's SQL alone, in this process (no HTTP, no serializer)."""
        everything = Timings("queries")
        scopes = [scope_for_user(r.user) for r in readers]
        for name in shapes(readers[0]):
            for index in range(repeat):
                reader = readers[index % len(readers)]
                filters = WorklistFilters.parse(shapes(reader)[name])
                scope = scopes[index % len(readers)]
                everything.measure(partial(_rows_of, scope, filters))
        self.say(f"  worklist queries alone (ORM, every shape): {everything.summary()}")
        self.out.figure(
            "worklist.query.p95_ms",
            everything.p(95),
            "ms",
            f"p50 {everything.p(50):.1f} ms, the SQL and its rows, in process",
        )

    def explain(self, reader: Reader) -> None:
        scope = scope_for_user(reader.user)
        for name, params in shapes(reader).items():
            cases = worklist(scope=scope, filters=WorklistFilters.parse(params))
            plan = cases.explain(analyze=True)
            self.say(f"EXPLAIN {name} {params}:\n  " + "\n  ".join(plan.splitlines()[:24]))

    def first_paint(self, uvicorn: Service, user: User, runs: int) -> None:
        """/worklist/ in Chromium, a fresh profile each time: first paint and first
        contentful paint from the navigation's start (performance paint timing)."""
        from playwright.sync_api import sync_playwright

        if not os.path.exists(CHROMIUM):
            raise BenchError(f"{CHROMIUM} is missing: apt-get install chromium")
        client = Client()
        logging.getLogger("axes").setLevel(logging.WARNING)
        client.force_login(user)
        cookie = client.cookies["sessionid"].value
        paint = Timings("first paint")
        contentful = Timings("first contentful paint")
        html = Timings("page HTML received")
        url = f"{uvicorn.base_url}/worklist/"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                for run in range(runs + 1):  # the first load warms the server, not measured
                    context = browser.new_context()
                    context.add_cookies(
                        [{"name": "sessionid", "value": cookie, "url": uvicorn.base_url}]
                    )
                    page = context.new_page()
                    response = page.goto(url, wait_until="load")
                    if response is None or response.status != 200:
                        raise BenchError(
                            f"/worklist/ answered {response.status if response else 'nothing'}"
                        )
                    page.wait_for_function(
                        "() => performance.getEntriesByName('first-contentful-paint').length",
                        timeout=30_000,
                    )
                    seen = page.evaluate(PAINT_JS)
                    context.close()
                    if run == 0:
                        continue
                    paint.seconds.append(seen["firstPaint"] / 1000)
                    contentful.seconds.append(seen["firstContentfulPaint"] / 1000)
                    html.seconds.append(seen["responseEnd"] / 1000)
            finally:
                browser.close()
        for timings in (html, paint, contentful):
            self.say(f"  {timings.name} (browser): {timings.summary()}")
        self.out.figure("worklist.page.first_paint.p50_ms", paint.p(50), "ms")
        self.out.figure(
            "worklist.page.first_paint.p95_ms",
            paint.p(95),
            "ms",
            f"first contentful paint p95 {contentful.p(95):.0f} ms, HTML p95 {html.p(95):.0f} ms",
        )
        self.out.goal(
            f"worklist page first paint < {FIRST_PAINT_GOAL_MS:.0f} ms",
            paint.p(95) < FIRST_PAINT_GOAL_MS,
            f"p95 {paint.p(95):.0f} ms over {runs} cold loads",
        )
