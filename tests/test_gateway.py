"""The edge gateway's parts: spool, DICOM SCP, forwarder (against a real HTTP server), config.

No database here: the gateway has none. The hub is a FakeHub (tests/gateway_support.py),
a real threaded HTTP server that can fail, refuse, drop connections or lose its answers.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import stat
import threading
import tomllib
from pathlib import Path

import hub_gateway
import pydicom
import pytest
import setuptools
from django.core.management import call_command
from django.core.management.base import CommandError
from hub_gateway import cli
from hub_gateway.config import SETTINGS, GatewayConfigError, load_config
from hub_gateway.forwarder import Backoff, Forwarder, HubRoute
from hub_gateway.hub import HubClient, MultipartBody, parse_store_response
from hub_gateway.scp import REFUSE_ALL, StorageSCP, accepted_transfer_syntaxes
from hub_gateway.service import Gateway, GatewayStartError
from hub_gateway.spool import Spool, SpoolBusyError, spool_status
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes

from .gateway_support import (
    KEY_ID,
    SECRET,
    FakeHub,
    Reply,
    gateway_config,
    run_until,
    sop_uid_of,
    split_multipart,
)
from .processes import ROOT, free_port, wait_until

PATIENT = SyntheticPatient("GW-0001", "Li^Lei=李^雷")


def ct_parts(count: int, **kwargs: object) -> list[bytes]:
    return [to_bytes(ds) for ds in ct_series(patient=PATIENT, count=count, size=32, **kwargs)]


def spool_files(spool: Spool, parts: list[bytes], calling_ae: str = "CT_ROOM1") -> list:
    return [
        spool.store(
            [part],
            {
                "calling_ae": calling_ae,
                "received_at": "2025-01-01T00:00:00",
                "sop_instance_uid": sop_uid_of(part),
            },
        )
        for part in parts
    ]


def waiting(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("*.dcm"))


def data_set_bytes(data: bytes) -> bytes:
    """What follows the file meta group: the bytes a C-STORE carries."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.read()


# --- spool -------------------------------------------------------------------------------


def test_a_stored_instance_is_a_complete_part10_file_with_its_sidecar(tmp_path):
    spool = Spool(tmp_path)
    [part] = ct_parts(1)
    item = spool.store(
        [part[:100], memoryview(part[100:])],
        {
            "calling_ae": "CT_ROOM1",
            "received_at": "2025-01-01T08:00:00+00:00",
            "sop_instance_uid": sop_uid_of(part),
        },
    )
    assert item.path.read_bytes() == part
    assert pydicom.dcmread(item.path).PatientID == "GW-0001"
    meta = json.loads(item.meta_path.read_text())
    assert meta["calling_ae"] == "CT_ROOM1"
    assert meta["received_at"] == "2025-01-01T08:00:00+00:00"
    assert meta["size"] == len(part)
    assert len(meta["sha256"]) == 64
    # The name is the spool's own id: nothing from the data set leaks into file names.
    assert "GW-0001" not in item.path.name
    assert sop_uid_of(part) not in item.path.name
    assert stat.S_IMODE(item.path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    [part] = ct_parts(1)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        spool.store([part], {"calling_ae": "CT_ROOM1"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejected"]


def test_a_restarted_spool_replays_oldest_first_and_drops_half_written_files(tmp_path):
    parts = ct_parts(3)
    items = spool_files(Spool(tmp_path), parts)
    (tmp_path / ".tmp-00000000000000000001-abc.dcm").write_bytes(b"half an instance")
    (tmp_path / "00000000000000000002-def.json").write_text("{}")  # sidecar of nothing

    again = Spool(tmp_path)
    assert again.recover() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["rejected", *(i.path.name for i in items), *(i.meta_path.name for i in items)]
    )
    batch, _ = again.claim(max_files=10, max_bytes=1 << 30)
    assert [b.item_id for b in batch] == [i.item_id for i in items]
    assert [b.sop_instance_uid for b in batch] == [sop_uid_of(p) for p in parts]


def test_a_claimed_file_is_not_handed_out_twice_and_a_uid_travels_once_per_batch(tmp_path):
    spool = Spool(tmp_path)
    [part] = ct_parts(1)
    first, second = spool_files(spool, [part, part])  # a modality sent it twice
    batch, _ = spool.claim(max_files=10, max_bytes=1 << 30)
    assert [b.item_id for b in batch] == [first.item_id]
    other, _ = spool.claim(max_files=10, max_bytes=1 << 30)
    assert [b.item_id for b in other] == [second.item_id]
    nothing, _ = spool.claim(max_files=10, max_bytes=1 << 30)
    assert nothing == []
    spool.release(batch)
    again, _ = spool.claim(max_files=10, max_bytes=1 << 30)
    assert [b.item_id for b in again] == [first.item_id]


def test_only_one_gateway_owns_a_spool(tmp_path):
    with Spool(tmp_path).exclusive(), pytest.raises(SpoolBusyError):  # noqa: SIM117
        with Spool(tmp_path).exclusive():
            pass
    with Spool(tmp_path).exclusive():  # released when the owner ends
        pass


# --- the DICOM side ----------------------------------------------------------------------


@pytest.fixture
def scp(tmp_path):
    spool = Spool(tmp_path / "spool")
    server = StorageSCP(ae_title="HUB_GW", bind_host="127.0.0.1", port=0, spool=spool)
    server.set_accepted(["CT_ROOM1"])
    server.start()
    yield server
    server.stop()


def associate(scp: StorageSCP, calling: str, contexts: list[tuple[str, str]]):
    ae = AE(ae_title=calling)
    for abstract, transfer in contexts:
        ae.add_requested_context(abstract, transfer)
    return ae.associate("127.0.0.1", scp.port, ae_title="HUB_GW")


def test_the_scp_answers_echo_and_spools_an_instance_before_answering_success(scp):
    [part] = ct_parts(1)
    ds = pydicom.dcmread(io.BytesIO(part))
    assoc = associate(
        scp,
        "CT_ROOM1",
        [(Verification, ExplicitVRLittleEndian), (CTImageStorage, ExplicitVRLittleEndian)],
    )
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
        # The success came after the spool write: the file is already there.
        [spooled] = list(scp.spool.root.glob("*.dcm"))
    finally:
        assoc.release()
    assert data_set_bytes(spooled.read_bytes()) == data_set_bytes(part)
    stored = pydicom.dcmread(spooled)
    assert stored.file_meta.SourceApplicationEntityTitle == "CT_ROOM1"
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    meta = json.loads(spooled.with_suffix(".json").read_text())
    assert (meta["calling_ae"], meta["sop_instance_uid"]) == ("CT_ROOM1", ds.SOPInstanceUID)
    assert meta["received_at"].endswith("+00:00")


def test_an_unknown_calling_ae_is_rejected(scp, caplog):
    caplog.set_level("INFO")
    assoc = associate(scp, "WRONG_AE", [(Verification, ExplicitVRLittleEndian)])
    assert assoc.is_rejected
    assert not assoc.is_established
    assert "Calling AE title not recognised" in caplog.text
    assert "refused an association from calling AE 'WRONG_AE'" in caplog.text


def test_an_empty_list_of_calling_ae_titles_refuses_everyone(scp, caplog):
    scp.set_accepted([])
    assert "every association will be refused" in caplog.text
    assert scp.ae.require_calling_aet == [REFUSE_ALL]
    assert len(REFUSE_ALL) > 16
    assoc = associate(scp, "CT_ROOM1", [(Verification, ExplicitVRLittleEndian)])
    assert assoc.is_rejected
    scp.set_accepted(["CT_ROOM1", "US_ROOM2"])  # the hub's list changed: no restart needed
    assoc = associate(scp, "US_ROOM2", [(Verification, ExplicitVRLittleEndian)])
    assert assoc.is_established
    assoc.release()


def test_a_compressed_instance_passes_through_undecoded(scp):
    path = get_testdata_file("JPEG2000.dcm", download=False)
    assert path is not None
    original = pydicom.dcmread(path)
    syntax = original.file_meta.TransferSyntaxUID
    assoc = associate(scp, "CT_ROOM1", [(original.SOPClassUID, syntax)])
    try:
        assert assoc.send_c_store(path).Status == 0x0000
    finally:
        assoc.release()
    [spooled] = list(scp.spool.root.glob("*.dcm"))
    stored = pydicom.dcmread(spooled)
    assert stored.file_meta.TransferSyntaxUID == syntax
    assert stored.PixelData == original.PixelData  # the JPEG 2000 stream, byte for byte


def test_lossless_syntaxes_are_preferred_and_lossy_ones_come_last():
    order = accepted_transfer_syntaxes()
    assert order.index("1.2.840.10008.1.2.4.90") < order.index(ExplicitVRLittleEndian)
    assert order.index(ExplicitVRLittleEndian) < order.index("1.2.840.10008.1.2")
    assert order.index("1.2.840.10008.1.2") < order.index("1.2.840.10008.1.2.4.50")
    assert "1.2.840.10008.1.2.4.94" not in order  # JPIP: pixels by reference


def test_a_disk_error_is_answered_out_of_resources(scp, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(scp.spool, "store", broken)
    [part] = ct_parts(1)
    assoc = associate(scp, "CT_ROOM1", [(CTImageStorage, ExplicitVRLittleEndian)])
    try:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(part))).Status == 0xA700
    finally:
        assoc.release()


def test_a_nearly_full_disk_is_answered_out_of_resources(scp):
    scp.min_free_bytes = scp.spool.free_bytes() * 4 + (1 << 40)
    [part] = ct_parts(1)
    assoc = associate(scp, "CT_ROOM1", [(CTImageStorage, ExplicitVRLittleEndian)])
    try:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(part))).Status == 0xA700
    finally:
        assoc.release()
    assert not list(scp.spool.root.glob("*.dcm"))


def test_several_associations_at_once(scp):
    studies = [ct_parts(5) for _ in range(4)]
    statuses: list[int] = []

    def modality(parts: list[bytes]) -> None:
        assoc = associate(scp, "CT_ROOM1", [(CTImageStorage, ExplicitVRLittleEndian)])
        try:
            for part in parts:
                statuses.append(assoc.send_c_store(pydicom.dcmread(io.BytesIO(part))).Status)
        finally:
            assoc.release()

    threads = [threading.Thread(target=modality, args=(s,)) for s in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [0] * 20
    spooled = {sop_uid_of(p.read_bytes()) for p in scp.spool.root.glob("*.dcm")}
    assert spooled == {sop_uid_of(p) for s in studies for p in s}


# --- the forwarder -----------------------------------------------------------------------


def forwarder_for(tmp_path: Path, hub_url: str, **overrides: object) -> tuple[Forwarder, HubClient]:
    config = gateway_config(tmp_path / "spool", hub_url, **overrides)
    forwarder = Forwarder(spool=Spool(config.spool_dir), config=config, rng=random.Random(7))  # noqa: S311
    return forwarder, HubClient(config)


def test_the_multipart_body_streams_every_file_between_boundaries(tmp_path):
    parts = ct_parts(3)
    paths = []
    for index, part in enumerate(parts):
        paths.append(tmp_path / f"{index}.dcm")
        paths[-1].write_bytes(part)
    body = MultipartBody(paths)
    chunks = []
    while chunk := body.read(1000):
        chunks.append(chunk)
    raw = b"".join(chunks)
    assert len(raw) == len(body)
    assert split_multipart(raw, body.content_type) == parts


def test_failures_are_retried_and_nothing_is_deleted_until_the_hub_confirms(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(3)
        spool_files(forwarder.spool, parts)
        hub.script = [Reply(503, b"maintenance"), Reply(drop=True), Reply(429, b"slow down")]
        for _ in range(3):
            assert forwarder.run_once(client)
            assert len(waiting(forwarder.spool.root)) == 3
            assert forwarder.spool.state.snapshot()["last_error"]["hub"] == hub.url
        assert forwarder.backoff.failures == 3
        assert "last_success_at" not in forwarder.spool.state.snapshot()
        assert forwarder.run_once(client)
        assert waiting(forwarder.spool.root) == []
        assert len(hub.requests) == 4
        assert all(len(r) == 3 for r in hub.requests)
        assert set(hub.stored) == {sop_uid_of(p) for p in parts}
        assert forwarder.backoff.failures == 0
        state = forwarder.spool.state.snapshot()
        assert state["forwarded_total"] == 3
        assert state["last_success_at"]


def test_the_threads_survive_hub_downtime_and_drain_the_spool(tmp_path):
    port = free_port()
    forwarder, _client = forwarder_for(
        tmp_path, f"http://127.0.0.1:{port}/dicomweb/studies", forward_workers=2, batch_files=4
    )
    parts = ct_parts(10)
    spool_files(forwarder.spool, parts)
    forwarder.start()
    try:
        wait_until(
            lambda: forwarder.backoff.failures >= 2,
            timeout=30,
            what="failed attempts against the dead hub",
        )
        assert len(waiting(forwarder.spool.root)) == 10
        with FakeHub(port=port) as hub:
            wait_until(
                lambda: not waiting(forwarder.spool.root), timeout=30, what="the spool to drain"
            )
            assert set(hub.stored) == {sop_uid_of(p) for p in parts}
            assert max(len(r) for r in hub.requests) == 4  # batched, within the limit
    finally:
        forwarder.stop()


def test_failover_to_the_standby_and_back_to_the_primary(tmp_path):
    dead = free_port()
    primary_url = f"http://127.0.0.1:{dead}/dicomweb/studies"
    with FakeHub() as standby:
        forwarder, client = forwarder_for(
            tmp_path, primary_url, standby_url=standby.url, failover_after=2
        )
        now = [0.0]
        forwarder.route = HubRoute(
            primary_url, standby.url, failover_after=2, failback_after=60, clock=lambda: now[0]
        )
        first = ct_parts(2)
        spool_files(forwarder.spool, first)
        forwarder.run_once(client)
        assert forwarder.route.active == primary_url
        forwarder.run_once(client)
        assert forwarder.route.active == standby.url  # two failures in a row: switch
        forwarder.run_once(client)
        assert waiting(forwarder.spool.root) == []
        assert set(standby.stored) == {sop_uid_of(p) for p in first}
        assert forwarder.spool.state.snapshot()["current_hub"] == standby.url

        with FakeHub(port=dead) as primary:
            second = ct_parts(2)
            spool_files(forwarder.spool, second)
            now[0] += 30  # not yet time to look at the primary again
            forwarder.run_once(client)
            assert set(standby.stored) == {sop_uid_of(p) for p in first + second}
            assert primary.requests == []
            now[0] += 31
            third = ct_parts(1)
            spool_files(forwarder.spool, third)
            forwarder.run_once(client)  # the probe reaches the primary: back on it
            assert forwarder.route.active == primary_url
            assert set(primary.stored) == {sop_uid_of(p) for p in third}


def test_a_failed_probe_of_the_primary_keeps_the_standby(tmp_path):
    dead = free_port()
    primary_url = f"http://127.0.0.1:{dead}/dicomweb/studies"
    now = [0.0]
    route = HubRoute(
        primary_url,
        "http://127.0.0.1:1/standby",
        failover_after=1,
        failback_after=10,
        clock=lambda: now[0],
    )
    assert route.failed(primary_url) is True
    now[0] = 11
    assert route.target() == primary_url
    assert route.failed(primary_url) is False
    assert route.active == "http://127.0.0.1:1/standby"
    assert route.target() == "http://127.0.0.1:1/standby"  # next probe in 10 s


def test_a_permanent_refusal_moves_the_file_to_rejected_with_its_reason(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(3)
        bad = sop_uid_of(parts[1])
        hub.refuse[bad] = 0xA900
        spool_files(forwarder.spool, parts)
        forwarder.run_once(client)
        assert waiting(forwarder.spool.root) == []
        [rejected] = list((forwarder.spool.root / "rejected").glob("*.dcm"))
        assert rejected.read_bytes() == parts[1]
        why = json.loads(rejected.with_suffix(".json").read_text())["rejected"]
        assert (why["reason"], why["reason_hex"]) == (0xA900, "0xA900")
        assert why["message"] == "refused with 0xa900"
        assert why["hub"] == hub.url
        assert set(hub.stored) == {sop_uid_of(parts[0]), sop_uid_of(parts[2])}
        requests = len(hub.requests)
        forwarder.run_once(client)
        assert len(hub.requests) == requests  # never sent again


def test_a_uid_already_held_with_other_bytes_is_rejected_not_retried(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        [part] = ct_parts(1)
        uid = sop_uid_of(part)
        hub.stored[uid] = b"the first copy"
        spool_files(forwarder.spool, [part])
        forwarder.run_once(client)
        [rejected] = list((forwarder.spool.root / "rejected").glob("*.json"))
        assert json.loads(rejected.read_text())["rejected"]["reason"] == 0x0111
        assert hub.stored[uid] == b"the first copy"


def test_a_transient_refusal_is_retried_until_stored(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(2)
        hub.refuse[sop_uid_of(parts[0])] = 0xA700  # the hub's storage is full right now
        spool_files(forwarder.spool, parts)
        forwarder.run_once(client)
        assert len(waiting(forwarder.spool.root)) == 1
        assert forwarder.spool.state.snapshot()["last_error"]["message"].endswith("(0xA700)")
        hub.refuse.clear()
        run_until(lambda: forwarder.run_once(client), lambda: not waiting(forwarder.spool.root))
        assert set(hub.stored) == {sop_uid_of(p) for p in parts}
        assert not list((forwarder.spool.root / "rejected").iterdir())


def test_no_deletion_without_the_instance_in_the_referenced_sequence(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(2)
        spool_files(forwarder.spool, parts)
        someone_else = {
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3.4"]}}]}
        }
        hub.script = [
            Reply(200, json.dumps(someone_else).encode()),
            Reply(200, b"<html>proxy error page</html>"),
            Reply(200, b"{}"),
            Reply(200, b"{}"),
        ]
        for _ in range(4):
            forwarder.run_once(client)
            assert len(waiting(forwarder.spool.root)) == 2
        run_until(lambda: forwarder.run_once(client), lambda: not waiting(forwarder.spool.root))
        assert set(hub.stored) == {sop_uid_of(p) for p in parts}


def test_a_lost_answer_means_a_resend_that_the_hub_takes_as_a_success(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(2)
        spool_files(forwarder.spool, parts)
        hub.script = [Reply(drop=True, store_first=True)]
        forwarder.run_once(client)
        assert len(waiting(forwarder.spool.root)) == 2  # stored there, but unconfirmed here
        assert set(hub.stored) == {sop_uid_of(p) for p in parts}
        forwarder.run_once(client)
        assert waiting(forwarder.spool.root) == []
        assert not list((forwarder.spool.root / "rejected").iterdir())


def test_a_request_too_large_for_the_hub_is_split_then_a_single_one_rejected(tmp_path):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        hub.max_parts = 1
        parts = ct_parts(3)
        spool_files(forwarder.spool, parts)
        forwarder.run_once(client)  # 413 for three parts: each goes alone from now on
        assert len(waiting(forwarder.spool.root)) == 3
        run_until(lambda: forwarder.run_once(client), lambda: not waiting(forwarder.spool.root))
        assert set(hub.stored) == {sop_uid_of(p) for p in parts}
        hub.max_parts = 0  # now even one instance is too large
        spool_files(forwarder.spool, ct_parts(1))
        forwarder.run_once(client)
        [why] = [
            json.loads(p.read_text())["rejected"]
            for p in (forwarder.spool.root / "rejected").glob("*.json")
        ]
        assert why["reason"] is None
        assert why["message"].startswith("HTTP 413")


def test_a_refused_credential_keeps_the_files_and_says_why(tmp_path):
    with FakeHub() as hub:
        config = gateway_config(tmp_path / "spool", hub.url)
        forwarder = Forwarder(spool=Spool(config.spool_dir), config=config)
        wrong = HubClient(config)
        wrong.session.auth = (KEY_ID, "not-the-secret")
        spool_files(forwarder.spool, ct_parts(1))
        forwarder.run_once(wrong)
        assert len(waiting(forwarder.spool.root)) == 1
        assert (
            "refused the gateway credential"
            in forwarder.spool.state.snapshot()["last_error"]["message"]
        )


def test_backoff_doubles_with_jitter_up_to_the_cap():
    clock = [100.0]
    backoff = Backoff(
        1.0,
        8.0,
        rng=random.Random(1),  # noqa: S311
        clock=lambda: clock[0],
    )
    waits = [backoff.failed() for _ in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[3:]}) == 3  # jitter: not in step
    assert backoff.remaining() == waits[-1]
    assert backoff.failed(retry_after=30) == 8.0  # Retry-After, but never past the cap
    backoff.succeeded()
    assert backoff.remaining() == 0
    assert backoff.failures == 0


def test_parse_store_response_reads_referenced_and_failed():
    body = json.dumps(
        {
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
            "00081198": {
                "vr": "SQ",
                "Value": [
                    {
                        "00081155": {"vr": "UI", "Value": ["1.2.4"]},
                        "00081197": {"vr": "US", "Value": [0xC000]},
                    },
                    {"00081197": {"vr": "US", "Value": [0xA700]}},
                ],
            },
        }
    ).encode()
    answer = parse_store_response(body)
    assert answer.referenced == ["1.2.3"]
    assert [(f.sop_instance_uid, f.reason) for f in answer.failed] == [
        ("1.2.4", 0xC000),
        ("", 0xA700),
    ]
    with pytest.raises(ValueError, match="sequence"):
        parse_store_response(b'{"00081199": {"vr": "SQ", "Value": 3}}')


# --- the running gateway, its status and its settings ------------------------------------


def run_gateway_in_thread(config, **kwargs):
    gateway = Gateway(config, **kwargs)
    stop = threading.Event()
    started = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            gateway.run(stop, ready=lambda _g: started.set())
        except BaseException as exc:
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(30)
    return gateway, stop, thread, errors


def test_the_gateway_learns_its_callers_from_the_hub_and_forwards(tmp_path):
    with FakeHub(calling_ae_titles=["CT_ROOM1"]) as hub:
        config = gateway_config(
            tmp_path / "spool", hub.url, bind_host="127.0.0.1", port=free_port()
        )
        gateway, stop, thread, errors = run_gateway_in_thread(config)
        try:
            assert errors == []
            assert gateway.scp is not None
            assert gateway.scp.accepted_calling_ae_titles == ("CT_ROOM1",)
            [part] = ct_parts(1)
            assoc = associate(gateway.scp, "CT_ROOM1", [(CTImageStorage, ExplicitVRLittleEndian)])
            assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(part))).Status == 0
            assoc.release()
            wait_until(
                lambda: sop_uid_of(part) in hub.stored,
                timeout=30,
                what="the instance to reach the hub",
            )
            wait_until(lambda: not waiting(config.spool_dir), timeout=30, what="the spool to empty")
            identity = json.loads((config.spool_dir / "state.json").read_text())["identity"]
            assert identity["calling_ae_titles"] == ["CT_ROOM1"]
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()


def test_forward_only_drains_a_spool_without_listening_and_one_owner_at_a_time(tmp_path):
    with FakeHub() as hub:
        config = gateway_config(tmp_path / "spool", hub.url, forward_only=1)
        parts = ct_parts(3)
        spool_files(Spool(config.spool_dir), parts)
        gateway, stop, thread, errors = run_gateway_in_thread(config)
        try:
            assert errors == []
            assert gateway.scp is None
            wait_until(lambda: not waiting(config.spool_dir), timeout=30, what="the spool to drain")
            assert set(hub.stored) == {sop_uid_of(p) for p in parts}
            _second, _stop, other, busy = run_gateway_in_thread(config)
            other.join(30)
            assert len(busy) == 1
            assert isinstance(busy[0], SpoolBusyError)
        finally:
            stop.set()
            thread.join(30)


def test_a_refused_credential_stops_the_gateway_at_start(tmp_path):
    with FakeHub() as hub:
        hub.whoami_status = 401
        config = gateway_config(
            tmp_path / "spool", hub.url, bind_host="127.0.0.1", port=free_port()
        )
        _gateway, _stop, thread, errors = run_gateway_in_thread(config)
        thread.join(30)
        assert len(errors) == 1
        assert isinstance(errors[0], GatewayStartError)
        assert "refused the gateway credential" in str(errors[0])


def test_with_the_hub_down_at_start_the_last_known_callers_are_used(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/dicomweb/studies"
    spool = Spool(tmp_path / "spool")
    spool.state.update(identity={"key_id": KEY_ID, "calling_ae_titles": ["CT_ROOM1"]})
    config = gateway_config(tmp_path / "spool", dead, bind_host="127.0.0.1", port=free_port())
    gateway, stop, thread, errors = run_gateway_in_thread(config)
    try:
        assert errors == []
        assert gateway.scp is not None
        assert gateway.scp.accepted_calling_ae_titles == ("CT_ROOM1",)
    finally:
        stop.set()
        thread.join(30)

    # A cache learnt for another credential is not trusted: refuse all until the hub says.
    spool.state.update(identity={"key_id": "gw_someoneelse", "calling_ae_titles": ["X"]})
    gateway, stop, thread, errors = run_gateway_in_thread(config)
    try:
        assert errors == []
        assert gateway.scp is not None
        assert gateway.scp.accepted_calling_ae_titles == ()
    finally:
        stop.set()
        thread.join(30)


def test_gateway_status_shows_depth_age_rejections_and_the_last_error(tmp_path, capsys):
    with FakeHub() as hub:
        forwarder, client = forwarder_for(tmp_path, hub.url)
        parts = ct_parts(3)
        hub.refuse[sop_uid_of(parts[0])] = 0xC000
        spool_files(forwarder.spool, parts[:1])
        forwarder.run_once(client)  # one rejected
        spool_files(forwarder.spool, parts[1:])
        hub.script = [Reply(503, b"down")]
        forwarder.run_once(client)  # two waiting, last error recorded
    root = forwarder.spool.root
    call_command("gateway_status", "--spool", str(root), "--json")
    status = json.loads(capsys.readouterr().out)
    assert (status["files"], status["rejected"]) == (2, 1)
    assert status["bytes"] == sum(len(p) for p in parts[1:])
    assert status["oldest_age_seconds"] >= 0
    assert "HTTP 503" in status["last_error"]["message"]
    assert status["last_success_at"] is None
    call_command("gateway_status", "--spool", str(root))
    text = capsys.readouterr().out
    assert "2 file(s)" in text
    assert "1 file(s) in rejected/" in text
    assert "HTTP 503" in text
    assert spool_status(root)["files"] == 2
    with pytest.raises(CommandError, match="not a spool directory"):
        call_command("gateway_status", "--spool", str(tmp_path / "nowhere"))

    # The standalone command prints the same report as the hub's wrapper.
    assert cli.main(["status", "--spool", str(root)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == text.rstrip("\n")
    assert cli.main(["status", "--spool", str(tmp_path / "nowhere")]) == 1
    assert "not a spool directory" in capsys.readouterr().err


def test_hub_gateway_run_checks_its_settings_before_it_starts(tmp_path, monkeypatch, capsys):
    for name in [s.env for s in SETTINGS]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEWAY_SECRET", SECRET)
    code = cli.main(["run", "--spool", str(tmp_path / "spool"), "--key-id", KEY_ID])
    assert code == 1
    assert "--hub-url / GATEWAY_HUB_URL is required" in capsys.readouterr().err
    assert not (tmp_path / "spool").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--secret", "x"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --secret" in capsys.readouterr().err
    with pytest.raises(CommandError, match="--port / GATEWAY_PORT: a TCP port"):
        call_command(
            "run_gateway",
            "--spool",
            str(tmp_path / "spool"),
            "--key-id",
            KEY_ID,
            "--hub-url",
            "https://hub.example/dicomweb/studies",
            "--port",
            "0",
        )


def test_settings_come_from_options_and_env_and_the_secret_never_from_the_command_line(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    config = load_config(
        {"spool_dir": str(tmp_path), "secret_file": str(secret_file)},
        environ={
            "GATEWAY_HUB_URL": "https://hub.example/dicomweb/studies",
            "GATEWAY_STANDBY_URL": "https://dr.example/dicomweb/studies",
            "GATEWAY_KEY_ID": KEY_ID,
            "GATEWAY_PORT": "104",
        },
    )
    assert config.secret == SECRET
    assert SECRET not in repr(config)
    assert config.port == 104
    assert config.ae_title == "HUB_GATEWAY"
    assert config.whoami_urls == (
        "https://hub.example/api/v1/gateway/whoami/",
        "https://dr.example/api/v1/gateway/whoami/",
    )
    assert config.warnings == ()
    base = {
        "spool_dir": str(tmp_path),
        "hub_url": "https://hub.example/dicomweb/studies",
        "key_id": KEY_ID,
    }
    for options, environ, problem in [
        (base, {}, "secret is missing"),
        ({**base, "secret_file": str(secret_file)}, {"GATEWAY_SECRET": "x"}, "not both"),
        ({**base, "port": "70000"}, {"GATEWAY_SECRET": "x"}, "between 1 and 65535"),
        ({**base, "key_id": "abc"}, {"GATEWAY_SECRET": "x"}, "starts with 'gw_'"),
        ({**base, "hub_url": "ftp://hub"}, {"GATEWAY_SECRET": "x"}, "not an http"),
        ({**base, "ae_title": "A" * 17}, {"GATEWAY_SECRET": "x"}, "1 to 16"),
        ({**base, "retry_base": "-1"}, {"GATEWAY_SECRET": "x"}, "positive"),
        (
            {k: v for k, v in base.items() if k != "hub_url"},
            {"GATEWAY_SECRET": "x"},
            "--hub-url / GATEWAY_HUB_URL is required",
        ),
    ]:
        with pytest.raises(GatewayConfigError, match=problem):
            load_config(options, environ=environ)
    secret_file.chmod(0o644)
    loose = load_config({**base, "secret_file": str(secret_file)}, environ={})
    assert any("readable by others" in w for w in loose.warnings)
    plain = load_config(
        {**base, "hub_url": "http://hub.example/dicomweb/studies"}, environ={"GATEWAY_SECRET": "x"}
    )
    assert any("plain HTTP" in w for w in plain.warnings)
    with pytest.raises(CommandError, match="unrecognized arguments: --secret"):
        call_command("run_gateway", "--secret", "x")


def test_the_gateway_is_one_package_outside_the_hub():
    """The hub ships no copy of the gateway; its wrappers import the gateway package."""
    hub = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = hub["tool"]["setuptools"]["packages"]["find"]
    shipped = setuptools.find_packages(
        str(ROOT), include=find["include"], exclude=find.get("exclude", ())
    )
    assert "referrals.management.commands" in shipped
    assert [name for name in shipped if "gateway" in name] == []
    assert Path(hub_gateway.__file__).parent == ROOT / "gateway" / "src" / "hub_gateway"
    own = tomllib.loads((ROOT / "gateway" / "pyproject.toml").read_text())["project"]
    assert sorted(d.split(">")[0] for d in own["dependencies"]) == [
        "pydicom",
        "pynetdicom",
        "requests",
    ]
    assert own["scripts"] == {"hub-gateway": "hub_gateway.cli:main"}
