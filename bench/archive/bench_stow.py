"""manage.py bench_stow: STOW-RS ingest into the hub vs. Orthanc, same corpus, same run;
and C-STORE into Orthanc over parallel associations (bench_gateway's yardstick)."""

from __future__ import annotations

import shutil
import tempfile
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from bench.archive.corpus import (
    ct_corpus,
    interleaved,
    pydicom_test_files,
    total_bytes,
    uncompressed,
)
from bench.archive.stow_client import StowResult, stow_send
from bench.harness.command import BenchCommand
from bench.harness.processes import (
    orthanc_count,
    orthanc_cstore,
    orthanc_ensure_installed,
    start_orthanc,
    start_uvicorn,
)
from bench.harness.profile import PySpy, summarise
from referrals.models import Instance


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once, so neither server's run pays for the first disk read."""
    for path in paths:
        with path.open("rb") as fp:
            while fp.read(1 << 20):
                pass


class Command(BenchCommand):
    help = (
        "STOW-RS throughput of the hub (uvicorn, PostgreSQL, local storage) and of Orthanc "
        "with the same corpus, clients and batches; C-STORE into Orthanc with storescu."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--studies", type=int, default=8, help="synthetic CT studies")
        parser.add_argument("--per-study", type=int, default=250, help="slices per study")
        parser.add_argument("--size", type=int, default=512, help="rows = columns per slice")
        parser.add_argument(
            "--no-pydicom-files",
            action="store_true",
            help="leave pydicom's test files out of the corpus",
        )
        parser.add_argument("--clients", type=int, default=4, help="concurrent STOW clients")
        parser.add_argument("--batch", type=int, default=10, help="instances per request")
        parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
        parser.add_argument(
            "--associations", type=int, default=4, help="parallel storescu associations for C-STORE"
        )
        parser.add_argument(
            "--no-orthanc",
            action="store_true",
            help="skip Orthanc (smoke tests only: the comparison needs it)",
        )
        parser.add_argument(
            "--interleave",
            action="store_true",
            help="send the studies interleaved (clients store into different "
            "studies at once) instead of one study after the other",
        )
        parser.add_argument(
            "--profile",
            action="store_true",
            help="record the hub's workers with py-spy during the STOW run",
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
        if options["interleave"]:
            corpus = interleaved(corpus, options["batch"])
        warm_page_cache(corpus)
        size = total_bytes(corpus)
        self.say(
            f"corpus: {len(corpus)} instances, {size / 2**20:.1f} MB "
            f"({options['studies']} x {options['per_study']} CT slices "
            f"{options['size']}x{options['size']}"
            + ("" if options["no_pydicom_files"] else " + pydicom's test files")
            + "); "
            f"{options['clients']} clients, {options['batch']} instances per request, "
            + ("studies interleaved" if options["interleave"] else "study after study")
        )

        hub = self.hub_stow(corpus, options)
        if options["no_orthanc"]:
            self.say("Orthanc skipped (--no-orthanc): no ratio")
            return
        plugin = orthanc_ensure_installed(self.say)
        orthanc = self.orthanc_stow(corpus, plugin, options)
        ratio = hub.per_second / orthanc.per_second if orthanc.per_second else 0.0
        self.out.figure(
            "stow.ratio_hub_to_orthanc",
            ratio,
            "x",
            "hub instances/s divided by Orthanc's, same corpus and clients",
        )
        self.out.goal("STOW-RS >= 1.5x Orthanc", ratio >= 1.5, f"{ratio:.2f}x")
        self.orthanc_cstore(corpus, plugin, options)

    def report(self, who: str, result: StowResult) -> None:
        self.say(
            f"{who}: {result.instances} stored, {result.failed} refused, "
            f"{result.requests} requests {result.statuses}, {result.seconds:.2f} s"
        )
        for error in result.errors:
            self.say(f"  {who} error: {error}")
        self.out.figure(f"stow.{who}.instances_per_s", result.per_second, "instances/s")
        self.out.figure(f"stow.{who}.mb_per_s", result.mb_per_second, "MB/s")
        if result.instances:
            self.out.figure(
                f"stow.{who}.server_cpu_ms_per_instance",
                1000 * result.server_cpu_seconds / result.instances,
                "ms",
                "CPU time of the server's processes (user + system) per instance",
            )

    def hub_stow(self, corpus: list[Path], options: dict[str, Any]) -> StowResult:
        site = self.new_site("bench-stow")
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        try:
            url = f"{uvicorn.base_url}/dicomweb/studies"
            cpu_before = uvicorn.cpu_seconds()
            if options["profile"]:
                with PySpy(uvicorn.pid, self.log_dir / "stow-hub.pyspy.txt"):
                    result = stow_send(
                        url,
                        corpus,
                        batch=options["batch"],
                        clients=options["clients"],
                        headers=site.auth_header,
                    )
                self.say(
                    "profile of the hub's workers during STOW-RS:\n"
                    + summarise(self.log_dir / "stow-hub.pyspy.txt")
                )
            else:
                result = stow_send(
                    url,
                    corpus,
                    batch=options["batch"],
                    clients=options["clients"],
                    headers=site.auth_header,
                )
            result.server_cpu_seconds = uvicorn.cpu_seconds() - cpu_before
        finally:
            uvicorn.stop()
        rows = Instance.objects.filter(institution=site.institution).count()
        self.say(f"hub: {rows} instance rows for site {site.institution.code}")
        self.report("hub", result)
        return result

    def orthanc_stow(self, corpus: list[Path], plugin: str, options: dict[str, Any]) -> StowResult:
        workdir = Path(tempfile.mkdtemp(prefix="hub-bench-orthanc-"))
        orthanc = start_orthanc(workdir=workdir, plugin=plugin, log_dir=self.log_dir)
        try:
            cpu_before = orthanc.cpu_seconds()
            result = stow_send(
                f"{orthanc.base_url}/dicom-web/studies",
                corpus,
                batch=options["batch"],
                clients=options["clients"],
            )
            result.server_cpu_seconds = orthanc.cpu_seconds() - cpu_before
            self.say(f"orthanc: {orthanc_count(orthanc)} instances held")
        finally:
            orthanc.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        self.report("orthanc", result)
        return result

    def orthanc_cstore(self, corpus: list[Path], plugin: str, options: dict[str, Any]) -> None:
        corpus = uncompressed(corpus)
        held, seconds = orthanc_cstore(
            corpus, plugin=plugin, associations=options["associations"], log_dir=self.log_dir
        )
        self.say(
            f"orthanc C-STORE: {held} of {len(corpus)} uncompressed instances held after "
            f"{seconds:.2f} s"
        )
        self.out.figure(
            "cstore.orthanc.instances_per_s",
            held / seconds,
            "instances/s",
            f"{options['associations']} storescu associations",
        )
        self.out.figure("cstore.orthanc.mb_per_s", total_bytes(corpus) / 2**20 / seconds, "MB/s")
