"""Fingerprints of a received DICOM file: of the whole file, and of its data set alone.

Two copies of one instance that arrived by different routes differ in their file meta
(group 0002: the sending application's AE title, implementation class and version), never
in their data set. So "the same instance again" is judged on the bytes after the file meta
group, hashed in the same pass that hashes the file. When the routes also chose different
transfer syntaxes (a PACS that stores implicit VR little endian, a modality that sends
explicit), `canonical_dataset_digest` compares what the encodings carry instead of their
bytes.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterable
from typing import IO, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

META_HEAD = 144  # preamble (128) + "DICM" (4) + the group length element (12)
PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
TRAILING_PADDING = 0xFFFCFFFC
# Transfer syntaxes whose element values are the same bytes whichever of them encodes them:
# only the element headers (VR, length sizes) differ. Big endian swaps numbers: not here.
_LITTLE_ENDIAN = frozenset(
    {
        "1.2.840.10008.1.2",  # implicit VR little endian
        "1.2.840.10008.1.2.1",  # explicit VR little endian
        "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian (inflated on read)
    }
)
# Compressed syntaxes that keep every pixel: a copy in one of them is the same image.
_LOSSLESS = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG lossless
        "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
        "1.2.840.10008.1.2.5",  # RLE lossless
    }
)


class DicomDigests:
    """SHA-256 of a file and of its data set (the bytes after the file meta group), fed in
    chunks as they arrive. The data set digest is "" when the file has no readable group
    length (the ingest then finds the data set's start by parsing)."""

    def __init__(self) -> None:
        self.file = hashlib.sha256()
        self._dataset = hashlib.sha256()
        self._head = bytearray()
        self._seen = 0
        self._start: int | None = None  # where the data set starts; -1: unknown

    def update(self, chunk: bytes | memoryview) -> None:
        self.file.update(chunk)
        position = self._seen
        self._seen += len(chunk)
        if self._start is None:
            self._head += chunk[: max(0, META_HEAD - position)]
            if len(self._head) < META_HEAD:
                return
            self._start = dataset_start(bytes(self._head))
        if self._start >= 0 and self._seen > self._start:
            self._dataset.update(chunk[max(0, self._start - position) :])

    @property
    def file_sha256(self) -> str:
        return self.file.hexdigest()

    @property
    def dataset_sha256(self) -> str:
        if self._start is None or self._start < 0:
            return ""
        return self._dataset.hexdigest()


def dataset_start(head: bytes) -> int:
    """Where the data set starts, from the first 144 bytes; -1 without a group length."""
    if len(head) < META_HEAD or head[128:132] != b"DICM":
        return -1
    element = head[132:144]
    if element[:4] != b"\x02\x00\x00\x00" or element[4:6] != b"UL":
        return -1
    return META_HEAD + int.from_bytes(element[8:12], "little")


def stream_digests(stream: IO[bytes], chunk_size: int = 1 << 20) -> tuple[str, str]:
    """(file SHA-256, data set SHA-256) of a readable stream, in one pass."""
    digests = DicomDigests()
    while chunk := stream.read(chunk_size):
        digests.update(chunk)
    return digests.file_sha256, digests.dataset_sha256


def dataset_digest_from(stream: BinaryIO, start: int) -> str:
    """SHA-256 of the bytes of `stream` from `start` (files without a group length)."""
    stream.seek(start)
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def canonical_dataset_digest(stream: IO[bytes]) -> str | None:
    """A digest of what the data set says, whatever little endian syntax encodes it.

    Each element counts as its tag and its value's bytes (sequences item by item), so an
    implicit and an explicit VR copy of one data set agree. Pixel data counts as its decoded
    pixels when the copy is compressed (lossless only: a lossy copy is another image). None
    when the copy cannot be compared this way (big endian, a lossy syntax, undecodable
    pixels): the caller then treats the two copies as different.
    """
    data = stream.read()
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    except Exception:
        return None
    if str(syntax) not in _LITTLE_ENDIAN | _LOSSLESS:
        return None
    digest = hashlib.sha256()
    try:
        _feed(digest, ds, top=True)
        pixels = next((t for t in PIXEL_DATA_TAGS if t in ds), None)
        if pixels is not None:
            digest.update(struct.pack("<I", pixels))
            # Decoded pixels for every copy: a native copy and a lossless compressed one of
            # one image then agree (a native copy's bytes are its pixels already).
            digest.update(ds.pixel_array.tobytes())
    except Exception:
        return None
    return digest.hexdigest()


def _feed(digest: hashlib._Hash, ds: Dataset, *, top: bool = False) -> None:
    for tag in sorted(ds.keys()):
        number = int(tag)
        if number >> 16 == 0x0002 or number == TRAILING_PADDING:
            continue
        if top and number in PIXEL_DATA_TAGS:
            continue
        raw = ds.get_item(tag)
        digest.update(struct.pack("<I", number))
        if _is_sequence(raw, number):
            items: Iterable[Dataset] = ds[tag].value or ()
            for index, item in enumerate(items):
                digest.update(b"item" + struct.pack("<I", index))
                _feed(digest, item)
            digest.update(b"end")
            continue
        digest.update(_value_bytes(raw, ds, tag))


def _is_sequence(raw: object, number: int) -> bool:
    if isinstance(raw, RawDataElement):
        if raw.VR == "SQ":
            return True
        if raw.VR is None:
            try:
                return dictionary_VR(number) == "SQ"
            except KeyError:
                return raw.length == 0xFFFFFFFF  # an undefined-length private element
        return False
    return getattr(raw, "VR", None) == "SQ"


def _value_bytes(raw: object, ds: Dataset, tag: int) -> bytes:
    if isinstance(raw, RawDataElement):
        return bytes(raw.value or b"")
    # Converted already (pydicom does so for a few elements on read): encode it again.
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_data_element(buffer, ds[tag])
    return buffer.getvalue()[8:]
