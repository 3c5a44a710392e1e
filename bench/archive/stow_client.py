"""A STOW-RS client for load: N threads, each posting batches of files as multipart/related."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub_gateway.hub import MultipartBody, parse_store_response

from bench.harness.processes import http


@dataclass
class StowResult:
    instances: int = 0  # named in ReferencedSOPSequence
    failed: int = 0  # named in FailedSOPSequence, or in a request that failed as a whole
    bytes_sent: int = 0
    seconds: float = 0.0
    server_cpu_seconds: float = 0.0  # filled in by the caller, who knows the server
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes_sent / 2**20 / self.seconds if self.seconds else 0.0


def batches(paths: Sequence[Path], size: int) -> list[list[Path]]:
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


def stow_send(
    url: str,
    paths: Sequence[Path],
    *,
    batch: int,
    clients: int,
    headers: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> StowResult:
    """POST `paths` to `url` in batches of `batch`, `clients` requests at a time.

    Bodies stream from disk (the gateway's own MultipartBody), so the client's memory stays
    small and its CPU cost is the copy to the socket. The clock runs from the first request
    sent to the last answer read.
    """
    work: queue.Queue[list[Path]] = queue.Queue()
    for group in batches(paths, batch):
        work.put(group)
    result = StowResult()
    lock = threading.Lock()

    def client() -> None:
        session = http()
        while True:
            try:
                group = work.get_nowait()
            except queue.Empty:
                return
            body = MultipartBody(group)
            size = sum(p.stat().st_size for p in group)
            try:
                response = session.post(
                    url,
                    data=body,
                    timeout=timeout,
                    headers={
                        **(headers or {}),
                        "Content-Type": body.content_type,
                        "Accept": "application/dicom+json",
                    },
                )
                status, content = response.status_code, response.content
            except Exception as exc:  # a load client counts failures, it does not stop
                status, content = 0, str(exc).encode()
            finally:
                body.close()
            referenced = failed = 0
            try:
                answer = parse_store_response(content, status)
                referenced, failed = len(answer.referenced), len(answer.failed)
            except ValueError:
                failed = len(group)
            with lock:
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.instances += referenced
                result.failed += failed if referenced + failed else len(group)
                result.bytes_sent += size
                if status not in (200, 202) and len(result.errors) < 5:
                    result.errors.append(f"{status}: {content[:160]!r}")

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    return result
