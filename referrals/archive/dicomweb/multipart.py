"""Streaming reader for multipart/related bodies (STOW-RS): each part to a temp file.

Memory stays flat whatever the study's size: bytes go straight from the request stream to
disk, hashed on the way (the whole file, and its data set without the file meta: see
referrals/archive/digests.py). A part that ends without its closing boundary (a dropped
connection) is never handed on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from django.utils.translation import gettext as _
from python_multipart.multipart import MultipartParser

from referrals.archive.digests import DicomDigests


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message."""


class BodyTooLargeError(ValueError):
    pass


@dataclass
class ReceivedPart:
    headers: dict[str, str]
    path: Path
    size: int
    sha256: str
    too_large: bool = False
    dataset_sha256: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["content-type"] = value
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


@dataclass
class _PartState:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: bytearray = field(default_factory=bytearray)
    field_value: bytearray = field(default_factory=bytearray)
    file: BinaryIO | None = None
    path: Path | None = None
    digest: DicomDigests | None = None
    size: int = 0
    too_large: bool = False


def read_parts(
    stream: BinaryIO,
    *,
    boundary: str,
    spool_dir: Path,
    part_limit: int,
    body_limit: int,
    on_part: Callable[[ReceivedPart], None],
    chunk_size: int = 1 << 20,
) -> int:
    """Feed `stream` through the parser, calling `on_part` for each complete part.

    Returns the number of complete parts. Raises MultipartError when the body ends before its
    closing boundary, BodyTooLargeError past `body_limit`.
    """
    spool_dir.mkdir(parents=True, exist_ok=True)
    state = _PartState()
    finished = {"parts": 0, "end": False}

    def part_begin() -> None:
        nonlocal state
        state = _PartState()

    def header_field(data: bytes, start: int, end: int) -> None:
        state.field_name += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        state.field_value += data[start:end]

    def header_end() -> None:
        name = state.field_name.decode("latin-1").strip().lower()
        state.headers[name] = state.field_value.decode("latin-1").strip()
        state.field_name.clear()
        state.field_value.clear()

    def headers_finished() -> None:
        fd, name = tempfile.mkstemp(prefix="stow-", suffix=".part", dir=spool_dir)
        state.file = os.fdopen(fd, "wb")
        state.path = Path(name)
        state.digest = DicomDigests()

    def part_data(data: bytes, start: int, end: int) -> None:
        assert state.file is not None
        assert state.digest is not None
        state.size += end - start
        if state.size > part_limit:
            state.too_large = True  # keep parsing, stop keeping
            return
        chunk = data[start:end]
        state.file.write(chunk)
        state.digest.update(chunk)

    def part_end() -> None:
        if state.file is None or state.path is None or state.digest is None:
            return
        state.file.close()
        part = ReceivedPart(
            state.headers,
            state.path,
            state.size,
            state.digest.file_sha256,
            state.too_large,
            state.digest.dataset_sha256,
        )
        state.file = None
        try:
            on_part(part)
        finally:
            part.path.unlink(missing_ok=True)
            state.path = None
        finished["parts"] += 1

    def end() -> None:
        finished["end"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
            "on_end": end,
        },
    )
    total = 0
    try:
        while chunk := stream.read(chunk_size):
            total += len(chunk)
            if total > body_limit:
                raise BodyTooLargeError(
                    _("The request body is larger than %(limit)s bytes.") % {"limit": body_limit}
                )
            try:
                parser.write(chunk)
            except BodyTooLargeError:
                raise
            except Exception as exc:  # the parser's own errors: malformed framing
                raise MultipartError(_("Malformed multipart body: %(why)s") % {"why": exc}) from exc
        if not finished["end"]:
            raise MultipartError(
                _(
                    "The body ended before its closing boundary (%(parts)s complete part(s) "
                    "were received)."
                )
                % {"parts": finished["parts"]}
            )
    finally:
        if state.file is not None:
            state.file.close()
        if state.path is not None:
            state.path.unlink(missing_ok=True)
    return finished["parts"]
