"""manage.py bench_faults: route studies while the machinery fails, then count what was lost.

Studies are sent over STOW-RS to a real uvicorn, as a clinic's gateway sends them; the
clinic asks for a remote read when a study is complete, so every study must end with one
routed referral. Meanwhile:

- a Celery worker (prefork, as deploy/docker-compose.yml runs it) is killed with SIGKILL
  every `--kill-every` seconds while studies are sent, and started again;
- the broker, a redis-server of this run's own on a free port (append-only file, as in
  deploy/docker-compose.yml; never the machine's shared Redis), is killed with SIGKILL
  once, a third of the way in, and started again on its files;
- the object store, moto's S3 server over real HTTP, is frozen (SIGSTOP) for
  `--store-outage` seconds halfway through, then thawed (SIGCONT): requests hang, as on an
  overloaded or partitioned MinIO, and its contents survive (moto keeps them in memory);
- the web process is stopped (SIGTERM) and started again on the same port two thirds of
  the way in, with MDT rooms open: their clients reconnect with `?last_seq=`.

The sending client retries a batch until the hub answers it; the hub's sweeps (stable
hooks, routing re-drive) bring back the work a killed worker held. At the end one FIGURE
line per count: instances lost and duplicated, referrals lost and duplicated, room events
lost and duplicated, orphans (`manage.py reconcile_storage` on the bucket), hooks still
owed, and the longest countdown any task can carry against the visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from argparse import ArgumentParser
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import redis
from botocore.config import Config
from django.db.models import Count
from django.utils import timezone

from alliance.models import (
    Alliance,
    AllianceMember,
    AlliancePolicy,
    PoolMember,
    ReaderPool,
    SiteSettings,
    Tier,
)
from bench.faults import countdowns
from bench.harness.command import BenchCommand
from bench.harness.processes import (
    MANAGE,
    BenchError,
    Service,
    child_env,
    free_port,
    http,
    start,
    wait_until,
)
from bench.mdt.bench_mdt import Command as MdtCommand
from bench.mdt.loadclient import Participant, RoomsResult, rooms_run
from bench.scale.cleanup import referrals_purge
from consultations.models import RoomEvent
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient, ct_series, to_bytes
from referrals.models import Instance, Referral, ReferralStatus, Study
from tenants.models import Institution, InstitutionKind, Membership, Role, User

ACCESS_KEY, SECRET_KEY, REGION = "bench-faults", "bench-faults-secret", "us-east-1"
SUCCEEDED = re.compile(r"Task (\S+)\[[0-9a-f-]+\] succeeded in ([0-9.]+)s")


class CountingParticipant(Participant):
    """A room client that also counts events delivered twice: a sequence number it had
    already received at or below the `last_seq` it resumed from (a replay past a gap it
    had is the protocol filling that gap, not a duplicate)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicates = 0
        self.resumed_from = 0

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("event") == "snapshot":
            self.resumed_from = self.contiguous
        if frame.get("event") == "room":
            seq = (frame.get("payload") or {}).get("seq")
            if seq in self.seqs and seq <= self.resumed_from:
                self.duplicates += 1
        super().take(frame)


@dataclass
class Faults:
    """What was done to the processes, and when (monotonic seconds)."""

    workers_killed: int = 0
    redis_restarts: int = 0
    store_outages: int = 0
    web_restarts: int = 0
    last_fault_at: float = 0.0
    log: list[str] = field(default_factory=list)


class Command(BenchCommand):
    help = (
        "Route studies over STOW-RS while a worker is killed every 30 s, Redis is restarted, "
        "the object store freezes for 60 s and the web process restarts with MDT rooms "
        "open; count instances, referrals and room events lost or duplicated, and orphans."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--studies", type=int, default=1000, help="studies sent")
        parser.add_argument(
            "--instances", type=int, default=2, help="instances per study (64x64 CT slices)"
        )
        parser.add_argument("--rate", type=float, default=2.0, help="studies sent per second")
        parser.add_argument("--clients", type=int, default=2, help="parallel STOW-RS senders")
        parser.add_argument(
            "--kill-every", type=float, default=30.0, help="seconds between worker SIGKILLs"
        )
        parser.add_argument(
            "--store-outage", type=float, default=60.0, help="seconds the object store is frozen"
        )
        parser.add_argument("--rooms", type=int, default=3, help="MDT rooms open")
        parser.add_argument("--room-clients", type=int, default=5, help="participants per room")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
        parser.add_argument(
            "--hook-retry-seconds",
            type=float,
            default=10.0,
            help="HUB_STABLE_HOOK_RETRY_SECONDS for this run (production: 120)",
        )
        parser.add_argument(
            "--converge-timeout",
            type=float,
            default=600.0,
            help="seconds to wait, after the last fault, for every study to be routed",
        )

    # --- The run --------------------------------------------------------------------------

    def run(self, **options: Any) -> None:
        for tool in ("redis-server",):
            if shutil.which(tool) is None:
                raise BenchError(f"{tool} is missing (apt-get install redis-server)")
        self.options = options
        self.faults = Faults()
        self.work = Path(tempfile.mkdtemp(prefix="hub-bench-faults-"))
        self.services: list[Service] = []
        self.worker: Service | None = None
        self.web: Service | None = None
        self.retired: list[Service] = []  # killed workers: their logs hold task run times
        prefix = f"faults-{timezone.now():%m%d%H%M%S}-{secrets.token_hex(2)}"
        mdt = MdtCommand()
        mdt.log_dir = self.log_dir
        mdt.ws_impl = "auto"
        mdt.deflate = False
        clinic: Institution | None = None
        try:
            self.redis_port = free_port()
            self.start_redis()
            self.s3_port = free_port()
            self.start_store()
            self.bucket = f"hub-faults-{uuid.uuid4().hex[:8]}"
            self.s3().create_bucket(Bucket=self.bucket)
            clinic, token = self.world(prefix)
            rooms_spec = mdt.world(prefix + "-mdt", options["rooms"], options["room_clients"])
            self.env = child_env(
                REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
                S3_BUCKET=self.bucket,
                S3_ENDPOINT_URL=f"http://127.0.0.1:{self.s3_port}",
                S3_ACCESS_KEY=ACCESS_KEY,
                S3_SECRET_KEY=SECRET_KEY,
                S3_REGION=REGION,
                CELERY_DEFAULT_QUEUE="hub",
                HUB_STUDY_QUIET_SECONDS="2",
                HUB_STABLE_SWEEP_SECONDS="1",
                HUB_STABLE_HOOK_RETRY_SECONDS=str(options["hook_retry_seconds"]),
                HUB_REFERRAL_SWEEP_SECONDS="2",
                HUB_ROUTING_REDRIVE_SECONDS="10",
            )
            self.web_port = free_port()
            self.web = self.start_web()
            self.worker = self.start_worker()
            beat = self.start_beat()
            self.say(
                f"{options['studies']} studies x {options['instances']} instances at "
                f"{options['rate']:g}/s; worker killed every {options['kill_every']:g} s; "
                f"Redis :{self.redis_port}, S3 (moto) :{self.s3_port}, web :{self.web_port}; "
                f"{options['rooms']} MDT rooms x {options['room_clients']}"
            )
            sent_uids, study_uids = self.scenario(token, rooms_spec)
            self.converge(study_uids, clinic, [beat])
            self.report(clinic, sent_uids, study_uids, rooms_spec)
        finally:
            for service in [*self.services]:
                with contextlib.suppress(Exception):
                    if service.alive():
                        os.killpg(service.pid, signal.SIGCONT)  # a frozen store must stop too
                    service.stop(timeout=10)
            if not options["keep_data"]:
                if clinic is not None:
                    referrals_purge(Referral.objects.filter(study__institution=clinic))
                mdt.purge(prefix + "-mdt")
            shutil.rmtree(self.work, ignore_errors=True)

    def scenario(
        self, token: str, rooms_spec: list[list[tuple[int, int, str]]]
    ) -> tuple[set[str], set[str]]:
        """Send every study while the faults happen; returns (instance UIDs, study UIDs)."""
        options = self.options
        total = options["studies"]
        progress = {"sent": 0}
        progress_lock = threading.Lock()
        restart_web_now = threading.Event()
        room_result: dict[str, Any] = {}
        sending_done = threading.Event()

        def rooms_thread() -> None:
            try:
                room_result["participants"], room_result["result"] = self.rooms(
                    rooms_spec, restart_web_now
                )
            except Exception as exc:  # reported after the run
                room_result["error"] = exc

        rooms = threading.Thread(target=rooms_thread, daemon=True)
        rooms.start()

        def killer() -> None:
            while not sending_done.wait(options["kill_every"]):
                self.kill_worker()

        kills = threading.Thread(target=killer, daemon=True)
        kills.start()

        def on_progress(done: int) -> None:
            if done == max(1, total // 3) and not self.faults.redis_restarts:
                threading.Thread(target=self.restart_redis, daemon=True).start()
            if done == max(1, total // 2) and not self.faults.store_outages:
                threading.Thread(target=self.freeze_store, daemon=True).start()
            if done == max(1, 2 * total // 3):
                restart_web_now.set()

        uids: set[str] = set()
        study_uids: set[str] = set()
        run = uuid.uuid4().int % 10**8
        began = time.monotonic()

        def sender(index: int) -> None:
            session = http()
            number = index
            while number < total:
                due = began + number / options["rate"]
                if (delay := due - time.monotonic()) > 0:
                    time.sleep(delay)
                study_uid = f"{HUB_UID_ROOT}8.{run}.{number}"
                patient = SyntheticPatient(patient_id=f"F{run}-{number}", name=f"Fault^{number}")
                datasets = list(
                    ct_series(
                        patient=patient, count=options["instances"], study_uid=study_uid, size=64
                    )
                )
                with progress_lock:
                    study_uids.add(study_uid)
                    uids.update(str(ds.SOPInstanceUID) for ds in datasets)
                self.stow_until_stored(session, token, [to_bytes(ds) for ds in datasets])
                with progress_lock:
                    progress["sent"] += 1
                    done = progress["sent"]
                on_progress(done)
                number += options["clients"]

        threads = [
            threading.Thread(target=sender, args=(i,), daemon=True)
            for i in range(options["clients"])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sending_done.set()
        kills.join(30)
        restart_web_now.set()  # fewer studies than thirds: the restart still happens
        rooms.join(600)
        self.say(
            f"sent {len(study_uids)} studies ({len(uids)} instances) in "
            f"{time.monotonic() - began:.0f} s"
        )
        if "error" in room_result:
            raise BenchError(f"the MDT rooms failed: {room_result['error']!r}")
        if rooms.is_alive():
            raise BenchError("the MDT rooms did not finish")
        self.room_participants = room_result["participants"]
        self.room_result = room_result["result"]
        # Wait for the delayed faults that run in threads of their own.
        wait_until(
            lambda: self.faults.redis_restarts and self.faults.store_outages,
            timeout=options["store_outage"] + 120,
            what="the Redis restart and the store outage to end",
        )
        return uids, study_uids

    def stow_until_stored(self, session: Any, token: str, parts: list[bytes]) -> None:
        """POST one study until the hub answers 200 for all of it (retries: a gateway's)."""
        boundary = secrets.token_hex(16)
        body = io.BytesIO()
        for part in parts:
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            body.write(part)
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        payload = body.getvalue()
        headers = {
            "Authorization": f"Token {token}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        url = f"http://127.0.0.1:{self.web_port}/dicomweb/studies"
        deadline = time.monotonic() + self.options["converge_timeout"] + 300
        while time.monotonic() < deadline:
            try:
                response = session.post(url, data=payload, headers=headers, timeout=20)
                if response.status_code == 200:
                    return
            except Exception:  # noqa: S110 - down, hung, restarting: send again
                pass
            time.sleep(0.5)
        raise BenchError("a study could not be stored before the deadline")

    def rooms(
        self, spec: list[list[tuple[int, int, str]]], restart_now: threading.Event
    ) -> tuple[list[CountingParticipant], RoomsResult]:
        ids = [room[0][0] for room in spec]

        def stored() -> dict[int, list[int]]:
            seqs: dict[int, list[int]] = {i: [] for i in ids}
            for sid, seq in RoomEvent.objects.filter(session_id__in=ids).values_list(
                "session_id", "seq"
            ):
                seqs[sid].append(seq)
            self.room_stored = seqs  # what the last look saw: the lost count's reference
            return seqs

        async def restart() -> float:
            await asyncio.to_thread(restart_now.wait)
            return await asyncio.to_thread(self.restart_web)

        rooms = [
            [
                CountingParticipant(session_id=sid, user_id=uid, token=tok, presenter=n == 0)
                for n, (sid, uid, tok) in enumerate(room)
            ]
            for room in spec
        ]
        base = f"127.0.0.1:{self.web_port}"
        result = asyncio.run(
            rooms_run(
                rooms,  # type: ignore[arg-type]
                ws_base=f"ws://{base}",
                origin=f"http://{base}",
                messages=40,
                interval=0.05,
                stored_seqs=stored,
                restart=restart,
            )
        )
        return [p for room in rooms for p in room], result

    # --- Faults ---------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.faults.last_fault_at = time.monotonic()
        self.faults.log.append(text)
        self.say(f"  fault: {text}")

    def kill_worker(self) -> None:
        worker = self.worker
        if worker is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.popen.wait(timeout=10)
        self.faults.workers_killed += 1
        self.retired.append(worker)
        self.note(f"worker SIGKILL #{self.faults.workers_killed}")
        self.worker = self.start_worker(wait=False)

    def restart_redis(self) -> None:
        redis_service = self.redis
        with contextlib.suppress(ProcessLookupError):
            os.killpg(redis_service.pid, signal.SIGKILL)
        redis_service.popen.wait(timeout=10)
        self.note("redis-server SIGKILL, started again on its append-only file")
        self.start_redis()
        self.faults.redis_restarts += 1

    def freeze_store(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.store.pid, signal.SIGSTOP)
        self.note(f"object store frozen (SIGSTOP) for {self.options['store_outage']:g} s")
        time.sleep(self.options["store_outage"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.store.pid, signal.SIGCONT)
        self.faults.store_outages += 1
        self.note("object store thawed (SIGCONT)")

    def restart_web(self) -> float:
        assert self.web is not None
        self.web.stop(timeout=20)
        self.note("web process stopped (SIGTERM) with the MDT rooms open")
        self.web = self.start_web(wait=False)
        wait_until(
            lambda: http().get(f"http://127.0.0.1:{self.web_port}/healthz", timeout=5).ok,
            timeout=120,
            what="the web process to answer again",
            watch=[self.web],
        )
        self.faults.web_restarts += 1
        self.note("web process answering again")
        return time.monotonic()

    # --- Services -------------------------------------------------------------------------

    def start_redis(self) -> None:
        data = self.work / "redis"
        data.mkdir(exist_ok=True)
        self.redis = start(
            f"redis-{time.monotonic_ns()}",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            env=dict(os.environ),
            log_dir=self.log_dir,
        )
        self.services.append(self.redis)
        client = redis.Redis(port=self.redis_port)
        wait_until(client.ping, timeout=30, what="redis-server to answer", watch=[self.redis])
        client.close()

    def start_store(self) -> None:
        self.store = start(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
            env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
            log_dir=self.log_dir,
        )
        self.services.append(self.store)
        wait_until(
            lambda: http().get(f"http://127.0.0.1:{self.s3_port}/", timeout=5).status_code < 500,
            timeout=60,
            what="moto's S3 server to answer",
            watch=[self.store],
        )

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(proxies={}),
        )

    def start_web(self, wait: bool = True) -> Service:
        web = start(
            f"web-{time.monotonic_ns()}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "alliance.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.web_port),
                "--lifespan",
                "on",
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "5",
                "--ws-per-message-deflate",
                "false",
            ],
            env=self.env,
            log_dir=self.log_dir,
        )
        self.services.append(web)
        if wait:
            wait_until(
                lambda: http().get(f"http://127.0.0.1:{self.web_port}/healthz", timeout=5).ok,
                timeout=120,
                what="uvicorn to answer /healthz",
                watch=[web],
            )
        return web

    def start_worker(self, wait: bool = True) -> Service:
        worker = start(
            f"worker-{time.monotonic_ns()}",
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
                str(self.options["concurrency"]),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            env=self.env,
            log_dir=self.log_dir,
        )
        self.services.append(worker)
        if wait:
            wait_until(
                lambda: " ready." in worker.log_path.read_text(errors="replace"),
                timeout=90,
                what="the worker to be ready",
                watch=[worker],
            )
        return worker

    def start_beat(self) -> Service:
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
                str(self.work / "celerybeat-schedule"),
            ],
            env=self.env,
            log_dir=self.log_dir,
        )
        self.services.append(beat)
        return beat

    # --- World ----------------------------------------------------------------------------

    def world(self, prefix: str) -> tuple[Institution, str]:
        """A clinic that asks for a remote read of every complete study, in an alliance of
        its own with one reader pool that takes everything; returns (clinic, its token)."""
        site = self.new_site("faults")
        clinic = site.institution
        reader_site = Institution.objects.create(
            code=f"{prefix}-reader",
            name=f"故障测试医院 {prefix}",
            name_en=f"Faults hospital {prefix}",
            kind=InstitutionKind.CENTRAL_HOSPITAL,
            region_code="421000",
        )
        commission = Institution.objects.create(
            code=f"{prefix}-hc",
            name=f"故障测试卫健委 {prefix}",
            name_en=f"Faults commission {prefix}",
            kind=InstitutionKind.HEALTH_COMMISSION,
            region_code="421000",
        )
        alliance = Alliance.objects.create(
            code=prefix,
            name=f"故障测试医联体 {prefix}",
            name_en=f"Faults {prefix}",
            region_code="421000",
            lead_hospital=reader_site,
            commission=commission,
        )
        AllianceMember.objects.create(alliance=alliance, institution=reader_site, tier=Tier.CENTRAL)
        member = AllianceMember.objects.create(
            alliance=alliance, institution=clinic, tier=Tier.GRASSROOTS
        )
        SiteSettings.objects.create(member=member, auto_remote_read=True)
        reader = User.objects.create(username=f"{prefix}-reader", name="阅片医生")
        Membership.objects.create(user=reader, institution=reader_site, role=Role.RADIOLOGIST)
        pool = ReaderPool.objects.create(
            alliance=alliance,
            institution=reader_site,
            name="综合",
            name_en="General",
            cap=1_000_000,
        )
        PoolMember.objects.create(pool=pool, user=reader, capacity=1_000_000)
        AlliancePolicy.objects.create(alliance=alliance, fallback_pool=pool)
        return clinic, site.token

    # --- The end --------------------------------------------------------------------------

    def converge(self, study_uids: set[str], clinic: Institution, watch: list[Service]) -> None:
        """Until every study is routed and owes no hook (the sweeps' work), bounded."""
        began = time.monotonic()

        def done() -> bool:
            studies = Study.objects.filter(institution=clinic, study_uid__in=study_uids)
            routed = Referral.objects.filter(
                study__in=studies, status=ReferralStatus.ROUTED
            ).count()
            owing = studies.exclude(stable_hooks_pending=[]).count()
            return routed >= len(study_uids) and owing == 0

        try:
            wait_until(
                done,
                timeout=self.options["converge_timeout"],
                what="every study to be routed",
                interval=1.0,
            )
        except BenchError as exc:
            self.say(f"NOT converged: {str(exc).splitlines()[0]}")
        self.out.figure(
            "converged_after_last_fault_seconds",
            time.monotonic() - max(self.faults.last_fault_at, began),
            "s",
            "from the last fault (or the end of sending) to every study routed",
        )

    def report(
        self,
        clinic: Institution,
        sent_uids: set[str],
        study_uids: set[str],
        rooms_spec: list[list[tuple[int, int, str]]],
    ) -> None:
        figure = self.out.figure
        faults = self.faults
        figure("workers_killed", faults.workers_killed, "SIGKILLs")
        figure("redis_restarts", faults.redis_restarts, "")
        figure("store_outage_seconds", self.options["store_outage"], "s")
        figure("web_restarts", faults.web_restarts, "")

        rows = Counter(
            Instance.objects.filter(institution=clinic).values_list("sop_uid", flat=True)
        )
        figure("instances_sent", len(sent_uids), "")
        figure("instances_stored", len(set(rows) & sent_uids), "")
        figure("instances_lost", len(sent_uids - set(rows)), "", "sent and not in the index")
        figure("instances_duplicated", sum(n - 1 for n in rows.values()), "", "extra index rows")

        studies = Study.objects.filter(institution=clinic, study_uid__in=study_uids)
        per_study = Counter(
            dict(
                Referral.objects.filter(study__in=studies)
                .values_list("study_id")
                .annotate(n=Count("pk"))
                .values_list("study_id", "n")
            )
        )
        figure(
            "referrals_routed",
            Referral.objects.filter(study__in=studies, status=ReferralStatus.ROUTED).count(),
            "",
        )
        figure(
            "referrals_lost",
            len(study_uids) - len(per_study),
            "",
            "studies that never got their automatic referral",
        )
        figure("referrals_duplicated", sum(n - 1 for n in per_study.values()), "")
        figure("hooks_pending", studies.exclude(stable_hooks_pending=[]).count(), "studies")

        participants = self.room_participants
        ids = [room[0][0] for room in rooms_spec]
        stored_counts = Counter(
            RoomEvent.objects.filter(session_id__in=ids).values_list("session_id", "seq")
        )
        figure("room_events", sum(stored_counts.values()), "", "stored, across the rooms")
        # Lost: stored while a client was in its room and never delivered to it, by the time
        # the clients left (rooms_run's own count stops at its 15 s settle: those that came
        # later are "late", not lost).
        lost = 0
        for p in participants:
            wanted = {
                seq for seq in self.room_stored.get(p.session_id, []) if seq > (p.first_seq or 0)
            }
            for seq in sorted(wanted - p.seqs):
                lost += 1
                kind = list(
                    RoomEvent.objects.filter(session_id=p.session_id, seq=seq).values_list(
                        "type", flat=True
                    )
                )
                self.say(
                    f"  room {p.session_id} user {p.user_id}: never got seq {seq} {kind}; "
                    f"it holds up to {p.contiguous} without a gap; snapshots {p.snapshots}, "
                    f"refused {p.refused}, errors {p.errors[-2:]}"
                )
        figure("room_events_lost", lost, "", "stored, never delivered to a client in the room")
        figure(
            "room_events_late",
            self.room_result.lost - lost,
            "",
            "delivered, but not within 15 s of the last one sent",
        )
        figure(
            "room_events_duplicated",
            sum(p.duplicates for p in participants) + sum(n - 1 for n in stored_counts.values()),
            "",
            "delivered again after a resume, or stored twice",
        )

        orphans, lost_objects = self.reconcile(clinic)
        figure("orphans", orphans, "objects", "manage.py reconcile_storage on the bucket")
        figure("objects_lost", lost_objects, "", "this run's rows without their object")

        delays = countdowns.every_delay()
        longest = max(delays, key=lambda d: d.seconds)
        visibility = float(self.env_visibility())
        figure(
            "max_countdown_seconds",
            longest.seconds if math.isfinite(longest.seconds) else 1e9,
            "s",
            f"{longest.where} {longest.what}",
        )
        figure("visibility_timeout_seconds", visibility, "s")
        run_times = self.task_run_times()
        if run_times:
            name, seconds = max(run_times.items(), key=lambda kv: kv[1])
            figure("longest_task_run_seconds", seconds, "s", name)
        self.say(f"faults, in order: {'; '.join(faults.log)}")

    def env_visibility(self) -> str:
        return self.env.get(
            "CELERY_VISIBILITY_TIMEOUT",
            str(int(countdowns.visibility_timeout())),
        )

    def task_run_times(self) -> dict[str, float]:
        longest: dict[str, float] = {}
        for service in self.services:
            if not service.name.startswith("worker-"):
                continue
            with contextlib.suppress(FileNotFoundError):
                for name, seconds in SUCCEEDED.findall(
                    service.log_path.read_text(errors="replace")
                ):
                    longest[name] = max(longest.get(name, 0.0), float(seconds))
        return longest

    def reconcile(self, clinic: Institution) -> tuple[int, int]:
        """`manage.py reconcile_storage` against the bucket: its orphans; and the objects
        of this run's rows that the bucket lacks (the command's own "lost" also counts the
        rows of other sites of a shared database, whose objects live elsewhere)."""
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, str(MANAGE), "reconcile_storage"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        text = result.stdout + result.stderr
        found = re.search(r"(\d+) orphans", text)
        if found is None:
            raise BenchError(f"reconcile_storage said nothing about orphans:\n{text[-2000:]}")
        keys: set[str] = set()
        paginator = self.s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix="instances/"):
            keys.update(item["Key"] for item in page.get("Contents", []))
        from referrals.models import instance_object_key

        wanted = {
            instance_object_key(object_id)
            for object_id in Instance.objects.filter(institution=clinic).values_list(
                "object_id", flat=True
            )
        }
        return int(found.group(1)), len(wanted - keys)
