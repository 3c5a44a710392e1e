"""What an incoming DICOM object must satisfy before the hub keeps it.

Each refusal carries a DICOM failure reason (PS3.18 STOW-RS / PS3.4 C-STORE status) and a
sentence a technician can act on, kept as a translatable text and its values: it is put
into words when read, in the reader's language (Chinese on the clinic's upload page, English
for a program that names no language).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

# PS3.4 Annex B / PS3.18 failure reasons used by the hub.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
# In the C000-CFFF "cannot understand" range, which PS3.4 leaves to the service: the
# instance is larger than the hub accepts. Permanent (unlike A700), so a gateway moves the
# file aside instead of retrying it forever.
TOO_LARGE = 0xC001
# Also in the "cannot understand" range: the instance's patient contradicts the study (or its
# series belongs to another study), so the hub kept it aside for a person to decide
# (referrals/archive/reconciliation.py). DICOM has no "held" status; a failure tells a sender
# the instance is not filed where it said, and a sender must not send it again: the hub holds
# it. The gateway counts it as delivered (hub_gateway/hub.py HELD_REASONS).
HELD_FOR_RECONCILIATION = 0xC002

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

# Real data sets nest a dozen levels at most (SR content trees); pydicom parses sequences
# recursively and hits Python's recursion limit near 150-200 levels, so refuse long before.
MAX_SEQUENCE_DEPTH = 64
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # float, double float, pixel data


class Refusal(Exception):  # noqa: N818 - a refusal is the domain's word, not an "Error"
    """An instance the hub will not store, and why."""

    def __init__(self, reason: int, message: str | Promise, **params: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = message
        self.params = params

    @property
    def message(self) -> str:
        """The sentence in the active language, its values filled in."""
        text = str(self.text)
        return text % self.params if self.params else text

    def __str__(self) -> str:
        return f"{self.message} (0x{self.reason:04X})"


def uid_check(value: object, name: str) -> str:
    """A UID as PS3.5 9.1 defines it: digits and dots, no leading zeros, at most 64."""
    text = str(value or "").strip().rstrip("\x00")
    if not text:
        raise Refusal(DATASET_DOES_NOT_MATCH, _("%(name)s is missing."), name=name)
    if len(text) > 64 or not _UID.match(text):
        raise Refusal(DATASET_DOES_NOT_MATCH, _("%(name)s is not a valid UID."), name=name)
    return text


def size_check(size: int) -> None:
    limit = settings.HUB_MAX_INSTANCE_BYTES
    if size > limit:
        raise Refusal(
            TOO_LARGE,
            _("The file is %(size)s bytes; the limit for one instance is %(limit)s."),
            size=size,
            limit=limit,
        )
    if size < 132:
        raise Refusal(CANNOT_UNDERSTAND, _("The file is too short to be a DICOM file."))


def preamble_check(fp: BinaryIO) -> None:
    fp.seek(128)
    if fp.read(4) != b"DICM":
        fp.seek(0)
        raise Refusal(
            CANNOT_UNDERSTAND,
            _("Not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble)."),
        )
    fp.seek(0)


def deflate_bomb_check(fp: BinaryIO, data_offset: int) -> int:
    """A deflated data set must not inflate past the limit (a zip bomb); returns its size."""
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
                raise Refusal(
                    TOO_LARGE,
                    _("The deflated data set inflates past %(limit)s bytes."),
                    limit=limit,
                )
    except zlib.error as exc:
        raise Refusal(CANNOT_UNDERSTAND, _("The deflated data set is corrupt.")) from exc
    finally:
        fp.seek(0)
    return total


def _top_level(ds: Dataset) -> Iterator[tuple[int, int, int]]:
    """(tag, where its value starts, its length) of each top-level element, unconverted."""
    for tag in ds.keys():  # noqa: SIM118 - iterating ds itself would convert every element
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            yield int(tag), elem.value_tell, elem.length
        elif isinstance(elem, DataElement) and elem.file_tell is not None:
            length = UNDEFINED_LENGTH if elem.is_undefined_length else -1
            yield int(tag), elem.file_tell, length


def value_length_check(ds: Dataset, data_end: int) -> int:
    """Every element's value must end inside the data: a longer one means a cut or corrupt file.

    pydicom reads short when a length runs past the end of the file, which would store a
    damaged instance as if it were whole. Call it on a freshly read data set, before any
    element is converted. Returns where the last element ends (-1: not known).
    """
    last_end, last_tell = 0, -1
    for tag, tell, length in _top_level(ds):
        if length in (UNDEFINED_LENGTH, -1):
            if tell > last_tell:
                last_end, last_tell = -1, tell  # its end is where pydicom found it
            continue
        end = tell + length
        if end > data_end:
            raise Refusal(
                CANNOT_UNDERSTAND,
                _(
                    "Element %(tag)s claims %(length)s bytes but the file ends before them: "
                    "it is truncated or corrupt."
                ),
                tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                length=length,
            )
        if tell > last_tell:
            last_end, last_tell = end, tell
    return last_end


def stray_bytes_check(fp: BinaryIO, last_end: int, size: int) -> None:
    """pydicom stops silently at a partial element header: bytes after the last element.

    Zero padding is tolerated (some writers pad files); anything else is a cut element.
    """
    if not 0 < last_end < size:
        return
    fp.seek(last_end)
    stray = fp.read(min(size - last_end, 1 << 16))
    fp.seek(0)
    if stray.strip(b"\x00"):
        raise Refusal(
            CANNOT_UNDERSTAND,
            _(
                "The file ends inside an element header (%(stray)s stray bytes after the "
                "last element): it is truncated or corrupt."
            ),
            stray=size - last_end,
        )


def sequence_depth_check(ds: Dataset, limit: int = MAX_SEQUENCE_DEPTH) -> None:
    """Sequences may not nest past `limit` levels; walked without recursion."""
    pending: list[tuple[Dataset, int]] = [(ds, 0)]
    while pending:
        dataset, depth = pending.pop()
        for elem in dataset:
            if elem.VR != "SQ" or not elem.value:
                continue
            if depth + 1 > limit:
                raise Refusal(
                    CANNOT_UNDERSTAND,
                    _("Sequences are nested more than %(limit)s levels deep."),
                    limit=limit,
                )
            pending.extend((item, depth + 1) for item in elem.value)


def _is_image_storage(sop_class_uid: str) -> bool:
    return UID(sop_class_uid).name.endswith("Image Storage")


def transfer_syntax_check(transfer_syntax: str) -> None:
    if not UID(transfer_syntax).is_transfer_syntax:
        raise Refusal(
            CANNOT_UNDERSTAND,
            _("Transfer syntax %(uid)s is not one the hub can read."),
            uid=repr(transfer_syntax[:64]),
        )


def pixel_data_check(ds: Dataset, sop_class_uid: str, transfer_syntax: str) -> None:
    """An image must carry its pixels, and native pixels must fill Rows x Columns x frames.

    Runs before the pixel data is read (it stays deferred on disk): it looks at lengths only.
    """
    present = [tag for tag in PIXEL_DATA_TAGS if tag in ds]
    if not present:
        if _is_image_storage(sop_class_uid):
            raise Refusal(
                CANNOT_UNDERSTAND,
                _("The image has no pixel data: the file is truncated or incomplete."),
            )
        return
    raw = ds.get_item(present[0], keep_deferred=True)
    length = raw.length if isinstance(raw, RawDataElement) else None
    syntax = UID(transfer_syntax)
    if (
        length is None
        or length == UNDEFINED_LENGTH
        or not syntax.is_transfer_syntax
        or syntax.is_compressed
        or present[0] != 0x7FE00010
    ):
        return  # encapsulated frames: pydicom found their delimiter, or refused already
    expected = _expected_pixel_bytes(ds)
    if expected is not None and length < expected:
        raise Refusal(
            CANNOT_UNDERSTAND,
            _(
                "The pixel data holds %(length)s bytes but Rows, Columns, frames and bits "
                "need %(expected)s: the file is truncated or corrupt."
            ),
            length=length,
            expected=expected,
        )


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    """Native pixel data's length from the image attributes, None if they are odd.

    Not pydicom's `get_expected_length`: it multiplies whatever the elements hold, and a
    Rows read as text ("AB" under a wrong VR) times a frame count makes a string of
    gigabytes.
    """
    numbers = []
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated"):
        value = ds.get(keyword)
        if type(value) is not int or value <= 0:
            return None
        numbers.append(value)
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return None
    if frames <= 0:
        return None
    rows, columns, samples, bits = numbers
    total_bits = rows * columns * samples * bits * frames
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        total_bits = total_bits // 3 * 2  # chroma subsampled: two samples per pixel
    return (total_bits + 7) // 8


def binary_vr(tag: int, vr: str | None) -> str | None:
    """The VR of a binary element kept as bulk data, or None for any other element."""
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    return vr if vr in _BINARY_VRS else None


_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
