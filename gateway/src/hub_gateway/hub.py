"""Talking to the hub: the credential check (whoami) and STOW-RS requests with their answers.

A STOW-RS body is streamed from the spooled files (memory does not grow with the batch),
with a Content-Length, since not every server reads a chunked request body.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from .config import GatewayConfig
from .spool import SpoolItem

DICOM_JSON = "application/dicom+json"
# PS3.18 / PS3.4 failure reasons the hub may try again later; every other reason in a
# FailedSOPSequence (0xA9xx data set does not match, 0xC000 cannot understand, 0x0111
# duplicate with different bytes, 0x0122 SOP class not supported...) is for good.
RETRY_REASONS = frozenset({0x0110, 0x0213})
# The hub kept the instance but filed it for a person to review (its patient contradicts the
# study it names): delivered, so it leaves the spool; neither retried nor set aside as
# rejected (the hub's referrals/archive/dicom_checks.py HELD_FOR_RECONCILIATION).
HELD_REASONS = frozenset({0xC002})
# The hub's reason in words rides in a private element (the hub's
# referrals/archive/dicomweb/stow.py).
_PRIVATE_MESSAGE = "00091001"


def reason_is_held(reason: int | None) -> bool:
    return reason in HELD_REASONS


def reason_is_transient(reason: int | None) -> bool:
    if reason is None:
        return True  # the hub gave no reason: nothing says it will refuse again
    return reason in RETRY_REASONS or (reason & 0xFF00) == 0xA700


class HubUnavailableError(Exception):
    """The request did not get a usable answer: network, 5xx, 429, credential, odd reply.

    Nothing is known about the instances, so they stay spooled and are sent again.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class CredentialRefusedError(HubUnavailableError):
    """401/403: the hub does not accept this site's credential."""


class HubRefusedRequestError(Exception):
    """The hub refused the request because of its content (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class FailedInstance:
    sop_instance_uid: str
    reason: int | None
    message: str


@dataclass
class StoreAnswer:
    """The hub's store response (PS3.18 10.5.3): what it now holds and what it refused."""

    referenced: list[str] = field(default_factory=list)
    failed: list[FailedInstance] = field(default_factory=list)
    status: int = 200


def _first(item: dict[str, Any], tag: str) -> Any:
    value = item.get(tag, {}).get("Value") if isinstance(item.get(tag), dict) else None
    return value[0] if isinstance(value, list) and value else None


def parse_store_response(body: bytes, status: int = 200) -> StoreAnswer:
    """Read a DICOM JSON store response; ValueError if the body is not one."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("a store response is a JSON object")
    answer = StoreAnswer(status=status)
    for tag, target in (("00081199", "referenced"), ("00081198", "failed")):
        sequence = data.get(tag)
        if sequence is None:
            continue
        items = sequence.get("Value", []) if isinstance(sequence, dict) else None
        if not isinstance(items, list):
            raise ValueError(f"({tag[:4]},{tag[4:]}) is not a sequence")
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("a sequence item is not an object")
            uid = str(_first(item, "00081155") or "")
            if target == "referenced":
                answer.referenced.append(uid)
                continue
            raw_reason = _first(item, "00081197")
            try:
                reason = int(raw_reason) if raw_reason is not None else None
            except (TypeError, ValueError):
                reason = None
            message = str(_first(item, _PRIVATE_MESSAGE) or "")
            answer.failed.append(FailedInstance(uid, reason, message))
    return answer


class MultipartBody:
    """A multipart/related body read piece by piece from the spooled files."""

    def __init__(self, paths: Sequence[Path], boundary: str | None = None) -> None:
        self.boundary = boundary or secrets.token_hex(16)
        head = (f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode()
        self._segments: list[bytes | Path] = []
        self._length = 0
        for path in paths:
            self._segments += [head, path, b"\r\n"]
            self._length += len(head) + path.stat().st_size + 2
        tail = f"--{self.boundary}--\r\n".encode()
        self._segments.append(tail)
        self._length += len(tail)
        self._index = 0
        self._file: IO[bytes] | None = None
        self._offset = 0

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        size = self._length if size is None or size < 0 else size
        out: list[bytes] = []
        wanted = size
        while wanted > 0 and self._index < len(self._segments):
            segment = self._segments[self._index]
            if isinstance(segment, Path):
                if self._file is None:
                    self._file = segment.open("rb")
                chunk = self._file.read(wanted)
                if not chunk:
                    self._file.close()
                    self._file = None
                    self._index += 1
                    continue
            else:
                chunk = segment[self._offset : self._offset + wanted]
                self._offset += len(chunk)
                if self._offset == len(segment):
                    self._offset = 0
                    self._index += 1
            out.append(chunk)
            wanted -= len(chunk)
        return b"".join(out)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our hub; the backoff decides instead


def _describe(exc: requests.RequestException, timeout: float) -> str:
    """The cause a clinic's IT person can act on, not urllib3's nesting of wrappers."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    if found:
        return found.group(0).strip()
    if isinstance(exc, requests.ConnectionError) and "RemoteDisconnected" in str(exc):
        return "the connection was closed before the hub answered"
    return f"{type(exc).__name__}: {_short(str(exc))}"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class HubClient:
    """One HTTP session to the hub (use one per thread: sessions are not thread-safe)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.session = requests.Session()
        self.session.auth = (config.key_id, config.secret)
        self.session.headers["User-Agent"] = f"alliance-hub-gateway ({config.ae_title})"
        if config.ca_bundle is not None:
            self.session.verify = str(config.ca_bundle)
        self._timeout = (min(10.0, config.timeout), config.timeout)

    def close(self) -> None:
        self.session.close()

    def whoami(self, url: str) -> dict[str, Any]:
        """The credential's identity: site, accepted calling AE titles."""
        try:
            response = self.session.get(
                url, timeout=self._timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            raise HubUnavailableError(f"{url}: {_describe(exc, self.config.timeout)}") from None
        if response.status_code in (401, 403):
            raise CredentialRefusedError(
                f"{url}: the hub refused the gateway credential "
                f"(HTTP {response.status_code}: {_short(response.text)})",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise HubUnavailableError(
                f"{url}: HTTP {response.status_code}",
                status=response.status_code,
                retry_after=_retry_after(response),
            )
        try:
            data = response.json()
            titles = data["calling_ae_titles"]
            if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise HubUnavailableError(f"{url}: not a gateway identity answer") from None
        return data

    def worklist(self, url: str) -> list[dict[str, Any]]:
        """The site's scheduled exams as DICOM JSON items (the gateway's Modality Worklist)."""
        try:
            response = self.session.get(
                url, timeout=self._timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            raise HubUnavailableError(f"{url}: {_describe(exc, self.config.timeout)}") from None
        if response.status_code in (401, 403):
            raise CredentialRefusedError(
                f"{url}: the hub refused the gateway credential (HTTP {response.status_code})",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise HubUnavailableError(
                f"{url}: HTTP {response.status_code}",
                status=response.status_code,
                retry_after=_retry_after(response),
            )
        try:
            items = response.json()["items"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise HubUnavailableError(f"{url}: not a worklist answer") from None
        return items

    def store(self, url: str, items: Sequence[SpoolItem]) -> StoreAnswer:
        """POST the items as one STOW-RS request and return the hub's answer."""
        body = MultipartBody([item.path for item in items])
        try:
            response = self.session.post(
                url,
                data=body,
                timeout=self._timeout,
                allow_redirects=False,
                headers={"Content-Type": body.content_type, "Accept": DICOM_JSON},
            )
        except requests.RequestException as exc:
            raise HubUnavailableError(f"{url}: {_describe(exc, self.config.timeout)}") from None
        finally:
            body.close()
        status = response.status_code
        if status in (200, 202, 409):
            try:
                return parse_store_response(response.content, status)
            except ValueError:
                if status == 409:
                    raise HubRefusedRequestError(status, _short(response.text)) from None
                raise HubUnavailableError(
                    f"{url}: HTTP {status} without a readable store response", status=status
                ) from None
        if status in (401, 403):
            raise CredentialRefusedError(
                f"{url}: the hub refused the gateway credential (HTTP {status})", status=status
            )
        if status == 429 or status >= 500:
            raise HubUnavailableError(
                f"{url}: HTTP {status} {_short(response.text, 120)}",
                status=status,
                retry_after=_retry_after(response),
            )
        if status in (400, 413, 415):
            raise HubRefusedRequestError(status, _short(response.text))
        # 3xx, 404, 405...: a configuration problem (wrong URL), never the files' fault.
        raise HubUnavailableError(
            f"{url}: unexpected HTTP {status}; check the hub URL", status=status
        )
