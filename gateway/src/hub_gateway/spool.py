"""The gateway's spool: received instances on local disk, durable before they are confirmed.

Layout of a spool directory (one per gateway):

    <id>.dcm        a complete DICOM Part 10 file, waiting for the hub
    <id>.json       its sidecar: calling AE, receive time, SOP UIDs, size, SHA-256
    rejected/       files the hub refused for good, each sidecar with the reason
    state.json      the forwarder's last error / last success (read by `hub-gateway status`)
    .lock           held by the one gateway process that owns the spool

Ids come from the clock and a random suffix, never from DICOM fields, and sort in arrival
order, so a restarted gateway replays the oldest first. A file is written under a temp
name, fsynced, renamed into place and the directory fsynced; the `.dcm` rename is the
commit point (the sidecar is renamed just before it), so a crash leaves either a whole
instance or a temp file that the next start removes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DICOM_SUFFIX = ".dcm"
META_SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
REJECTED_DIR = "rejected"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class SpoolBusyError(RuntimeError):
    """Another gateway process already owns this spool directory."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, chunks: Iterable[bytes | memoryview]) -> tuple[int, str]:
    """Create `path` (which must not exist), write, fsync; return (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        for chunk in chunks:
            fp.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        fp.flush()
        os.fsync(fp.fileno())
    return size, digest.hexdigest()


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never half."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    try:
        _write_durably(tmp, [json.dumps(data, ensure_ascii=False, indent=1).encode()])
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class SpoolItem:
    """One spooled instance as the forwarder sees it."""

    item_id: str
    path: Path
    size: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.meta.get("sop_instance_uid") or "")

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(META_SUFFIX)


class GatewayState:
    """The small JSON the forwarder keeps in the spool: last error, last success, identity."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data = _read_json(path)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._data))

    def update(self, **changes: Any) -> None:
        with self._lock:
            self._data.update(changes, updated_at=utc_now())
            write_json_atomically(self.path, self._data)

    def record_error(self, message: str, *, hub: str | None = None) -> None:
        self.update(last_error={"at": utc_now(), "message": message[:1000], "hub": hub})

    def record_success(self, count: int, *, hub: str) -> None:
        with self._lock:
            total = int(self._data.get("forwarded_total") or 0) + count
            now = utc_now()
            self._data.update(
                last_success_at=now, forwarded_total=total, current_hub=hub, updated_at=now
            )
            write_json_atomically(self.path, self._data)


class Spool:
    """A spool directory: `store` for the receiver; `claim` ... `confirm` for the forwarder.

    One process owns a spool (`exclusive()`); inside it, any number of receiving threads
    and forwarding threads share this object.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.rejected_dir = self.root / REJECTED_DIR
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.rejected_dir.mkdir(exist_ok=True, mode=0o700)
        self.state = GatewayState(self.root / STATE_FILE)
        self._lock = threading.Lock()
        self._arrival = threading.Condition(self._lock)
        self._generation = 0
        self._pending: deque[str] = deque()
        self._claimed: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._solo: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._lock_fd: int | None = None

    # --- ownership and recovery ----------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the spool's lock file: two gateways on one spool would send files twice."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolBusyError(
                    f"another gateway process is using the spool {self.root}"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        try:
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # closing the descriptor releases the lock

    def recover(self) -> int:
        """At start (lock held, nothing receiving yet): drop half-written leftovers.

        Returns how many complete instances wait in the spool (they replay, oldest first).
        """
        for folder in (self.root, self.rejected_dir):
            for entry in os.scandir(folder):
                if entry.name.startswith(TMP_PREFIX) and entry.is_file():
                    logger.info("removing the unfinished spool file %s", entry.name)
                    Path(entry.path).unlink(missing_ok=True)
        waiting = 0
        for entry in os.scandir(self.root):
            stem, suffix = os.path.splitext(entry.name)
            if (
                suffix == META_SUFFIX
                and entry.name != STATE_FILE
                and not (self.root / (stem + DICOM_SUFFIX)).exists()
            ):
                # The sidecar is renamed just before its .dcm: alone, it is a crash leftover.
                Path(entry.path).unlink(missing_ok=True)
            elif suffix == DICOM_SUFFIX:
                waiting += 1
        return waiting

    # --- receiving -----------------------------------------------------------------------

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def store(self, chunks: Iterable[bytes | memoryview], info: dict[str, Any]) -> SpoolItem:
        """Make one received instance durable; raises OSError if it could not be.

        When this returns, the file and its sidecar are on disk (fsynced, renamed, the
        directory fsynced): only then may the sender be told "stored".
        """
        item_id = f"{time.time_ns():020d}-{secrets.token_hex(6)}"
        final = self.root / f"{item_id}{DICOM_SUFFIX}"
        meta_final = final.with_suffix(META_SUFFIX)
        tmp = self.root / f"{TMP_PREFIX}{item_id}{DICOM_SUFFIX}"
        meta_tmp = self.root / f"{TMP_PREFIX}{item_id}{META_SUFFIX}"
        committed = False
        try:
            size, sha256 = _write_durably(tmp, chunks)
            meta = {**info, "id": item_id, "size": size, "sha256": sha256}
            _write_durably(meta_tmp, [json.dumps(meta, ensure_ascii=False).encode()])
            os.replace(meta_tmp, meta_final)
            os.replace(tmp, final)
            committed = True
            _fsync_dir(self.root)
        except BaseException:
            for leftover in (tmp, meta_tmp) if committed else (tmp, meta_tmp, meta_final):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            raise
        with self._arrival:
            self._generation += 1
            self._arrival.notify_all()
        return SpoolItem(item_id=item_id, path=final, size=size, meta=meta)

    # --- forwarding ----------------------------------------------------------------------

    def _rescan(self) -> None:
        names = sorted(
            entry.name[: -len(DICOM_SUFFIX)]
            for entry in os.scandir(self.root)
            if entry.name.endswith(DICOM_SUFFIX) and not entry.name.startswith(TMP_PREFIX)
        )
        self._pending.extend(name for name in names if name not in self._claimed)

    def claim(self, *, max_files: int, max_bytes: int) -> tuple[list[SpoolItem], int]:
        """The next batch to send, oldest first, and the arrival generation seen.

        A batch never holds two files with the same SOP Instance UID (the hub's answer is
        keyed by UID), and an item marked solo always travels alone. Claimed items are not
        handed to another thread until `release`d.
        """
        with self._lock:
            generation = self._generation
            if not self._pending:
                self._rescan()
            now = time.monotonic()
            batch: list[SpoolItem] = []
            uids: set[str] = set()
            total = 0
            while self._pending and len(batch) < max_files:
                name = self._pending.popleft()
                if name in self._claimed:
                    continue
                if self._not_before.get(name, 0.0) > now:
                    continue  # deferred: found again by the next rescan
                path = self.root / f"{name}{DICOM_SUFFIX}"
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    self._forget(name)
                    continue
                meta = _read_json(path.with_suffix(META_SUFFIX))
                uid = str(meta.get("sop_instance_uid") or "")
                solo = name in self._solo
                if batch and (solo or total + size > max_bytes or (uid and uid in uids)):
                    self._pending.appendleft(name)
                    break
                batch.append(SpoolItem(item_id=name, path=path, size=size, meta=meta))
                self._claimed.add(name)
                uids.add(uid)
                total += size
                if solo:
                    break
            return batch, generation

    def release(self, items: Iterable[SpoolItem]) -> None:
        with self._lock:
            for item in items:
                self._claimed.discard(item.item_id)

    def wait_for_arrival(self, generation: int, timeout: float) -> None:
        """Sleep until something new is stored (after `generation`) or `timeout` passes."""
        with self._arrival:
            self._arrival.wait_for(lambda: self._generation != generation, timeout)

    def wake(self) -> None:
        with self._arrival:
            self._generation += 1
            self._arrival.notify_all()

    def _forget(self, name: str) -> None:
        self._not_before.pop(name, None)
        self._solo.discard(name)
        self._attempts.pop(name, None)

    def confirm(self, item: SpoolItem) -> None:
        """The hub holds this instance: remove it from the spool."""
        item.path.unlink(missing_ok=True)  # the .dcm goes first: it is the commit point
        item.meta_path.unlink(missing_ok=True)
        with self._lock:
            self._forget(item.item_id)

    def defer(self, item: SpoolItem, delay: float) -> int:
        """Try this item again after `delay` seconds; returns its failed attempts so far."""
        with self._lock:
            self._not_before[item.item_id] = time.monotonic() + delay
            attempts = self._attempts.get(item.item_id, 0) + 1
            self._attempts[item.item_id] = attempts
            return attempts

    def attempts(self, item: SpoolItem) -> int:
        with self._lock:
            return self._attempts.get(item.item_id, 0)

    def mark_solo(self, item: SpoolItem) -> None:
        """Send this item alone next time, so the hub's answer is attributable to it."""
        with self._lock:
            self._solo.add(item.item_id)

    def reject(self, item: SpoolItem, *, reason: int | None, message: str, hub: str | None) -> Path:
        """Move a refused instance to rejected/ with why; it is never sent again by itself."""
        meta = dict(item.meta)
        meta["rejected"] = {
            "at": utc_now(),
            "reason": reason,
            "reason_hex": f"0x{reason:04X}" if reason is not None else None,
            "message": message[:2000],
            "hub": hub,
        }
        target = self.rejected_dir / item.path.name
        write_json_atomically(target.with_suffix(META_SUFFIX), meta)
        os.replace(item.path, target)
        item.meta_path.unlink(missing_ok=True)
        _fsync_dir(self.rejected_dir)
        _fsync_dir(self.root)
        with self._lock:
            self._forget(item.item_id)
        return target


def _dicom_files(folder: Path) -> list[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return [
        e for e in entries if e.name.endswith(DICOM_SUFFIX) and not e.name.startswith(TMP_PREFIX)
    ]


def spool_status(root: Path, now: dt.datetime | None = None) -> dict[str, Any]:
    """What `hub-gateway status` prints: read-only, safe while a gateway is running."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a spool directory")
    now = now or dt.datetime.now(dt.UTC)
    files = 0
    size = 0
    oldest: tuple[str, float] | None = None
    for entry in _dicom_files(root):
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue  # forwarded while we looked
        files += 1
        size += stat.st_size
        if oldest is None or entry.name < oldest[0]:
            oldest = (entry.name, stat.st_mtime)
    oldest_received: str | None = None
    oldest_age: float | None = None
    if oldest is not None:
        meta = _read_json((root / oldest[0]).with_suffix(META_SUFFIX))
        received = meta.get("received_at")
        try:
            when = dt.datetime.fromisoformat(received) if received else None
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        when = when or dt.datetime.fromtimestamp(oldest[1], dt.UTC)
        oldest_received = when.isoformat(timespec="seconds")
        oldest_age = max(0.0, (now - when).total_seconds())
    state = _read_json(root / STATE_FILE)
    identity = state.get("identity") or {}
    return {
        "spool": str(root),
        "files": files,
        "bytes": size,
        "oldest_received_at": oldest_received,
        "oldest_age_seconds": oldest_age,
        "rejected": len(_dicom_files(root / REJECTED_DIR)),
        "last_error": state.get("last_error"),
        "last_success_at": state.get("last_success_at"),
        "forwarded_total": state.get("forwarded_total", 0),
        "current_hub": state.get("current_hub"),
        "accepted_calling_ae_titles": identity.get("calling_ae_titles"),
        "state_updated_at": state.get("updated_at"),
    }
