"""manage.py bench_routing: from "study stable" to "on a worklist" through a real Celery
worker and beat on Redis, with the scale world (1,000,000 studies) underneath.

New studies arrive at clinics set to "request a remote read when a study is complete",
a few per second; beat's stable sweep marks each stable (Study.stable_at), the stable hook
asks for the remote read, routing puts it in a pool (Referral.routed_at). The figure is
routed_at - stable_at per study: what a reader waits for once the hub knows a study is
complete (the quiet period before that is a setting, HUB_STUDY_QUIET_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
import uuid
from argparse import ArgumentParser
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, Service, child_env, start, wait_until
from bench.harness.timing import Timings
from bench.scale.cleanup import referrals_purge
from bench.scale.run import add_world_arguments, world_ensure
from bench.scale.seed import MIX
from bench.scale.world import grassroots_sites
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import Patient, Referral, Study

GOAL_MS = 1000.0
SWEEP_SECONDS = 0.5  # beat's stable sweep in this run (production default: 5 s)


class Command(BenchCommand):
    help = (
        "Send studies to become stable at clinics with automatic remote reads, through a "
        "real Celery worker and beat on Redis; time study stable → routed (p50/p95/max)."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        add_world_arguments(parser)
        parser.add_argument("--count", type=int, default=200, help="studies sent")
        parser.add_argument("--rate", type=float, default=20.0, help="studies arriving per second")
        parser.add_argument(
            "--concurrency", type=int, default=4, help="worker processes (celery --concurrency)"
        )
        parser.add_argument(
            "--warmup",
            type=int,
            default=None,
            help="studies sent first and not counted, so each worker process "
            "has imported what a task needs (default: 3 per process)",
        )
        parser.add_argument(
            "--sweep-seconds",
            type=float,
            default=SWEEP_SECONDS,
            help="beat's stable-sweep interval for this run",
        )

    def run(self, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise BenchError("bench_routing runs Celery on Redis: set REDIS_URL")
        studies = world_ensure(options, self.say)
        queue = f"bench-routing-{uuid.uuid4().hex[:8]}"
        env = child_env(
            CELERY_DEFAULT_QUEUE=queue,
            HUB_STUDY_QUIET_SECONDS="1",
            HUB_STABLE_SWEEP_SECONDS=str(options["sweep_seconds"]),
        )
        self.say(
            f"world: {studies} studies, {Referral.objects.count()} referrals; sending "
            f"{options['count']} studies at {options['rate']:g}/s; worker concurrency "
            f"{options['concurrency']}, stable sweep every {options['sweep_seconds']:g} s, "
            f"queue {queue}"
        )
        worker = start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "alliance",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(options["concurrency"]),
                "-Q",
                queue,
                "--hostname",
                f"{queue}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            log_dir=self.log_dir,
        )
        beat = start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "alliance",
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(self.log_dir / "celerybeat-schedule"),
            ],
            env=env,
            log_dir=self.log_dir,
        )
        sent: list[int] = []
        warm: list[int] = []
        warmup = options["warmup"] if options["warmup"] is not None else 3 * options["concurrency"]
        try:
            wait_until(
                lambda: " ready." in worker.log_path.read_text(errors="replace"),
                timeout=60,
                what="the worker to be ready",
                watch=[worker],
            )
            if warmup:
                # A worker process's first task imports the URLconf and more (seconds on a
                # cold process): what a long-running worker paid once, long ago.
                warm = self.send(warmup, options["rate"])
                self.wait_routed(warm, [worker, beat])
                self.say(f"  warm-up: {warmup} studies routed (not counted)")
            sent = self.send(options["count"], options["rate"])
            self.wait_routed(sent, [worker, beat])
            self.report(sent)
        finally:
            beat.stop()
            worker.stop()
            self.queue_delete(queue)
            if not options["keep_data"]:
                referrals_purge(Referral.objects.filter(study_id__in=warm + sent))
                Study.objects.filter(pk__in=warm + sent).delete()

    def send(self, count: int, rate: float) -> list[int]:
        """New studies, as ingest leaves them once their last instance is in: not yet
        stable. They arrive `rate` per second, spread over a clinic's patients (who have
        priors across the alliance) and the modality mix."""
        rng = random.Random(11)  # noqa: S311 - picks test data, not secrets
        sites = grassroots_sites(0)
        if not sites:
            raise BenchError("the scale world has no clinic in alliance 0")
        patients = list(Patient.objects.filter(institution__in=sites).order_by("?")[:count])
        if not patients:
            raise BenchError("the clinics of alliance 0 have no patients")
        run = uuid.uuid4().hex[:8]
        ids: list[int] = []
        start_time = time.monotonic()
        for number in range(count):
            delay = start_time + number / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            patient = patients[number % len(patients)]
            _hi, modalities, body, description, series, instances = rng.choice(MIX)
            now = timezone.now()
            with transaction.atomic():
                study = Study.objects.create(
                    institution_id=patient.institution_id,
                    patient=patient,
                    study_uid=f"{HUB_UID_ROOT}7.{int(run, 16)}.{number}",
                    study_date=timezone.localdate(),
                    study_time=f"{now:%H%M%S}",
                    accession_number=f"R{run}{number:05d}"[:16],
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
                    # Quiet for the sweep's purposes already: stable at its next tick.
                    last_received_at=now - dt.timedelta(seconds=2),
                    stable_at=None,
                )
            ids.append(study.pk)
        self.say(f"  sent {count} studies in {time.monotonic() - start_time:.1f} s")
        return ids

    def wait_routed(self, ids: list[int], watch: list[Service]) -> None:
        def routed() -> bool:
            return Referral.objects.filter(
                study_id__in=ids, routed_at__isnull=False
            ).count() == len(ids)

        wait_until(
            routed,
            timeout=max(120.0, len(ids) * 0.5),
            interval=0.5,
            what=f"all {len(ids)} studies to be routed",
            watch=watch,
        )

    def report(self, ids: list[int]) -> None:
        rows = list(
            Referral.objects.filter(study_id__in=ids).values_list(
                "study__stable_at", "requested_at", "routed_at", "unroutable", "pool__name_en"
            )
        )
        whole, asked, routing = (
            Timings("stable → routed"),
            Timings("stable → requested"),
            Timings("requested → routed"),
        )
        for stable_at, requested_at, routed_at, _unroutable, _pool in rows:
            assert stable_at is not None
            assert routed_at is not None
            whole.seconds.append((routed_at - stable_at).total_seconds())
            asked.seconds.append((requested_at - stable_at).total_seconds())
            routing.seconds.append((routed_at - requested_at).total_seconds())
        pools: dict[str, int] = {}
        for *_times, _unroutable, pool in rows:
            pools[pool] = pools.get(pool, 0) + 1
        for timings in (asked, routing, whole):
            self.say(f"  {timings.name}: {timings.summary()}")
        self.say(
            "  pools: "
            + ", ".join(f"{name} {n}" for name, n in sorted(pools.items()))
            + f"; flagged unroutable (fallback): {sum(1 for r in rows if r[3])}"
        )
        self.out.figure("routing.p50_ms", whole.p(50), "ms", "study stable → routed")
        self.out.figure("routing.p95_ms", whole.p(95), "ms")
        self.out.figure("routing.max_ms", max(whole.seconds) * 1000, "ms")
        self.out.goal(
            f"routing p95 < {GOAL_MS:.0f} ms (study stable → on a worklist)",
            whole.p(95) < GOAL_MS,
            f"p95 {whole.p(95):.0f} ms over {len(rows)} studies",
        )

    def queue_delete(self, queue: str) -> None:
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            client.delete(f"{prefix}{queue}")
        finally:
            client.close()
