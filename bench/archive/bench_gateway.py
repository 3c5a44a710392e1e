"""manage.py bench_gateway: C-STORE through `run_gateway` to the hub, from storescu's first
association to the last instance the hub confirmed (its Instance row committed)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from bench.archive.corpus import (
    ct_corpus,
    pydicom_test_files,
    total_bytes,
    uncompressed,
)
from bench.harness.command import BenchCommand
from bench.harness.processes import (
    MANAGE,
    BenchError,
    Service,
    child_env,
    free_port,
    orthanc_cstore,
    orthanc_ensure_installed,
    start,
    start_uvicorn,
    storescu_parallel,
    wait_until,
)
from bench.harness.profile import PySpy, summarise
from bench.harness.sites import gateway_credential
from referrals.models import Instance

GATEWAY_AE = "HUB_GW"
MODALITY_AE = "BENCH_CT"


class Command(BenchCommand):
    help = (
        "C-STORE throughput through the edge gateway (run_gateway) into the hub: received "
        "by the gateway, and confirmed by the hub; and Orthanc's C-STORE in the same run."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--studies", type=int, default=8)
        parser.add_argument("--per-study", type=int, default=250)
        parser.add_argument("--size", type=int, default=512)
        parser.add_argument("--no-pydicom-files", action="store_true")
        parser.add_argument("--associations", type=int, default=4)
        parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
        parser.add_argument(
            "--forward-workers",
            type=int,
            default=2,
            help="the gateway's parallel STOW-RS requests (its default: 2)",
        )
        parser.add_argument(
            "--batch-files",
            type=int,
            default=20,
            help="the gateway's instances per request (its default: 20)",
        )
        parser.add_argument(
            "--no-orthanc",
            action="store_true",
            help="skip Orthanc's C-STORE yardstick (smoke tests only)",
        )
        parser.add_argument(
            "--profile",
            action="store_true",
            help="record the hub's workers and the gateway with py-spy",
        )

    def run(self, **options: Any) -> None:
        corpus = ct_corpus(
            studies=options["studies"],
            per_study=options["per_study"],
            size=options["size"],
            say=self.say,
        )
        if not options["no_pydicom_files"]:
            corpus += pydicom_test_files()
        # storescu cannot propose each compressed file's own syntax: native files only.
        corpus = uncompressed(corpus)
        self.say(
            f"corpus: {len(corpus)} instances, {total_bytes(corpus) / 2**20:.1f} MB; "
            f"{options['associations']} storescu associations"
        )
        received = self.through_gateway(corpus, options)
        if options["no_orthanc"]:
            self.say("Orthanc skipped (--no-orthanc)")
            return
        plugin = orthanc_ensure_installed(self.say)
        held, seconds = orthanc_cstore(
            corpus, plugin=plugin, associations=options["associations"], log_dir=self.log_dir
        )
        orthanc_rate = held / seconds
        self.out.figure(
            "cstore.orthanc.instances_per_s",
            orthanc_rate,
            "instances/s",
            f"{held} held, same corpus and associations",
        )
        self.out.goal(
            "gateway receives >= Orthanc's C-STORE",
            received >= orthanc_rate,
            f"{received:.1f} vs {orthanc_rate:.1f} instances/s, {received / orthanc_rate:.2f}x",
        )

    def through_gateway(self, corpus: list[Path], options: dict[str, Any]) -> float:
        site = self.new_site("bench-gw")
        key_id, secret = gateway_credential(site, [MODALITY_AE])
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        gateway: Service | None = None
        try:
            gateway = self.start_gateway(uvicorn, key_id, secret, options)
            return self.measure(corpus, site.institution.pk, gateway, uvicorn, options)
        finally:
            if gateway is not None:
                gateway.stop(timeout=45)
                shutil.rmtree(gateway.extra["spool"].parent, ignore_errors=True)
            uvicorn.stop()

    def start_gateway(
        self, uvicorn: Service, key_id: str, secret: str, options: dict[str, Any]
    ) -> Service:
        port = free_port()
        spool = Path(tempfile.mkdtemp(prefix="hub-bench-spool-"))
        argv: list[str | Path] = [
            sys.executable,
            MANAGE,
            "run_gateway",
            "--ae-title",
            GATEWAY_AE,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--spool",
            spool / "spool",
            "--hub-url",
            f"{uvicorn.base_url}/dicomweb/studies",
            "--key-id",
            key_id,
            "--forward-workers",
            str(options["forward_workers"]),
            "--batch-files",
            str(options["batch_files"]),
            "--min-free-mb",
            "0",
            "--retry-base",
            "0.2",
            "--retry-max",
            "2",
            "-v",
            "1",
        ]
        # The gateway needs no database: give it one that does not exist, as in production.
        env = child_env(
            GATEWAY_SECRET=secret,
            HUB_DATA_DIR=str(spool / "hub"),
            DATABASE_URL="postgres://nobody@127.0.0.1:9/no_database",
        )
        gateway = start("gateway", argv, env=env, log_dir=self.log_dir)
        gateway.extra.update(port=port, spool=spool / "spool")
        try:
            wait_until(
                lambda: f"gateway {GATEWAY_AE} running" in gateway.log_path.read_text(),
                timeout=60,
                what="the gateway to start",
                watch=[gateway],
            )
        except BaseException:
            gateway.stop()
            raise
        return gateway

    def measure(
        self,
        corpus: list[Path],
        institution_id: int,
        gateway: Service,
        uvicorn: Service,
        options: dict[str, Any],
    ) -> float:
        stored = Instance.objects.filter(institution_id=institution_id).count
        spool: Path = gateway.extra["spool"]

        def spool_empty() -> bool:
            # The gateway deletes a spooled file only once the hub confirmed it (or moves it
            # to rejected/ when the hub refused it for good).
            return not any(spool.glob("*.dcm"))

        profiles = []
        if options["profile"]:
            profiles = [
                PySpy(uvicorn.pid, self.log_dir / "gateway-hub.pyspy.txt"),
                PySpy(gateway.pid, self.log_dir / "gateway-gw.pyspy.txt"),
            ]
            for profile in profiles:
                profile.__enter__()
        try:
            start_time = time.perf_counter()
            seconds, codes = storescu_parallel(
                corpus,
                port=gateway.extra["port"],
                called=GATEWAY_AE,
                calling=MODALITY_AE,
                associations=options["associations"],
                log_dir=self.log_dir,
            )
            sent_at = time.perf_counter()
            if any(codes):
                raise BenchError(f"storescu failed (exit codes {codes}); see {self.log_dir}")
            wait_until(
                spool_empty,
                timeout=max(300.0, seconds * 10),
                what="the gateway's spool to empty",
                watch=[gateway, uvicorn],
                interval=0.02,
            )
            confirmed_at = time.perf_counter()
        finally:
            for profile in profiles:
                profile.__exit__(None, None, None)
        for profile in profiles:
            self.say(f"profile {profile.output.name}:\n{summarise(profile.output)}")
        held = stored()
        refused = len(list((spool / "rejected").glob("*.dcm")))
        sent = held + refused
        received = sent / seconds
        delay = confirmed_at - sent_at
        self.say(
            f"gateway: {sent} of {len(corpus)} files received in {seconds:.2f} s "
            f"(storescu could not send {len(corpus) - sent}: see its logs); the hub "
            f"stored {held} and refused {refused} (the gateway's rejected/), the last "
            f"{confirmed_at - start_time:.2f} s after the first association"
        )
        self.out.figure(
            "gateway.received.instances_per_s",
            received,
            "instances/s",
            "storescu start to last C-STORE response",
        )
        self.out.figure(
            "gateway.confirmed.instances_per_s",
            held / (confirmed_at - start_time),
            "instances/s",
            "storescu start to the last Instance row at the hub",
        )
        self.out.figure(
            "gateway.confirm_delay_s",
            delay,
            "s",
            "last C-STORE response to last instance confirmed by the hub",
        )
        self.out.goal(
            "every instance confirmed within 5 s of the last sent", delay <= 5.0, f"{delay:.2f} s"
        )
        return received
