"""manage.py reconcile_storage: orphans (objects without rows), lost objects (rows without
objects), damaged objects; deleting orphans only past a grace period; and the orphan a
process killed mid-ingest really leaves behind.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from referrals.archive import storage_reconcile as storage_reconcile_module
from referrals.archive.ingest import instance_store
from referrals.archive.storage_reconcile import storage_reconcile
from referrals.models import Instance, instance_object_key

from .dicom_support import ct_files
from .ingest_support import media  # noqa: F401 - fixture
from .processes import VENV_BIN, base_env, start, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def store(world, tmp_path: Path, count: int = 3) -> list[Instance]:
    stored = []
    for index, data in enumerate(ct_files(count, size=16)):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(data)
        outcome = instance_store(institution=world.clinic, path=path, via="test")
        assert outcome.status == "stored", outcome.message
        stored.append(outcome.instance)
    return stored


def reconcile(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_storage", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def orphan(age_minutes: float = 0) -> str:
    """An object as a crash between the storage write and the commit leaves it."""
    key = instance_object_key(uuid.uuid4())
    default_storage.save(key, ContentFile(b"DICM" * 100))
    if age_minutes:
        past = time.time() - age_minutes * 60
        os.utime(default_storage.path(key), (past, past))
    return key


def test_an_archive_in_order_reconciles_cleanly(world, tmp_path):
    store(world, tmp_path)
    out, err = reconcile("--verify-hash")
    assert "3 rows, 3 objects: 0 lost, 0 damaged, 0 orphans" in out
    assert err == ""


def test_an_empty_archive_reconciles_cleanly():
    out, _err = reconcile()
    assert "0 rows, 0 objects" in out


def test_an_orphan_is_reported_but_is_not_a_failure(world, tmp_path):
    store(world, tmp_path)
    key = orphan()
    out, _err = reconcile()
    assert f"orphan (kept): {key}" in out
    assert "0 lost, 0 damaged, 1 orphans (0 deleted)" in out
    assert default_storage.exists(key)


def test_orphans_are_deleted_only_past_the_grace_period(world, tmp_path):
    [instance] = store(world, tmp_path, count=1)
    old, fresh = orphan(age_minutes=90), orphan()
    out, _err = reconcile("--delete-orphans", "--older-than", "60")
    assert f"orphan (deleted): {old}" in out
    assert f"orphan (kept): {fresh}" in out
    assert not default_storage.exists(old)
    assert default_storage.exists(fresh)
    assert default_storage.exists(instance.object_key)  # never an object with a row


def test_an_orphan_whose_row_commits_during_the_run_is_not_deleted(world, tmp_path, monkeypatch):
    [instance] = store(world, tmp_path, count=1)
    late = orphan(age_minutes=120)
    listing = storage_reconcile_module.stored_objects

    def row_commits_while_listing(*args, **kwargs):
        yield from listing(*args, **kwargs)
        # The ingest that wrote `late` commits its row only now, after the rows' snapshot.
        Instance.objects.filter(pk=instance.pk).update(
            object_id=uuid.UUID(late.rsplit("/", 1)[1].removesuffix(".dcm"))
        )

    monkeypatch.setattr(storage_reconcile_module, "stored_objects", row_commits_while_listing)
    report = storage_reconcile(delete_orphans_older_than=dt.timedelta(minutes=1))
    assert [o.key for o in report.orphans] == [late]  # seen without a row at listing time
    assert report.deleted == []  # but the last look before deleting found the row
    assert default_storage.exists(late)


def test_a_row_without_its_object_fails_the_command(world, tmp_path):
    stored = store(world, tmp_path)
    default_storage.delete(stored[1].object_key)
    with pytest.raises(CommandError, match="1 lost"):
        reconcile()
    report = storage_reconcile()
    assert [(m.instance_id, m.key) for m in report.lost] == [(stored[1].pk, stored[1].object_key)]
    assert not report.consistent


def test_an_object_of_the_wrong_size_or_content_fails_the_command(world, tmp_path):
    stored = store(world, tmp_path)
    shorter = stored[0].object_key
    with default_storage.open(shorter, "rb") as fp:
        data = fp.read()
    Path(default_storage.path(shorter)).write_bytes(data[:-10])
    flipped = stored[2].object_key
    original = Path(default_storage.path(flipped)).read_bytes()
    Path(default_storage.path(flipped)).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(CommandError, match="1 damaged"):
        reconcile()  # the size check alone sees the shorter one
    with pytest.raises(CommandError, match="2 damaged"):
        reconcile("--verify-hash")
    report = storage_reconcile(verify_hash=True)
    assert {m.key: m.detail for m in report.damaged} == {
        shorter: f"size {len(data) - 10} bytes, the index says {len(data)}",
        flipped: "SHA-256 differs from the index",
    }


def test_objects_the_hub_never_makes_are_reported_and_kept(world, tmp_path):
    store(world, tmp_path, count=1)
    default_storage.save("instances/README.txt", ContentFile(b"hello"))
    default_storage.save("instances/00/00/ffffffffffffffffffffffffffffffff.dcm", ContentFile(b"x"))
    out, _err = reconcile("--delete-orphans", "--older-than", "1")
    assert "unexpected object (not made by the hub, kept): instances/README.txt" in out
    assert default_storage.exists("instances/README.txt")
    assert default_storage.exists("instances/00/00/ffffffffffffffffffffffffffffffff.dcm")


@pytest.mark.parametrize(
    "args",
    [
        ["--delete-orphans"],
        ["--delete-orphans", "--older-than", "0"],
        ["--delete-orphans", "--older-than", "soon"],
    ],
)
def test_deleting_orphans_needs_a_real_grace_period(args):
    with pytest.raises(CommandError):
        reconcile(*args)


# --- A process killed between the storage write and the commit -----------------------------

CRASHING_INGEST = """
import os, sys, time
from pathlib import Path
import django
django.setup()
from referrals.archive import ingest
from tenants.models import Institution

def stalled_index(*args, **kwargs):
    print("OBJECT WRITTEN", flush=True)
    time.sleep(600)  # the test kills us here, before any row is written

ingest._index = stalled_index
ingest.instance_store(institution=Institution.objects.get(pk=int(sys.argv[1])),
                      path=Path(sys.argv[2]), via="test")
"""


def _database_url() -> str:
    s = connection.settings_dict
    credentials = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        credentials += ":" + quote(s["PASSWORD"], safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{credentials}@{s.get('HOST') or ''}{port}/{quote(s['NAME'], safe='')}"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(90)
def test_a_process_killed_mid_ingest_leaves_an_orphan_that_reconcile_finds_and_removes(
    world,
    tmp_path,
    media,  # noqa: F811 - the fixture
):
    data_dir = media.parent
    [data] = ct_files(1, size=16)
    source = tmp_path / "incoming.dcm"
    source.write_bytes(data)
    env = base_env(
        DATABASE_URL=_database_url(),
        HUB_ENV="test",
        HUB_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="alliance.settings",
    )
    proc = start(
        "ingest",
        [VENV_BIN / "python", "-c", CRASHING_INGEST, str(world.clinic.pk), str(source)],
        env=env,
        log_dir=tmp_path,
    )
    try:
        wait_until(
            lambda: "OBJECT WRITTEN" in proc.log(),
            timeout=60,
            what="the object to be written",
            watch=[proc],
        )
        proc.signal_group(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        proc.kill()

    assert not Instance.objects.exists()
    report = storage_reconcile()
    assert report.consistent  # nothing promised was lost
    [left] = report.orphans
    with default_storage.open(left.key, "rb") as fp:
        assert fp.read() == data

    report = storage_reconcile(delete_orphans_older_than=dt.timedelta(minutes=5))
    assert report.deleted == []  # too fresh: it might be an ingest still running
    report = storage_reconcile(
        delete_orphans_older_than=dt.timedelta(minutes=5),
        now=timezone.now() + dt.timedelta(minutes=6),
    )
    assert report.deleted == [left.key]
    assert storage_reconcile().orphans == []
