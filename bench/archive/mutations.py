"""Mutated DICOM files for the fuzz runs: pydicom's own small test files, bit-flipped, cut,
spliced and with lying length fields, seeded so every case replays (`cases(count, seed)`).
Used by tests/test_fuzz_corpus.py and `manage.py bench_fuzz`."""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement

MAX_SOURCE_BYTES = 64 * 1024
# The VRs whose explicit length field is 4 bytes (PS3.5 7.1.2).
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


@dataclass(frozen=True)
class Source:
    name: str
    data: bytes
    length_fields: tuple[tuple[int, int, str], ...]  # (offset, width, endian) of each length
    instance_uid: bytes = b""  # the SOP Instance UID as it is written in the file


def _instance_uid(data: bytes) -> bytes:
    with contextlib.suppress(Exception):
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return str(ds.SOPInstanceUID).encode("ascii")
    return b""


def _fresh_uid(rng: random.Random, source: Source) -> Source:
    """`source` under a new SOP Instance UID of the same length, written over every place the
    old one stands (File Meta and data set), so the length fields still point right and a
    case is stored as new rather than refused as a duplicate of an earlier case."""
    uid = source.instance_uid
    digits = len(uid) - len(uid.rstrip(b"0123456789"))
    tail = min(digits, 12)
    if tail < 4:
        return source
    new = uid[:-tail] + str(rng.randrange(10 ** (tail - 1), 10**tail)).encode()
    return Source(source.name, source.data.replace(uid, new), source.length_fields, new)


def _length_fields(data: bytes) -> tuple[tuple[int, int, str], ...]:
    """Where each top-level element's length field sits (not for deflated data sets)."""
    with contextlib.suppress(Exception):
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=256)
        if ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.1.99":
            return ()
        found = []
        for tag in ds.keys():  # noqa: SIM118 - keep the elements unconverted
            elem = ds.get_item(tag, keep_deferred=True)
            if isinstance(elem, RawDataElement):
                tell, vr, implicit, little = (
                    elem.value_tell,
                    elem.VR,
                    elem.is_implicit_VR,
                    elem.is_little_endian,
                )
            elif isinstance(elem, DataElement) and elem.file_tell is not None:
                tell, vr, implicit, little = (
                    elem.file_tell,
                    "SQ",
                    ds.is_implicit_VR,
                    ds.is_little_endian,
                )
            else:
                continue
            long_form = implicit or vr in LONG_VRS
            found.append(
                (tell - (4 if long_form else 2), 4 if long_form else 2, "<" if little else ">")
            )
        return tuple(found)
    return ()


def corpus() -> list[Source]:
    """pydicom's small Part 10 test files (the DICOMDIR test tree is left out: 70 near-twins)."""
    paths = sorted(
        Path(p)
        for p in get_testdata_files()
        if os.path.isfile(p) and "dicomdirtests" not in p and os.path.getsize(p) <= MAX_SOURCE_BYTES
    )
    sources = []
    for path in paths:
        data = path.read_bytes()
        if data[128:132] == b"DICM":
            sources.append(Source(path.name, data, _length_fields(data), _instance_uid(data)))
    return sources


def mutate(rng: random.Random, source: Source) -> tuple[str, bytes]:
    """One seeded mutation (sometimes two stacked) of `source`."""
    data = bytearray(source.data)
    kinds = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        kind = rng.choice(
            ["bitflip", "bitflip", "insert", "delete", "truncate", "length", "length"]
        )
        if kind == "length" and not source.length_fields:
            kind = "bitflip"
        size = len(data)
        if kind == "bitflip":
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(128, size)
                data[pos] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            pos = rng.randrange(132, size + 1)
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            pos = rng.randrange(132, size)
            del data[pos : pos + rng.randint(1, 64)]
        elif kind == "truncate":
            del data[rng.randrange(132, size) :]
        else:
            offset, width, endian = rng.choice(source.length_fields)
            if offset + width > len(data):
                continue
            limit = 0xFFFF if width == 2 else 0xFFFFFFFF
            old = int.from_bytes(
                data[offset : offset + width], "little" if endian == "<" else "big"
            )
            value = (
                rng.choice(
                    [
                        0,
                        1,
                        limit,
                        limit - 15,
                        old + 1,
                        max(old - 1, 0),
                        old * 2,
                        rng.randrange(limit + 1),
                    ]
                )
                & limit
            )
            data[offset : offset + width] = struct.pack(
                endian + ("H" if width == 2 else "I"), value
            )
        kinds.append(kind)
    return "+".join(kinds), bytes(data)


def cases(
    count: int, seed: int, *, fresh_uids: bool = False
) -> Iterator[tuple[int, str, str, bytes]]:
    """`count` seeded cases; with `fresh_uids` each one carries a SOP Instance UID of its own
    (for runs that keep what they store, where repeats would only test duplicate refusal)."""
    sources = corpus()
    rng = random.Random(seed)  # noqa: S311 - a replayable fuzzer, not a secret
    uids = random.Random(seed ^ 0x5EED)  # noqa: S311 - its own stream: `rng` replays as before
    for number in range(count):
        source = sources[number % len(sources)]
        if fresh_uids:
            source = _fresh_uid(uids, source)
        kind, data = mutate(rng, source)
        yield number, source.name, kind, data
