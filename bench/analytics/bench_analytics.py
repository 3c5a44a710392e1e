"""manage.py bench_analytics: the commission dashboard API's p95 for a one-year, whole-region
view of the scale world (1,000,000 studies over 200 sites) through uvicorn, and the rollup
refresh time, full and incremental."""

from __future__ import annotations

import datetime as dt
import time
from argparse import ArgumentParser
from functools import partial
from typing import Any
from unittest import mock

from django.db import connection
from django.utils import timezone

from alliance.analytics.refresh import analytics_refresh, last_refresh
from alliance.analytics.selection import Selection, selection_parse
from alliance.analytics.selectors import FIGURE_SETS
from alliance.analytics.tasks import analytics_refresh_task
from alliance.models import Alliance, AllianceMember, Tier
from bench.harness.command import BenchCommand
from bench.harness.processes import http, start_uvicorn
from bench.harness.timing import Timings
from bench.scale.run import add_world_arguments, token_for, world_ensure
from bench.scale.world import PREFIX
from tenants import access
from tenants.models import Institution, InstitutionKind, Membership, Role, User

GOAL_MS = 300.0
OFFICE = f"{PREFIX}region-office"


def region_viewer() -> User:
    """An alliance administrator at a regional office that is a member of every scale
    alliance: one scope that sees the whole region's figures (a commission oversees one
    alliance each in the scale world)."""
    office, _ = Institution.objects.get_or_create(
        code=OFFICE,
        defaults={
            "name": "基准区域办公室",
            "name_en": "Scale region office",
            "kind": InstitutionKind.CENTRAL_HOSPITAL,
            "region_code": "421000",
        },
    )
    for alliance in Alliance.objects.filter(code__startswith=f"{PREFIX}a"):
        AllianceMember.objects.get_or_create(
            alliance=alliance, institution=office, defaults={"tier": Tier.CENTRAL}
        )
    user, _ = User.objects.get_or_create(username=f"{OFFICE}-viewer")
    Membership.objects.get_or_create(
        user=user, institution=office, role=Role.ALLIANCE_ADMIN, revoked_at=None
    )
    return user


class Command(BenchCommand):
    help = (
        "Time every analytics figure set for a one-year, whole-region view through "
        "uvicorn (p50/p95), and the rollup refresh (full, then incremental)."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        add_world_arguments(parser)
        parser.add_argument("--repeat", type=int, default=60, help="requests per figure set")
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument(
            "--compute-repeat",
            type=int,
            default=10,
            help="in-process computations per figure set, uncached",
        )
        parser.add_argument(
            "--skip-full",
            action="store_true",
            help="do not time a full refresh when the rollups exist already",
        )

    def run(self, **options: Any) -> None:
        studies = world_ensure(options, self.say)
        self.say(f"world: {studies} studies")
        state = last_refresh()
        if not (options["skip_full"] and state and state.full_at):
            result = analytics_refresh(full=True)
            self.out.figure(
                "analytics.refresh_full_s",
                result.seconds,
                "s",
                f"{result.reading_days} referral days, {result.study_days} study days",
            )
        touched = self.a_day_of_activity()
        result = analytics_refresh()
        self.out.figure(
            "analytics.refresh_incremental_s",
            result.seconds,
            "s",
            f"after a day's activity ({touched} referrals changed): "
            f"{result.reading_days} referral days, {result.study_days} study days",
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM alliance_readingrollup")
            reading = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM alliance_studyrollup")
            study = cursor.fetchone()
        self.say(
            f"rollup rows: reading {reading[0] if reading else 0}, study {study[0] if study else 0}"
        )
        viewer = region_viewer()
        headers = {"Authorization": f"Token {token_for(viewer)}"}
        today = timezone.localdate()
        params = {
            "date_from": (today - dt.timedelta(days=364)).isoformat(),
            "date_to": today.isoformat(),
        }
        self.measure_compute(viewer, params, options["compute_repeat"])
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        try:
            everything = self.measure(uvicorn.base_url, headers, params, options["repeat"])
            self.measure_refresh_ahead(uvicorn.base_url, headers, params)
        finally:
            uvicorn.stop()
        self.out.figure("analytics.all.p50_ms", everything.p(50), "ms")
        self.out.figure(
            "analytics.all.p95_ms",
            everything.p(95),
            "ms",
            f"{len(everything.seconds)} requests, every figure set",
        )
        self.out.goal(
            f"dashboard API p95 < {GOAL_MS:.0f} ms, one year, whole region, {studies} studies",
            everything.p(95) < GOAL_MS and not everything.failures,
            f"p95 {everything.p(95):.1f} ms, {everything.failures} failures",
        )

    def measure_refresh_ahead(
        self, base_url: str, headers: dict[str, str], params: dict[str, str]
    ) -> None:
        """Beat's task after another day's activity: the incremental refresh, then the views
        asked above computed ahead; then the first request of each set after it."""
        touched = self.a_day_of_activity()
        start = time.perf_counter()
        outcome = analytics_refresh_task()
        self.out.figure(
            "analytics.refresh_task_s",
            time.perf_counter() - start,
            "s",
            f"incremental refresh ({touched} referrals changed) and "
            f"{outcome['warmed']} views computed ahead",
        )
        session = http()
        after = Timings("first after refresh")
        for name in ["options", *FIGURE_SETS]:
            start = time.perf_counter()
            response = session.get(
                f"{base_url}/api/v1/analytics/{name}/", params=params, headers=headers, timeout=60
            )
            after.seconds.append(time.perf_counter() - start)
            if response.status_code != 200:
                after.failures += 1
            self.out.figure(
                f"analytics.first_after_refresh_ms[{name}]",
                after.seconds[-1] * 1000,
                "ms",
                "first request after beat's refresh and its refresh-ahead",
            )
        self.out.figure(
            "analytics.first_after_refresh.max_ms",
            max(after.seconds) * 1000,
            "ms",
            f"{after.failures} failures",
        )

    def measure_compute(self, viewer: User, params: dict[str, str], repeat: int) -> None:
        """Each figure set computed from the rollups in this process, without the cache (the
        cost of a request whose answer is not cached yet: a new filter, a new refresh)."""
        selection = selection_parse(access.scope_for_user(viewer), params)
        everything = Timings("computed")
        # workload caches its rollup part inside: bypass it too.
        with mock.patch(
            "alliance.analytics.selectors.figures_cached",
            lambda _name, _selection, compute: compute(),
        ):
            self.computations(selection, repeat, everything)
        self.out.figure(
            "analytics.computed.p95_ms",
            everything.p(95),
            "ms",
            f"{len(everything.seconds)} uncached computations, every figure set",
        )

    def computations(self, selection: Selection, repeat: int, everything: Timings) -> None:
        for name, compute in FIGURE_SETS.items():
            timings = Timings(name)
            for _ in range(repeat):
                start = time.perf_counter()
                compute(selection).as_dict(selection)
                timings.seconds.append(time.perf_counter() - start)
                everything.seconds.append(timings.seconds[-1])
            self.out.figure(
                f"analytics.computed_p95_ms[{name}]",
                timings.p(95),
                "ms",
                f"uncached, in process; p50 {timings.p(50):.1f} ms",
            )

    def a_day_of_activity(self) -> int:
        """Today's referrals as changed (as a day of work changes them), for the
        incremental refresh to find."""
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE referrals_referral SET updated_at = now() "
                "WHERE requested_at >= now() - interval '1 day'"
            )
            return int(cursor.rowcount)

    def measure(
        self, base_url: str, headers: dict[str, str], params: dict[str, str], repeat: int
    ) -> Timings:
        session = http()
        everything = Timings("all")
        for name in ["options", *FIGURE_SETS]:
            url = f"{base_url}/api/v1/analytics/{name}/"
            start = time.perf_counter()  # the first: computed from the rollups, not cached
            session.get(url, params=params, headers=headers, timeout=60)
            self.out.figure(
                f"analytics.first_ms[{name}]",
                (time.perf_counter() - start) * 1000,
                "ms",
                "first request after the refresh (computed, then cached)",
            )
            for _ in range(2):  # warm each worker
                session.get(url, params=params, headers=headers, timeout=60)
            timings = Timings(name)
            for _ in range(repeat):
                start = time.perf_counter()
                response = partial(session.get, url, params=params, headers=headers, timeout=60)()
                timings.seconds.append(time.perf_counter() - start)
                everything.seconds.append(timings.seconds[-1])
                if response.status_code != 200:
                    timings.failures += 1
                    everything.failures += 1
                    if timings.failures == 1:
                        self.say(f"  {name}: {response.status_code} {response.text[:200]}")
            self.say(f"  {name}: {timings.summary()}")
            self.out.figure(
                f"analytics.p95_ms[{name}]", timings.p(95), "ms", f"p50 {timings.p(50):.1f} ms"
            )
        return everything
