"""manage.py bench_claims: 50 readers pressing "next case" at once on a pool of open cases,
through uvicorn (or straight at the service, one database connection per reader), with
the scale world (1,000,000 studies) underneath: claims per second, and double claims (0).

Then the worst case for the row lock: every reader presses "claim" on the same case at
the same instant, case after case: exactly one may win each.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import Count
from django.utils import timezone

from alliance.models import Alliance, PoolMember, ReaderPool
from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, http, start_uvicorn
from bench.harness.timing import Timings
from bench.scale.cleanup import referrals_purge
from bench.scale.run import add_world_arguments, token_for, world_ensure
from bench.scale.seed import MIX
from bench.scale.world import PREFIX, alliance_code, central_hospital, grassroots_sites
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import (
    PRIORITY_RANK,
    Patient,
    Priority,
    Referral,
    ReferralEvent,
    ReferralKind,
    ReferralStatus,
    ReferralStudy,
    Study,
)
from referrals.workflow.services import referral_claim, referral_claim_next
from tenants.access import Scope, scope_for_user
from tenants.models import Membership, Role, User

POOL_NAME = "Bench claims"


@dataclass
class Claimer:
    user: User
    token: str
    got: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scope: Scope | None = None


def claimers_ensure(count: int) -> tuple[ReaderPool, list[User]]:
    """A pool of the first alliance's central hospital read by `count` radiologists who read
    nothing else (so "next case" draws from this pool only); kept between runs."""
    central = central_hospital(0)
    alliance = Alliance.objects.get(code=alliance_code(0))
    pool, _created = ReaderPool.objects.get_or_create(
        alliance=alliance,
        institution=central,
        name=POOL_NAME,
        defaults={"name_en": POOL_NAME, "cap": 100_000},
    )
    users = []
    for number in range(count):
        user, _created = User.objects.get_or_create(
            username=f"{PREFIX}claimer{number:02d}",
            defaults={"name": f"抢单医生{number}", "name_en": f"Claimer {number}"},
        )
        Membership.objects.get_or_create(user=user, institution=central, role=Role.RADIOLOGIST)
        PoolMember.objects.get_or_create(pool=pool, user=user, defaults={"capacity": 10_000})
        users.append(user)
    return pool, users


@transaction.atomic
def cases_create(pool: ReaderPool, count: int, *, seed: int = 5) -> list[int]:
    """`count` routed cases waiting in `pool`, on new studies of the alliance's clinics."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    sites = grassroots_sites(0)
    patients = list(Patient.objects.filter(institution__in=sites).order_by("?")[:count])
    if not patients:
        raise BenchError("the clinics of alliance 0 have no patients")
    now = timezone.now()
    tag = f"{int(time.time() * 1000)}"
    studies = []
    for number in range(count):
        patient = patients[number % len(patients)]
        _hi, modalities, body, description, series, instances = rng.choice(MIX)
        studies.append(
            Study(
                institution_id=patient.institution_id,
                patient=patient,
                study_uid=f"{HUB_UID_ROOT}6.{tag}.{number}",
                study_date=now.date(),
                accession_number=f"C{tag[-9:]}{number:05d}"[:16],
                description=description,
                patient_name=patient.name,
                patient_name_search=patient.name.upper(),
                pid=patient.patient_id,
                patient_key=patient.patient_key,
                modalities=modalities,
                body_parts=body,
                num_series=series,
                num_instances=instances,
                received_at=now,
                last_received_at=now,
                stable_at=now,
            )
        )
    Study.objects.bulk_create(studies)
    referrals = []
    for study in studies:
        priority = rng.choices(list(Priority), weights=[5, 20, 75])[0]
        minutes = {Priority.STAT: 30, Priority.URGENT: 120}.get(priority, 1440)
        requested = now - dt.timedelta(minutes=rng.uniform(0, minutes / 2))
        referrals.append(
            Referral(
                alliance_id=pool.alliance_id,
                kind=ReferralKind.REMOTE_READ,
                study=study,
                source_id=study.institution_id,
                target_id=pool.institution_id,
                priority=priority,
                priority_rank=PRIORITY_RANK[priority],
                status=ReferralStatus.ROUTED,
                automatic=True,
                requested_at=requested,
                deadline_at=requested + dt.timedelta(minutes=minutes),
                warn_at=requested + dt.timedelta(minutes=minutes * 0.75),
                pool=pool,
                routed_at=requested,
                routing_explanation="bench_claims",
            )
        )
    Referral.objects.bulk_create(referrals)
    ReferralStudy.objects.bulk_create([ReferralStudy(referral=r, study=r.study) for r in referrals])
    ReferralEvent.objects.bulk_create(
        [
            ReferralEvent(referral=r, action="create", to_status="requested", at=r.requested_at)
            for r in referrals
        ]
        + [
            ReferralEvent(
                referral=r,
                action="route",
                from_status="requested",
                to_status="routed",
                at=r.requested_at,
            )
            for r in referrals
        ]
    )
    return [r.pk for r in referrals]


def together(claimers: list[Claimer], work: Callable[[Claimer], None]) -> float:
    """Run `work` for every claimer in its own thread, all released at once; wall seconds."""
    barrier = threading.Barrier(len(claimers) + 1)

    def body(claimer: Claimer) -> None:
        try:
            barrier.wait()
            work(claimer)
        except Exception as exc:  # reported with the figures; one thread must not hang all
            claimer.errors.append(repr(exc))
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=body, args=(c,)) for c in claimers]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


class Command(BenchCommand):
    help = (
        '50 readers press "next case" together on a pool of open cases (through '
        "uvicorn, or straight at the service): claims per second and double claims; "
        'then all press "claim" on one case at once, case after case.'
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        add_world_arguments(parser)
        parser.add_argument("--readers", type=int, default=50)
        parser.add_argument(
            "--cases", type=int, default=2000, help="open cases in the pool the readers empty"
        )
        parser.add_argument(
            "--contended",
            type=int,
            default=20,
            help='cases every reader presses "claim" on at the same instant',
        )
        parser.add_argument(
            "--via",
            choices=["http", "service"],
            default="http",
            help="http: POST /api/v1/worklist/next/ on uvicorn; service: "
            "referral_claim_next() in threads, a connection each",
        )
        parser.add_argument("--workers", type=int, default=2)

    def run(self, **options: Any) -> None:
        studies = world_ensure(options, self.say)
        pool, users = claimers_ensure(options["readers"])
        claimers = [Claimer(user=u, token=token_for(u)) for u in users]
        if options["via"] == "service":
            for claimer in claimers:  # scopes made here, not inside the timed loop
                claimer.scope = scope_for_user(claimer.user)
        cases = cases_create(pool, options["cases"])
        contended: list[int] = []
        self.say(
            f"world: {studies} studies, {Referral.objects.count()} referrals; "
            f"{len(claimers)} readers, {len(cases)} open cases in pool {pool.pk}, "
            f"via {options['via']}"
        )
        uvicorn = (
            start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
            if options["via"] == "http"
            else None
        )
        try:
            base = uvicorn.base_url if uvicorn else ""
            seconds = together(claimers, lambda c: self.next_until_empty(c, base))
            self.report_next(claimers, cases, seconds)
            if options["contended"]:
                contended = cases_create(pool, options["contended"], seed=6)
                self.contend(claimers, contended, base)
        finally:
            if uvicorn:
                uvicorn.stop()
            if not options["keep_data"]:
                made = Referral.objects.filter(pk__in=cases + contended)
                study_ids = list(made.values_list("study_id", flat=True))
                referrals_purge(made)
                Study.objects.filter(pk__in=study_ids).delete()

    # --- "next case" until the pool is empty ---------------------------------------------

    def next_until_empty(self, claimer: Claimer, base: str) -> None:
        if base:
            session = http()
            session.headers["Authorization"] = f"Token {claimer.token}"
            url = f"{base}/api/v1/worklist/next/"
            while True:
                start = time.perf_counter()
                response = session.post(url, timeout=60)
                claimer.seconds.append(time.perf_counter() - start)
                if response.status_code == 204:
                    return
                if response.status_code != 200:
                    claimer.errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                claimer.got.append(int(response.json()["id"]))
        close_old_connections()
        scope = claimer.scope or scope_for_user(claimer.user)
        while True:
            start = time.perf_counter()
            referral = referral_claim_next(scope=scope)
            claimer.seconds.append(time.perf_counter() - start)
            if referral is None:
                return
            claimer.got.append(referral.pk)

    def report_next(self, claimers: list[Claimer], cases: list[int], seconds: float) -> None:
        got = [pk for c in claimers for pk in c.got]
        timings = Timings("next case")
        timings.seconds = [s for c in claimers for s in c.seconds]
        errors = [e for c in claimers for e in c.errors]
        twice_answered = sum(n - 1 for n in Counter(got).values() if n > 1)
        twice_recorded = self.double_claims(cases)
        wrong_holder = self.wrong_holders(claimers)
        left = Referral.objects.filter(pk__in=cases, status=ReferralStatus.ROUTED).count()
        self.say(
            f"  {len(got)} claims of {len(cases)} cases in {seconds:.2f} s by "
            f"{len(claimers)} readers; left in the pool: {left}; errors: {len(errors)}"
            + (f" (first: {errors[0]})" if errors else "")
        )
        self.say(f"  per press: {timings.summary()}")
        self.out.figure(
            "claims.per_s",
            len(got) / seconds,
            "claims/s",
            f'{len(claimers)} readers pressing "next case"',
        )
        self.out.figure("claims.next.p95_ms", timings.p(95), "ms", f"p50 {timings.p(50):.1f} ms")
        doubles = twice_answered + twice_recorded + wrong_holder
        self.out.figure(
            "claims.double",
            doubles,
            "claims",
            f"answered twice {twice_answered}, two claim events {twice_recorded}, "
            f"holder differs from the answer {wrong_holder}",
        )
        self.out.goal(
            "zero double claims",
            doubles == 0 and not errors and left == 0 and len(got) == len(cases),
            f"{doubles} double claims, {len(got)}/{len(cases)} cases claimed once",
        )

    @staticmethod
    def double_claims(ids: list[int]) -> int:
        """Cases whose timeline records more than one claim."""
        return (
            ReferralEvent.objects.filter(referral_id__in=ids, action="claim")
            .values("referral_id")
            .annotate(n=Count("pk"))
            .filter(n__gt=1)
            .count()
        )

    @staticmethod
    def wrong_holders(claimers: list[Claimer]) -> int:
        """Cases a reader was told they got but the row names someone else."""
        told = {pk: c.user.pk for c in claimers for pk in c.got}
        held = dict(Referral.objects.filter(pk__in=list(told)).values_list("pk", "claimed_by_id"))
        return sum(1 for pk, user_id in told.items() if held.get(pk) != user_id)

    # --- every reader presses "claim" on the same case at once -------------------------

    def contend(self, claimers: list[Claimer], ids: list[int], base: str) -> None:
        winners: list[int] = []
        timings = Timings("contended claim")
        for pk in ids:
            answers: dict[int, int] = {}

            def press(claimer: Claimer, pk: int = pk, answers: dict[int, int] = answers) -> None:
                start = time.perf_counter()
                if base:
                    response = http().post(
                        f"{base}/api/v1/referrals/{pk}/claim/",
                        timeout=60,
                        headers={"Authorization": f"Token {claimer.token}"},
                    )
                    answers[claimer.user.pk] = response.status_code
                else:
                    close_old_connections()
                    try:
                        referral_claim(scope=scope_for_user(claimer.user), referral_id=pk)
                        answers[claimer.user.pk] = 200
                    except Exception:  # the losers' 409
                        answers[claimer.user.pk] = 409
                timings.seconds.append(time.perf_counter() - start)

            together(claimers, press)
            winners.append(sum(1 for code in answers.values() if code == 200))
            others = Counter(code for code in answers.values() if code != 200)
            if set(others) - {409}:
                self.say(f"  case {pk}: unexpected answers {dict(others)}")
        recorded = self.double_claims(ids)
        bad = sum(1 for n in winners if n != 1)
        self.say(
            f"  contended: {len(ids)} cases, {len(claimers)} readers pressing each at "
            f"once; winners per case {Counter(winners)}; press {timings.summary()}"
        )
        self.out.figure(
            "claims.contended.double",
            bad + recorded,
            "cases",
            "cases not won by exactly one reader, or with two claim events",
        )
        self.out.goal(
            "one winner per contended case",
            bad == 0 and recorded == 0,
            f"{len(ids) - bad}/{len(ids)} cases won by exactly one of {len(claimers)} readers",
        )
