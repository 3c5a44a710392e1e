"""manage.py bench_fuzz: a DICOM mutation corpus (bench/archive/mutations.py) through STOW-RS
over real HTTP to uvicorn, and through the edge gateway by C-STORE, counting server errors
and watching the web process's memory.

Each case must come back as stored, a duplicate or a specific refusal: a 5xx answer, a
traceback in a server log, a dead process or memory that keeps growing is a failure. The
gateway leg sends the mutated bytes as they are (pynetdicom sends a file's data set without
decoding it); cases whose File Meta is too broken for any sender to name their SOP class are
counted as unsendable, not as passed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from argparse import ArgumentParser
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.presentation import build_context

from bench.archive.bench_gateway import GATEWAY_AE, MODALITY_AE
from bench.archive.bench_gateway import Command as GatewayCommand
from bench.archive.mutations import cases, corpus
from bench.harness.processes import RssSampler, Service, http, start_uvicorn, wait_until
from bench.harness.sites import gateway_credential

SEED = 20_261_207
SERVER_ERROR_MARKS = ("Internal Server Error", "Traceback (most recent call last)")


def _stow_body(data: bytes, boundary: str) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


def _failure_reasons(response: requests.Response) -> list[str]:
    """The FailureReason (0008,1197) of each refused instance, as hex."""
    try:
        failed = response.json().get("00081198", {}).get("Value", [])
        return [f"0x{item['00081197']['Value'][0]:04X}" for item in failed]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return [f"HTTP {response.status_code}"] if response.status_code >= 300 else []


def _server_errors(service: Service) -> int:
    text = service.log_path.read_text(errors="replace")
    return sum(text.count(mark) for mark in SERVER_ERROR_MARKS)


class Command(GatewayCommand):
    help = (
        "A seeded DICOM mutation corpus through STOW-RS and through the edge gateway: "
        "server errors (must be 0), outcomes, and the web process's memory."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--cases", type=int, default=10_000, help="cases over STOW-RS")
        parser.add_argument(
            "--gateway-cases", type=int, default=2_000, help="cases by C-STORE to the gateway"
        )
        parser.add_argument("--clients", type=int, default=2, help="parallel STOW clients")
        parser.add_argument("--seed", type=int, default=SEED)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")

    def run(self, **options: Any) -> None:
        # pydicom's and the sender's complaints about broken cases are expected: keep them
        # out of the figures, for this run only (the command may run inside another process,
        # such as the test suite, whose logging must stay as it was).
        loggers = [logging.getLogger(name) for name in ("pynetdicom", "pydicom")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", module="pydicom")
                self.run_quietly(options)
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)

    def run_quietly(self, options: dict[str, Any]) -> None:
        site = self.new_site("bench-fuzz")
        key_id, secret = gateway_credential(site, [MODALITY_AE])
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        try:
            with RssSampler(uvicorn.pid, interval=0.5) as memory:
                self.through_stow(uvicorn, site.auth_header, memory, options)
                if options["gateway_cases"]:
                    gateway = self.start_gateway(
                        uvicorn,
                        key_id,
                        secret,
                        {"forward_workers": 2, "batch_files": 20},
                    )
                    try:
                        self.through_gateway_cases(gateway, uvicorn, options)
                    finally:
                        gateway.stop(timeout=45)
                        shutil.rmtree(gateway.extra["spool"].parent, ignore_errors=True)
            errors = _server_errors(uvicorn)
            self.out.figure("fuzz.server_errors", errors, "errors", "5xx or tracebacks in logs")
            self.out.figure("fuzz.web.rss_peak_mb", memory.peak / 2**20, "MB")
            self.out.goal("0 server errors", errors == 0, f"{errors} in {uvicorn.log_path}")
        finally:
            uvicorn.stop()

    def through_stow(
        self,
        uvicorn: Service,
        auth: dict[str, str],
        memory: RssSampler,
        options: dict[str, Any],
    ) -> None:
        url = f"{uvicorn.base_url}/dicomweb/studies"
        todo = list(cases(options["cases"], options["seed"], fresh_uids=True))
        statuses: Counter[int] = Counter()
        refusals: Counter[str] = Counter()
        lock = threading.Lock()
        warm: list[int] = []

        def client(share: list[tuple[int, str, str, bytes]]) -> None:
            session = http()
            for number, _name, _kind, data in share:
                boundary = uuid.uuid4().hex
                response = session.post(
                    url,
                    data=_stow_body(data, boundary),
                    headers={
                        **auth,
                        "Accept": "application/dicom+json",
                        "Content-Type": (
                            f'multipart/related; type="application/dicom"; boundary={boundary}'
                        ),
                    },
                    timeout=120,
                )
                reasons = _failure_reasons(response)
                with lock:
                    statuses[response.status_code] += 1
                    refusals.update(reasons)
                    if sum(statuses.values()) == min(500, len(todo)):
                        warm.append(memory.rss_now())
                if response.status_code >= 500:
                    self.say(f"case {number}: HTTP {response.status_code}")

        started = time.perf_counter()
        threads = [
            threading.Thread(target=client, args=(todo[i :: options["clients"]],))
            for i in range(options["clients"])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        end = memory.rss_now()
        server_errors = sum(n for code, n in statuses.items() if code >= 500)
        self.out.line(f"STOW-RS outcomes by HTTP status: {dict(sorted(statuses.items()))}")
        self.out.line(f"STOW-RS refusals by reason: {dict(refusals.most_common())}")
        self.out.figure("fuzz.stow.cases", len(todo), "cases", f"seed {options['seed']}")
        self.out.figure("fuzz.stow.cases_per_s", len(todo) / seconds, "cases/s")
        self.out.figure("fuzz.stow.server_errors", server_errors, "answers", "HTTP 5xx")
        if warm:
            growth = (end - warm[0]) / 2**20
            self.out.figure(
                "fuzz.stow.rss_growth_mb",
                growth,
                "MB",
                f"web RSS after the first {min(500, len(todo))} cases {warm[0] / 2**20:.0f} MB, "
                f"at the end {end / 2**20:.0f} MB",
            )

    def through_gateway_cases(
        self, gateway: Service, uvicorn: Service, options: dict[str, Any]
    ) -> None:
        contexts = {}
        for source in corpus():
            with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
                handle.write(source.data)
                handle.flush()
                meta = dcmread(handle.name, stop_before_pixels=True).file_meta
            if "MediaStorageSOPClassUID" not in meta or "TransferSyntaxUID" not in meta:
                continue
            key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
            contexts[key] = build_context(UID(key[0]), [UID(key[1])])
        ae = AE(ae_title=MODALITY_AE)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        outcomes: Counter[str] = Counter()
        work = Path(tempfile.mkdtemp(prefix="hub-bench-fuzz-"))
        association = None
        started = time.perf_counter()
        try:
            for _number, _name, _kind, data in cases(
                options["gateway_cases"], options["seed"] + 1, fresh_uids=True
            ):
                if association is None or not association.is_established:
                    association = ae.associate(
                        "127.0.0.1",
                        gateway.extra["port"],
                        contexts=list(contexts.values())[:128],
                        ae_title=GATEWAY_AE,
                    )
                    if not association.is_established:
                        raise RuntimeError("the gateway refused the association")
                path = work / "case.dcm"
                path.write_bytes(data)
                try:
                    status = association.send_c_store(path)
                except Exception:
                    # The sender (pydicom or pynetdicom) could not read the File Meta well
                    # enough to send the case: nothing reached the gateway.
                    outcomes["unsendable"] += 1
                    continue
                if not status:
                    outcomes["association lost"] += 1
                else:
                    outcomes[f"0x{int(status.Status):04X}"] += 1
            if association is not None and association.is_established:
                association.release()
            spool: Path = gateway.extra["spool"]
            wait_until(
                lambda: not any(spool.glob("*.dcm")),
                timeout=600,
                what="the gateway's spool to empty",
                watch=[gateway, uvicorn],
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = time.perf_counter() - started
        alive = gateway.alive()
        self.out.line(f"C-STORE outcomes: {dict(sorted(outcomes.items()))}")
        self.out.figure("fuzz.gateway.cases", options["gateway_cases"], "cases")
        self.out.figure("fuzz.gateway.cases_per_s", options["gateway_cases"] / seconds, "cases/s")
        self.out.figure("fuzz.gateway.server_errors", _server_errors(gateway), "errors")
        self.out.goal("the gateway is still running", alive, f"pid {gateway.pid}")
