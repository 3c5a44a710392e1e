"""Proof that the index and object storage agree: each Instance row has its object, and back.

Ingest writes the object first and commits the rows second, deleting the object when the
rows fail. A crash between the two leaves an *orphan* (an object without a row): harmless,
and removable once older than a grace period. A row whose object is missing (*lost*) or
whose object has another size or hash is the serious case: data the hub promised to keep.

Both sides are walked in object-id order and merged, so memory stays flat however large
the archive: rows through a server-side cursor, objects through `listdir` (or one
paginated listing on S3, which also carries the sizes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from referrals.models import Instance

PREFIX = "instances"
_KEY = re.compile(r"^instances/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{32})\.dcm$")


@dataclass
class StoredObject:
    key: str
    size: int | None = None  # None: not listed with the key; asked for when needed
    modified: dt.datetime | None = None

    @property
    def object_hex(self) -> str | None:
        """The object id the key was made from, or None for a key the hub did not make."""
        match = _KEY.match(self.key)
        if match is None:
            return None
        first, second, hexid = match.groups()
        return hexid if hexid.startswith(first + second) else None


@dataclass
class Mismatch:
    instance_id: int
    key: str
    detail: str


@dataclass
class ReconcileReport:
    rows: int = 0
    objects: int = 0
    orphans: list[StoredObject] = field(default_factory=list)  # hub keys without a row
    unexpected: list[str] = field(default_factory=list)  # keys the hub never makes
    lost: list[Mismatch] = field(default_factory=list)  # rows without their object
    damaged: list[Mismatch] = field(default_factory=list)  # wrong size or hash
    deleted: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Every row has its object, intact. (Orphans are waste, not loss.)"""
        return not self.lost and not self.damaged


def _listdir_walk(storage: Storage, path: str) -> Iterator[StoredObject]:
    """Depth-first, sorted: keys come out in the order of the object ids they hold."""
    try:
        dirs, files = storage.listdir(path)
    except FileNotFoundError:
        return
    entries = [(name, True) for name in dirs] + [(name, False) for name in files]
    for name, is_dir in sorted(entries):
        key = f"{path}/{name}"
        if is_dir:
            yield from _listdir_walk(storage, key)
        else:
            yield StoredObject(key)


def _s3_walk(storage: Any) -> Iterator[StoredObject]:
    """One paginated ListObjectsV2 (lexicographic, like the ids), sizes and dates included."""
    location = (storage.location or "").strip("/")
    strip = len(location) + 1 if location else 0
    listing = storage.bucket.objects.filter(
        Prefix=(f"{location}/" if location else "") + PREFIX + "/"
    )
    for summary in listing:
        yield StoredObject(summary.key[strip:], summary.size, summary.last_modified)


def stored_objects(
    storage: Storage | None = None, *, listdir: bool = False
) -> Iterator[StoredObject]:
    """Every object under `instances/`; S3 is listed in one pass unless `listdir` is set."""
    storage = storage or default_storage
    if not listdir and hasattr(storage, "bucket") and hasattr(storage, "location"):
        return _s3_walk(storage)
    return _listdir_walk(storage, PREFIX)


def _size(storage: Storage, obj: StoredObject) -> int:
    if obj.size is None:
        obj.size = storage.size(obj.key)
    return obj.size


def _sha256(storage: Storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open(key, "rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def storage_reconcile(
    *,
    verify_hash: bool = False,
    delete_orphans_older_than: dt.timedelta | None = None,
    storage: Storage | None = None,
    listdir: bool = False,
    now: dt.datetime | None = None,
) -> ReconcileReport:
    """Compare the index with storage; optionally delete orphans older than a grace period."""
    storage = storage or default_storage
    report = ReconcileReport()
    rows = (
        Instance.objects.order_by("object_id")
        .values_list("pk", "object_id", "size_bytes", "sha256")
        .iterator(chunk_size=2000)
    )
    # The rows' snapshot is taken before the listing starts: every row in it had its object
    # written before, so a row the listing misses is really lost. Rows committed after the
    # snapshot only make orphans appear, which the grace period protects.
    row = next(rows, None)
    objects = _hub_objects(stored_objects(storage, listdir=listdir), report)
    obj = next(objects, None)
    while row is not None or obj is not None:
        if obj is None or (row is not None and row[1].hex < _hex(obj)):
            assert row is not None
            report.rows += 1
            report.lost.append(Mismatch(row[0], Instance(object_id=row[1]).object_key, "no object"))
            row = next(rows, None)
        elif row is None or _hex(obj) < row[1].hex:
            report.orphans.append(obj)
            obj = next(objects, None)
        else:
            report.rows += 1
            _compare(storage, row, obj, report, verify_hash)
            row, obj = next(rows, None), next(objects, None)
    if delete_orphans_older_than is not None:
        _delete_orphans(storage, report, delete_orphans_older_than, now or timezone.now())
    return report


def _hex(obj: StoredObject) -> str:
    return obj.object_hex or ""


def _hub_objects(found: Iterator[StoredObject], report: ReconcileReport) -> Iterator[StoredObject]:
    for obj in found:
        report.objects += 1
        if obj.object_hex is None:
            report.unexpected.append(obj.key)
        else:
            yield obj


def _compare(
    storage: Storage,
    row: tuple[int, uuid.UUID, int, str],
    obj: StoredObject,
    report: ReconcileReport,
    verify_hash: bool,
) -> None:
    instance_id, _object_id, size, sha256 = row
    actual = _size(storage, obj)
    if actual != size:
        report.damaged.append(
            Mismatch(instance_id, obj.key, f"size {actual} bytes, the index says {size}")
        )
    elif verify_hash and _sha256(storage, obj.key) != sha256:
        report.damaged.append(Mismatch(instance_id, obj.key, "SHA-256 differs from the index"))


def _delete_orphans(
    storage: Storage, report: ReconcileReport, grace: dt.timedelta, now: dt.datetime
) -> None:
    """Delete orphans older than `grace`: an object being written now is never that old."""
    for obj in report.orphans:
        modified = obj.modified or storage.get_modified_time(obj.key)
        if timezone.is_naive(modified):
            modified = timezone.make_aware(modified)
        if now - modified < grace:
            continue
        hexid = obj.object_hex
        # Its row may have been committed since the listing: look again, right before.
        if hexid is None or Instance.objects.filter(object_id=uuid.UUID(hexid)).exists():
            continue
        storage.delete(obj.key)
        report.deleted.append(obj.key)
