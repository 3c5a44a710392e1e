"""Helpers for the gateway tests: a scriptable fake hub (a real HTTP server) and configs."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
from hub_gateway.config import GatewayConfig, load_config

KEY_ID = "gw_0123456789abcdef"
SECRET = "s3cret-for-tests-only"


def gateway_config(spool: Path, hub_url: str, **overrides: Any) -> GatewayConfig:
    options: dict[str, Any] = {
        "ae_title": "HUB_GW",  # the title the tests' modalities call
        "spool_dir": str(spool),
        "hub_url": hub_url,
        "key_id": KEY_ID,
        "retry_base": "0.01",
        "retry_max": "0.05",
        "port": "11112",
        "min_free_mb": "0",
    }
    options.update({k: str(v) for k, v in overrides.items()})
    return load_config(options, environ={"GATEWAY_SECRET": SECRET})


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


def sop_uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def element(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


@dataclass
class Reply:
    """A scripted answer: an HTTP status and body, or `drop` the connection."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    store_first: bool = False  # drop after storing (the answer is lost, the data is not)


class FakeHub:
    """A real HTTP server that speaks enough STOW-RS and whoami to test the gateway.

    By default it stores every part like the hub does: new -> referenced; same UID and
    same bytes -> referenced again (no copy); same UID, other bytes -> failed 0x0111.
    `script` holds replies used first, one per STOW request; `refuse` maps a SOP UID to a
    failure reason the hub gives for it.
    """

    def __init__(self, port: int = 0, calling_ae_titles: list[str] | None = None) -> None:
        self.stored: dict[str, bytes] = {}
        self.requests: list[list[str]] = []  # SOP UIDs of each STOW request
        self.script: list[Reply] = []
        self.refuse: dict[str, int] = {}
        self.calling_ae_titles = ["CT_ROOM1"] if calling_ae_titles is None else calling_ae_titles
        self.whoami_status = 200
        self.max_parts: int | None = None  # answer 413 to bigger requests
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _authorised(self) -> bool:
                expected = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
                return self.headers.get("Authorization") == f"Basic {expected}"

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/api/v1/gateway/whoami/":
                    self._send(404, b"not found", "text/plain")
                    return
                if not self._authorised() or hub.whoami_status == 401:
                    self._send(
                        401,
                        b'{"detail": "Unknown or revoked gateway credential."}',
                        "application/json",
                    )
                    return
                body = json.dumps(
                    {
                        "key_id": KEY_ID,
                        "institution": {"id": 1, "code": "north-clinic"},
                        "calling_ae_titles": hub.calling_ae_titles,
                        "server_time": "2025-01-01T00:00:00Z",
                    }
                ).encode()
                self._send(200, body, "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if not self._authorised():
                    self._send(401, b'{"detail": "no"}', "application/json")
                    return
                parts = split_multipart(body, self.headers["Content-Type"])
                with hub.lock:
                    hub.requests.append([sop_uid_of(p) for p in parts])
                    reply = hub.script.pop(0) if hub.script else None
                if reply is None and hub.max_parts is not None and len(parts) > hub.max_parts:
                    reply = Reply(413, b"too large")
                if reply is not None and not reply.store_first:
                    if reply.drop:
                        self.close_connection = True
                        self.connection.close()
                        return
                    self._send(reply.status, reply.body, "application/dicom+json", reply.headers)
                    return
                answer = hub.store(parts)
                if reply is not None and reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                # Like the hub: 200 all stored, 202 some refused, 409 all refused.
                status = 409 if "00081199" not in answer else 202 if "00081198" in answer else 200
                self._send(status, json.dumps(answer).encode(), "application/dicom+json")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def store(self, parts: list[bytes]) -> dict[str, Any]:
        referenced, failed = [], []
        with self.lock:
            for part in parts:
                uid = sop_uid_of(part)
                reason = self.refuse.get(uid)
                if reason is None and uid in self.stored and self.stored[uid] != part:
                    reason = 0x0111
                if reason is not None:
                    failed.append(
                        {
                            "00081155": element("UI", uid),
                            "00081197": element("US", reason),
                            "00091001": element("LT", f"refused with {reason:#06x}"),
                        }
                    )
                    continue
                self.stored.setdefault(uid, part)
                referenced.append({"00081155": element("UI", uid)})
        answer: dict[str, Any] = {}
        if referenced:
            answer["00081199"] = {"vr": "SQ", "Value": referenced}
        if failed:
            answer["00081198"] = {"vr": "SQ", "Value": failed}
        return answer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicomweb/studies"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def run_until(step: Callable[[], object], done: Callable[[], bool], *, limit: int = 200) -> int:
    """Call `step` until `done()` (at most `limit` times); returns how many calls it took."""
    for count in range(1, limit + 1):
        step()
        if done():
            return count
    raise AssertionError(f"not done after {limit} steps")
