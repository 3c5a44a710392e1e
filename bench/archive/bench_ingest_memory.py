"""manage.py bench_ingest_memory: peak RSS of the web process (uvicorn, one worker) while a
1 GB study is stored over STOW-RS, against its RSS before; and the same for 100 MB, to show
the growth does not follow the study's size."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from bench.archive.corpus import ct_corpus, total_bytes
from bench.archive.stow_client import stow_send
from bench.harness.command import BenchCommand
from bench.harness.processes import RssSampler, start_uvicorn

MB = 2**20
# "Flat": the bigger study may cost at most this much more memory than the small one.
FLAT_TOLERANCE_MB = 32


class Command(BenchCommand):
    help = (
        "Peak RSS of a one-worker uvicorn while a study is stored over STOW-RS (1 GB and "
        "100 MB), sampled every 20 ms, against its RSS before the upload."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--instances",
            type=int,
            default=2000,
            help="slices of the big study (2,000 x 0.5 MB = 1 GB)",
        )
        parser.add_argument(
            "--small-instances",
            type=int,
            default=200,
            help="slices of the small study (200 x 0.5 MB = 100 MB)",
        )
        parser.add_argument("--size", type=int, default=512)
        parser.add_argument(
            "--batch",
            type=int,
            default=0,
            help="instances per request (0: the whole study in one request)",
        )
        parser.add_argument("--interval", type=float, default=0.02, help="sampling, seconds")

    def run(self, **options: Any) -> None:
        files = ct_corpus(
            studies=1, per_study=options["instances"], size=options["size"], say=self.say
        )
        growth = {}
        for label, subset in (("small", files[: options["small_instances"]]), ("big", files)):
            growth[label] = self.one(label, subset, options)
        difference = (growth["big"] - growth["small"]) / MB
        self.out.figure(
            "memory.growth_difference_mb",
            difference,
            "MB",
            "growth with the big study minus growth with the small one",
        )
        small_mb = total_bytes(files[: options["small_instances"]]) / MB
        self.out.goal(
            "ingest memory flat in the study's size",
            difference < FLAT_TOLERANCE_MB,
            f"{difference:+.1f} MB between {small_mb:.0f} MB and "
            f"{total_bytes(files) / MB:.0f} MB studies (tolerance "
            f"{FLAT_TOLERANCE_MB} MB)",
        )

    def one(self, label: str, files: list[Path], options: dict[str, Any]) -> int:
        size_mb = total_bytes(files) / MB
        uvicorn = start_uvicorn(workers=1, log_dir=self.log_dir, name=f"uvicorn-{label}")
        try:
            url = f"{uvicorn.base_url}/dicomweb/studies"
            warm = self.new_site("bench-mem-warm")
            # Warm: the code paths of a store (imports, caches, a first connection) are in.
            stow_send(url, files[:5], batch=5, clients=1, headers=warm.auth_header)
            time.sleep(1.0)
            site = self.new_site("bench-mem")
            with RssSampler(uvicorn.pid, interval=options["interval"]) as sampler:
                time.sleep(0.5)
                before = sampler.rss_now()
                batch = options["batch"] or len(files)
                result = stow_send(
                    url, files, batch=batch, clients=1, headers=site.auth_header, timeout=3600
                )
            after = sampler.rss_now()
        finally:
            uvicorn.stop()
        peak = max(sampler.peak, before)
        self.say(
            f"{label}: {result.instances} instances, {size_mb:.0f} MB in "
            f"{result.requests} request(s), {result.seconds:.1f} s; "
            f"{len(sampler.samples)} samples; RSS after {after / MB:.1f} MB"
        )
        self.out.figure(f"memory.{label}.study_mb", size_mb, "MB")
        self.out.figure(f"memory.{label}.rss_before_mb", before / MB, "MB")
        self.out.figure(f"memory.{label}.rss_peak_mb", peak / MB, "MB")
        self.out.figure(f"memory.{label}.growth_mb", (peak - before) / MB, "MB")
        return peak - before
