"""What an incoming DICOM object must satisfy before the hub keeps it.

Each refusal carries a DICOM failure reason (PS3.18 STOW-RS / PS3.4 C-STORE status) and a
sentence a technician can act on.
"""

from __future__ import annotations

import re
import zlib
from typing import BinaryIO

from django.conf import settings

# PS3.4 Annex B / PS3.18 failure reasons used by the hub.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class Refusal(Exception):  # noqa: N818 - a refusal is the domain's word, not an "Error"
    """An instance the hub will not store, and why."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (0x{self.reason:04X})"


def uid_check(value: object, name: str) -> str:
    """A UID as PS3.5 9.1 defines it: digits and dots, no leading zeros, at most 64."""
    text = str(value or "").strip().rstrip("\x00")
    if not text:
        raise Refusal(DATASET_DOES_NOT_MATCH, f"{name} is missing.")
    if len(text) > 64 or not _UID.match(text):
        raise Refusal(DATASET_DOES_NOT_MATCH, f"{name} is not a valid UID.")
    return text


def size_check(size: int) -> None:
    limit = settings.HUB_MAX_INSTANCE_BYTES
    if size > limit:
        raise Refusal(OUT_OF_RESOURCES,
                      f"The file is {size} bytes; the limit for one instance is {limit}.")
    if size < 132:
        raise Refusal(CANNOT_UNDERSTAND, "The file is too short to be a DICOM file.")


def preamble_check(fp: BinaryIO) -> None:
    fp.seek(128)
    if fp.read(4) != b"DICM":
        fp.seek(0)
        raise Refusal(CANNOT_UNDERSTAND,
                      "Not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble).")
    fp.seek(0)


def deflate_bomb_check(fp: BinaryIO, data_offset: int) -> None:
    """A deflated data set must not inflate past the limit (a zip bomb)."""
    limit = settings.HUB_MAX_INSTANCE_BYTES
    fp.seek(data_offset)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while chunk := fp.read(1 << 16):
            total += len(inflater.decompress(chunk, limit - total + 1))
            while inflater.unconsumed_tail and total <= limit:
                total += len(inflater.decompress(inflater.unconsumed_tail, limit - total + 1))
            if total > limit:
                raise Refusal(OUT_OF_RESOURCES,
                              f"The deflated data set inflates past {limit} bytes.")
    except zlib.error as exc:
        raise Refusal(CANNOT_UNDERSTAND, "The deflated data set is corrupt.") from exc
    finally:
        fp.seek(0)
