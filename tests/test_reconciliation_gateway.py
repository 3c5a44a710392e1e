"""The gateway and the hub's reconciliation: a held instance is delivered (it leaves the
spool, never rejected/), the same data set from a second calling AE is a duplicate success,
and only a true conflict lands in rejected/.

The end-to-end case runs the gateway as a clinic installs it (its own venv, a real process),
dcmtk's storescu as two modalities, and the hub as a live server.
"""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import HeldInstance, Instance, Study
from tenants.access import scope_for_user
from tenants.services import gateway_credential_create

from .gateway_support import FakeHub, sop_uid_of
from .processes import free_port, wait_until
from .test_gateway import ct_parts, forwarder_for, spool_files, waiting
from .test_gateway_e2e import (  # noqa: F401 - fixtures used by name
    GATEWAY_AE,
    GatewayProcess,
    NetworkSwitch,
    clinic_venv,
    dcmtk,
    switch,
)

FIRST = SyntheticPatient("GW-A-1", "Zhang^San=张^三", birth_date="19700101", sex="M")
SECOND = SyntheticPatient("GW-B-2", "Zhao^Si=赵^四", birth_date="19800202", sex="F")


def test_a_held_answer_is_delivered_not_rejected_nor_retried(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(2)
        hub.refuse[sop_uid_of(parts[1])] = 0xC002
        spool_files(forwarder.spool, parts)
        forwarder.run_once(client)
        assert waiting(forwarder.spool.root) == []
        assert list((forwarder.spool.root / "rejected").glob("*")) == []
        requests = len(hub.requests)
        forwarder.run_once(client)
        assert len(hub.requests) == requests  # nothing left to send again
        assert forwarder.spool.state.snapshot()["forwarded_total"] == 2


def test_a_true_conflict_is_still_rejected(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        [part] = ct_parts(1)
        hub.refuse[sop_uid_of(part)] = 0x0111
        spool_files(forwarder.spool, [part])
        forwarder.run_once(client)
        [rejected] = list((forwarder.spool.root / "rejected").glob("*.json"))
        assert json.loads(rejected.read_text())["rejected"]["reason"] == 0x0111


# --- End to end: storescu -> gateway process -> hub -------------------------------------


def write(folder: Path, datasets: list[pydicom.Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


@pytest.fixture
def two_room_gateway(world, switch, clinic_venv, tmp_path) -> Iterator[GatewayProcess]:  # noqa: F811
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.adam),
        label="CT rooms",
        calling_ae_titles=["CT_ROOM1", "CT_ROOM2"],
    )
    process = GatewayProcess(
        venv=clinic_venv,
        port=free_port(),
        spool=tmp_path / "spool",
        hub_url=switch.url,
        key_id=credential.key_id,
        secret=secret,
        log_dir=tmp_path,
    )
    process.start()
    yield process
    if process.proc is not None:
        process.proc.stop(signal.SIGTERM, timeout=30)


def storescu(gateway: GatewayProcess, files: list[Path], calling: str) -> None:
    result = dcmtk(
        "storescu", "-aet", calling, "-aec", GATEWAY_AE, "127.0.0.1", str(gateway.port), *files
    )
    assert result.returncode == 0, result.stdout + result.stderr


def drained(gateway: GatewayProcess) -> None:
    assert gateway.proc is not None
    wait_until(
        lambda: gateway.status()["files"] == 0,
        timeout=90,
        what="the spool to empty",
        watch=[gateway.proc],
        interval=0.3,
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_storescu_routes_duplicates_holds_and_conflicts_right(world, two_room_gateway, tmp_path):
    gateway = two_room_gateway
    study_uid = pydicom.uid.generate_uid()
    first = write(
        tmp_path / "a", list(ct_series(patient=FIRST, count=3, size=64, study_uid=study_uid))
    )
    storescu(gateway, first, "CT_ROOM1")
    drained(gateway)
    assert Instance.objects.filter(institution=world.clinic).count() == 3

    # The same data sets from a second room: other file meta at the gateway, one copy at the hub.
    storescu(gateway, first, "CT_ROOM2")
    drained(gateway)
    assert Instance.objects.filter(institution=world.clinic).count() == 3
    assert gateway.status()["rejected"] == 0

    # Another patient under the same Study Instance UID: held at the hub, delivered here.
    second = write(
        tmp_path / "b", list(ct_series(patient=SECOND, count=2, size=64, study_uid=study_uid))
    )
    storescu(gateway, second, "CT_ROOM1")
    drained(gateway)
    assert gateway.status()["rejected"] == 0
    held = HeldInstance.objects.filter(institution=world.clinic, resolved_at__isnull=True)
    assert {h.sop_uid for h in held} == {sop_uid_of(p.read_bytes()) for p in second}
    assert {h.received_via for h in held} == {"gateway"}
    assert Study.objects.get(institution=world.clinic).pid == "GW-A-1"
    assert Instance.objects.filter(institution=world.clinic).count() == 3

    # A truly different data set under a stored UID: the only thing rejected/ receives.
    changed = pydicom.dcmread(first[0])
    changed.PatientName = "Changed^Name"
    conflict = tmp_path / "c" / "conflict.dcm"
    conflict.parent.mkdir()
    conflict.write_bytes(to_bytes(changed))
    storescu(gateway, [conflict], "CT_ROOM2")
    drained(gateway)
    assert gateway.status()["rejected"] == 1
    [instance] = Instance.objects.filter(sop_uid=changed.SOPInstanceUID)
    stored = pydicom.dcmread(io.BytesIO(instance_bytes(instance)))
    assert str(stored.PatientName) == FIRST.name


def instance_bytes(instance: Instance) -> bytes:
    from django.core.files.storage import default_storage

    with default_storage.open(instance.object_key) as fp:
        return fp.read()
