"""The production storage path: S3Storage against a real S3 API over HTTP on the loopback
(moto's server), the way the hub talks to MinIO. Same bytes back, keys free of DICOM
fields, atomic ingest, and reconcile_storage listing a bucket.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator

import boto3
import pydicom
import pytest
from botocore.config import Config
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from moto.server import ThreadedMotoServer

from referrals.archive import ingest
from referrals.archive.storage_reconcile import storage_reconcile
from referrals.archive.synthetic import SyntheticPatient
from referrals.models import Instance, instance_object_key

from .conftest import api_client_for
from .dicom_support import ct_files
from .ingest_support import stow
from .processes import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

ACCESS_KEY, SECRET_KEY, REGION = "hub-test-access", "hub-test-secret", "us-east-1"
KEY_SHAPE = re.compile(r"^instances/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}\.dcm$")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 API server on a free loopback port for this module's tests."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch):
    """A fresh bucket, and default_storage pointed at it as production's settings do."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    name = f"hub-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(proxies={}),
    )
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "region_name": REGION,
                "file_overwrite": False,
                "querystring_auth": False,
                "default_acl": None,
            },
        },
    }
    return name, client


def bucket_keys(client, name: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_a_study_sent_over_stow_lands_in_the_bucket_byte_for_byte(world, bucket):
    name, client = bucket
    patient = SyntheticPatient("S3-PATIENT-77", "Zhao^Wei", issuer="CN-RESIDENT-ID")
    parts = ct_files(3, size=32, patient=patient)
    response = stow(api_client_for(world.alice), parts)
    assert response.status_code == 200, response.content
    assert type(default_storage._wrapped).__name__ == "S3Storage"

    instances = list(Instance.objects.order_by("instance_number"))
    assert len(instances) == 3
    assert bucket_keys(client, name) == {i.object_key for i in instances}
    for instance, sent in zip(instances, parts, strict=True):
        body = client.get_object(Bucket=name, Key=instance.object_key)["Body"].read()
        assert body == sent
        with default_storage.open(instance.object_key, "rb") as fp:
            assert fp.read() == sent
        # The key is the server's id only: nothing of the DICOM header shows in it.
        ds = pydicom.dcmread(io.BytesIO(sent))
        assert KEY_SHAPE.match(instance.object_key)
        for value in (
            ds.SOPInstanceUID,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.PatientID,
            "Zhao",
            world.clinic.code,
        ):
            assert str(value) not in instance.object_key


def test_reconcile_lists_the_bucket_and_finds_lost_and_orphaned_objects(world, bucket):
    name, client = bucket
    response = stow(api_client_for(world.alice), ct_files(3, size=16))
    assert response.status_code == 200
    for listdir in (False, True):  # one paginated listing, and the generic listdir walk
        report = storage_reconcile(verify_hash=True, listdir=listdir)
        assert (report.rows, report.objects, report.consistent) == (3, 3, True)
        assert report.orphans == []
    out = io.StringIO()
    call_command("reconcile_storage", "--verify-hash", stdout=out)
    assert "3 rows, 3 objects: 0 lost, 0 damaged, 0 orphans" in out.getvalue()

    orphan = instance_object_key(uuid.uuid4())
    client.put_object(Bucket=name, Key=orphan, Body=b"DICM" * 10)
    lost = Instance.objects.order_by("pk").first()
    client.delete_object(Bucket=name, Key=lost.object_key)
    for listdir in (False, True):
        report = storage_reconcile(listdir=listdir)
        assert [o.key for o in report.orphans] == [orphan]
        assert [(m.instance_id, m.key) for m in report.lost] == [(lost.pk, lost.object_key)]
    with pytest.raises(CommandError, match="1 lost"):
        call_command("reconcile_storage", stdout=io.StringIO(), stderr=io.StringIO())

    # The bucket's LastModified is now: an orphan is removed only once it is old enough.
    report = storage_reconcile(delete_orphans_older_than=dt.timedelta(0))
    assert report.deleted == [orphan]
    assert orphan not in bucket_keys(client, name)


def test_a_failed_transaction_deletes_the_object_from_the_bucket(
    world, bucket, tmp_path, monkeypatch
):
    name, client = bucket
    path = tmp_path / "one.dcm"
    path.write_bytes(ct_files(1, size=16)[0])

    def broken_index(*args, **kwargs):
        assert len(bucket_keys(client, name)) == 1  # the object was written first
        raise RuntimeError("commit failed")

    monkeypatch.setattr(ingest, "_index", broken_index)
    with pytest.raises(RuntimeError):
        ingest.instance_store(institution=world.clinic, path=path, via="test")
    assert bucket_keys(client, name) == set()
    assert not Instance.objects.exists()


def test_the_storage_never_renames_an_existing_key(bucket):
    """file_overwrite=False: a second save under a taken key gets another name, which ingest
    treats as a failure (fresh uuids never collide, so this only guards the setting)."""
    key = instance_object_key(uuid.uuid4())
    assert default_storage.save(key, ContentFile(b"first")) == key
    assert default_storage.save(key, ContentFile(b"second")) != key
